"""Language models: a character-level GPT that learns to write Shakespeare.

Turns text into numbers (a character vocabulary), sets the bar with two
models made by counting (unigram and bigram), and writes the pieces a
next-character model needs from scratch: cross-entropy in nats and bits per
character, the causal mask (proved: no output looks at a later character),
and sampling with temperature and top-k (proved against the analytic
distribution). Then trains a small GPT with `fit` on random windows of Tiny
Shakespeare, beside an LSTM given the same seconds, and lets both write.

Text: chapters/language_model.md.
"""
from __future__ import annotations

import dataclasses
import gzip
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from matplotlib.figure import Figure

from tfguide import chapters, cli, datasets, exercises, plotting, resources
from tfguide.config import Config
from tfguide.results import Experiment

SHIPPED = "tinyshakespeare.txt.gz"
SHIPPED_SHA256 = "13125fe8f49092165d7d489e3944db52d1ba546e64a60080cc9523bcd0c5e46a"
PROVENANCE = ("Tiny Shakespeare (char-rnn's data/tinyshakespeare/input.txt, as used by "
              "nanoGPT; public domain), shipped in data/tinyshakespeare.txt.gz")
TRAIN_FRACTION = 0.9  # nanoGPT's split: first 90% of the characters train, last 10% validate
TEMPERATURES = (0.5, 0.8, 1.0)


@dataclasses.dataclass(frozen=True)
class GPTSize:
    """The shape of a GPT: context length, width, heads, blocks."""

    context: int = 64
    d_model: int = 128
    heads: int = 4
    blocks: int = 4


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to train: batch, AdamW's learning-rate schedule, steps per execution, XLA."""

    name: str
    batch_size: int
    peak_lr: float
    steps: int  # where the schedule ends
    warmup: int
    min_lr: float
    cooldown: float = 0.0  # 0: a cosine after the warm-up; else hold the peak, then fall
    #                        linearly to min_lr over this last fraction of the steps
    steps_per_execution: int = 1
    eval_every: int = 100  # steps between validations (one Keras "epoch")
    jit: bool = False  # compile the training step with XLA (jit_compile)


FULL = GPTSize()  # nanoGPT's CPU model: 4 layers, 4 heads, 128 wide, context 64
QUICK = GPTSize(context=32, d_model=64, heads=4, blocks=2)
# nanoGPT's CPU recipe for this data (config/train_shakespeare_char.py with the README's
# CPU overrides), ported as is; and tfguide's recipe for the same model on a small CPU.
NANOGPT = Recipe("nanoGPT CPU recipe", batch_size=12, peak_lr=1e-3, steps=2000, warmup=100,
                 min_lr=1e-4, steps_per_execution=1, eval_every=100)
TFGUIDE = Recipe("tfguide CPU recipe", batch_size=16, peak_lr=3e-3, steps=800, warmup=50,
                 min_lr=0.0, cooldown=0.4, steps_per_execution=25, eval_every=25, jit=True)
UNMASKED = Recipe("no causal mask", batch_size=64, peak_lr=5e-3, steps=150, warmup=10,
                  min_lr=5e-4, steps_per_execution=50, eval_every=150)
UNMASKED_SIZE = dataclasses.replace(QUICK, blocks=1)  # one block is enough to learn to cheat


# --- Prepare the data ---------------------------------------------------------------
def read_corpus(name: str, data_dir: Path | None) -> tuple[str, str, str]:
    """Return (text, source, provenance): the shipped corpus, or DIR/NAME.txt a learner brings."""
    path = Path(data_dir) / f"{name}.txt" if data_dir is not None else None
    if path is None or not path.is_file():
        if name != "shakespeare":
            where = path or f"NAME.txt in the folder given by --data-dir"
            raise datasets.DataError(f"No text for --data {name}: expected {where}; put a UTF-8 "
                                     f"text file there and pass its folder with --data-dir.")
        return _shipped_text(), "offline-standin", PROVENANCE
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise datasets.DataError(f"{path} is not UTF-8 text (byte {err.start} cannot be "
                                 f"decoded): save it as UTF-8 plain text.") from None
    if not text.strip():
        raise datasets.DataError(f"{path} is empty: give a text of at least a few thousand "
                                 f"characters.")
    if "\x00" in text:
        raise datasets.DataError(f"{path} holds NUL bytes, so it is binary, not text: "
                                 f"give a plain UTF-8 text file.")
    return text, "data-dir", f"{path} (brought by the user)"


def _shipped_text() -> str:
    path = resources.data_dir() / SHIPPED
    fix = ("restore it with `git checkout data/` (or reinstall tfguide), "
           "or remake it with `python data/make_data.py`")
    if not path.is_file():
        raise datasets.DataError(f"{path} is missing: {fix}.")
    if datasets.sha256(path) != SHIPPED_SHA256:
        raise datasets.DataError(f"{path} is damaged (its SHA-256 checksum does not match): "
                                 f"{fix}.")
    return gzip.decompress(path.read_bytes()).decode("utf-8")


# Code between [start:…]/[end:…] markers is shown in chapters/language_model.md; refresh the
# text with python -m tfguide.excerpts chapters/language_model.md after editing it.
# [start:vocab]
class Vocabulary:
    """The characters of a text, numbered in sorted order: encode to ids, decode back."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))  # e.g. ['\n', ' ', '!', ..., 'z']
        self.ids = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.fromiter(map(self.ids.__getitem__, text), np.int32, len(text))  # (len(text),)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)
# [end:vocab]


# [start:windows]
def split(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first 90% of the characters for training, the last 10% for validation."""
    n = int(TRAIN_FRACTION * len(ids))
    return ids[:n], ids[n:]


def random_windows(ids: np.ndarray, context: int, batch_size: int, seed: int) -> tf.data.Dataset:
    """An endless stream of (x, y) batches: y is x shifted by one character."""
    ids = tf.constant(ids)  # (n,)
    last_start = len(ids) - context - 1

    def window(key):  # key: a random int64 that seeds this batch
        starts = tf.random.stateless_uniform((batch_size,), seed=tf.stack([key, 0]),
                                             maxval=last_start + 1, dtype=tf.int64)
        chunk = tf.gather(ids, starts[:, None] + tf.range(context + 1, dtype=tf.int64))
        return chunk[:, :-1], chunk[:, 1:]  # (batch, context) inputs, (batch, context) targets

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)  # new each fit
    return keys.map(window).prefetch(tf.data.AUTOTUNE)


