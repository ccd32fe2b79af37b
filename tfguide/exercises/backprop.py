"""The exercises of chapter backprop: how `python -m tfguide check backprop` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/backprop.py and chapters/backprop.md.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfguide.chapters.backprop import (ACTIVATIONS, DTYPE, PARAMS, backward, forward, init_params,
                                       log_softmax, make_spirals, relative_error, softmax,
                                       softmax_naive, tape_gradients)
from tfguide.exercises import Exercise, Proof, worst


def _logits(seed: int) -> tf.Tensor:
    """(64, 10) float64 logits, one row of them around ±3000: the naive softmax fails there."""
    rng = np.random.default_rng(seed)
    scale = np.ones((64, 1))
    scale[0] = 1000.0
    return tf.constant(rng.normal(0.0, 3.0, (64, 10)) * scale)


def _twin_error(ours, theirs) -> float:
    """max |ours − theirs|, or inf when the shapes differ (NaN stays NaN: it fails)."""
    ours, theirs = tf.convert_to_tensor(ours, DTYPE), tf.convert_to_tensor(theirs, DTYPE)
    if ours.shape != theirs.shape:
        return float("inf")
    return float(tf.reduce_max(tf.abs(ours - theirs)))


def _with_gradient(f, z):
    """f(z) and the gradient of sum(f(z)) with respect to z."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = f(z)
    return out, tape.gradient(out, z)


def prove_sigmoid(sigmoid_) -> Proof:
    """sigmoid vs keras.activations.sigmoid in float64, values and gradients, |z| up to 1000."""
    z = tf.concat([tf.linspace(tf.constant(-1000.0, DTYPE), 1000.0, 41),
                   tf.reshape(_logits(0), [-1]) / 100], axis=0)  # (681,)
    ours, theirs = _with_gradient(sigmoid_, z), _with_gradient(keras.activations.sigmoid, z)
    return worst([("values", _twin_error(ours[0], theirs[0])),
                            ("gradients", _twin_error(ours[1], theirs[1]))], 1e-14)


def prove_softmax(softmax_) -> Proof:
    """softmax vs keras.activations.softmax on ordinary logits and on logits near ±3000."""
    z = _logits(1)
    return worst([("ordinary logits", _twin_error(softmax_(z[1:]),
                                                            keras.activations.softmax(z[1:]))),
                            ("logits near ±3000", _twin_error(softmax_(z[:1]),
                                                              keras.activations.softmax(z[:1])))],
                           1e-14)


def prove_log_softmax(log_softmax_) -> Proof:
    """log_softmax vs keras.activations.log_softmax, ordinary logits and logits near ±3000."""
    z = _logits(2)
    return worst([
        ("ordinary logits", _twin_error(log_softmax_(z[1:]),
                                        keras.activations.log_softmax(z[1:]))),
        ("logits near ±3000", _twin_error(log_softmax_(z[:1]),
                                          keras.activations.log_softmax(z[:1])))], 1e-11)


def prove_cross_entropy_from_logits(cross_entropy_) -> Proof:
    """The loss vs keras.losses.CategoricalCrossentropy(from_logits=True) in float64."""
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, dtype="float64")
    errors = []
    for seed, k in ((3, 10), (4, 2)):
        Z = _logits(seed)[:, :k]  # (64, k)
        Y = tf.one_hot(np.random.default_rng(seed).integers(0, k, 64), k, dtype=DTYPE)
        errors.append((f"{k} classes, one row of logits near ±3000",
                       _twin_error(cross_entropy_(Y, Z), keras_loss(Y, Z))))
    return worst(errors, 1e-9)


def prove_backward(backward_) -> Proof:
    """backward vs tf.GradientTape (relative error per parameter), for each hidden activation."""
    X, y = make_spirals(50, seed=5)
    X, Y = tf.constant(X), tf.constant(np.eye(2)[y])  # (50, 2), (50, 2)
    errors = []
    for activation in ACTIVATIONS:
        params = init_params(2, 8, 2, seed=6)
        A1, Z2 = forward(params, X, activation)
        ours, tape = backward_(params, X, Y, A1, Z2, activation), tape_gradients(
            params, X, Y, activation)
        for name in PARAMS:
            same = name in ours and tuple(np.shape(ours[name])) == tuple(tape[name].shape)
            errors.append((f"{activation}, {name}",
                           relative_error(ours[name], tape[name]) if same else float("inf")))
    return worst(errors, 1e-10)


def _sigmoid_naive(z):
    return 1 / (1 + tf.exp(-z))


def _sigmoid_abs(z):
    e = tf.exp(-tf.abs(z))
    return tf.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax_over_examples(z):
    e = tf.exp(z - tf.reduce_max(z, axis=0, keepdims=True))
    return e / tf.reduce_sum(e, axis=0, keepdims=True)


def _log_of_softmax(z):
    return tf.math.log(softmax(z))


