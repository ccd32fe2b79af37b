"""Language models: a character-level GPT that learns to write Shakespeare.

A character vocabulary, two counting baselines, and from scratch the pieces a
next-character model needs (bits per character, the causal mask, sampling with
temperature and top-k), each proved; then a small GPT trained with `fit`
beside an LSTM given the same seconds, and both made to write.

Text: chapters/language_model.md.
"""
from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from matplotlib.figure import Figure

from tfguide import cli, corpora, plotting
from tfguide.config import Config
from tfguide.clocks import TrainClock, steps_in, trace_untimed
from tfguide.results import Experiment

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
    cooldown: float = 0.0  # 0: a cosine after the warm-up; else hold, then fall over this share
    steps_per_execution: int = 1
    eval_every: int = 100  # steps between validations (one Keras "epoch")
    jit: bool = False  # compile the training step with XLA (jit_compile)


FULL = GPTSize()  # nanoGPT's CPU model: 4 layers, 4 heads, 128 wide, context 64
QUICK = GPTSize(context=32, d_model=64, heads=4, blocks=2)
# tfguide's recipe for this model on a small CPU (bench races it against nanoGPT's).
TFGUIDE = Recipe("tfguide CPU recipe", batch_size=16, peak_lr=3e-3, steps=800, warmup=50,
                 min_lr=0.0, cooldown=0.4, steps_per_execution=25, eval_every=25, jit=True)
UNMASKED = Recipe("no causal mask", batch_size=64, peak_lr=5e-3, steps=150, warmup=10,
                  min_lr=5e-4, steps_per_execution=50, eval_every=150)
UNMASKED_SIZE = dataclasses.replace(QUICK, blocks=1)  # one block is enough to learn to cheat


# --- Prepare the data. Marked code is in chapters/language_model.md: python -m tfguide.excerpts
# [start:vocab]
class Vocabulary:
    """The characters of a text, numbered in sorted order: encode to ids, decode back."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))  # e.g. ['\n', ' ', '!', ..., 'z']
        codes = [ord(c) for c in self.chars]  # Unicode code points, ascending
        dtype = np.uint8 if len(codes) <= 256 else np.uint16  # 1 or 2 bytes per character
        self.table = np.zeros(codes[-1] + 1, dtype)  # code point -> id
        self.table[codes] = np.arange(len(codes))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str, chunk: int = 1 << 18) -> np.ndarray:
        ids = np.empty(len(text), self.table.dtype)  # (len(text),); widen it before arithmetic
        for i in range(0, len(text), chunk):  # a piece at a time: a few MB of work space
            codes = np.frombuffer(text[i:i + chunk].encode("utf-32-le"), np.uint32)
            ids[i:i + len(codes)] = self.table[codes]
        return ids

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
        chunk = tf.cast(chunk, tf.int32)  # (batch, context + 1)
        return chunk[:, :-1], chunk[:, 1:]  # (batch, context) inputs, (batch, context) targets

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)  # new each fit
    return keys.map(window).prefetch(tf.data.AUTOTUNE)


def fixed_windows(ids: np.ndarray, context: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n windows spread evenly over `ids`: the same validation set for every model."""
    starts = np.linspace(0, len(ids) - context - 1, n).astype(np.int64)  # (n,)
    chunk = ids[starts[:, None] + np.arange(context + 1)].astype(np.int32)  # (n, context + 1)
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
    scaled = logits / temperature  # (batch, vocab): below 1 sharpens, above 1 flattens
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
    optimizer = keras.optimizers.AdamW(schedule, beta_2=0.99, weight_decay=0.1,
                                       global_clipnorm=1.0)  # all gradients as one vector
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # matrices only
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=recipe.steps_per_execution, jit_compile=recipe.jit)
    return model
# [end:compile]


def shakespeare() -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """The shipped corpus: its vocabulary and the train and validation ids."""
    text = corpora.shipped_text()
    vocab = Vocabulary(text)
    return (vocab, *split(vocab.encode(text)))


def make_model(kind: str, vocab_size: int, size: GPTSize, recipe: Recipe,
               lstm_width: int = 0) -> keras.Model:
    """Build and compile one of the chapter's models: "gpt", "unmasked" or "lstm"."""
    if kind == "lstm":
        model = build_lstm(vocab_size, size, lstm_width)
    else:
        model = build_gpt(vocab_size, size, causal=kind == "gpt")
    return compile_for(model, recipe)


class SampleAsItLearns(keras.callbacks.Callback):
    """Write a short sample after some rounds of training, to see what the model knows."""

    def __init__(self, rounds: set[int], prompt: np.ndarray, context: int, vocab: Vocabulary):
        super().__init__()
        self.rounds, self.prompt, self.context, self.vocab = rounds, prompt, context, vocab
        self.samples: dict[int, str] = {}  # round -> text

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
    rows, start = len(temperatures), len(prompt)
    out = np.zeros((rows, start + length), np.int32)  # (rows, prompt + length), filled in turn
    out[:, :start] = prompt
    t = np.asarray(temperatures, np.float32)[:, None]  # (rows, 1)
    seed = keras.random.SeedGenerator(seed)
    for end in range(start, start + length):
        recent = out[:, max(0, end - context):end]  # (rows, <= context)
        window = np.zeros((rows, context), np.int32)
        window[:, : recent.shape[1]] = recent
        logits = model.predict_on_batch(window)[:, recent.shape[1] - 1]  # (rows, vocab)
        out[:, end] = sample_next(logits, t, top_k, seed=seed)  # (rows,)
    return list(out)
