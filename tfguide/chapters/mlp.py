"""Feed-forward networks: a multilayer perceptron on real handwritten digits.

Flattens each image into a vector, passes it through fully connected ReLU layers
and a softmax, feeds it through a plain `tf.data` input pipeline and trains with
`fit` on real data (MNIST, Fashion-MNIST, or the shipped 8x8 digits). The forward
pass is also written out by hand and must give Keras's predictions; `fit` itself
is written out as a `tf.GradientTape` training loop and must give its history and
weights; the same network trained on shuffled labels is the control that shows
what "learning nothing" looks like.

Text: chapters/mlp.md. Ports 001 §3.1, 002 §3.2/§4.1 and 003 §5.1 of the source primers
(chapters/SOURCES.md).
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment

HIDDEN = (256, 128)  # units in each hidden layer (the --hidden flag)


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


# [start:worked]
def worked_example() -> dict:
    """The forward pass on numbers small enough to follow by hand: 2 pixels, 2 hidden, 3 classes."""
    raw = np.array([8.0, 16.0]).reshape(1, 2, 1, 1)  # one image of 2 pixels, values 0 … 16
    x = raw / 16.0  # input scaling: pixels divided by their maximum, [[0.5, 1.0]]
    W1, b1 = np.array([[1.0, -1.0], [1.0, 2.0]]), np.array([0.0, -2.0])  # 2 -> 2 hidden
    W2, b2 = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]]), np.zeros(3)  # 2 -> 3 classes
    hidden = np.maximum(x.reshape(1, 2) @ W1 + b1, 0.0)  # (1, 2): ReLU(xW1 + b1)
    logits = hidden @ W2 + b2  # (1, 3)
    probs = mlp_forward([(W1, b1), (W2, b2)], x)  # (1, 3): softmax(logits)
    loss = sparse_cross_entropy(np.array([0]), probs)  # if the true class is the first
    return {"a": hidden[0], "z": logits[0], "p": probs[0], "loss": loss}
# [end:worked]


def dense_weights(model: keras.Model) -> list:
    """The (kernel, bias) pairs of a model's Dense layers, in order, as float64."""
    return [tuple(np.asarray(w, np.float64) for w in layer.get_weights())
            for layer in model.layers if isinstance(layer, layers.Dense)]


# --- The Keras way ----------------------------------------------------------------------
# [start:pipeline]
def make_batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = False,
                 seed: int = 0) -> tf.data.Dataset:
    """The input pipeline: (image, label) pairs, shuffled each epoch, in batches, prefetched."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))  # one element per image: ((h, w, c), ())
    if shuffle:  # a new order every epoch, the same orders for the same seed
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)  # ((batch, h, w, c), (batch,)); the last batch may be smaller
    return ds.prefetch(tf.data.AUTOTUNE)  # prepare the next batch while this one trains
# [end:pipeline]


# [start:keras]
def build_model(input_shape: tuple, num_classes: int, hidden: tuple = HIDDEN) -> keras.Model:
    """Flatten → Dense + ReLU per hidden layer → Dense + softmax."""
    model = keras.Sequential(name="mlp")
    model.add(keras.Input(shape=input_shape))  # taken from the data: (28, 28, 1), (8, 8, 1), …
    model.add(layers.Flatten())  # (h, w, c) -> (h*w*c,)
    for units in hidden:
        model.add(layers.Dense(units, activation="relu"))  # (d_in,) -> (units,)
    # Under --precision mixed the layers compute in float16; the softmax stays float32.
    model.add(layers.Dense(num_classes, activation="softmax", dtype="float32"))
    return model


def compile_model(input_shape: tuple, num_classes: int, learning_rate: float,
                  hidden: tuple = HIDDEN) -> keras.Model:
    """Build the MLP and compile it: Adam, and the cross-entropy of integer labels."""
    model = build_model(input_shape, num_classes, hidden)
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


# [start:loop]
def train_step(model: keras.Model, optimizer, loss_fn, x, y):
    """One step of `fit`: the batch's loss under a tape, its gradients, one optimizer update."""
    with tf.GradientTape() as tape:  # records the forward pass
        probs = model(x, training=True)  # (batch, classes)
        loss = loss_fn(y, probs)  # (): the batch's mean cross-entropy
    grads = tape.gradient(loss, model.trainable_variables)  # one per W and b
    optimizer.apply_gradients(zip(grads, model.trainable_variables))  # θ ← update(θ, grad)
    return loss, probs


