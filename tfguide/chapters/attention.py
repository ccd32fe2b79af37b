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

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment

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

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.heads, self.ff_dim, self.dropout = d_model, heads, ff_dim, dropout
        self.attention = (layers.MultiHeadAttention(heads, d_model // heads, dropout=dropout,
                                                    name="attention") if heads else None)
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
                                       "ff_dim": self.ff_dim, "dropout": self.dropout}
# [end:layers]


# [start:model]
def build_model(seq_len: int, vocab_size: int, d_model: int = 64, heads: int = 2,
                ff_dim: int = 128, name: str = "transformer") -> keras.Model:
    """Tokens -> embeddings + positions -> one Transformer block -> a class per position.

    heads=0 gives the baseline: the same model with no attention, so each output
    position sees only its own input token (and where it is).
    """
    tokens = keras.Input(shape=(seq_len,), dtype="int32", name="tokens")
    x = TokenAndPositionEmbedding(seq_len, vocab_size, d_model, name="embed")(tokens)
    x = TransformerBlock(d_model, heads, ff_dim, name="block")(x)  # (batch, t, d_model)
    logits = layers.Dense(vocab_size, dtype="float32", name="logits")(x)  # (batch, t, vocab)
    return keras.Model(tokens, logits, name=name)


def attention_maps(model: keras.Model, tokens) -> np.ndarray:
    """The trained block's attention weights for `tokens`: (batch, heads, t, t)."""
    x = model.get_layer("embed")(tokens)
    return np.asarray(model.get_layer("block")(x, return_attention_scores=True)[1], np.float32)
# [end:model]


# [start:train]
def compile_model(seq_len: int, vocab_size: int, learning_rate: float, heads: int = 2,
                  name: str = "transformer") -> keras.Model:
    """Build the encoder (heads=0: the baseline) and compile it to classify every position."""
    model = build_model(seq_len, vocab_size, heads=heads, name=name)
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


def train(cfg: Config, ex: Experiment, data: Reversal) -> tuple[dict, dict]:
    """Build and fit the encoder and its no-attention baseline; save the encoder."""
    models, histories = {}, {}
    for name, heads in (("transformer", HEADS), ("baseline", 0)):
        model = ex.runtime.build(compile_model, SEQ_LEN, VOCAB_SIZE, cfg.learning_rate,
                                 heads=heads, name=name)
        print(f"Training the {name} ({model.count_params():,} weights)")
        callbacks = ex.callbacks("" if heads else name)
        histories[name] = fit_model(model, data.train, data.val, cfg.epochs, callbacks).history
        models[name] = model
    ex.save_model(models["transformer"])
    return models, histories


def evaluate(ex: Experiment, models: dict, data: Reversal) -> np.ndarray:
    """Log both models' test accuracy and where attention looks; return the attention maps."""
    scores, y_pred = evaluate_model(models["transformer"], data.x_test, data.y_test)
    baseline, _ = evaluate_model(models["baseline"], data.x_test, data.y_test)
    # How much weight lands where reversal needs it: output i reads input t-1-i.
    maps = attention_maps(models["transformer"], data.x_test[:256])  # (256, heads, t, t)
    anti = np.fliplr(np.eye(SEQ_LEN, dtype=bool))  # (t, t), True at (i, t-1-i)
    ex.log(test_accuracy=scores["accuracy"], baseline_accuracy=baseline["accuracy"],
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
    ex.save_figure(plotting.history_curves(histories["transformer"],
                                           "Transformer encoder: reversing digits"),
                   "training_curves")
    ex.save_figure(plotting.line_plot(
        {"transformer (validation)": histories["transformer"]["val_accuracy"],
         "no attention (validation)": histories["baseline"]["val_accuracy"],
         "chance": [1 / VOCAB_SIZE] * cfg.epochs},
        x=np.arange(1, cfg.epochs + 1), xlabel="epoch", ylabel="per-token accuracy",
        title="Attention vs the same model without it"), "accuracy_vs_baseline")


def run(cfg: Config) -> dict:
    """Check attention against Keras, then train the encoder and its no-attention baseline."""
    with Experiment(cfg) as ex:
        data = prepare_data(cfg, ex)
        check_from_scratch(cfg, ex, data)
        models, histories = train(cfg, ex, data)
        maps = evaluate(ex, models, data)
        draw(cfg, ex, data, histories, maps)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