def _cross_entropy_summed(Y, Z):
    return -tf.reduce_sum(Y * log_softmax(Z))


def _cross_entropy_mean_of_all(Y, Z):
    return -tf.reduce_mean(Y * log_softmax(Z))


def _backward_summed(params, X, Y, A1, Z2, activation="tanh"):
    n = tf.cast(tf.shape(X)[0], X.dtype)
    return {k: n * g for k, g in backward(params, X, Y, A1, Z2, activation).items()}


def _backward_without_derivative(params, X, Y, A1, Z2, activation="tanh"):
    dZ1 = (softmax(Z2) - Y) / tf.cast(tf.shape(X)[0], X.dtype) @ tf.transpose(params["W2"])
    return {**backward(params, X, Y, A1, Z2, activation),
            "W1": tf.transpose(X) @ dZ1, "b1": tf.reduce_sum(dZ1, axis=0)}


def _probe_with_gradient(f):
    z = tf.constant([-1000.0, -30.0, -1.0, 0.0, 2.0, 1000.0], DTYPE)
    return np.nan_to_num(np.concatenate([np.asarray(t) for t in _with_gradient(f, z)]))


# NumPy, not tensors: importing a chapter must not start TensorFlow (multi-worker needs that)
_PROBE_Z = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -800.0]])  # (2, 3)
_PROBE_Y = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def _probe_backward(backward_):
    X = tf.constant([[0.5, -1.0], [1.5, 0.25], [-0.5, 2.0]], DTYPE)  # (3, 2)
    Y = tf.constant([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], DTYPE)
    params = init_params(2, 4, 2, seed=7)
    A1, Z2 = forward(params, X)
    grads = backward_(params, X, Y, A1, Z2)
    return np.concatenate([np.ravel(grads[k]) for k in PARAMS])


EXERCISES = (
    Exercise(
        "sigmoid", prove_sigmoid, "1 / (1 + e^(−z)) overflows for z far below 0: compute "
        "e = e^(−|z|) and pick 1/(1 + e) or e/(1 + e) with tf.where(z >= 0, ...)",
        probe=_probe_with_gradient,
        mistakes={"1 / (1 + e^(−z)) as written takes e^1000 = inf for z = −1000, and its "
                  "gradient is inf/inf = NaN: only ever exponentiate −|z|": _sigmoid_naive,
                  "tf.abs has the gradient 0 at z = 0, so σ′(0) comes out 0, not 1/4: write "
                  "|z| as tf.where(z >= 0, z, -z)": _sigmoid_abs}),
    Exercise(
        "softmax", prove_softmax, "subtract each row's maximum (axis=-1, keepdims=True), "
        "exponentiate, divide by the row's sum",
        probe=lambda f: np.nan_to_num(np.asarray(f(tf.constant(_PROBE_Z, DTYPE)))),
        mistakes={"e^z overflows once z passes about 709: subtract the row's maximum first, "
                  "which leaves the softmax unchanged": softmax_naive,
                  "each row (one example) sums to 1: reduce over the classes, axis=-1, not "
                  "over the examples": _softmax_over_examples}),
    Exercise(
        "log_softmax", prove_log_softmax, "with m the row maximum, log softmax(z) = (z − m) − "
        "log Σ e^(z − m): never take the log of a softmax",
        probe=lambda f: np.nan_to_num(np.asarray(f(tf.constant(_PROBE_Z, DTYPE)))),
        mistakes={"log(softmax(z)) is log 0 = −inf once a probability rounds to 0: compute "
                  "(z − m) − log Σ e^(z − m) directly": _log_of_softmax}),
    Exercise(
        "cross_entropy_from_logits", prove_cross_entropy_from_logits, "sum Y · log_softmax(Z) "
        "over the classes, then take minus the mean over the examples",
        probe=lambda f: f(tf.constant(_PROBE_Y, DTYPE), tf.constant(_PROBE_Z, DTYPE)),
        mistakes={"the loss is a mean over the examples, not a sum: tf.reduce_mean over the "
                  "batch": _cross_entropy_summed,
                  "sum over the classes first, then average over the examples: a mean over "
                  "every entry also divides by the number of classes":
                  _cross_entropy_mean_of_all}),
    Exercise(
        "backward", prove_backward, "dZ2 = (softmax(Z2) − Y)/n, then dW2 = A1ᵀ·dZ2, "
        "db2 = Σ rows, dA1 = dZ2·W2ᵀ, dZ1 = dA1 ⊙ f′(A1), dW1 = Xᵀ·dZ1, db1 = Σ rows",
        probe=_probe_backward,
        mistakes={"the loss is a mean, so dZ2 = (softmax(Z2) − Y) / n: without the 1/n every "
                  "gradient is n times too large": _backward_summed,
                  "the gradient passes through the activation: dZ1 = dA1 ⊙ f′(A1), with "
                  "f′ from DERIVATIVES (1 − A1² for tanh)": _backward_without_derivative}),
)