def fixed_windows(ids: np.ndarray, context: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n windows spread evenly over `ids`: the same validation set for every model."""
    starts = np.linspace(0, len(ids) - context - 1, n).astype(np.int64)  # (n,)
    chunk = ids[starts[:, None] + np.arange(context + 1)]  # (n, context + 1)
    return chunk[:, :-1], chunk[:, 1:]
# [end:windows]


# --- From scratch -------------------------------------------------------------------
# [start:counting]
def unigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/char) of p(c) = how often c occurs in training (add-one)."""
    counts = np.bincount(train, minlength=vocab_size) + 1.0  # (vocab,)
    log_p = np.log(counts / counts.sum())
    return float(-log_p[val].mean())


def bigram_counts(train: np.ndarray, vocab_size: int) -> np.ndarray:
    """counts[a, b] + 1: how often b follows a in training, plus one (add-one smoothing)."""
    counts = np.ones((vocab_size, vocab_size))  # (vocab, vocab)
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    return counts


def bigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/char) of p(b | a) = counts[a, b] / counts[a].sum()."""
    counts = bigram_counts(train, vocab_size)
    log_p = np.log(counts / counts.sum(axis=1, keepdims=True))  # (vocab, vocab), rows sum to 1
    return float(-log_p[val[:-1], val[1:]].mean())


def bits_per_char(nats: float) -> float:
    """A loss in nats per character as bits per character (log base 2)."""
    return nats / math.log(2)
# [end:counting]


# [start:mask]
def causal_mask(t: int) -> np.ndarray:
    """(t, t) booleans, True where query i may attend to key j: j <= i (itself included)."""
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]  # (t, 1) query rows, (1, t) key columns
    return j <= i  # (t, t): the lower triangle with its diagonal
# [end:mask]


# [start:causal]
def causal_max_change(model: keras.Model, x: np.ndarray, t: int, vocab_size: int,
                      seed: int = 0) -> float:
    """Change every character at positions >= t; return how much outputs before t moved."""
    changed = x.copy()  # (batch, context)
    rng = np.random.default_rng(seed)
    changed[:, t:] = rng.integers(0, vocab_size, size=changed[:, t:].shape)
    before = model.predict_on_batch(x)[:, :t]  # (batch, t, vocab)
    after = model.predict_on_batch(changed)[:, :t]
    return float(np.max(np.abs(before - after)))  # 0 for a causal model
# [end:causal]


# [start:sampling]
def sample_next(logits, temperature, top_k: int | None = None, seed=None):
    """Draw one id per row from softmax(logits / temperature), keeping the top_k only.

    logits: (batch, vocab); temperature: a number or (batch, 1). Inverse-CDF sampling:
    draw u ~ U(0, 1) and take the first id whose cumulative probability reaches u.
    """
    scaled = logits / temperature  # (batch, vocab): T < 1 sharpens, T > 1 flattens
    if top_k is not None:
        kth_best = ops.top_k(scaled, top_k)[0][:, -1:]  # (batch, 1)
        scaled = ops.where(scaled < kth_best, -np.inf, scaled)  # the rest get probability 0
    probs = ops.softmax(scaled, axis=-1)  # (batch, vocab)
    cdf = ops.cumsum(probs, axis=-1)  # (batch, vocab), last column ~1
    u = keras.random.uniform((ops.shape(logits)[0], 1), seed=seed)  # (batch, 1)
    below = ops.cast(cdf < u * cdf[:, -1:], "int32")  # ids whose cdf has not reached u yet
    return ops.sum(below, axis=-1)  # (batch,): the first id with cdf >= u


def chi2_p_value(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson's chi-square test: p-value of observed `counts` under `probs`."""
    expected = counts.sum() * probs  # (vocab,)
    seen = expected > 0
    chi2 = float(np.sum((counts[seen] - expected[seen]) ** 2 / expected[seen]))
    dof = int(seen.sum()) - 1
    return float(tf.math.igammac(dof / 2.0, chi2 / 2.0))  # P(chi2_dof >= chi2)


def sampling_check(logits: np.ndarray, temperature: float, draws: int, seed: int) -> float:
    """Draw `draws` ids with sample_next; return the chi-square p-value against softmax."""
    rows = np.repeat(logits[None, :], draws, axis=0)  # (draws, vocab)
    ids = sample_next(rows, temperature, seed=keras.random.SeedGenerator(seed))  # (draws,)
    counts = np.bincount(np.asarray(ids), minlength=len(logits))
    probs = np.asarray(ops.softmax(logits / temperature), np.float64)
    return chi2_p_value(counts, probs)
# [end:sampling]


