"""The exercises of chapter language_model: how `python -m tfguide check language_model` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/language_model.py and chapters/language_model.md.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from tfguide.chapters.language_model import (bigram_counts, bigram_loss, bits_per_char,
                                             chi2_p_value, sample_next)
from tfguide.exercises import Exercise, Proof, worst


def _ids(n: int, vocab_size: int, seed: int, skew: float = 0.0) -> np.ndarray:
    """n seeded ids; `skew` > 0 makes low ids commoner (so some pairs repeat many times)."""
    p = np.exp(-skew * np.arange(vocab_size))
    return np.random.default_rng(seed).choice(vocab_size, n, p=p / p.sum()).astype(np.int32)


_TEXTS = ((_ids(500, 7, 0), _ids(200, 7, 1), 9),  # (train, val, vocab): ids 7, 8 never occur
          (_ids(3000, 30, 2, 0.2), _ids(400, 30, 3, 0.2), 30),  # skewed: pairs repeat often
          (_ids(12, 4, 4), _ids(6, 4, 5), 4))  # a tiny text


def prove_bigram_counts(bigram_counts_fn) -> Proof:
    """Pair counts + 1 against tf.math.bincount of the pair ids a·V + b, exactly."""
    errors = []
    for train, _, v in _TEXTS:
        pairs = tf.math.bincount(train[:-1] * v + train[1:], minlength=v * v, dtype=tf.float64)
        want = np.reshape(pairs, (v, v)) + 1.0  # (vocab, vocab)
        got = np.asarray(bigram_counts_fn(train, v), np.float64)
        errors.append((f"{len(train)} training ids, vocabulary {v}",
                       float(np.max(np.abs(got - want))) if got.shape == want.shape else np.inf))
    return worst(errors, 0.0)


def prove_bigram_loss(bigram_loss_fn) -> Proof:
    """The bigram loss against Keras's cross-entropy of the validation pairs (relative error)."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    errors = []
    for train, val, v in _TEXTS:
        counts = bigram_counts(train, v)
        log_p = np.log(counts / counts.sum(axis=1, keepdims=True))  # softmax gives them back
        want = float(loss(val[1:], log_p[val[:-1]]))
        errors.append((f"{len(train)} training ids, vocabulary {v}",
                       abs(bigram_loss_fn(train, val, v) - want) / want))
    return worst(errors, 1e-6)


def prove_bits_per_char(bits_per_char_fn) -> Proof:
    """Uniform models cost log2 V bits; any model's nats convert to its mean -log2 p."""
    errors = [(f"uniform over {v} characters", abs(bits_per_char_fn(math.log(v)) - math.log2(v)))
              for v in (2, 16, 65)]
    p = np.random.default_rng(6).dirichlet(np.ones(65), size=200)  # (200, vocab)
    p_true = p[np.arange(200), np.random.default_rng(7).integers(0, 65, 200)]  # (200,)
    errors.append(("a random model's mean -ln p", abs(
        bits_per_char_fn(float(-np.log(p_true).mean())) - float(-np.log2(p_true).mean()))))
    return worst(errors, 1e-12)


def prove_causal_mask(causal_mask_fn) -> Proof:
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
    return worst(errors, 1e-12)


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


def prove_sample_next(sample_next_fn) -> Proof:
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
    return worst(errors, 4.0)


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
    Exercise(
        "bigram_counts", prove_bigram_counts, "start from ones (add-one smoothing) and add 1 "
        "at [a, b] for each neighbouring pair a = train[:-1], b = train[1:]",
        probe=lambda f: f(*_PROBE_TEXT[::2]),
        mistakes={"counts[a, b] += 1 with arrays of indices adds a repeated pair only once: "
                  "use np.add.at (or np.bincount of a * V + b)": _bigram_counts_fancy_index,
                  "start every count at 1 (add-one smoothing), or a pair never seen in training "
                  "gets probability 0 and an infinite loss": _bigram_counts_unsmoothed,
                  "rows are the previous character a, columns the next one b: "
                  "counts[a, b]": _bigram_counts_transposed}),
    Exercise(
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
    Exercise(
        "bits_per_char", prove_bits_per_char, "log2 x = ln x / ln 2: divide the nats by "
        "math.log(2)",
        probe=lambda f: [f(1.0), f(2.0), f(math.log(65))],
        mistakes={"divide by ln 2, do not multiply: a loss in bits is larger than in "
                  "nats": lambda nats: nats * math.log(2),
                  "convert the unit, not the value: the loss is already a logarithm, so "
                  "log2(loss) is not bits": lambda nats: math.log2(nats)}),
    Exercise(
        "causal_mask", prove_causal_mask, "np.arange(t) as a column (the queries i) and as "
        "a row (the keys j): compare them, and broadcasting makes the (t, t) table",
        probe=lambda f: np.asarray(f(4), np.float64),
        mistakes={"a character may attend to itself: keep the diagonal (j <= i, not "
                  "j < i)": lambda t: np.tril(np.ones((t, t), bool), -1),
                  "rows are queries, columns keys: query i sees keys j <= i, the lower "
                  "triangle (yours looks ahead)": lambda t: np.triu(np.ones((t, t), bool)),
                  "Keras's attention_mask is True where a query MAY attend, not where it is "
                  "hidden": lambda t: ~np.tril(np.ones((t, t), bool))}),
    Exercise(
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
