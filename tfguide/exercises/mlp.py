"""The exercises of chapter mlp: how `python -m tfguide check mlp` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/mlp.py and chapters/mlp.md.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tfguide.chapters.mlp import dense_weights, mlp_forward, softmax
from tfguide.exercises import Exercise, Proof, worst


def _relative_error(ours: float, theirs: float) -> float:
    return abs(float(ours) - float(theirs)) / abs(float(theirs))


def _max_abs_err(ours, theirs) -> float:
    """The largest |difference|, or inf when the two do not even have the same shape."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs))) if ours.shape == theirs.shape else float("inf")


def prove_softmax(softmax_fn) -> Proof:
    """softmax vs keras.ops.softmax in float64, small scores and scores in the thousands."""
    rng = np.random.default_rng(0)
    cases = {"3×5 scores near 0": rng.normal(size=(3, 5)),
             "one row of 10": rng.normal(size=(1, 10)),
             "scores up to ±1000": rng.normal(0, 400, size=(4, 10)),
             "[1000, 0, -1000]": np.array([[1000.0, 0.0, -1000.0], [3.0, 2.0, 1.0]])}
    return worst([(name, _max_abs_err(softmax_fn(z), keras.ops.softmax(z, axis=-1)))
                            for name, z in cases.items()], 1e-12)


def _float64_twin(input_shape: tuple, hidden: tuple, seed: int) -> keras.Model:
    """`build_model`'s layers at prediction time (no dropout), in float64, biases non-zero."""
    model = keras.Sequential([keras.Input(shape=input_shape, dtype="float64"),
                              layers.Flatten(dtype="float64")])
    for i, units in enumerate((*hidden, 10)):
        model.add(layers.Dense(
            units, "relu" if i < len(hidden) else "softmax", dtype="float64",
            kernel_initializer=keras.initializers.GlorotUniform(seed + i),
            bias_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed + i)))
    return model


def prove_mlp_forward(mlp_forward_fn) -> Proof:
    """mlp_forward vs a float64 Keras model with the same weights, on several input shapes."""
    errors = []
    for input_shape in ((8, 8, 1), (5, 3, 2)):  # non-square, two channels: the flatten order
        for hidden in ((), (16,), (32, 8)):
            model = _float64_twin(input_shape, hidden, seed=len(hidden))
            x = np.random.default_rng(1).uniform(size=(6, *input_shape))  # (6, h, w, c)
            for scale in (1.0, 1000.0):  # ×1000: logits in the hundreds, exp would overflow
                errors.append((f"input {input_shape}, hidden {hidden}, pixels ×{scale:g}",
                               _max_abs_err(mlp_forward_fn(dense_weights(model), scale * x),
                                            model(scale * x))))
    return worst(errors, 1e-12)


def prove_sparse_cross_entropy(cross_entropy_fn) -> Proof:
    """sparse_cross_entropy vs keras.losses.SparseCategoricalCrossentropy, relative error."""
    errors = []
    for n, k in ((1, 2), (20, 10), (64, 3)):
        rng = np.random.default_rng(n)
        labels, probs = rng.integers(0, k, n), softmax(rng.normal(0, 2, (n, k)))
        theirs = keras.losses.SparseCategoricalCrossentropy(dtype="float64")(labels, probs)
        errors.append((f"n = {n}, {k} classes",
                       _relative_error(cross_entropy_fn(labels, probs), theirs)))
    return worst(errors, 1e-12)


def _twins(hidden: tuple, seed: int) -> tuple[keras.Model, keras.Model]:
    """Two float32 MLPs with the same starting weights (non-zero biases): one for fit, one for you."""
    twins = []
    for _ in range(2):
        model = keras.Sequential([keras.Input(shape=(3, 2, 1)), layers.Flatten()])
        for i, units in enumerate((*hidden, 4)):
            model.add(layers.Dense(
                units, "relu" if i < len(hidden) else "softmax",
                kernel_initializer=keras.initializers.GlorotUniform(seed + i),
                bias_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed + i)))
        twins.append(model)
    return twins[0], twins[1]


_OPTIMIZERS = {"SGD 0.5": lambda: keras.optimizers.SGD(0.5),
               "Adam 0.01": lambda: keras.optimizers.Adam(0.01)}


def _one_step(step_fn, hidden: tuple, optimizer: str, seed: int = 0):
    """One step of `step_fn` and one of `fit` on the same batch: (your weights, fit's weights)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(8, 3, 2, 1)).astype(np.float32)  # (8, 3, 2, 1): one batch of 8
    y = rng.integers(0, 4, 8).astype(np.int32)  # (8,)
    theirs, yours = _twins(hidden, seed)
    theirs.compile(optimizer=_OPTIMIZERS[optimizer](), loss="sparse_categorical_crossentropy")
    theirs.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    step_fn(yours, _OPTIMIZERS[optimizer](), keras.losses.SparseCategoricalCrossentropy(),
            tf.constant(x), tf.constant(y))
    return ([np.asarray(w, np.float64) for w in yours.get_weights()],
            [np.asarray(w, np.float64) for w in theirs.get_weights()])


def prove_train_step(train_step_fn) -> Proof:
    """One train_step vs one step of Keras's own fit: the same weights after it, float32."""
    errors = []
    for hidden in ((), (5,)):
        for optimizer in _OPTIMIZERS:
            yours, theirs = _one_step(train_step_fn, hidden, optimizer)
            errors.append((f"hidden {hidden}, {optimizer}",
                           max(_max_abs_err(a, b) for a, b in zip(yours, theirs))))
    return worst(errors, 1e-6)


