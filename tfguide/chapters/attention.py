"""Self-attention: scaled dot-product and multi-head attention, then a Transformer encoder.

Builds attention from its formula, softmax(QKᵀ/√d_k)·V with padding and causal
masks, then multi-head attention (project, split heads, attend, merge, project
back), and proves both equal `keras.layers.MultiHeadAttention` given the same
weights. Then trains a small Transformer encoder block to reverse a sequence of
digits, a task no model can solve without looking at other positions, beside
the same model with its attention removed, and draws the alignment each head
learned.

Text: chapters/attention.md. Ports 000 §2.5/§3.5/§4.5 of the source documents.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import BatchAccuracy, Experiment

SEQ_LEN, VOCAB_SIZE, D_MODEL, HEADS = 10, 10, 64, 2  # the task and the encoder the run trains


# --- Prepare the data ---------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/attention.md; after editing
# it, refresh the text with python -m tfguide.excerpts chapters/attention.md.
# [start:data]
def make_reversal(n: int, seq_len: int, vocab_size: int, seed: int):
    """Draw n random digit sequences x and their reversals y = x[::-1], both (n, seq_len)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab_size, size=(n, seq_len)).astype(np.int32)  # (n, seq_len)
    return x, x[:, ::-1].copy()  # output position i must copy input position seq_len-1-i
# [end:data]


# --- From scratch -----------------------------------------------------------------
# [start:masks]
def causal_mask(t_q: int, t_k: int | None = None) -> tf.Tensor:
    """True where query i may look at key j, i.e. j <= i: no peeking at the future."""
    t_k = t_q if t_k is None else t_k
    return tf.linalg.band_part(tf.ones((t_q, t_k), tf.bool), -1, 0)  # (t_q, t_k) lower triangle


def padding_mask(tokens: tf.Tensor, pad_id: int = 0) -> tf.Tensor:
    """True where the key is a real token, False where it is padding."""
    return tf.not_equal(tokens, pad_id)[:, None, :]  # (batch, 1, t_k): same for every query
# [end:masks]