# --- The Keras way ------------------------------------------------------------------
# [start:gpt]
@keras.saving.register_keras_serializable(package="tfguide")
class PositionEmbedding(layers.Layer):
    """Add a learned vector for each position 0..t-1 to the token embeddings."""

    def __init__(self, context: int, **kwargs):
        super().__init__(**kwargs)
        self.context = context

    def build(self, input_shape):  # (batch, t, d_model)
        self.table = self.add_weight(shape=(self.context, input_shape[-1]), name="table",
                                     initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return x + self.table[: ops.shape(x)[1]]  # (batch, t, d_model)

    def get_config(self):
        return super().get_config() | {"context": self.context}


@keras.saving.register_keras_serializable(package="tfguide")
class Block(layers.Layer):
    """A pre-norm Transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, d_model: int, heads: int, causal: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.heads, self.causal = d_model, heads, causal
        self.norm1 = layers.LayerNormalization(epsilon=1e-5, name="norm1")
        self.attention = layers.MultiHeadAttention(heads, d_model // heads, name="attention")
        self.norm2 = layers.LayerNormalization(epsilon=1e-5, name="norm2")
        self.ff1 = layers.Dense(4 * d_model, activation="gelu", name="ff1")  # 4× wider
        self.ff2 = layers.Dense(d_model, name="ff2")

    def build(self, input_shape):  # (batch, t, d_model)
        self.norm1.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.ff1.build(input_shape)
        self.ff2.build((*input_shape[:-1], 4 * self.d_model))

    def call(self, x, return_attention_scores=False):
        h = self.norm1(x)  # (batch, t, d_model)
        if return_attention_scores:
            mixed, scores = self.attention(h, h, use_causal_mask=self.causal,
                                           return_attention_scores=True)
        else:  # position i mixes in positions j <= i only
            mixed, scores = self.attention(h, h, use_causal_mask=self.causal), None
        x = x + mixed  # (batch, t, d_model)
        x = x + self.ff2(self.ff1(self.norm2(x)))  # (batch, t, d_model), position by position
        return (x, scores) if return_attention_scores else x  # scores: (batch, heads, t, t)

    def get_config(self):
        return super().get_config() | {"d_model": self.d_model, "heads": self.heads,
                                       "causal": self.causal}


def build_gpt(vocab_size: int, size: GPTSize, causal: bool = True) -> keras.Model:
    """Characters -> token + position embeddings -> N blocks -> norm -> next-character logits."""
    tokens = keras.Input(shape=(size.context,), dtype="int32", name="tokens")  # (batch, t)
    x = layers.Embedding(vocab_size, size.d_model, name="embed")(tokens)  # (batch, t, d_model)
    x = PositionEmbedding(size.context, name="position")(x)
    for i in range(size.blocks):
        x = Block(size.d_model, size.heads, causal, name=f"block{i}")(x)
    x = layers.LayerNormalization(epsilon=1e-5, name="norm")(x)
    logits = layers.Dense(vocab_size, dtype="float32", name="logits")(x)  # (batch, t, vocab)
    return keras.Model(tokens, logits, name="gpt" if causal else "gpt_without_mask")
# [end:gpt]


# [start:lstm]
def build_lstm(vocab_size: int, size: GPTSize, units: int) -> keras.Model:
    """The recurrent alternative: embeddings -> LSTM over the window -> next-character logits."""
    tokens = keras.Input(shape=(size.context,), dtype="int32", name="tokens")  # (batch, t)
    x = layers.Embedding(vocab_size, size.d_model, name="embed")(tokens)  # (batch, t, d_model)
    x = layers.LSTM(units, return_sequences=True, name="lstm")(x)  # (batch, t, units)
    logits = layers.Dense(vocab_size, dtype="float32", name="logits")(x)  # (batch, t, vocab)
    return keras.Model(tokens, logits, name="lstm")
# [end:lstm]


def lstm_units(vocab_size: int, size: GPTSize, params: int) -> int:
    """The LSTM width whose model has about `params` weights (the GPT's)."""
    # 4·u·(d + u + 1) in the LSTM plus (u + 1)·vocab in the logits = params - vocab·d
    a, b, c = 4, 4 * (size.d_model + 1) + vocab_size, vocab_size * (size.d_model + 1) - params
    return max(8, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


# [start:schedule]
@keras.saving.register_keras_serializable(package="tfguide")
class WarmupHoldCooldown(keras.optimizers.schedules.LearningRateSchedule):
    """Rise linearly to `peak`, hold it, then fall linearly to `floor` over the last steps."""

    def __init__(self, peak: float, warmup: int, cooldown: int, end: int, floor: float = 0.0):
        self.peak, self.warmup, self.cooldown, self.end, self.floor = (
            peak, warmup, cooldown, end, floor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rise = self.peak * step / self.warmup
        left = ops.clip((self.end - step) / self.cooldown, 0.0, 1.0)  # 1 while holding, 0 at end
        return ops.where(step < self.warmup, rise, self.floor + (self.peak - self.floor) * left)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "cooldown": self.cooldown,
                "end": self.end, "floor": self.floor}
# [end:schedule]


# [start:compile]
def compile_for(model: keras.Model, recipe: Recipe) -> keras.Model:
    """AdamW with a warm-up, a decay and gradient clipping, as nanoGPT trains."""
    if recipe.cooldown:
        schedule = WarmupHoldCooldown(recipe.peak_lr, recipe.warmup,
                                      round(recipe.cooldown * recipe.steps), recipe.steps,
                                      recipe.min_lr)
    else:  # nanoGPT's: a cosine from the end of the warm-up down to min_lr
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, warmup_target=recipe.peak_lr, warmup_steps=recipe.warmup,
            decay_steps=recipe.steps - recipe.warmup, alpha=recipe.min_lr / recipe.peak_lr)
    optimizer = keras.optimizers.AdamW(schedule, beta_2=0.99, weight_decay=0.1, clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # matrices only
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=recipe.steps_per_execution, jit_compile=recipe.jit)
    return model
# [end:compile]


def make_model(kind: str, vocab_size: int, size: GPTSize, recipe: Recipe,
               lstm_width: int = 0) -> keras.Model:
    """Build and compile one of the chapter's models: "gpt", "unmasked" or "lstm"."""
    if kind == "lstm":
        model = build_lstm(vocab_size, size, lstm_width)
    else:
        model = build_gpt(vocab_size, size, causal=kind == "gpt")
    return compile_for(model, recipe)


class TrainClock(keras.callbacks.Callback):
    """Time training (not validation); stop at a target val_loss or after some seconds."""

    def __init__(self, target: float | None = None, seconds: float | None = None):
        super().__init__()
        self.target, self.limit = target, seconds
        self.train_s, self.times, self.val_loss, self.steps = 0.0, [], [], 0
        self.reached: tuple[float, int] | None = None  # (seconds, steps) at the target
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._epoch_steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):  # batch: the last step just run
        self._epoch_steps = batch + 1
        elapsed = self.train_s + time.perf_counter() - self._start
        if self.limit is not None and elapsed >= self.limit:
            self.model.stop_training = True

    def on_test_begin(self, logs=None):  # validation starts: this epoch's training is over
        if self._start is not None:
            self.train_s += time.perf_counter() - self._start
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()
        self.steps += self._epoch_steps
        self.times.append(self.train_s)
        self.val_loss.append(float(logs["val_loss"]))
        if self.target is not None and self.val_loss[-1] <= self.target and not self.reached:
            self.reached = (self.train_s, self.steps)
            self.model.stop_training = True


def trace_untimed(model: keras.Model, stream: tf.data.Dataset, calls: int = 1,
                  callbacks: tuple = ()) -> None:
    """Run compiled calls of training steps and undo them: the step is traced, nothing learned.

    The first call of `fit` traces the training step into a graph (seconds, more for a loop
    of steps_per_execution steps); doing it here keeps that out of the training clocks.
    """
    weights = model.get_weights()
    model.fit(stream, epochs=1, steps_per_epoch=calls * model.steps_per_execution,
              callbacks=list(callbacks), verbose=0)
    model.set_weights(weights)
    for v in model.optimizer.variables:  # step count, Adam's moments: back to a fresh start
        if not v.path.endswith("learning_rate"):
            v.assign(ops.zeros_like(v))


def steps_in(seconds: float, model: keras.Model, stream: tf.data.Dataset) -> int:
    """How many training steps `model` runs in `seconds`, timed between compiled calls.

    The calls are undone, so the model is left as it was, its training step traced.
    """
    ends = []  # when each compiled call of steps_per_execution steps returned
    stamp = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    trace_untimed(model, stream, calls=3, callbacks=(stamp,))  # the first call traces
    return round(seconds * 2 * model.steps_per_execution / (ends[-1] - ends[0]))


def characters_per_s(clock: TrainClock, recipe: Recipe, context: int) -> float:
    """Training characters per second: steps × batch × window length ÷ training seconds."""
    return clock.steps * recipe.batch_size * context / clock.train_s


class SampleAsItLearns(keras.callbacks.Callback):
    """Write a short sample after some rounds of training, to see what the model knows."""

    def __init__(self, rounds: set[int], prompt: np.ndarray, context: int, vocab: Vocabulary):
        super().__init__()
        self.rounds, self.prompt, self.context, self.vocab = rounds, prompt, context, vocab
        self.samples: dict[int, str] = {}

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.rounds:
            (ids,) = generate(self.model, self.prompt, 80, (0.8,), self.context, seed=epoch)
            self.samples[epoch + 1] = self.vocab.decode(ids)


# [start:generate]
def generate(model: keras.Model, prompt: np.ndarray, length: int, temperatures, context: int,
             top_k: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Continue `prompt` by `length` characters, one row per temperature.

    The model reads a fixed window of `context` characters; a shorter text sits at the
    start, followed by padding that the causal model cannot see, and we read its output
    at the last real character.
    """
    rows = len(temperatures)
    out = np.tile(prompt, (rows, 1))  # (rows, len(prompt))
    t = np.asarray(temperatures, np.float32)[:, None]  # (rows, 1)
    seed = keras.random.SeedGenerator(seed)
    for _ in range(length):
        recent = out[:, -context:]  # (rows, <= context)
        window = np.zeros((rows, context), np.int32)
        window[:, : recent.shape[1]] = recent
        logits = model.predict_on_batch(window)[:, recent.shape[1] - 1]  # (rows, vocab)
        nxt = sample_next(logits, t, top_k, seed=seed)  # (rows,)
        out = np.concatenate([out, np.asarray(nxt, np.int32)[:, None]], axis=1)
    return list(out)
# [end:generate]


# --- What bench borrows ---------------------------------------------------------------
def bench_workload(quick: bool, seed: int):
    """The GPT and random training windows, for `python -m tfguide bench`'s throughput table."""
    from tfguide.bench import Workload

    size, recipe = (QUICK, TFGUIDE) if quick else (FULL, TFGUIDE)
    vocab, train, _ = shakespeare()
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(train) - size.context - 1, 1024 if quick else 4096)
    chunk = train[starts[:, None] + np.arange(size.context + 1)]  # (n, context + 1)
    return Workload(build=lambda: make_model("gpt", len(vocab), size, recipe),
                    x=chunk[:, :-1], y=chunk[:, 1:], batch_size=recipe.batch_size,
                    note=f"GPT {size.blocks}x{size.d_model}, context {size.context}, on "
                         f"{len(chunk)} windows of Tiny Shakespeare")


def shakespeare() -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """The shipped corpus: its vocabulary and the train and validation ids."""
    text = _shipped_text()
    vocab = Vocabulary(text)
    return (vocab, *split(vocab.encode(text)))


def race(recipes: dict[str, Recipe], size: GPTSize, target: float, seed: int,
         val_windows: int = 512, build=None) -> dict[str, dict]:
    """Train one GPT per recipe, taking turns, until each reaches `target` validation loss.

    Turns of `eval_every` steps alternate between the recipes, so both see the same machine
    load; the seconds count training only: not the tracing of each model's training step
    (`trace_untimed`), nor the validations between turns.
    `build(make, *args)` builds each model (bench passes its `Runtime.build`).
    """
    build = build or (lambda make, *args, jit=None: make(*args))
    vocab, train, val = shakespeare()
    x_val, y_val = fixed_windows(val, size.context, val_windows)
    runs = {}
    for key, recipe in recipes.items():
        keras.utils.set_random_seed(seed)
        model = build(make_model, "gpt", len(vocab), size, recipe, jit=recipe.jit)
        trace_untimed(model, random_windows(train, size.context, recipe.batch_size, seed + 1))
        runs[key] = (recipe, model, TrainClock(target),
                     random_windows(train, size.context, recipe.batch_size, seed))
    rounds = {key: int(1.25 * r.steps) // r.eval_every for key, (r, *_) in runs.items()}
    for turn in range(max(rounds.values())):
        for key, (recipe, model, clock, stream) in runs.items():
            if turn < rounds[key] and not clock.reached:
                model.fit(stream, initial_epoch=turn, epochs=turn + 1,
                          steps_per_epoch=recipe.eval_every, validation_data=(x_val, y_val),
                          validation_batch_size=256, callbacks=[clock], verbose=0)
    return {key: {"recipe": describe(recipe),
                  "seconds": clock.reached[0] if clock.reached else None,
                  "steps": clock.reached[1] if clock.reached else None,
                  "characters": clock.reached[1] * recipe.batch_size * size.context
                  if clock.reached else None,
                  "characters_per_s": characters_per_s(clock, recipe, size.context),
                  "value": clock.val_loss[-1]} for key, (recipe, _, clock, _) in runs.items()}


def describe(recipe: Recipe) -> str:
    """One line: the recipe's batch, schedule, steps per execution and XLA."""
    decay = (f"hold, then linear to {recipe.min_lr:g} over the last "
             f"{round(recipe.cooldown * recipe.steps)}" if recipe.cooldown
             else f"cosine to {recipe.min_lr:g}")
    return (f"batch {recipe.batch_size}, AdamW peak {recipe.peak_lr:g}, warm-up {recipe.warmup}"
            f" + {decay} of {recipe.steps} steps, steps_per_execution "
            f"{recipe.steps_per_execution}" + (", XLA" if recipe.jit else ""))


def bench_race(quick: bool, seed: int, build=None) -> dict:
    """nanoGPT's CPU recipe, ported to plain Keras, against tfguide's: time to a val_loss."""
    size, target = (QUICK, 2.40) if quick else (FULL, 1.90)
    rounds = chapters.get("language_model").quick_epochs  # what --quick trains
    ours = dataclasses.replace(TFGUIDE, steps=rounds * TFGUIDE.eval_every) if quick else TFGUIDE
    result = race({"reference": NANOGPT, "tfguide": ours}, size, target, seed, build=build)
    model = f"{size.blocks} blocks, {size.heads} heads, {size.d_model} wide, context {size.context}"
    return {"what": f"char GPT ({model}) on Tiny Shakespeare to val_loss <= {target:.2f}",
            "metric": "val_loss", "target": target, **result}


# --- What others borrow: exercises (python -m tfguide exercise language_model) -----------
def _ids(n: int, vocab_size: int, seed: int, skew: float = 0.0) -> np.ndarray:
    """n seeded ids; `skew` > 0 makes low ids commoner (so some pairs repeat many times)."""
    p = np.exp(-skew * np.arange(vocab_size))
    return np.random.default_rng(seed).choice(vocab_size, n, p=p / p.sum()).astype(np.int32)


_TEXTS = ((_ids(500, 7, 0), _ids(200, 7, 1), 9),  # (train, val, vocab): ids 7, 8 never occur
          (_ids(3000, 30, 2, 0.2), _ids(400, 30, 3, 0.2), 30),  # skewed: pairs repeat often
          (_ids(12, 4, 4), _ids(6, 4, 5), 4))  # a tiny text


def prove_bigram_counts(bigram_counts_fn) -> exercises.Proof:
    """Pair counts + 1 against tf.math.bincount of the pair ids a·V + b, exactly."""
    errors = []
    for train, _, v in _TEXTS:
        pairs = tf.math.bincount(train[:-1] * v + train[1:], minlength=v * v, dtype=tf.float64)
        want = np.reshape(pairs, (v, v)) + 1.0  # (vocab, vocab)
        got = np.asarray(bigram_counts_fn(train, v), np.float64)
        errors.append((f"{len(train)} training ids, vocabulary {v}",
                       float(np.max(np.abs(got - want))) if got.shape == want.shape else np.inf))
    return exercises.worst(errors, 0.0)


def prove_bigram_loss(bigram_loss_fn) -> exercises.Proof:
    """The bigram loss against Keras's cross-entropy of the validation pairs (relative error)."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    errors = []
    for train, val, v in _TEXTS:
        counts = bigram_counts(train, v)
        log_p = np.log(counts / counts.sum(axis=1, keepdims=True))  # softmax gives them back
        want = float(loss(val[1:], log_p[val[:-1]]))
        errors.append((f"{len(train)} training ids, vocabulary {v}",
                       abs(bigram_loss_fn(train, val, v) - want) / want))
    return exercises.worst(errors, 1e-6)


def prove_bits_per_char(bits_per_char_fn) -> exercises.Proof:
    """Uniform models cost log2 V bits; any model's nats convert to its mean -log2 p."""
    errors = [(f"uniform over {v} characters", abs(bits_per_char_fn(math.log(v)) - math.log2(v)))
              for v in (2, 16, 65)]
    p = np.random.default_rng(6).dirichlet(np.ones(65), size=200)  # (200, vocab)
    p_true = p[np.arange(200), np.random.default_rng(7).integers(0, 65, 200)]  # (200,)
    errors.append(("a random model's mean -ln p", abs(
        bits_per_char_fn(float(-np.log(p_true).mean())) - float(-np.log2(p_true).mean()))))
    return exercises.worst(errors, 1e-12)


def prove_causal_mask(causal_mask_fn) -> exercises.Proof:
    """MultiHeadAttention with the mask as attention_mask == with use_causal_mask=True (float64)."""
    init = keras.initializers.GlorotUniform(seed=0)
    mha = layers.MultiHeadAttention(2, 4, kernel_initializer=init, dtype="float64")
    errors = []
    for t in (1, 2, 5, 8):
        x = np.random.default_rng(t).normal(size=(2, t, 8))  # (batch, t, d_model)
        mask = np.asarray(causal_mask_fn(t))
        want = np.asarray(mha(x, x, use_causal_mask=True))
        error = np.inf if mask.shape != (t, t) else float(np.max(np.abs(
            np.asarray(mha(x, x, attention_mask=mask[None])) - want)))
        errors.append((f"t = {t}", error))
    return exercises.worst(errors, 1e-12)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _sampling_error(ids, probs: np.ndarray) -> tuple[float, str]:
    """-log10 of the chi-square p-value of the draws under `probs` (inf: a draw that cannot be)."""
    ids = np.asarray(ids).ravel()
    if ids.min() < 0 or ids.max() >= len(probs) or probs[ids].min() == 0:
        return np.inf, "an id outside the vocabulary or with probability 0"
    p = chi2_p_value(np.bincount(ids, minlength=len(probs)), probs)
    return (-math.log10(p) if p > 0 else np.inf), f"chi-square p = {p:.1e}"


_LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], np.float32)  # (vocab,)