def train_loop(model: keras.Model, optimizer, loss_fn, train_ds, epochs: int) -> dict:
    """What `fit` does: a step per batch; per epoch, the mean loss and accuracy of its batches."""
    step = tf.function(train_step)  # traced into a graph once, as `fit` does with its own step
    history = {"loss": [], "accuracy": []}
    for _ in range(epochs):
        loss_sum = correct = seen = 0.0
        for x, y in train_ds:  # one pass over the training set
            loss, probs = step(model, optimizer, loss_fn, x, y)
            loss_sum += float(loss) * len(y)  # weighted by the batch's size, as fit does
            hits = tf.argmax(probs, axis=-1, output_type=y.dtype) == y  # (batch,): right or not
            correct += float(tf.reduce_sum(tf.cast(hits, tf.float32)))
            seen += len(y)
        history["loss"].append(loss_sum / seen)
        history["accuracy"].append(correct / seen)
    return history
# [end:loop]


# --- Run ------------------------------------------------------------------------------
class Splits(NamedTuple):
    data: datasets.LoadedData  # the loaded set: test arrays, shape, class names, source
    x_train: np.ndarray  # the 90 % the network trains on, (n, h, w, c)
    y_train: np.ndarray  # (n,)
    val_ds: tf.data.Dataset  # the held-out 10 %, in batches of (x, y)


def prepare_data(cfg: Config, ex: Experiment) -> Splits:
    """Load the images (scaled to [0, 1]) and hold out 10 % of the training set for validation."""
    data = ex.load_data()
    train_idx, val_idx = datasets.split_validation(len(data.x_train), 0.1, cfg.seed)
    ex.data_info.update(fit=len(train_idx), validation=len(val_idx))  # the 90 % and the 10 %
    ex.details["raw_pixel_max"] = datasets.SOURCES[data.name].max_value
    val_ds = make_batches(data.x_train[val_idx], data.y_train[val_idx], cfg.batch_size)
    return Splits(data, data.x_train[train_idx], data.y_train[train_idx], val_ds)


def train(cfg: Config, ex: Experiment, splits: Splits, labels: np.ndarray, tag: str = ""):
    """Build a fresh MLP and fit it to `labels` (the real ones, or the control's)."""
    model = ex.runtime.build(compile_model, splits.data.input_shape, splits.data.num_classes,
                             cfg.learning_rate, cfg.options["hidden"])
    batches = make_batches(splits.x_train, labels, cfg.batch_size, shuffle=True, seed=cfg.seed)
    return model, fit_model(model, batches, splits.val_ds, cfg.epochs, ex.callbacks(tag))


def loop_vs_fit(cfg: Config, splits: Splits, epochs: int = 3) -> tuple[float, float]:
    """Train twin models (same start, same batches, same optimizer) with `fit` and `train_loop`.

    Returns the largest difference in the per-epoch loss and accuracy, and in any
    weight. Both read the batches in one fixed order: a shuffled pipeline draws a new
    order whenever a pass over it starts, and `fit` starts one more pass per epoch
    than it reads, so the two would see different orders from the second epoch on.
    """
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # fit would scale the loss under mixed
    try:
        twins, ds = [], make_batches(splits.x_train, splits.y_train, cfg.batch_size)
        for _ in range(2):
            keras.utils.set_random_seed(cfg.seed)  # the same starting weights for both
            twins.append(compile_model(splits.data.input_shape, splits.data.num_classes,
                                       cfg.learning_rate, cfg.options["hidden"]))
        fitted = twins[0].fit(ds, epochs=epochs, verbose=0).history
        looped = train_loop(twins[1], keras.optimizers.Adam(cfg.learning_rate),
                            keras.losses.SparseCategoricalCrossentropy(), ds, epochs)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    history_err = max(np.max(np.abs(np.subtract(fitted[k], looped[k]))) for k in looped)
    weight_err = max(np.max(np.abs(a - b)) for a, b in
                     zip(twins[0].get_weights(), twins[1].get_weights()))
    return float(history_err), float(weight_err)