# [start:sdpa]
def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(QKᵀ/√d_k)·V. Returns the outputs and the attention weights.

    q: (..., t_q, d_k), k: (..., t_k, d_k), v: (..., t_k, d_v); mask broadcasts to
    (..., t_q, t_k), True where attending is allowed.
    """
    d_k = tf.cast(tf.shape(q)[-1], q.dtype)
    scores = tf.matmul(q, k, transpose_b=True) / tf.sqrt(d_k)  # (..., t_q, t_k)
    if mask is not None:
        scores = tf.where(mask, scores, tf.constant(-1e9, scores.dtype))  # masked: weight ~0
    weights = tf.nn.softmax(scores, axis=-1)  # (..., t_q, t_k), each row sums to 1
    if mask is not None:
        weights = weights * tf.cast(mask, weights.dtype)  # a fully masked row attends nowhere
    return tf.matmul(weights, v), weights  # (..., t_q, d_v), (..., t_q, t_k)
# [end:sdpa]


# [start:saturation]
def row_entropy(weights) -> float:
    """Mean entropy of attention rows in nats: ln(t_k) when uniform, 0 when one-hot."""
    w = np.asarray(weights, np.float64)
    return float(-(w * np.log(np.where(w > 0, w, 1.0))).sum(-1).mean())


def saturation(d_k: int, t: int = SEQ_LEN, n: int = 2000, seed: int = 0) -> dict:
    """Random queries and keys with unit-variance entries: the variance of q·k, and the
    entropy of the attention rows with the 1/√d_k scale and without it."""
    rng = np.random.default_rng(seed)
    q, k = (tf.constant(rng.standard_normal((n, t, d_k))) for _ in range(2))  # (n, t, d_k)
    dots = tf.matmul(q, k, transpose_b=True)  # (n, t, t), before any scaling
    _, scaled = scaled_dot_product_attention(q, k, k)
    _, unscaled = scaled_dot_product_attention(q * math.sqrt(d_k), k, k)  # the scale undone
    return {"dot_variance": float(tf.math.reduce_variance(dots)),
            "entropy_scaled": row_entropy(scaled), "entropy_unscaled": row_entropy(unscaled)}
# [end:saturation]


# [start:mha]
def init_mha(d_model: int, heads: int, key_dim: int, seed: int = 0, dtype=tf.float64) -> dict:
    """Random weights for multi-head attention: four projections and their biases."""
    rng = np.random.default_rng(seed)
    shapes = {"W_q": (d_model, heads * key_dim), "W_k": (d_model, heads * key_dim),
              "W_v": (d_model, heads * key_dim), "W_o": (heads * key_dim, d_model),
              "b_q": (heads * key_dim,), "b_k": (heads * key_dim,),
              "b_v": (heads * key_dim,), "b_o": (d_model,)}
    return {name: tf.constant(rng.normal(0, 1 / math.sqrt(shape[0]), shape), dtype)
            for name, shape in shapes.items()}


def split_heads(x, heads: int):
    """(batch, t, heads·d) -> (batch, heads, t, d): each head gets its own slice."""
    batch, t = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.reshape(x, (batch, t, heads, -1))  # (batch, t, heads, d)
    return tf.transpose(x, (0, 2, 1, 3))  # (batch, heads, t, d)


def merge_heads(x):
    """(batch, heads, t, d) -> (batch, t, heads·d): put the heads side by side again."""
    x = tf.transpose(x, (0, 2, 1, 3))  # (batch, t, heads, d)
    batch, t, heads, d = tf.unstack(tf.shape(x))
    return tf.reshape(x, (batch, t, heads * d))  # (batch, t, heads·d)


def multi_head_attention(x_q, x_kv, p: dict, heads: int, mask=None):
    """Project, split into heads, attend in each head, merge, project back.

    x_q: (batch, t_q, d_model) asks the questions; x_kv: (batch, t_k, d_model) is looked
    at (the same tensor for self-attention). mask broadcasts to (batch, t_q, t_k).
    """
    q = split_heads(x_q @ p["W_q"] + p["b_q"], heads)  # (batch, heads, t_q, d_k)
    k = split_heads(x_kv @ p["W_k"] + p["b_k"], heads)  # (batch, heads, t_k, d_k)
    v = split_heads(x_kv @ p["W_v"] + p["b_v"], heads)  # (batch, heads, t_k, d_k)
    if mask is not None:
        mask = mask[..., None, :, :]  # (batch, 1, t_q, t_k): one mask for all heads
    out, weights = scaled_dot_product_attention(q, k, v, mask)  # (batch, heads, t_q, d_k)
    out = merge_heads(out)  # (batch, t_q, heads·d_k)
    return out @ p["W_o"] + p["b_o"], weights  # (batch, t_q, d_model), (batch, heads, t_q, t_k)
# [end:mha]


# [start:keras_weights]
def to_keras_weights(p: dict, heads: int) -> list[np.ndarray]:
    """Our weights in MultiHeadAttention's layout: kernels (d_model, heads, key_dim)."""
    d_model = p["W_q"].shape[0]
    out = []
    for name in ("q", "k", "v"):  # heads·key_dim columns, head-major, as split_heads reads them
        out += [tf.reshape(p[f"W_{name}"], (d_model, heads, -1)),  # (d_model, heads, key_dim)
                tf.reshape(p[f"b_{name}"], (heads, -1))]  # (heads, key_dim)
    out += [tf.reshape(p["W_o"], (heads, -1, d_model)), p["b_o"]]  # (heads, key_dim, d_model)
    return [np.asarray(w) for w in out]


def from_keras_weights(layer: layers.MultiHeadAttention, dtype=tf.float32) -> dict:
    """The inverse: read a (built) MultiHeadAttention layer's weights as our dict."""
    wq, bq, wk, bk, wv, bv, wo, bo = (np.asarray(w) for w in layer.get_weights())
    d_model = wq.shape[0]
    flat = {"W_q": wq.reshape(d_model, -1), "b_q": bq.ravel(), "W_k": wk.reshape(d_model, -1),
            "b_k": bk.ravel(), "W_v": wv.reshape(d_model, -1), "b_v": bv.ravel(),
            "W_o": wo.reshape(-1, wo.shape[-1]), "b_o": bo}
    return {name: tf.constant(w, dtype) for name, w in flat.items()}