def prove_sample_next(sample_next_fn) -> exercises.Proof:
    """20,000 seeded draws per case against softmax(logits / T), top-k renormalised.

    The error is -log10 of the chi-square p-value: at most 4 (p >= 1e-4), or inf for a
    draw the distribution forbids; at T = 1e-4 every draw must be the argmax.
    """
    rows = np.repeat(_LOGITS[None, :], 20_000, axis=0)  # (draws, vocab)
    errors = []
    for seed, (t, k) in enumerate(((0.5, None), (1.0, None), (2.0, None), (1.0, 3), (0.5, 2))):
        probs = _softmax(_LOGITS.astype(np.float64) / t)
        if k is not None:
            probs = np.where(probs >= np.sort(probs)[-k], probs, 0.0) / np.sort(probs)[-k:].sum()
        error, why = _sampling_error(sample_next_fn(rows, t, k, seed=keras.random.SeedGenerator(
            seed)), probs)
        errors.append((f"T = {t}, top_k = {k}: {why}", error))
    column = np.repeat([[0.5], [2.0]], 10_000, axis=0).astype(np.float32)  # (draws, 1)
    ids = np.asarray(sample_next_fn(rows, column, seed=keras.random.SeedGenerator(9)))
    for half, t in ((slice(None, 10_000), 0.5), (slice(10_000, None), 2.0)):
        error, why = _sampling_error(ids[half], _softmax(_LOGITS.astype(np.float64) / t))
        errors.append((f"a column of temperatures, rows with T = {t}: {why}", error))
    logits = np.random.default_rng(10).normal(size=(64, 30)).astype(np.float32)  # (batch, vocab)
    ids = np.asarray(sample_next_fn(logits, 1e-4, seed=keras.random.SeedGenerator(11)))
    wrong = int(np.sum(ids != logits.argmax(axis=1)))
    errors.append((f"T = 1e-4: {wrong} of 64 draws are not the argmax", np.inf if wrong else 0.0))
    return exercises.worst(errors, 4.0)