def evaluate(cfg: Config, ex: Experiment, splits: Splits, model: keras.Model, history: dict,
             control: keras.Model, control_history: dict) -> np.ndarray:
    """Test both models, check the forward pass and the loop by hand; return predicted classes."""
    x_test, y_test = splits.data.x_test, splits.data.y_test
    test, probs = evaluate_model(model, x_test, y_test)
    control_test, _ = evaluate_model(control, x_test, y_test)
    ours = mlp_forward(dense_weights(model), x_test)  # the same network, by hand
    y_pred = probs.argmax(axis=1)  # (n,): the most probable class of each test image
    history_err, weight_err = loop_vs_fit(cfg, splits)
    ex.details["worked"] = {f"{k}{i + 1}" if np.ndim(v) else k: round(float(x), 4)  # a1, z3, …
                            for k, v in worked_example().items() for i, x in
                            enumerate(np.atleast_1d(v))}
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
        loop_vs_fit_max_err=max(history_err, weight_err),
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


# --- Concept diagram (saved as chapters/figures/mlp/concept_network.png) ----------------
def network_concept(input_shape: tuple = (8, 8, 1), hidden: tuple = HIDDEN,
                    num_classes: int = 10, shown: int = 6) -> Figure:
    """The network as layers of units, sizes and weight shapes read from `build_model`'s model."""
    model = build_model(input_shape, num_classes, hidden)
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    sizes = [int(np.prod(input_shape))] + [layer.units for layer in dense]
    names = [f"x: {sizes[0]} pixels\n({'×'.join(map(str, input_shape))}, in [0, 1])"] + \
        [f"{n} units\nReLU" for n in sizes[1:-1]] + [f"{sizes[-1]} classes\nsoftmax"]
    fig = Figure(figsize=(2.6 * len(sizes), 4.2), layout="constrained")
    ax = fig.add_subplot()
    half = np.linspace(1, 0.35, shown // 2)  # a layer too big to draw: its top and bottom units
    ys = [np.concatenate([half, -half[::-1]]) if n > shown else np.linspace(1, -1, n) * n / shown
          for n in sizes]
    for i in range(len(sizes) - 1):  # every unit feeds every unit of the next layer
        for a in ys[i]:
            for b in ys[i + 1]:
                ax.plot([i, i + 1], [a, b], color="C0", lw=0.4, alpha=0.35)
        W = dense[i].kernel.shape
        ax.text(i + 0.5, 1.25, f"$xW_{i + 1} + b_{i + 1}$\nW: {W[0]}×{W[1]}", ha="center",
                fontsize=9)
    for i, (n, y) in enumerate(zip(sizes, ys)):
        ax.scatter(np.full(len(y), i), y, s=180, zorder=3, color="white", edgecolors="C3")
        if n > shown:  # more units than drawn
            ax.text(i, 0, "⋮", ha="center", va="center", fontsize=18, zorder=4)
        ax.text(i, -1.45, names[i], ha="center", va="top", fontsize=9)
    ax.set(xlim=(-0.6, len(sizes) - 0.4), ylim=(-2.0, 1.6))
    ax.set_axis_off()
    fig.suptitle(f"A multilayer perceptron: {' → '.join(map(str, sizes))}, "
                 f"{model.count_params():,} weights and biases")
    return fig


def concept_figures() -> dict[str, Figure]:
    """The chapter's diagram of its idea, drawn from `build_model`'s own layer sizes."""
    return {"concept_network": network_concept()}


def run(cfg: Config) -> dict:
    """Train the MLP on real labels and, as the control, on shuffled ones."""
    with Experiment(cfg) as ex:
        splits = prepare_data(cfg, ex)
        data = splits.data
        print(f"MLP {data.input_shape} -> {' -> '.join(map(str, cfg.options['hidden']))} -> "
              f"{data.num_classes} on {data.name}: {len(splits.x_train)} training images")
        model, history = train(cfg, ex, splits, splits.y_train)
        ex.save_model(model)

        # The control: the same model and recipe, but every label shuffled among the
        # training images, so nothing links an image to its label.
        print("Control: the same model trained on shuffled labels")
        shuffled = np.random.default_rng(cfg.seed + 1).permutation(splits.y_train)
        control, control_history = train(cfg, ex, splits, shuffled, tag="shuffled")

        y_pred = evaluate(cfg, ex, splits, model, history, control, control_history)
        draw(ex, splits, history, control_history, y_pred)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