def keras_twin(p: dict, heads: int, x) -> layers.MultiHeadAttention:
    """A MultiHeadAttention layer holding our weights, in our dtype, built for x's shape."""
    key_dim = p["W_q"].shape[1] // heads
    layer = layers.MultiHeadAttention(heads, key_dim, dtype=p["W_q"].dtype.name)
    layer(x, x)  # builds the kernels
    layer.set_weights(to_keras_weights(p, heads))
    return layer


def attention_error(p: dict, heads: int, x, mask=None, causal: bool = False) -> float:
    """Largest |ours − Keras| over the outputs and the attention weights."""
    ours, our_weights = multi_head_attention(x, x, p, heads,
                                             causal_mask(x.shape[1]) if causal else mask)
    theirs, their_weights = keras_twin(p, heads, x)(
        x, x, attention_mask=mask, use_causal_mask=causal, return_attention_scores=True)
    return max(float(tf.reduce_max(tf.abs(ours - theirs))),
               float(tf.reduce_max(tf.abs(our_weights - their_weights))))
# [end:keras_weights]


# --- The Keras way --------------------------------------------------------------------
# [start:scratch_layer]
@keras.saving.register_keras_serializable(package="tfguide")
class ScratchAttention(layers.Layer):
    """Our `multi_head_attention` as a Keras layer, so that a model can train it."""

    def __init__(self, heads: int, key_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.key_dim = heads, key_dim

    def build(self, query_shape, value_shape=None):
        d_model, width = query_shape[-1], self.heads * self.key_dim
        shapes = {"q": (d_model, width), "k": (d_model, width), "v": (d_model, width),
                  "o": (width, d_model)}
        self.p = {}
        for name, shape in shapes.items():
            self.p[f"W_{name}"] = self.add_weight(shape, "glorot_uniform", name=f"W_{name}")
            self.p[f"b_{name}"] = self.add_weight((shape[1],), "zeros", name=f"b_{name}")

    def call(self, query, value, training=None, return_attention_scores=False):
        p = {name: ops.cast(w, query.dtype) for name, w in self.p.items()}
        out, weights = multi_head_attention(query, value, p, self.heads)
        return (out, weights) if return_attention_scores else out

    def get_config(self):
        return super().get_config() | {"heads": self.heads, "key_dim": self.key_dim}
# [end:scratch_layer]


# [start:layers]
@keras.saving.register_keras_serializable(package="tfguide")
class TokenAndPositionEmbedding(layers.Layer):
    """Embed each token and add a learned embedding of its position."""

    def __init__(self, seq_len: int, vocab_size: int, d_model: int, **kwargs):
        super().__init__(**kwargs)
        self.seq_len, self.vocab_size, self.d_model = seq_len, vocab_size, d_model
        self.token = layers.Embedding(vocab_size, d_model, name="token")
        self.position = layers.Embedding(seq_len, d_model, name="position")

    def build(self, input_shape):
        self.token.build(input_shape)
        self.position.build((self.seq_len,))

    def call(self, tokens):  # tokens: (batch, t) int
        positions = ops.arange(ops.shape(tokens)[-1])  # (t,)
        return self.token(tokens) + self.position(positions)  # (batch, t, d_model)

    def get_config(self):
        return super().get_config() | {"seq_len": self.seq_len, "vocab_size": self.vocab_size,
                                       "d_model": self.d_model}


@keras.saving.register_keras_serializable(package="tfguide")
class TransformerBlock(layers.Layer):
    """x + attention, normalise; x + feed-forward, normalise (the original post-norm block).

    With heads=0 the attention sub-layer is left out: every position is then processed
    on its own, which is the baseline.
    """

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float = 0.0,
                 scratch: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.heads, self.ff_dim, self.dropout = d_model, heads, ff_dim, dropout
        self.scratch = scratch  # our ScratchAttention instead of Keras's MultiHeadAttention
        self.attention = None if not heads else (
            ScratchAttention(heads, d_model // heads, name="attention") if scratch else
            layers.MultiHeadAttention(heads, d_model // heads, dropout=dropout, name="attention"))
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.ff1 = layers.Dense(ff_dim, activation="relu", name="ff1")
        self.ff2 = layers.Dense(d_model, name="ff2")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, name="norm2")

    def build(self, input_shape):  # (batch, t, d_model)
        if self.attention is not None:
            self.attention.build(input_shape, input_shape)
            self.norm1.build(input_shape)
        self.ff1.build(input_shape)
        self.ff2.build(tuple(input_shape[:-1]) + (self.ff_dim,))
        self.norm2.build(input_shape)

    def call(self, x, training=None, return_attention_scores=False):
        scores = None
        if self.attention is not None:
            mixed, scores = self.attention(x, x, training=training,
                                           return_attention_scores=True)  # (batch, t, d_model)
            x = self.norm1(x + mixed)  # residual: the block adds to x
        x = self.norm2(x + self.ff2(self.ff1(x)))  # (batch, t, d_model), position by position
        return (x, scores) if return_attention_scores else x  # scores: (batch, heads, t, t)

    def get_config(self):
        return super().get_config() | {"d_model": self.d_model, "heads": self.heads,
                                       "ff_dim": self.ff_dim, "dropout": self.dropout,
                                       "scratch": self.scratch}
# [end:layers]


# [start:model]
def build_model(seq_len: int, vocab_size: int, d_model: int = 64, heads: int = 2,
                ff_dim: int = 128, name: str = "transformer", scratch: bool = False) -> keras.Model:
    """Tokens -> embeddings + positions -> one Transformer block -> a class per position.

    heads=0 gives the baseline: the same model with no attention, so each output
    position sees only its own input token (and where it is).
    """
    tokens = keras.Input(shape=(seq_len,), dtype="int32", name="tokens")
    x = TokenAndPositionEmbedding(seq_len, vocab_size, d_model, name="embed")(tokens)
    x = TransformerBlock(d_model, heads, ff_dim, scratch=scratch, name="block")(x)  # (b, t, d)
    logits = layers.Dense(vocab_size, dtype="float32", name="logits")(x)  # (batch, t, vocab)
    return keras.Model(tokens, logits, name=name)


def attention_maps(model: keras.Model, tokens) -> np.ndarray:
    """The trained block's attention weights for `tokens`: (batch, heads, t, t)."""
    x = model.get_layer("embed")(tokens)
    return np.asarray(model.get_layer("block")(x, return_attention_scores=True)[1], np.float32)
# [end:model]


# [start:train]
def compile_model(seq_len: int, vocab_size: int, learning_rate: float, heads: int = 2,
                  name: str = "transformer", scratch: bool = False) -> keras.Model:
    """Build the encoder (heads=0: the baseline) and compile it to classify every position."""
    model = build_model(seq_len, vocab_size, heads=heads, name=name, scratch=scratch)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  # −log p(target digit), averaged over batch and positions; logits, not softmax
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])  # per-token accuracy
    return model


def fit_model(model: keras.Model, train_ds, val_ds, epochs: int, callbacks=()):
    """Fit the compiled model on `train_ds`, scoring it on `val_ds` after every epoch."""
    return model.fit(train_ds, epochs=epochs, validation_data=val_ds, callbacks=list(callbacks))


def evaluate_model(model: keras.Model, x_test: np.ndarray, y_test: np.ndarray):
    """Return the test loss and per-token accuracy by name, and the predicted sequences."""
    scores = model.evaluate(x_test, y_test, batch_size=256, verbose=0, return_dict=True)
    logits = model.predict(x_test, batch_size=256, verbose=0)  # (n_test, t, vocab)
    return scores, np.argmax(logits, axis=-1)  # (n_test, t)
# [end:train]


# --- Run ----------------------------------------------------------------------------
class Reversal(NamedTuple):
    """The reversal task, split: pipelines to train and validate on, arrays to test on."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    x_test: np.ndarray  # (n_test, t)
    y_test: np.ndarray  # (n_test, t)


def prepare_data(cfg: Config, ex: Experiment) -> Reversal:
    """Draw random digit sequences and their reversals; split them three ways."""
    n_train, n_val, n_test = (3000, 500, 1000) if cfg.quick else (20000, 1000, 2000)
    x, y = make_reversal(n_train + n_val + n_test, SEQ_LEN, VOCAB_SIZE, cfg.seed)
    ex.record_data("reverse", "synthetic", n_train, n_test, validation=n_val,
                   seq_len=SEQ_LEN, vocab_size=VOCAB_SIZE,
                   task="y = x reversed; x uniform over digits 0-9")
    val = slice(n_train, n_train + n_val)
    return Reversal(
        train=datasets.pipeline(x[:n_train], y[:n_train], cfg.batch_size, shuffle=True,
                                seed=cfg.seed),
        val=datasets.pipeline(x[val], y[val], 256),
        x_test=x[n_train + n_val:], y_test=y[n_train + n_val:])


def check_from_scratch(cfg: Config, ex: Experiment, data: Reversal) -> None:
    """Our multi-head attention vs a fresh Keras layer's, on test sequences given unit-scale
    random embeddings (float32, whatever --precision says), with and without a causal mask."""
    rng = np.random.default_rng(cfg.seed)
    table = rng.standard_normal((VOCAB_SIZE, D_MODEL)).astype(np.float32)  # a vector per digit
    x = tf.constant(table[data.x_test[:64]])  # (64, t, d_model)
    layer = layers.MultiHeadAttention(HEADS, D_MODEL // HEADS, dtype="float32")
    layer(x, x)  # builds its weights, initialised as in the model
    p = from_keras_weights(layer)
    ex.log(attention_max_abs_err=max(attention_error(p, HEADS, x),
                                     attention_error(p, HEADS, x, causal=True)))


def bag_of_digits_accuracy(n: int = 100_000, seed: int = 0) -> float:
    """How often 'the most common digit of the sequence' is right at a random position."""
    x, _ = make_reversal(n, SEQ_LEN, VOCAB_SIZE, seed)
    counts = np.stack([(x == d).sum(1) for d in range(VOCAB_SIZE)], axis=1)  # (n, digits)
    return float(counts.max(1).mean() / SEQ_LEN)


def check_saturation(ex: Experiment) -> None:
    """Why √d_k, measured at the model's head width, and the plateau uniform attention gives."""
    measured = saturation(D_MODEL // HEADS)
    ex.log(dot_variance=measured["dot_variance"], entropy_scaled=measured["entropy_scaled"],
           entropy_unscaled=measured["entropy_unscaled"])
    ex.details["saturation"] = {"d_k": D_MODEL // HEADS, "uniform_entropy": math.log(SEQ_LEN),
                                "wide": saturation(4 * D_MODEL // HEADS)}  # exercise 2
    ex.details["bag_of_digits_accuracy"] = bag_of_digits_accuracy()


def train(cfg: Config, ex: Experiment, data: Reversal) -> tuple[dict, dict]:
    """Build and fit the encoder, its no-attention baseline and the same encoder with our
    attention; save the encoder."""
    models, histories = {}, {}
    for name, heads, scratch in (("transformer", HEADS, False), ("baseline", 0, False),
                                 ("scratch", HEADS, True)):
        model = ex.runtime.build(compile_model, SEQ_LEN, VOCAB_SIZE, cfg.learning_rate,
                                 heads=heads, name=name, scratch=scratch)
        print(f"Training the {name} ({model.count_params():,} weights)")
        per_batch = BatchAccuracy()
        callbacks = ex.callbacks("" if name == "transformer" else name) + [per_batch]
        histories[name] = fit_model(model, data.train, data.val, cfg.epochs, callbacks).history
        histories[name]["batch_accuracy"] = per_batch.values
        models[name] = model
    ex.save_model(models["transformer"])
    return models, histories


def evaluate(ex: Experiment, models: dict, data: Reversal) -> np.ndarray:
    """Log both models' test accuracy and where attention looks; return the attention maps."""
    scores, y_pred = evaluate_model(models["transformer"], data.x_test, data.y_test)
    baseline, _ = evaluate_model(models["baseline"], data.x_test, data.y_test)
    scratch, _ = evaluate_model(models["scratch"], data.x_test, data.y_test)
    # How much weight lands where reversal needs it: output i reads input t-1-i.
    maps = attention_maps(models["transformer"], data.x_test[:256])  # (256, heads, t, t)
    anti = np.fliplr(np.eye(SEQ_LEN, dtype=bool))  # (t, t), True at (i, t-1-i)
    ex.log(test_accuracy=scores["accuracy"], baseline_accuracy=baseline["accuracy"],
           scratch_test_accuracy=scratch["accuracy"],
           test_sequence_accuracy=np.mean(np.all(y_pred == data.y_test, axis=1)),
           anti_diagonal_weight=maps[..., anti].mean())
    return maps


def _head_panels(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> Figure:
    heads = weights.shape[0]
    fig = Figure(figsize=(4.4 * heads, 4.0), layout="constrained")
    for h in range(heads):
        plotting.heatmap(weights[h], xlabels=[f"{i}:{t}" for i, t in enumerate(x)],
                         ylabels=[f"{i}:{t}" for i, t in enumerate(y)], title=f"head {h + 1}",
                         xlabel="key (input position:token)",
                         ylabel="query (output position:target)",
                         ax=fig.add_subplot(1, heads, h + 1))
    fig.suptitle("Attention weights for one test sequence (reversal: the anti-diagonal)")
    return fig


def draw(cfg: Config, ex: Experiment, data: Reversal, histories: dict, maps: np.ndarray):
    """The heads' attention, the encoder's curves, and its accuracy beside the baseline's."""
    ex.save_figure(_head_panels(maps[0], data.x_test[0], data.y_test[0]), "attention_heads")
    smooth = np.ones(10) / 10  # a running mean over 10 batches
    curves = {f"{name}, training batches": np.convolve(h["batch_accuracy"], smooth, "valid")
              for name, h in histories.items()}
    steps = np.arange(10, 10 + len(curves["transformer, training batches"]))
    fig = plotting.line_plot(curves, xlabel="training step (batch)", ylabel="per-token accuracy",
                             x=steps, title="Reversing digits, batch by batch")
    fig.axes[0].axhline(ex.details["bag_of_digits_accuracy"], color="grey", ls="--",
                        label="the most common digit of the sequence")
    fig.axes[0].legend()
    ex.save_figure(fig, "training_curves")
    ex.save_figure(plotting.line_plot(
        {"transformer (validation)": histories["transformer"]["val_accuracy"],
         "no attention (validation)": histories["baseline"]["val_accuracy"],
         "chance": [1 / VOCAB_SIZE] * cfg.epochs},
        x=np.arange(1, cfg.epochs + 1), xlabel="epoch", ylabel="per-token accuracy",
        title="Attention vs the same model without it"), "accuracy_vs_baseline")


# --- Concept diagrams (saved as chapters/figures/attention/concept_*.png) -------------
# [start:toy]
def attention_toy() -> dict:
    """Three positions of 4 features, one head of width d_k = 2, by our attention."""
    x = tf.constant([[1.0, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]])  # (t, d_model) = (3, 4)
    W_qk = tf.constant([[1.0, 0], [0, 1], [1, 0], [0, 1]])  # queries and keys share it here
    W_v = tf.constant([[1.0, 0], [0, 0], [0, 1], [0, 0]])  # (d_model, d_v)
    q, k, v = x @ W_qk, x @ W_qk, x @ W_v  # (3, 2) each
    out, weights = scaled_dot_product_attention(q, k, v)  # (3, 2), (3, 3)
    return {"X": x, "Q": q, "K": k, "V": v, "weights": weights, "output": out}
# [end:toy]


def qkv_concept() -> Figure:
    """The toy's matrices side by side, each cell with its number."""
    toy = {name: np.asarray(m) for name, m in attention_toy().items()}
    fig = Figure(figsize=(13, 3.2), layout="constrained")
    titles = {"X": "X: 3 positions × 4 features", "Q": "Q = X W_q", "K": "K = X W_k",
              "V": "V = X W_v", "weights": "softmax(Q Kᵀ / √2)", "output": "weights · V"}
    for i, (name, m) in enumerate(toy.items()):
        ax = fig.add_subplot(1, len(toy), i + 1)
        ax.imshow(m, cmap="Blues" if name != "weights" else "Oranges", vmin=0)
        for (r, c), value in np.ndenumerate(m):
            ax.text(c, r, f"{value:.2f}" if name in ("weights", "output") else f"{value:g}",
                    ha="center", va="center", fontsize=9)
        ax.set(title=titles[name], xticks=[], yticks=range(3),
               yticklabels=[f"pos {r}" for r in range(3)] if i == 0 else [])
    fig.suptitle("Attention on three positions: row i of the weights says where position i "
                 "looks; its output is that mix of the rows of V")
    return fig


def scale_concept() -> Figure:
    """Entropy of attention rows against d_k, with and without 1/√d_k (from `saturation`)."""
    widths = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    runs = [saturation(d, n=500) for d in widths]
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.loglog(widths, [r["dot_variance"] for r in runs], "o-", label="measured var(q·k)")
    ax1.loglog(widths, widths, "--", color="grey", label="$d_k$")
    ax1.set(xlabel="$d_k$", ylabel="variance of the score", title="Unscaled scores: variance $d_k$")
    for key, label in (("entropy_scaled", "scores / √d_k"), ("entropy_unscaled", "raw scores")):
        ax2.semilogx(widths, [r[key] for r in runs], "o-", label=label)
    ax2.axhline(math.log(SEQ_LEN), color="grey", ls="--", label=f"uniform over {SEQ_LEN}: ln {SEQ_LEN}")
    ax2.set(xlabel="$d_k$", ylabel="entropy of a row (nats)", ylim=(0, 2.5),
            title="Raw scores saturate the softmax")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def block_concept() -> Figure:
    """The post-norm encoder block `TransformerBlock` builds, bottom to top."""
    fig = Figure(figsize=(5.5, 6.2), layout="constrained")
    ax = fig.add_subplot()
    boxes = [(0, "input: embedding + position", "white"),
             (1.4, "multi-head self-attention", "C1"), (2.6, "add & layer norm", "C2"),
             (3.9, "feed-forward: Dense(relu), Dense", "C0"), (5.1, "add & layer norm", "C2"),
             (6.3, "output: one vector per position", "white")]
    for y, text, color in boxes:
        ax.add_patch(FancyBboxPatch((-1.6, y - 0.3), 3.2, 0.6, boxstyle="round,pad=0.05",
                                    fc=color, ec="black", alpha=0.3 if color != "white" else 1))
        ax.text(0, y, text, ha="center", va="center", fontsize=10)
    for (y0, *_), (y1, *_) in zip(boxes, boxes[1:]):
        ax.annotate("", (0, y1 - 0.35), (0, y0 + 0.35), arrowprops=dict(arrowstyle="->"))
    for start, end in ((0.2, 2.6), (2.8, 5.1)):  # the residual connections, around each sub-layer
        ax.annotate("", (1.65, end), (1.65, start), arrowprops=dict(
            arrowstyle="->", color="C3", connectionstyle="arc3,rad=-0.5", lw=1.5))
        ax.text(2.55, (start + end) / 2, "residual:\nx + f(x)", color="C3", fontsize=9,
                ha="center", va="center")
    ax.set(xlim=(-2, 3.2), ylim=(-0.5, 6.8))
    ax.axis("off")
    fig.suptitle("A Transformer encoder block (post-norm)")
    return fig


def concept_figures() -> dict[str, Figure]:
    """The chapter's diagrams of its ideas, drawn from its own functions."""
    return {"concept_qkv": qkv_concept(), "concept_scale": scale_concept(),
            "concept_block": block_concept()}


def run(cfg: Config) -> dict:
    """Check attention against Keras, then train the encoder and its no-attention baseline."""
    with Experiment(cfg) as ex:
        data = prepare_data(cfg, ex)
        check_from_scratch(cfg, ex, data)
        check_saturation(ex)
        models, histories = train(cfg, ex, data)
        maps = evaluate(ex, models, data)
        draw(cfg, ex, data, histories, maps)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