def _bigram_counts_fancy_index(train, vocab_size):
    counts = np.ones((vocab_size, vocab_size))
    counts[train[:-1], train[1:]] += 1.0  # a pair that occurs 5 times is added once
    return counts


def _bigram_counts_unsmoothed(train, vocab_size):
    return bigram_counts(train, vocab_size) - 1.0


def _bigram_counts_transposed(train, vocab_size):
    return bigram_counts(train, vocab_size).T


def _bigram_loss_columns(train, val, vocab_size):
    counts = bigram_counts(train, vocab_size)
    log_p = np.log(counts / counts.sum(axis=0, keepdims=True))  # columns sum to 1
    return float(-log_p[val[:-1], val[1:]].mean())


def _bigram_loss_log2(train, val, vocab_size):
    return bits_per_char(bigram_loss(train, val, vocab_size))


def _bigram_loss_counting_val(train, val, vocab_size):
    return bigram_loss(np.concatenate([train, val]), val, vocab_size)


def _bigram_loss_across_boundary(train, val, vocab_size):
    return bigram_loss(train, np.concatenate([train[-1:], val]), vocab_size)


def _sample_times_temperature(logits, temperature, top_k=None, seed=None):
    return sample_next(logits * temperature * temperature, temperature, top_k, seed)  # z·T


