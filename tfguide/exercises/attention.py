"""The exercises of chapter attention: how `python -m tfguide check attention` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/attention.py and chapters/attention.md.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from tfguide.chapters.attention import (causal_mask, init_mha, keras_twin, multi_head_attention,
                                        padding_mask, scaled_dot_product_attention, split_heads)
from tfguide.chapters import attention as chapter
from tfguide.exercises import Exercise, Proof, worst


def _random(shape: tuple[int, ...], seed: int) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float64)


def _output_and_grad_error(ours, theirs, *inputs) -> float:
    """Largest |ours − theirs| over the outputs and the gradients of a random projection."""
    inputs = [tf.convert_to_tensor(t) for t in inputs]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        a, b = ours(*inputs), theirs(*inputs)
        if tuple(a.shape) != tuple(b.shape):
            return float("inf")
        upstream = tf.random.stateless_normal(b.shape, seed=(0, 0), dtype=b.dtype)
        loss_a, loss_b = tf.reduce_sum(a * upstream), tf.reduce_sum(b * upstream)
    errors = [tf.reduce_max(tf.abs(a - b))]
    for ga, gb in zip(tape.gradient(loss_a, inputs), tape.gradient(loss_b, inputs)):
        errors.append(tf.reduce_max(tf.abs(ga - gb)))
    return float(max(errors))


def prove_causal_mask(causal_mask_fn) -> Proof:
    """The mask must be True exactly where j <= i, for square and rectangular shapes."""
    errors = []
    for t_q, t_k in ((5, None), (3, 6), (6, 3), (1, 4)):
        expected = np.tril(np.ones((t_q, t_k or t_q), bool))  # row i: keys 0 … i
        got = np.asarray(causal_mask_fn(t_q) if t_k is None else causal_mask_fn(t_q, t_k))
        wrong = float("inf") if got.shape != expected.shape else float(np.sum(got != expected))
        errors.append((f"t_q {t_q}, t_k {t_k or t_q} (entries wrong)", wrong))
    return worst(errors, 0.0)


def prove_sdpa(sdpa_fn) -> Proof:
    """Outputs and gradients vs keras.ops.dot_product_attention in float64 (no mask, causal,
    padding), and a fully masked row that must attend nowhere."""
    errors = []
    bthd = lambda x: tf.transpose(x, (0, 2, 1, 3))  # noqa: E731  Keras wants (batch, t, heads, d)
    for t_q, t_k, d_k, d_v in ((4, 4, 8, 8), (3, 6, 5, 7), (6, 6, 16, 4)):
        q, k, v = (_random((2, 3, t, d), seed) for seed, (t, d) in
                   enumerate(((t_q, d_k), (t_k, d_k), (t_k, d_v))))  # (batch, heads, t, d)
        padding = padding_mask(tf.constant([[1] * (t_k - 2) + [0, 0], [1] * t_k]))[:, None]
        cases = {"no mask": (None, False), "padding mask": (padding, False)}
        if t_q == t_k:
            cases["causal mask"] = (causal_mask(t_q), True)
        for case, (mask, causal) in cases.items():
            full = None if mask is None else tf.broadcast_to(mask, (2, 3, t_q, t_k))
            errors.append((f"t_q {t_q}, t_k {t_k}, d_k {d_k}, {case}", _output_and_grad_error(
                lambda q, k, v: sdpa_fn(q, k, v, mask)[0],
                lambda q, k, v: bthd(ops.dot_product_attention(
                    bthd(q), bthd(k), bthd(v), mask=None if causal else full,
                    is_causal=causal)), q, k, v)))
    q = k = v = _random((1, 3, 4), 5)
    mask = tf.constant([[True, True, False], [False, False, False], [True, False, True]])
    out, weights = sdpa_fn(q, k, v, mask)
    errors.append(("a fully masked row (its weights and output must be 0)",
                   float(max(tf.reduce_max(tf.abs(weights[0, 1])),
                             tf.reduce_max(tf.abs(out[0, 1]))))))
    return worst(errors, 1e-6)  # Keras scales by a float32 1/√d_k even in float64


def _mha_error(mha_fn, p: dict, heads: int, x_q, x_kv, mask=None, causal: bool = False):
    """Largest |mha_fn − Keras| over outputs and attention weights (our weights in Keras)."""
    ours, our_weights = mha_fn(x_q, x_kv, p, heads,
                               causal_mask(x_q.shape[1], x_kv.shape[1]) if causal else mask)
    theirs, their_weights = keras_twin(p, heads, x_kv)(
        x_q, x_kv, attention_mask=mask, use_causal_mask=causal, return_attention_scores=True)
    if ours.shape != theirs.shape or our_weights.shape != their_weights.shape:
        return float("inf")
    return max(float(tf.reduce_max(tf.abs(ours - theirs))),
               float(tf.reduce_max(tf.abs(our_weights - their_weights))))


MHA_CASES = ((2, 5, 8, 2, 4), (1, 6, 12, 3, 4), (2, 4, 8, 1, 5))  # batch, t, d_model, heads, key_dim


def _prove_with(patch: dict) -> Proof:
    """This chapter's multi_head_attention with some helpers replaced, against Keras."""
    namespace = vars(chapter)  # multi_head_attention looks its helpers up there
    saved = {name: namespace[name] for name in patch}
    namespace.update(patch)
    try:
        errors = []
        for batch, t, d_model, heads, key_dim in MHA_CASES:
            p, x = init_mha(d_model, heads, key_dim, seed=t), _random((batch, t, d_model), heads)
            for causal in (False, True):
                errors.append((f"batch {batch}, t {t}, {heads} heads of {key_dim}"
                               f"{', causal' if causal else ''}",
                               _mha_error(multi_head_attention, p, heads, x, x, causal=causal)))
        return worst(errors, 1e-6)
    finally:
        namespace.update(saved)


