"""Feed-forward networks: a multilayer perceptron on real handwritten digits.

Flattens each image into a vector, passes it through fully connected ReLU layers
and a softmax, and trains with `fit` on real data (MNIST, Fashion-MNIST, or the
shipped 8x8 digits). The forward pass is also written out by hand and must give
Keras's predictions; the same network trained on shuffled labels is the control
that shows what "learning nothing" looks like.

Text: chapters/mlp.md. Ports 001 §3.1, 002 §3.2/§4.1 and 003 §5.1 of the source primers
(chapters/SOURCES.md).
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
from keras import layers

from tfguide import bench, cli, datasets, exercises, plotting
from tfguide.config import Config
from tfguide.results import Experiment

HIDDEN = (256, 128)  # units in each hidden layer


# --- From scratch -------------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/mlp.md; after editing it,
# refresh the text with python -m tfguide.excerpts chapters/mlp.md.
# [start:scratch]
def softmax(z: np.ndarray) -> np.ndarray:
    """Scores to probabilities along the last axis: exp(z_k) / Σ_j exp(z_j).

    Subtracting each row's largest score first changes nothing in exact arithmetic
    (the factor exp(−max) cancels) but keeps exp from overflowing: exp(1000) is inf.
    """
    z = z - z.max(axis=-1, keepdims=True)  # (n, classes), every row's largest is 0
    e = np.exp(z)  # (n, classes), each in (0, 1]
    return e / e.sum(axis=-1, keepdims=True)  # (n, classes), rows sum to 1


def mlp_forward(weights: list, x: np.ndarray) -> np.ndarray:
    """Run the network by hand: flatten, ReLU(h·W + b) per hidden layer, then softmax.

    Args:
        weights: [(W1, b1), (W2, b2), ...], the last pair being the output layer.
        x: images, (n, height, width, channels).
    Returns:
        Class probabilities, (n, classes).
    """
    h = np.reshape(x, (len(x), -1)).astype(np.float64)  # (n, h, w, c) -> (n, h*w*c)
    *hidden, (W_out, b_out) = weights
    for W, b in hidden:
        h = np.maximum(h @ W + b, 0.0)  # (n, d_in) @ (d_in, d_out) -> (n, d_out)
    z = h @ W_out + b_out  # (n, classes): the logits
    return softmax(z)  # (n, classes): probabilities


def sparse_cross_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    """−mean log p(true class): cross-entropy read straight from integer labels.

    Args:
        labels: the true classes, (n,) integers.
        probs: class probabilities, (n, classes), e.g. from `mlp_forward`.
    """
    p_true = probs[np.arange(len(labels)), labels]  # (n,): row i, column labels[i]
    return float(-np.mean(np.log(p_true)))
# [end:scratch]


def dense_weights(model: keras.Model) -> list:
    """The (kernel, bias) pairs of a model's Dense layers, in order, as float64."""
    return [tuple(np.asarray(w, np.float64) for w in layer.get_weights())
            for layer in model.layers if isinstance(layer, layers.Dense)]


# --- The Keras way ----------------------------------------------------------------------
# [start:keras]
def build_model(input_shape: tuple, num_classes: int, hidden: tuple = HIDDEN,
                dropout: float = 0.2) -> keras.Model:
    """Flatten → Dense + ReLU (+ dropout) per hidden layer → Dense + softmax."""
    model = keras.Sequential(name="mlp")
    model.add(keras.Input(shape=input_shape))  # taken from the data: (28, 28, 1), (8, 8, 1), …
    model.add(layers.Flatten())  # (h, w, c) -> (h*w*c,)
    for units in hidden:
        model.add(layers.Dense(units, activation="relu"))
        model.add(layers.Dropout(dropout))  # active in training only
    # Under --precision mixed the layers compute in float16; the softmax stays float32.
    model.add(layers.Dense(num_classes, activation="softmax", dtype="float32"))
    return model


def compile_model(input_shape: tuple, num_classes: int, learning_rate: float) -> keras.Model:
    """Build the MLP and compile it: Adam, and the cross-entropy of integer labels."""
    model = build_model(input_shape, num_classes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
# [end:keras]


# [start:fit]
def fit_model(model: keras.Model, train_ds, val_ds, epochs: int, callbacks=()) -> dict:
    """Train with `fit`; return the loss and accuracy per epoch, training and validation."""
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, callbacks=callbacks)
    return history.history  # {"loss": [...], "accuracy": [...], "val_loss": [...], ...}


def evaluate_model(model: keras.Model, x_test, y_test):
    """Return the test loss and accuracy by name, and every test image's class probabilities."""
    test = model.evaluate(x_test, y_test, verbose=0, return_dict=True)  # {"loss", "accuracy"}
    probs = model.predict(x_test, verbose=0)  # (n, classes)
    return test, probs