def _sample_top_k_minus_one(logits, temperature, top_k=None, seed=None):
    return sample_next(logits, temperature, None if top_k is None else top_k - 1, seed)


def _sample_top_k_unnormalised(logits, temperature, top_k=None, seed=None):
    probs = ops.softmax(logits / temperature, axis=-1)  # (batch, vocab), before the cut
    if top_k is not None:
        probs = ops.where(probs < ops.top_k(probs, top_k)[0][:, -1:], 0.0, probs)  # sums < 1
    u = keras.random.uniform((ops.shape(logits)[0], 1), seed=seed)  # (batch, 1)
    return ops.sum(ops.cast(ops.cumsum(probs, axis=-1) < u, "int32"), axis=-1)


def _sample_overflowing(logits, temperature, top_k=None, seed=None):
    scaled = np.asarray(logits / temperature, np.float32)  # (batch, vocab)
    if top_k is not None:
        scaled = np.where(scaled < np.sort(scaled, axis=-1)[:, -top_k:-top_k + 1 or None],
                          -np.inf, scaled)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(scaled)  # inf for z / T > 88
        probs = e / e.sum(axis=-1, keepdims=True)  # inf / inf = nan
    u = np.asarray(keras.random.uniform((len(e), 1), seed=seed))  # (batch, 1)
    return np.sum(np.cumsum(probs, axis=-1) < u, axis=-1)  # nan < u is False: always id 0


# NumPy, not tensors: importing a chapter must not start TensorFlow (multi-worker needs that)
_PROBE_TEXT = (_ids(300, 5, 12, 0.5), _ids(60, 5, 13, 0.5), 5)
_PROBE_LOGITS = np.array([1.0, 2.7, -0.1, 0.1, 1.5], np.float32)  # argmax: id 1


def _probe_sampler(f) -> np.ndarray:
    """Draw frequencies in three settings, rounded to 0.1: the same for any correct sampler.

    (These logits keep every frequency a correct or typically wrong sampler gives at least
    six standard errors of 20,000 draws away from a rounding boundary.)
    """
    out = []
    for t, k in ((0.5, None), (1.0, 3), (1e-4, None)):
        rows = np.repeat(_PROBE_LOGITS[None, :], 20_000, axis=0)  # (draws, vocab)
        ids = np.asarray(f(rows, t, k, seed=keras.random.SeedGenerator(0))).ravel()
        out.append(np.bincount(np.clip(ids, 0, 5), minlength=6) / len(ids))  # 5: out of range
    return np.round(np.concatenate(out), 1)


EXERCISES = (
    exercises.Exercise(
        "bigram_counts", prove_bigram_counts, "start from ones (add-one smoothing) and add 1 "
        "at [a, b] for each neighbouring pair a = train[:-1], b = train[1:]",
        probe=lambda f: f(*_PROBE_TEXT[::2]),
        mistakes={"counts[a, b] += 1 with arrays of indices adds a repeated pair only once: "
                  "use np.add.at (or np.bincount of a * V + b)": _bigram_counts_fancy_index,
                  "start every count at 1 (add-one smoothing), or a pair never seen in training "
                  "gets probability 0 and an infinite loss": _bigram_counts_unsmoothed,
                  "rows are the previous character a, columns the next one b: "
                  "counts[a, b]": _bigram_counts_transposed}),
    exercises.Exercise(
        "bigram_loss", prove_bigram_loss, "p(b | a) = counts[a, b] / counts[a].sum(); return the "
        "mean of -ln p over the validation pairs (val[:-1], val[1:])",
        probe=lambda f: f(*_PROBE_TEXT),
        mistakes={"each row (the previous character) must sum to 1: divide by "
                  "counts.sum(axis=1, keepdims=True), not axis=0": _bigram_loss_columns,
                  "the loss is in nats: np.log, not np.log2 (bits are bits_per_char's "
                  "job)": _bigram_loss_log2,
                  "count the training text only: counting the validation pairs too lets the "
                  "model see the answers": _bigram_loss_counting_val,
                  "score only the pairs inside the validation text: (train[-1], val[0]) "
                  "crosses the train/validation boundary": _bigram_loss_across_boundary}),
    exercises.Exercise(
        "bits_per_char", prove_bits_per_char, "log2 x = ln x / ln 2: divide the nats by "
        "math.log(2)",
        probe=lambda f: [f(1.0), f(2.0), f(math.log(65))],
        mistakes={"divide by ln 2, do not multiply: a loss in bits is larger than in "
                  "nats": lambda nats: nats * math.log(2),
                  "convert the unit, not the value: the loss is already a logarithm, so "
                  "log2(loss) is not bits": lambda nats: math.log2(nats)}),
    exercises.Exercise(
        "causal_mask", prove_causal_mask, "np.arange(t) as a column (the queries i) and as "
        "a row (the keys j): compare them, and broadcasting makes the (t, t) table",
        probe=lambda f: np.asarray(f(4), np.float64),
        mistakes={"a character may attend to itself: keep the diagonal (j <= i, not "
                  "j < i)": lambda t: np.tril(np.ones((t, t), bool), -1),
                  "rows are queries, columns keys: query i sees keys j <= i, the lower "
                  "triangle (yours looks ahead)": lambda t: np.triu(np.ones((t, t), bool)),
                  "Keras's attention_mask is True where a query MAY attend, not where it is "
                  "hidden": lambda t: ~np.tril(np.ones((t, t), bool))}),
    exercises.Exercise(
        "sample_next", prove_sample_next, "divide the logits by T, set all but the top_k to "
        "-inf, softmax, then inverse-CDF: the first id whose cumulative probability reaches u",
        probe=_probe_sampler,
        mistakes={"divide the logits by the temperature, do not multiply: T < 1 must "
                  "sharpen": _sample_times_temperature,
                  "keep k logits, the k-th largest included (drop only those below "
                  "it)": _sample_top_k_minus_one,
                  "renormalise after the top-k cut (cut the logits before the softmax, or "
                  "scale u by the last cumulative probability)": _sample_top_k_unnormalised,
                  "exp(z / T) overflows for small T: subtract the largest logit first "
                  "(ops.softmax does)": _sample_overflowing}),
)