def prove_split_heads(split_heads_fn) -> Proof:
    """Used inside multi_head_attention, it must give Keras's MultiHeadAttention answers."""
    return _prove_with({"split_heads": split_heads_fn})


def prove_merge_heads(merge_heads_fn) -> Proof:
    """Used inside multi_head_attention, it must give Keras's MultiHeadAttention answers."""
    return _prove_with({"merge_heads": merge_heads_fn})


def prove_multi_head_attention(mha_fn) -> Proof:
    """Self-attention (with and without a causal or padding mask) and cross-attention vs a
    keras.layers.MultiHeadAttention holding the same weights, in float64."""
    errors = []
    tokens = tf.constant([[3, 1, 4, 0, 0], [5, 9, 2, 6, 0]])
    for batch, t, d_model, heads, key_dim in MHA_CASES:
        p, x = init_mha(d_model, heads, key_dim, seed=t), _random((batch, t, d_model), heads)
        name = f"batch {batch}, t {t}, {heads} heads of {key_dim}"
        errors.append((name, _mha_error(mha_fn, p, heads, x, x)))
        errors.append((name + ", causal", _mha_error(mha_fn, p, heads, x, x, causal=True)))
        x_q = _random((batch, t + 2, d_model), 7)  # queries from a longer sequence
        errors.append((name + ", cross-attention", _mha_error(mha_fn, p, heads, x_q, x)))
    p, x = init_mha(8, 2, 4, seed=1), _random((2, 5, 8), 1)
    errors.append(("padding mask", _mha_error(mha_fn, p, 2, x, x, mask=padding_mask(tokens))))
    return worst(errors, 1e-6)


def _causal_mask_strict(t_q, t_k=None):
    return tf.linalg.band_part(tf.ones((t_q, t_k or t_q), tf.bool), -1, 0) & \
        ~tf.eye(t_q, t_k or t_q, dtype=tf.bool)


def _causal_mask_upper(t_q, t_k=None):
    return tf.linalg.band_part(tf.ones((t_q, t_k or t_q), tf.bool), 0, -1)


def _sdpa_unscaled(q, k, v, mask=None):
    return scaled_dot_product_attention(q * tf.sqrt(tf.cast(tf.shape(q)[-1], q.dtype)), k, v, mask)


def _sdpa_mask_after_softmax(q, k, v, mask=None):
    d_k = tf.cast(tf.shape(q)[-1], q.dtype)
    weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / tf.sqrt(d_k), axis=-1)
    if mask is not None:
        weights = weights * tf.cast(mask, weights.dtype)  # rows no longer sum to 1
    return tf.matmul(weights, v), weights


