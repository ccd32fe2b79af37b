"""Feed-forward networks: a multilayer perceptron on real handwritten digits.

Flattens each image into a vector, passes it through fully connected ReLU layers
and a softmax, and trains with `fit` on real data (MNIST, Fashion-MNIST, or the
shipped 8x8 digits). The forward pass is also written out by hand and must give
Keras's predictions; the same network trained on shuffled labels is the control
that shows what "learning nothing" looks like.

Text: chapters/mlp.md. Ports 001 §3.1, 002 §3.2/§4.1 and 003 §5.1 (see SEEDS.md).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment

HIDDEN = (256, 128)  # units in each hidden layer


# --- From scratch -------------------------------------------------------------------
# [start:scratch]
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
    z = z - z.max(axis=1, keepdims=True)  # the stable softmax of the backprop chapter
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def sparse_cross_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    """−mean log p(true class): cross-entropy read straight from integer labels."""
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))
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


def compile_model(model: keras.Model, learning_rate: float, jit: bool) -> keras.Model:
    """Adam and the sparse cross-entropy, which takes integer labels as they are."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit)
    return model
# [end:keras]


# --- Run ------------------------------------------------------------------------------
def split(x, y, fraction: float, seed: int):
    """Hold out a random `fraction` of (x, y) for validation."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(fraction * len(x)))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def run(cfg: Config) -> dict:
    """Train the MLP on real labels and, as the control, on shuffled ones."""
    with Experiment(cfg) as ex:
        data = ex.load_data()
        x_train, y_train, x_val, y_val = split(data.x_train, data.y_train, 0.1, cfg.seed)
        x_test, y_test = data.x_test, data.y_test
        val = datasets.pipeline(x_val, y_val, cfg.batch_size)

        def train(labels, tag: str = ""):
            with ex.strategy.scope():
                model = compile_model(build_model(data.input_shape, data.num_classes),
                                      cfg.learning_rate, ex.runtime.jit)
            batches = datasets.pipeline(x_train, labels, cfg.batch_size, shuffle=True,
                                        seed=cfg.seed)
            history = ex.fit(model, batches, cfg.epochs, validation_data=val, tag=tag)
            return model, history.history

        print(f"MLP {data.input_shape} -> {' -> '.join(map(str, HIDDEN))} -> "
              f"{data.num_classes} on {data.name}: {len(x_train)} training images")
        model, history = train(y_train)
        test = ex.evaluate(model, (x_test, y_test))  # {"loss": ..., "accuracy": ...}
        probs = ex.predict(model, x_test)  # (n, classes)
        y_pred = probs.argmax(axis=1)
        ours = mlp_forward(dense_weights(model), x_test)  # the same network, by hand
        ex.save_model(model)

        # The control: the same model and recipe, but every label shuffled among the
        # training images, so nothing links an image to its label.
        print("Control: the same model trained on shuffled labels")
        shuffled = np.random.default_rng(cfg.seed + 1).permutation(y_train)
        control, control_history = train(shuffled, tag="shuffled")
        control_accuracy = ex.evaluate(control, (x_test, y_test))["accuracy"]

        ex.log(
            test_accuracy=test["accuracy"],
            test_loss=test["loss"],
            val_accuracy=history["val_accuracy"][-1],
            train_accuracy=history["accuracy"][-1],
            shuffled_label_accuracy=control_accuracy,
            shuffled_label_train_accuracy=control_history["accuracy"][-1],
            chance_accuracy=np.max(np.bincount(y_test)) / len(y_test),
            forward_max_abs_err=np.max(np.abs(ours - probs)),
            scratch_test_loss=sparse_cross_entropy(y_test, ours),
            parameters=model.count_params(),
        )

        # Figures.
        ex.save_figure(plotting.history_curves(history, f"MLP on {data.name}"),
                       "training_curves")
        ex.save_figure(plotting.line_plot(
            {"real labels, train": history["accuracy"],
             "real labels, validation": history["val_accuracy"],
             "shuffled labels, train": control_history["accuracy"],
             "shuffled labels, validation": control_history["val_accuracy"]},
            xlabel="epoch", ylabel="accuracy", x=np.arange(1, cfg.epochs + 1),
            title="Real labels vs the shuffled-label control"), "control")
        ex.save_figure(plotting.confusion_matrix(
            y_test, y_pred, data.classes,
            title=f"Test set, {test['accuracy']:.1%} correct"), "confusion_matrix")
        wrong = np.flatnonzero(y_pred != y_test)[:24]
        if len(wrong):
            ex.save_figure(plotting.image_grid(
                x_test[wrong], [f"{data.classes[y_pred[i]]} (true {data.classes[y_test[i]]})"
                                for i in wrong], ncols=8,
                title="Misclassified test images: predicted (true)"), "misclassified")
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