# [end:fit]


# --- What others borrow: bench -------------------------------------------------------
def bench_workload(quick: bool, seed: int) -> bench.Workload:
    """The MLP on random MNIST-shaped images, for `python -m tfguide bench`."""
    return bench.image_workload("mlp", lambda shape, lr: compile_model(shape, 10, lr),
                                quick, seed)


# --- What others borrow: exercises (python -m tfguide exercise mlp, check mlp) ---------
def _relative_error(ours: float, theirs: float) -> float:
    return abs(float(ours) - float(theirs)) / abs(float(theirs))


def _max_abs_err(ours, theirs) -> float:
    """The largest |difference|, or inf when the two do not even have the same shape."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs))) if ours.shape == theirs.shape else float("inf")


def prove_softmax(softmax_fn) -> exercises.Proof:
    """softmax vs keras.ops.softmax in float64, small scores and scores in the thousands."""
    rng = np.random.default_rng(0)
    cases = {"3×5 scores near 0": rng.normal(size=(3, 5)),
             "one row of 10": rng.normal(size=(1, 10)),
             "scores up to ±1000": rng.normal(0, 400, size=(4, 10)),
             "[1000, 0, -1000]": np.array([[1000.0, 0.0, -1000.0], [3.0, 2.0, 1.0]])}
    return exercises.worst([(name, _max_abs_err(softmax_fn(z), keras.ops.softmax(z, axis=-1)))
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


def prove_mlp_forward(mlp_forward_fn) -> exercises.Proof:
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
    return exercises.worst(errors, 1e-12)


def prove_sparse_cross_entropy(cross_entropy_fn) -> exercises.Proof:
    """sparse_cross_entropy vs keras.losses.SparseCategoricalCrossentropy, relative error."""
    errors = []
    for n, k in ((1, 2), (20, 10), (64, 3)):
        rng = np.random.default_rng(n)
        labels, probs = rng.integers(0, k, n), softmax(rng.normal(0, 2, (n, k)))
        theirs = keras.losses.SparseCategoricalCrossentropy(dtype="float64")(labels, probs)
        errors.append((f"n = {n}, {k} classes",
                       _relative_error(cross_entropy_fn(labels, probs), theirs)))
    return exercises.worst(errors, 1e-12)


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
    exercises.Exercise(
        "softmax", prove_softmax, "subtract each row's largest score, exponentiate, divide "
        "by the row's sum (axis=-1, keepdims=True)",
        probe=lambda f: np.nan_to_num(np.asarray(f(_PROBE_Z), np.float64), nan=-1.0,
                                      posinf=-2.0, neginf=-3.0),
        mistakes={"subtract each row's largest score before np.exp: exp(1000) overflows to "
                  "inf, and inf / inf is nan": _softmax_unshifted,
                  "normalise each row (axis=-1), not each column: every example gets its own "
                  "distribution over the classes": _softmax_over_batch}),
    exercises.Exercise(
        "mlp_forward", prove_mlp_forward, "flatten with np.reshape(x, (n, -1)), then "
        "h = max(h @ W + b, 0) for each hidden pair, then softmax(h @ W_out + b_out)",
        probe=lambda f: f(_PROBE_WEIGHTS, _PROBE_X),
        mistakes={"end with softmax: the model gives probabilities, not the logits "
                  "h @ W_out + b_out": _forward_logits,
                  "no ReLU on the output layer: its scores go straight into the softmax":
                      _forward_relu_on_output,
                  "flatten each image row by row, channel last, as layers.Flatten does: "
                  "np.reshape(x, (n, -1)) with no transpose": _forward_columns_first}),
    exercises.Exercise(
        "sparse_cross_entropy", prove_sparse_cross_entropy, "take each row's probability of "
        "its true class, probs[np.arange(n), labels], then −mean of the logs",
        probe=lambda f: f(np.array([0, 2, 1]), _PROBE_P),
        mistakes={"one probability per example: probs[np.arange(n), labels]; probs[:, labels] "
                  "is an (n, n) table of every row's probability of every label":
                      _cross_entropy_all_pairs,
                  "average over the examples (np.mean), do not sum: Keras's loss is the "
                  "mean over the batch": _cross_entropy_summed}),
)


# --- Run ------------------------------------------------------------------------------
class Splits(NamedTuple):
    data: datasets.LoadedData  # the loaded set: test arrays, shape, class names, source
    x_train: np.ndarray  # the 90 % the network trains on, (n, h, w, c)
    y_train: np.ndarray  # (n,)
    val_ds: object  # the held-out 10 %, a tf.data.Dataset of (x, y) batches


def prepare_data(cfg: Config, ex: Experiment) -> Splits:
    """Load the images and hold out 10 % of the training set for validation."""
    data = ex.load_data()
    train_idx, val_idx = datasets.split_validation(len(data.x_train), 0.1, cfg.seed)
    ex.data_info.update(fit=len(train_idx), validation=len(val_idx))  # the 90 % and the 10 %
    val_ds = datasets.pipeline(data.x_train[val_idx], data.y_train[val_idx], cfg.batch_size)
    return Splits(data, data.x_train[train_idx], data.y_train[train_idx], val_ds)


def train(cfg: Config, ex: Experiment, splits: Splits, labels: np.ndarray, tag: str = ""):
    """Build a fresh MLP and fit it to `labels` (the real ones, or the control's)."""
    model = ex.runtime.build(compile_model, splits.data.input_shape, splits.data.num_classes,
                             cfg.learning_rate)
    batches = datasets.pipeline(splits.x_train, labels, cfg.batch_size, shuffle=True,
                                seed=cfg.seed)
    return model, fit_model(model, batches, splits.val_ds, cfg.epochs, ex.callbacks(tag))


def evaluate(ex: Experiment, splits: Splits, model: keras.Model, history: dict,
             control: keras.Model, control_history: dict) -> np.ndarray:
    """Test both models, check the forward pass by hand; return the predicted classes."""
    x_test, y_test = splits.data.x_test, splits.data.y_test
    test, probs = evaluate_model(model, x_test, y_test)
    control_test, _ = evaluate_model(control, x_test, y_test)
    ours = mlp_forward(dense_weights(model), x_test)  # the same network, by hand
    y_pred = probs.argmax(axis=1)  # (n,): the most probable class of each test image
    ex.log(
        test_accuracy=test["accuracy"],
        test_errors=int(np.sum(y_pred != y_test)),
        test_loss=test["loss"],
        val_accuracy=history["val_accuracy"][-1],
        train_accuracy=history["accuracy"][-1],
        shuffled_label_accuracy=control_test["accuracy"],
        shuffled_label_train_accuracy=control_history["accuracy"][-1],
        chance_accuracy=np.max(np.bincount(y_test)) / len(y_test),
        forward_max_abs_err=np.max(np.abs(ours - probs)),
        scratch_test_loss=sparse_cross_entropy(y_test, ours),
        parameters=model.count_params(),
    )
    return y_pred


def draw(ex: Experiment, splits: Splits, history: dict, control_history: dict,
         y_pred: np.ndarray) -> None:
    """Training curves, real vs shuffled labels, the confusion matrix, the mistakes."""
    data, epochs = splits.data, len(history["loss"])
    ex.save_figure(plotting.history_curves(history, f"MLP on {data.name}"), "training_curves")
    ex.save_figure(plotting.line_plot(
        {"real labels, train": history["accuracy"],
         "real labels, validation": history["val_accuracy"],
         "shuffled labels, train": control_history["accuracy"],
         "shuffled labels, validation": control_history["val_accuracy"]},
        xlabel="epoch", ylabel="accuracy", x=np.arange(1, epochs + 1),
        title="Real labels vs the shuffled-label control"), "control")
    ex.save_figure(plotting.confusion_matrix(
        data.y_test, y_pred, data.classes,
        title=f"Test set, {ex.metrics['test_accuracy']:.1%} correct"), "confusion_matrix")
    mistakes = plotting.misclassified(data.x_test, data.y_test, y_pred, data.classes)
    if mistakes is not None:
        ex.save_figure(mistakes, "misclassified")


def run(cfg: Config) -> dict:
    """Train the MLP on real labels and, as the control, on shuffled ones."""
    with Experiment(cfg) as ex:
        splits = prepare_data(cfg, ex)
        data = splits.data
        print(f"MLP {data.input_shape} -> {' -> '.join(map(str, HIDDEN))} -> "
              f"{data.num_classes} on {data.name}: {len(splits.x_train)} training images")
        model, history = train(cfg, ex, splits, splits.y_train)
        ex.save_model(model)

        # The control: the same model and recipe, but every label shuffled among the
        # training images, so nothing links an image to its label.
        print("Control: the same model trained on shuffled labels")
        shuffled = np.random.default_rng(cfg.seed + 1).permutation(splits.y_train)
        control, control_history = train(cfg, ex, splits, shuffled, tag="shuffled")

        y_pred = evaluate(ex, splits, model, history, control, control_history)
        draw(ex, splits, history, control_history, y_pred)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