def _split_heads_no_transpose(x, heads):
    return tf.reshape(x, (tf.shape(x)[0], heads, tf.shape(x)[1], -1))


def _merge_heads_no_transpose(x):
    batch, heads, t, d = tf.unstack(tf.shape(x))
    return tf.reshape(x, (batch, t, heads * d))


def _mha_no_output_projection(x_q, x_kv, p, heads, mask=None):
    q_p = {**p, "W_o": tf.eye(p["W_o"].shape[0], dtype=p["W_o"].dtype),
           "b_o": tf.zeros_like(p["b_q"])}
    return multi_head_attention(x_q, x_kv, q_p, heads, mask)


def _mha_keys_from_queries(x_q, x_kv, p, heads, mask=None):
    return multi_head_attention(x_q, x_q, p, heads, mask)


# Probe inputs are NumPy and become tensors when asked: importing a chapter starts no TensorFlow.
_PROBE_Q, _PROBE_K, _PROBE_V = (np.random.default_rng(seed).normal(size=(1, 2, 4, 3))
                                for seed in (11, 12, 13))
_PROBE_X = np.random.default_rng(14).normal(size=(2, 4, 6))  # (batch, t, d_model)
_PROBE_XQ = np.random.default_rng(15).normal(size=(2, 6, 6))  # longer: cross-attention
NO_TRANSPOSE = ("after the reshape to (batch, t, heads, d), transpose to (batch, heads, t, d): "
                "a reshape alone mixes positions and heads")
EXERCISES = (
    Exercise(
        "causal_mask", prove_causal_mask, "a (t_q, t_k) boolean lower triangle, diagonal "
        "included: tf.linalg.band_part(tf.ones(..., tf.bool), -1, 0)",
        probe=lambda f: f(4), mistakes={
            "keep the diagonal: position i may look at itself (j <= i, not j < i)":
                _causal_mask_strict,
            "the lower triangle, not the upper: query i sees keys 0 … i, the past":
                _causal_mask_upper}),
    Exercise(
        "scaled_dot_product_attention", prove_sdpa, "scores = q·kᵀ/√d_k; masked scores to "
        "-1e9 before the softmax; weights = softmax over keys; return weights·v and weights",
        probe=lambda f: f(*map(tf.constant, (_PROBE_Q, _PROBE_K, _PROBE_V)), causal_mask(4))[1],
        mistakes={
            "divide the scores by √d_k before the softmax (d_k = the last axis of q)":
                _sdpa_unscaled,
            "mask the scores before the softmax (set them to -1e9), so that every row of "
            "weights still sums to 1": _sdpa_mask_after_softmax}),
    Exercise(
        "split_heads", prove_split_heads, "reshape (batch, t, heads·d) to (batch, t, heads, "
        "d), then transpose to (batch, heads, t, d)",
        probe=lambda f: f(tf.constant(_PROBE_X), 2),
        mistakes={NO_TRANSPOSE: _split_heads_no_transpose}),
    Exercise(
        "merge_heads", prove_merge_heads, "the inverse of split_heads: transpose to (batch, "
        "t, heads, d), then reshape to (batch, t, heads·d)",
        probe=lambda f: f(split_heads(tf.constant(_PROBE_X), 2)),
        mistakes={"transpose (batch, heads, t, d) back to (batch, t, heads, d) before the "
                  "reshape: a reshape alone mixes positions and heads":
                  _merge_heads_no_transpose}),
    Exercise(
        "multi_head_attention", prove_multi_head_attention, "project q from x_q and k, v from "
        "x_kv (x @ W + b), split_heads, attend with the mask given one head axis, "
        "merge_heads, project with W_o and b_o",
        probe=lambda f: f(tf.constant(_PROBE_XQ), tf.constant(_PROBE_X),
                          init_mha(6, 2, 3, seed=3), 2)[0], mistakes={
            "project the merged heads with W_o and add b_o: Keras's layer ends with an "
            "output projection": _mha_no_output_projection,
            "keys and values come from x_kv, queries from x_q (they differ in "
            "cross-attention)": _mha_keys_from_queries}),
)