# [end:generate]


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
    text, source, provenance = corpora.read_corpus(cfg.data, cfg.data_dir)
    corpora.check_length(text, cfg.data, size.context + 1, 1 - TRAIN_FRACTION)
    vocab = Vocabulary(text)
    corpora.check_vocabulary(vocab.chars, cfg.data)
    train, val = split(vocab.encode(text))
    n_windows = min(256 if cfg.quick else 512, len(val) - size.context)
    x_val, y_val = fixed_windows(val, size.context, n_windows)
    ex.record_data(cfg.data, source, len(train), len(val), provenance=provenance,
                   vocab_size=len(vocab), context=size.context, validation_windows=n_windows,
                   split="first 90% of the characters train, last 10% validate")
    return Corpus(text, vocab, train, val, x_val, y_val)


def prompt_ids(corpus: Corpus, prompt: str | None) -> tuple[np.ndarray, str]:
    """Encode the prompt the samples continue (ROMEO: unless --prompt says otherwise)."""
    prompt = corpora.choose_prompt(corpus.text, corpus.vocab.chars, prompt)
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
          f"{clocks['gpt'].train_s:.1f} s, about {steps} of its steps")
    clocks["lstm"] = TrainClock(seconds=clocks["gpt"].train_s)
    fit_for(ex, lstm, corpus, paced, 10 * cfg.epochs, cfg.seed, [clocks["lstm"]], tag="lstm")
    ex.details.update(xla={"gpt": gpt.jit_compile, "lstm": lstm.jit_compile})
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
           train_tokens_per_s=clock.per_second(recipe.batch_size * size.context),  # characters
           train_s=clock.train_s,
           params=gpt.count_params(), lstm_params=lstm.count_params())


def write_samples(ex: Experiment, corpus: Corpus, models: dict, stages: dict[int, str],
                  prompt: np.ndarray, length: int, context: int, seed: int) -> str:
    """Write samples.txt: each model at each temperature; return the GPT's at 0.8."""
    parts = [f"=== gpt after round {r} of training, temperature 0.8 ===\n{text}\n"
             for r, text in sorted(stages.items())]
    texts = {name: dict(zip(TEMPERATURES, map(corpus.vocab.decode, generate(
        m, prompt, length, TEMPERATURES, context, seed=seed)))) for name, m in models.items()}
    parts += [f"=== {name}, temperature {t} ===\n{text}\n"
              for name, by_t in texts.items() for t, text in by_t.items()]
    (ex.dir / "samples.txt").write_text("\n".join(parts), encoding="utf-8")
    gpt = texts["gpt"]
    ex.details["samples"] = {"t0_5": gpt[0.5][:300], "t1_0": gpt[1.0][:300]}  # shown in the text
    return gpt[0.8]


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
                              title=f"Next character after {corpora.clipped(prompt_text)!r}")


def draw(ex: Experiment, corpus: Corpus, gpt, clocks, size: GPTSize, prompt: np.ndarray,
         prompt_text: str) -> None:
    """Loss against time, one head's attention for a line of verse, next-character odds."""
    unigram, bigram = ex.metrics["unigram_val_loss"], ex.metrics["bigram_val_loss"]
    ex.save_figure(plotting.curves(
        {name.upper(): (clock.times, clock.val_loss) for name, clock in clocks.items()},
        {f"unigram (counting) {unigram:.2f}": unigram, f"bigram (counting) {bigram:.2f}": bigram},
        xlabel="training time (s)", ylabel="validation loss (nats/char)",
        title="Same data, same seconds: attention vs recurrence"), "val_loss_vs_time")
    line = corpora.verse_line(corpus.text, len(corpus.val), size.context)
    ex.save_figure(attention_figure(gpt, corpus, size, line), "attention_head")
    ex.save_figure(next_char_figure(gpt, corpus, prompt, size.context, prompt_text),
                   "next_char_probabilities")


def concept_figures() -> dict[str, Figure]:
    """A window and its targets (`fixed_windows`), and the mask (`causal_mask`)."""
    vocab, n = Vocabulary("First Citizen:"), 8
    (x,), (y,) = fixed_windows(vocab.encode("First Citizen:"), n, 1)  # y: x shifted by one
    fig = Figure(figsize=(10, 4), layout="constrained")
    window, mask = fig.subplots(1, 2, width_ratios=(1.3, 1))
    for row, ids in enumerate((x, y)):
        for i, c in enumerate(vocab.decode(ids).replace(" ", "␣")):
            window.text(i, -row, c, ha="center", va="center", fontsize=12,
                        bbox=dict(boxstyle="square", fc=("honeydew", "lavender")[row]))
            window.annotate("", (i, -0.75), (i, -0.25), arrowprops=dict(arrowstyle="->"))
        window.text(-0.8, -row, ("input x", "target y")[row], ha="right", va="center")
    window.set(xlim=(-2.5, n), ylim=(-1.6, 0.6), title=f"n_ctx = {n}: the target is the next one")
    window.axis("off")
    labels = list(vocab.decode(x).replace(" ", "␣"))  # the window's characters
    mask.imshow(causal_mask(n), cmap="Greens", vmin=0, vmax=1.5)
    mask.set(xticks=range(n), xticklabels=labels, yticks=range(n), yticklabels=labels,
             xlabel="key (may be read)", ylabel="query", title="causal_mask(8): green = allowed")
    return {"concept_window_and_mask": fig}


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
        print(f"\nThe GPT at temperature 0.8:\n{corpora.clipped(prompt_text)}"
              f"{shown[len(prompt_text):]}")
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