# --- Run ----------------------------------------------------------------------------
@dataclasses.dataclass
class Corpus:
    """The text, its vocabulary, the two splits and the fixed validation windows."""

    text: str
    vocab: Vocabulary
    train: np.ndarray
    val: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def prepare_data(ex: Experiment, cfg: Config, size: GPTSize) -> Corpus:
    """Read and encode the text, split it 90/10, cut the fixed validation windows."""
    text, source, provenance = read_corpus(cfg.data, cfg.data_dir)
    need = math.ceil((size.context + 2) / (1 - TRAIN_FRACTION))
    if len(text) < need:
        raise datasets.DataError(f"The text for --data {cfg.data} has {len(text):,} characters, "
                                 f"too short for one window of {size.context + 1} in its last 10% "
                                 f"(validation): give at least {need:,} characters.")
    vocab = Vocabulary(text)
    train, val = split(vocab.encode(text))
    n_windows = min(256 if cfg.quick else 512, len(val) - size.context)
    x_val, y_val = fixed_windows(val, size.context, n_windows)
    ex.record_data(cfg.data, source, len(train), len(val), provenance=provenance,
                   vocab_size=len(vocab), context=size.context, validation_windows=n_windows,
                   split="first 90% of the characters train, last 10% validate")
    return Corpus(text, vocab, train, val, x_val, y_val)


DEFAULT_PROMPT = "ROMEO:"  # a speaker's name and a colon, as the plays are laid out


def prompt_ids(corpus: Corpus, prompt: str | None) -> tuple[np.ndarray, str]:
    """Encode the prompt; refuse a --prompt with characters the text lacks, in one line.

    With no --prompt (None), a speaker of Shakespeare's, or, when a learner's text lacks
    its characters, the text's own first characters.
    """
    if prompt is None:
        prompt = DEFAULT_PROMPT
        missing = sorted(set(prompt) - set(corpus.vocab.chars))
        if missing:
            prompt = corpus.text[:16].split("\n")[0] or corpus.text[:1]
            print(f"The text has no {''.join(missing)!r}: the samples continue its first "
                  f"characters, {prompt!r}, instead of {DEFAULT_PROMPT!r}")
    unknown = sorted(set(prompt) - set(corpus.vocab.chars))
    if unknown:
        raise cli.UsageError(f"--prompt has characters that are not in the text's vocabulary: "
                             f"{''.join(unknown)!r}. Received: --prompt={prompt!r}")
    return corpus.vocab.encode(prompt), prompt


def check_from_scratch(ex: Experiment, corpus: Corpus, seed: int) -> None:
    """The counting baselines and the sampler against the analytic distribution."""
    v = len(corpus.vocab)
    logits = np.random.default_rng(seed).normal(0, 2, size=v).astype(np.float32)  # (vocab,)
    ex.log(unigram_val_loss=unigram_loss(corpus.train, corpus.val, v),
           bigram_val_loss=bigram_loss(corpus.train, corpus.val, v),
           sampling_chi2_p=sampling_check(logits, 0.8, 20_000, seed))


def fit_for(ex: Experiment, model: keras.Model, corpus: Corpus, recipe: Recipe, rounds: int,
            seed: int, watchers: list, tag: str = "") -> None:
    """Train on random windows, validating on the fixed windows every recipe.eval_every steps."""
    context, callbacks = model.input_shape[1], ex.callbacks(tag) + watchers
    trace_untimed(model, random_windows(corpus.train, context, recipe.batch_size, seed + 1))
    # [start:train]
    model.fit(random_windows(corpus.train, context, recipe.batch_size, seed),
              epochs=rounds, steps_per_epoch=recipe.eval_every,  # an "epoch" is one round
              validation_data=(corpus.x_val, corpus.y_val), validation_batch_size=256,
              callbacks=callbacks, verbose=2)
    # [end:train]


