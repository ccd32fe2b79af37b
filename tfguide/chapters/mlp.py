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

from tfguide import cli, datasets, plotting
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