def _step_without_update(model, optimizer, loss_fn, x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    tape.gradient(loss, model.trainable_variables)
    return loss


def _step_uphill(model, optimizer, loss_fn, x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip([-g for g in grads], model.trainable_variables))
    return loss


def _step_summed_loss(model, optimizer, loss_fn, x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True)) * len(y)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss


def _probe_step(fn):
    """Your weights after one SGD step on the probe batch, flattened."""
    return np.concatenate([w.ravel() for w in _one_step(fn, (5,), "SGD 0.5", seed=3)[0]])


def _softmax_unshifted(z):
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the mistake shown
        return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def _softmax_over_batch(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _forward_logits(weights, x):
    *hidden, (W_out, b_out) = weights
    h = np.reshape(x, (len(x), -1))
    for W, b in hidden:
        h = np.maximum(h @ W + b, 0.0)
    return h @ W_out + b_out


def _forward_relu_on_output(weights, x):
    return softmax(np.maximum(_forward_logits(weights, x), 0.0))


def _forward_columns_first(weights, x):
    return mlp_forward(weights, np.swapaxes(x, 1, 2))  # reads each image column by column


def _cross_entropy_all_pairs(labels, probs):
    return float(-np.mean(np.log(probs[:, labels])))


def _cross_entropy_summed(labels, probs):
    return float(-np.sum(np.log(probs[np.arange(len(labels)), labels])))


_PROBE_Z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0], [0.5, 0.5, -2.0]])  # (3, 3)
_PROBE_X = np.random.default_rng(7).uniform(size=(2, 3, 2, 1))  # (2, 3, 2, 1): not square
_PROBE_WEIGHTS = [(np.random.default_rng(8).normal(size=(6, 4)), np.full(4, 0.1)),
                  (np.random.default_rng(9).normal(size=(4, 3)), np.array([0.2, -0.3, 0.1]))]
_PROBE_P = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])  # (3, 3) rows
EXERCISES = (
    Exercise(
        "softmax", prove_softmax, "subtract each row's largest score, exponentiate, divide "
        "by the row's sum (axis=-1, keepdims=True)",
        probe=lambda f: np.nan_to_num(np.asarray(f(_PROBE_Z), np.float64), nan=-1.0,
                                      posinf=-2.0, neginf=-3.0),
        mistakes={"subtract each row's largest score before np.exp: exp(1000) overflows to "
                  "inf, and inf / inf is nan": _softmax_unshifted,
                  "normalise each row (axis=-1), not each column: every example gets its own "
                  "distribution over the classes": _softmax_over_batch}),
    Exercise(
        "mlp_forward", prove_mlp_forward, "flatten with np.reshape(x, (n, -1)), then "
        "h = max(h @ W + b, 0) for each hidden pair, then softmax(h @ W_out + b_out)",
        probe=lambda f: f(_PROBE_WEIGHTS, _PROBE_X),
        mistakes={"end with softmax: the model gives probabilities, not the logits "
                  "h @ W_out + b_out": _forward_logits,
                  "no ReLU on the output layer: its scores go straight into the softmax":
                      _forward_relu_on_output,
                  "flatten each image row by row, channel last, as layers.Flatten does: "
                  "np.reshape(x, (n, -1)) with no transpose": _forward_columns_first}),
    Exercise(
        "sparse_cross_entropy", prove_sparse_cross_entropy, "take each row's probability of "
        "its true class, probs[np.arange(n), labels], then −mean of the logs",
        probe=lambda f: f(np.array([0, 2, 1]), _PROBE_P),
        mistakes={"one probability per example: probs[np.arange(n), labels]; probs[:, labels] "
                  "is an (n, n) table of every row's probability of every label":
                      _cross_entropy_all_pairs,
                  "average over the examples (np.mean), do not sum: Keras's loss is the "
                  "mean over the batch": _cross_entropy_summed}),
    Exercise(
        "train_step", prove_train_step, "under tf.GradientTape: probs = model(x, training=True), "
        "loss = loss_fn(y, probs); then tape.gradient(loss, model.trainable_variables) and "
        "optimizer.apply_gradients(zip(grads, model.trainable_variables))",
        probe=_probe_step,
        mistakes={"call optimizer.apply_gradients(zip(grads, model.trainable_variables)): "
                  "without it the weights never move": _step_without_update,
                  "pass the gradients as they are: the optimizer itself steps against them "
                  "(negating them walks uphill)": _step_uphill,
                  "use the batch's mean loss, loss_fn(y, probs), as fit does: a sum makes "
                  "every SGD step batch-size times larger": _step_summed_loss}),
)