def train_models(ex: Experiment, cfg: Config, corpus: Corpus, size: GPTSize, recipe: Recipe,
                 prompt: np.ndarray):
    """The GPT for cfg.epochs rounds; the LSTM for as many seconds; the unmasked GPT briefly."""
    v = len(corpus.vocab)
    gpt = ex.runtime.build(make_model, "gpt", v, size, recipe, jit=recipe.jit)
    print(f"Training the GPT ({gpt.count_params():,} weights)")
    clocks = {"gpt": TrainClock(), "lstm": None}
    stages = SampleAsItLearns({1, max(2, cfg.epochs // 4), cfg.epochs}, prompt, size.context,
                              corpus.vocab)
    fit_for(ex, gpt, corpus, recipe, cfg.epochs, cfg.seed, [clocks["gpt"], stages])
    width = lstm_units(v, size, gpt.count_params())
    probe = ex.runtime.build(make_model, "lstm", v, size, recipe, width, jit=recipe.jit)
    steps = steps_in(clocks["gpt"].train_s, probe,
                     random_windows(corpus.train, size.context, recipe.batch_size, cfg.seed))
    paced = dataclasses.replace(recipe, steps=max(steps, 2 * recipe.warmup))  # its schedule
    lstm = ex.runtime.build(make_model, "lstm", v, size, paced, width, jit=recipe.jit)
    print(f"Training the LSTM ({lstm.count_params():,} weights) for the GPT's "
          f"{clocks['gpt'].train_s:.0f} s, about {steps} of its steps")
    clocks["lstm"] = TrainClock(seconds=clocks["gpt"].train_s)
    fit_for(ex, lstm, corpus, paced, 10 * cfg.epochs, cfg.seed, [clocks["lstm"]], tag="lstm")
    ex.details.update(gpt_recipe=describe(recipe), lstm_recipe=describe(paced),
                      xla={"gpt": gpt.jit_compile, "lstm": lstm.jit_compile})
    unmasked = ex.runtime.build(make_model, "unmasked", v, UNMASKED_SIZE, UNMASKED)
    print(f"Training a GPT without the causal mask for {UNMASKED.steps} steps")
    unmasked.fit(random_windows(corpus.train, UNMASKED_SIZE.context, UNMASKED.batch_size,
                                cfg.seed), epochs=1, steps_per_epoch=UNMASKED.steps, verbose=0)
    x, y = fixed_windows(corpus.train, UNMASKED_SIZE.context, 256)  # from its training text
    ex.log(unmasked_train_loss=unmasked.evaluate(x, y, batch_size=256, verbose=0))
    return gpt, lstm, clocks, stages.samples


def evaluate(ex: Experiment, corpus: Corpus, gpt, lstm, clocks, size: GPTSize,
             recipe: Recipe) -> None:
    """Validation losses, the causal check, speed and size."""
    val_loss = gpt.evaluate(corpus.x_val, corpus.y_val, batch_size=256, verbose=0)
    clock = clocks["gpt"]
    ex.log(val_loss=val_loss, val_bpc=bits_per_char(val_loss),
           lstm_val_loss=lstm.evaluate(corpus.x_val, corpus.y_val, batch_size=256, verbose=0),
           causal_max_change=causal_max_change(gpt, corpus.x_val[:16], size.context // 2,
                                               len(corpus.vocab)),
           train_tokens_per_s=characters_per_s(clock, recipe, size.context),
           train_s=clock.train_s,
           params=gpt.count_params(), lstm_params=lstm.count_params())


def write_samples(ex: Experiment, corpus: Corpus, models: dict, stages: dict[int, str],
                  prompt: np.ndarray, length: int, context: int, seed: int) -> str:
    """Write samples.txt: each model at each temperature; return the GPT's at 0.8."""
    parts = [f"=== gpt after round {r} of training, temperature 0.8 ===\n{text}\n"
             for r, text in sorted(stages.items())]
    for name, model in models.items():
        texts = generate(model, prompt, length, TEMPERATURES, context, seed=seed)
        for temperature, ids in zip(TEMPERATURES, texts):
            parts.append(f"=== {name}, temperature {temperature} ===\n"
                         f"{corpus.vocab.decode(ids)}\n")
            if name == "gpt" and temperature == 0.8:
                shown = corpus.vocab.decode(ids)
    (ex.dir / "samples.txt").write_text("\n".join(parts), encoding="utf-8")
    return shown


def loss_vs_time_figure(clocks: dict, unigram: float, bigram: float) -> Figure:
    """Validation loss against training seconds: GPT, LSTM and the counting baselines."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name, clock in clocks.items():
        ax.plot(clock.times, clock.val_loss, marker=".", label=name.upper())
    ax.axhline(unigram, color="grey", linestyle=":", label=f"unigram (counting) {unigram:.2f}")
    ax.axhline(bigram, color="black", linestyle="--", label=f"bigram (counting) {bigram:.2f}")
    ax.set(xlabel="training time (s)", ylabel="validation loss (nats/char)",
           title="Same data, same seconds: attention vs recurrence")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def verse_line(corpus: Corpus, context: int) -> str:
    """A line of verse from the validation text, 30 to `context` characters long."""
    lines = corpus.text[len(corpus.text) - len(corpus.val):].split("\n")
    return next((ln for ln in lines if 30 <= len(ln) <= context and ln[0].isupper()),
                corpus.text[-context:])


def attention_figure(gpt: keras.Model, corpus: Corpus, size: GPTSize, line: str) -> Figure:
    """The last block's first head: which earlier characters each character looks at."""
    ids = corpus.vocab.encode(line)
    window = np.zeros((1, size.context), np.int32)
    window[0, : len(ids)] = ids
    x = gpt.get_layer("position")(gpt.get_layer("embed")(window))  # (1, context, d_model)
    for i in range(size.blocks):
        x, scores = gpt.get_layer(f"block{i}")(x, return_attention_scores=True)
    weights = np.asarray(scores[0, 0, : len(ids), : len(ids)])  # (t, t), lower triangle
    labels = [c if c != " " else "␣" for c in line]
    return plotting.heatmap(weights, labels, labels, xlabel="looks at (key)",
                            ylabel="character (query)",
                            title=f"Block {size.blocks}, head 1: {line!r}")


def next_char_figure(gpt: keras.Model, corpus: Corpus, prompt: np.ndarray, context: int,
                     prompt_text: str) -> Figure:
    """The GPT's probabilities for the character after the prompt (the 15 likeliest)."""
    recent = prompt[-context:]
    window = np.zeros((1, context), np.int32)
    window[0, : len(recent)] = recent
    probs = np.asarray(ops.softmax(gpt.predict_on_batch(window)[0, len(recent) - 1]))
    best = np.argsort(probs)[::-1][:15]
    shown = {repr(corpus.vocab.chars[i])[1:-1].replace(" ", "␣") or "?": float(probs[i])
             for i in best}
    return plotting.bar_chart(shown, ylabel="probability",
                              title=f"Next character after {prompt_text!r}")


def draw(ex: Experiment, corpus: Corpus, gpt, clocks, size: GPTSize, prompt: np.ndarray,
         prompt_text: str) -> None:
    """Loss against time, one head's attention for a line of verse, next-character odds."""
    ex.save_figure(loss_vs_time_figure(clocks, ex.metrics["unigram_val_loss"],
                                       ex.metrics["bigram_val_loss"]), "val_loss_vs_time")
    ex.save_figure(attention_figure(gpt, corpus, size, verse_line(corpus, size.context)),
                   "attention_head")
    ex.save_figure(next_char_figure(gpt, corpus, prompt, size.context, prompt_text),
                   "next_char_probabilities")


def run(cfg: Config) -> dict:
    """Count the baselines, check the sampler, train GPT and LSTM, check the mask, write."""
    size = QUICK if cfg.quick else FULL
    # No XLA for the quick run: compiling would take longer than its few seconds of training.
    recipe = dataclasses.replace(TFGUIDE, batch_size=cfg.batch_size, peak_lr=cfg.learning_rate,
                                 steps=cfg.epochs * TFGUIDE.eval_every,
                                 jit=TFGUIDE.jit and not cfg.quick)
    with Experiment(cfg) as ex:
        corpus = prepare_data(ex, cfg, size)
        prompt, prompt_text = prompt_ids(corpus, cfg.options["prompt"])
        check_from_scratch(ex, corpus, cfg.seed)
        gpt, lstm, clocks, stages = train_models(ex, cfg, corpus, size, recipe, prompt)
        evaluate(ex, corpus, gpt, lstm, clocks, size, recipe)
        shown = write_samples(ex, corpus, {"gpt": gpt, "lstm": lstm}, stages, prompt,
                              cfg.options["sample_length"], size.context, cfg.seed)
        ex.save_model(gpt)
        draw(ex, corpus, gpt, clocks, size, prompt, prompt_text)
        print(f"\nThe GPT at temperature 0.8:\n{shown}")
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
