"""Convolutional networks: conv2d and pooling from scratch, then a Keras CNN.

Writes a 2-D convolution, max-pooling and average pooling as plain loops over
output positions, proves them equal to `tf.nn.conv2d`, `tf.nn.max_pool2d` and
`tf.nn.avg_pool2d` (values and gradients), then trains the classic small Keras CNN
(conv-pool-conv-pool-dropout-dense) on handwritten digits and looks inside it:
its filters, its feature maps and its mistakes.

Text: chapters/cnn.md. Ports 000 §3.3/§4.3, 001 §3.3 and 002 §3.3/§4.2 of the source
documents.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import EpochTimer, Experiment

PADDINGS = ("valid", "same")


# --- From scratch -------------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/cnn.md; after editing it,
# refresh the text with python -m tfguide.excerpts chapters/cnn.md.
# [start:padding]
def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after).

    The output has ceil(size / stride) positions; the padding needed to fit
    them is split in two, and when it is odd the extra row or column goes at
    the end (bottom or right).
    """
    out = -(-size // stride)  # ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def pad(x: tf.Tensor, kh: int, kw: int, stride: int, padding: str, value: float = 0.0):
    """Pad a batch of images `(batch, h, w, c)` as a `kh`×`kw` window with `padding` needs."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}. Received: {padding!r}")
    if padding == "valid":
        return x
    top, bottom = same_padding(x.shape[1], kh, stride)
    left, right = same_padding(x.shape[2], kw, stride)
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=value)
# [end:padding]


# [start:conv2d]
def conv2d(x: tf.Tensor, kernel: tf.Tensor, stride: int = 1, padding: str = "valid"):
    """Slide `kernel` over `x`; each output pixel is a dot product with one patch.

    x: (batch, h, w, c_in), kernel: (kh, kw, c_in, c_out) -> (batch, h_out, w_out, c_out).
    """
    kh, kw, c_in, c_out = kernel.shape
    x = pad(x, kh, kw, stride, padding)  # (batch, h + pad, w + pad, c_in)
    h_out = (x.shape[1] - kh) // stride + 1
    w_out = (x.shape[2] - kw) // stride + 1
    rows = []
    for i in range(h_out):
        row = []
        for j in range(w_out):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]  # (batch, kh, kw, c_in)
            row.append(tf.tensordot(patch, kernel, axes=3))  # (batch, c_out): sum over kh, kw, c_in
        rows.append(tf.stack(row, axis=1))  # (batch, w_out, c_out)
    return tf.stack(rows, axis=1)  # (batch, h_out, w_out, c_out)


def max_pool2d(x: tf.Tensor, size: int = 2, stride: int | None = None, padding: str = "valid"):
    """Keep the largest value of each `size`×`size` window, channel by channel.

    x: (batch, h, w, c) -> (batch, h_out, w_out, c). The stride defaults to the
    size (windows that do not overlap); 'same' pads with -inf, which never wins.
    """
    stride = stride or size
    x = pad(x, size, size, stride, padding, value=-np.inf)  # (batch, h + pad, w + pad, c)
    h_out = (x.shape[1] - size) // stride + 1
    w_out = (x.shape[2] - size) // stride + 1
    rows = []
    for i in range(h_out):
        row = []
        for j in range(w_out):
            window = x[:, i * stride:i * stride + size, j * stride:j * stride + size, :]
            row.append(tf.reduce_max(window, axis=[1, 2]))  # (batch, c)
        rows.append(tf.stack(row, axis=1))  # (batch, w_out, c)
    return tf.stack(rows, axis=1)  # (batch, h_out, w_out, c)
# [end:conv2d]


# [start:avg_pool]
def avg_pool2d(x: tf.Tensor, size: int = 2, stride: int | None = None, padding: str = "valid"):
    """Average each `size`×`size` window, channel by channel, over its real pixels only.

    x: (batch, h, w, c) -> (batch, h_out, w_out, c). Under 'same' padding a border
    window holds fewer real pixels; TensorFlow divides by their number, not by size².
    """
    stride = stride or size
    real = pad(tf.ones_like(x[:1, :, :, :1]), size, size, stride, padding)  # (1, h + pad, w + pad, 1)
    x = pad(x, size, size, stride, padding)  # (batch, h + pad, w + pad, c): zeros add nothing
    h_out = (x.shape[1] - size) // stride + 1
    w_out = (x.shape[2] - size) // stride + 1
    rows = []
    for i in range(h_out):
        row = []
        for j in range(w_out):
            ii, jj = slice(i * stride, i * stride + size), slice(j * stride, j * stride + size)
            total = tf.reduce_sum(x[:, ii, jj, :], axis=[1, 2])  # (batch, c)
            count = tf.reduce_sum(real[:, ii, jj, :], axis=[1, 2])  # (1, 1): real pixels
            row.append(total / count)  # (batch, c)
        rows.append(tf.stack(row, axis=1))  # (batch, w_out, c)
    return tf.stack(rows, axis=1)  # (batch, h_out, w_out, c)
# [end:avg_pool]


# [start:worked]
def worked_example() -> dict[str, list]:
    """A vertical edge, the same edge one pixel to the right, one 2×2 edge detector."""
    edge = np.zeros((1, 4, 5, 1), np.float32)  # (batch, h, w, c): one 4×5 grey image
    edge[0, :, 2:, 0] = 1.0  # dark columns 0-1, bright columns 2-4
    shifted = np.zeros_like(edge)
    shifted[:, :, 1:] = edge[:, :, :-1]  # the same picture moved one column right
    kernel = np.array([[-1.0, 1.0], [-1.0, 1.0]], np.float32).reshape(2, 2, 1, 1)  # right − left
    maps = {name: conv2d(tf.constant(x), tf.constant(kernel))[0, :, :, 0]  # (3, 4), 'valid'
            for name, x in (("edge", edge), ("shifted", shifted))}
    maps["pooled"] = max_pool2d(maps["edge"][None, :, :, None], 2)[0, :, :, 0]  # (1, 2)
    return {name: m.numpy().astype(int).tolist() for name, m in maps.items()}
# [end:worked]


# [start:check]
def max_abs_err(ours, theirs, *inputs, seed: int = 0) -> float:
    """Largest |difference| between two functions' outputs and their gradients.

    Both are differentiated through `tf.GradientTape` with the same random
    upstream gradient, so every input element's gradient is compared.
    """
    inputs = [tf.convert_to_tensor(t) for t in inputs]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        a, b = ours(*inputs), theirs(*inputs)
        upstream = tf.random.stateless_normal(b.shape, seed=(seed, 0), dtype=b.dtype)
        loss_a, loss_b = tf.reduce_sum(a * upstream), tf.reduce_sum(b * upstream)
    errors = [tf.reduce_max(tf.abs(a - b))]
    for ga, gb in zip(tape.gradient(loss_a, inputs), tape.gradient(loss_b, inputs)):
        errors.append(tf.reduce_max(tf.abs(ga - gb)))
    return float(max(errors))


def check_against_tf(x: tf.Tensor, kernel: tf.Tensor) -> tuple[float, float]:
    """Compare conv2d and max_pool2d with tf.nn over strides 1, 2 and both paddings.

    The pooling input is the convolution's output plus a little noise: blank
    image regions give windows of equal values (ties), where the gradient of a
    maximum is ambiguous (tf.nn.max_pool2d sends it to one input, tf.reduce_max
    shares it among all of them).
    """
    features = tf.nn.conv2d(x, kernel, 1, "SAME")  # (batch, h, w, c_out)
    features += 1e-3 * tf.random.stateless_normal(features.shape, seed=(1, 0))
    conv_err = pool_err = 0.0
    for stride in (1, 2):
        for padding in PADDINGS:
            conv_err = max(conv_err, max_abs_err(
                lambda x, k: conv2d(x, k, stride, padding),
                lambda x, k: tf.nn.conv2d(x, k, stride, padding.upper()), x, kernel))
            pool_err = max(pool_err, max_abs_err(
                lambda x: max_pool2d(x, 1 + stride, stride, padding),
                lambda x: tf.nn.max_pool2d(x, 1 + stride, stride, padding.upper()),
                features))
    return conv_err, pool_err
# [end:check]


# --- The Keras way --------------------------------------------------------------------
# [start:keras]
def build_model(input_shape: tuple[int, ...], num_classes: int,
                dropout: float = 0.5) -> keras.Model:
    """The classic small CNN: two conv-pool stages, dropout, a softmax classifier.

    'same' padding keeps each conv's output as large as its input, so the
    model fits any image of at least 4×4: 8×8 digits, 28×28 MNIST, 32×32 CIFAR.
    """
    h, w, _ = input_shape
    if min(h, w) < 4:
        raise ValueError(f"images must be at least 4x4 for two 2x2 poolings. "
                         f"Received: input_shape={input_shape}")
    inputs = keras.Input(shape=input_shape)  # (batch, h, w, c)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)  # (batch, h, w, 32)
    x = layers.MaxPooling2D(2, name="pool1")(x)  # (batch, h/2, w/2, 32)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)  # (batch, h/2, w/2, 64)
    x = layers.MaxPooling2D(2, name="pool2")(x)  # (batch, h/4, w/4, 64)
    x = layers.Flatten(name="flatten")(x)  # (batch, h/4 · w/4 · 64)
    x = layers.Dropout(dropout, name="dropout")(x)  # only while training
    # float32 outputs even under mixed precision: a float16 softmax can round to 0 or 1
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probs")(x)  # (batch, num_classes)
    return keras.Model(inputs, outputs, name="convnet")
# [end:keras]


# [start:compile]
def compile_model(input_shape: tuple[int, ...], num_classes: int, learning_rate: float,
                  dropout: float = 0.5) -> keras.Model:
    """Build the CNN and compile it for integer labels 0 … num_classes − 1."""
    model = build_model(input_shape, num_classes, dropout)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy",  # −log p(true class), integer labels
                  metrics=["accuracy"])
    return model
# [end:compile]


# [start:train]
def fit_model(model: keras.Model, train_ds, val_ds, epochs: int, callbacks=()):
    """Fit the compiled model on `train_ds`, scoring it on `val_ds` after every epoch."""
    return model.fit(train_ds, epochs=epochs, validation_data=val_ds, callbacks=list(callbacks))


def evaluate_model(model: keras.Model, test_ds, x_test: np.ndarray, batch_size: int):
    """Return the test loss and accuracy by name, and the predicted class of each test image."""
    scores = model.evaluate(test_ds, verbose=0, return_dict=True)  # {"loss": …, "accuracy": …}
    probs = model.predict(x_test, batch_size=batch_size, verbose=0)  # (n_test, num_classes)
    return scores, np.argmax(probs, axis=1)  # (n_test,)
# [end:train]


# --- Run ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Batches:
    """The pipelines one run trains, validates and tests on."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    n_train: int  # images in `train`, for the throughput


def prepare_data(cfg: Config, ex: Experiment) -> tuple[datasets.LoadedData, Batches]:
    """Load the images (a subset of a large set under --quick) and hold out 10% for validation."""
    data = ex.load_data()
    if cfg.quick and len(data.x_train) > 10_000:
        data = dataclasses.replace(data, x_train=data.x_train[:10_000],
                                   y_train=data.y_train[:10_000], x_test=data.x_test[:2_000],
                                   y_test=data.y_test[:2_000])
        ex.data_info.update(train=10_000, test=2_000, subset="first 10,000/2,000 (--quick)")
    fit_idx, val_idx = datasets.split_validation(len(data.x_train), 0.1, cfg.seed)
    ex.data_info.update(validation=len(val_idx))  # held out of data.train
    x, y = data.x_train, data.y_train
    return data, Batches(
        train=datasets.pipeline(x[fit_idx], y[fit_idx], cfg.batch_size, shuffle=True,
                                seed=cfg.seed),
        val=datasets.pipeline(x[val_idx], y[val_idx], cfg.batch_size),
        test=datasets.pipeline(data.x_test, data.y_test, cfg.batch_size),
        n_train=len(fit_idx))


def check_from_scratch(cfg: Config, ex: Experiment, data: datasets.LoadedData) -> None:
    """Compare conv2d and max_pool2d with tf.nn on real test images and a conv1-shaped kernel."""
    c_in = data.input_shape[-1]
    kernel = keras.initializers.GlorotUniform(cfg.seed)((3, 3, c_in, 32))  # as Conv2D starts
    crop = tf.constant(data.x_test[:4, :10, :10, :])  # (4, ≤10, ≤10, c): the loops are slow
    conv_err, pool_err = check_against_tf(crop, tf.cast(kernel, tf.float32))
    ex.log(conv_max_abs_err=conv_err, pool_max_abs_err=pool_err)
    ex.details["worked"] = {name: str(rows) for name, rows in worked_example().items()}


def train(cfg: Config, ex: Experiment, data: datasets.LoadedData, batches: Batches):
    """Build the CNN in the run's strategy scope, fit it, save it; return it and its history."""
    model = ex.runtime.build(compile_model, data.input_shape, data.num_classes,
                             cfg.learning_rate, cfg.options["dropout"])
    timer = EpochTimer(batches.n_train)
    history = fit_model(model, batches.train, batches.val, cfg.epochs,
                        callbacks=ex.callbacks() + [timer])
    ex.save_model(model)
    ex.log(train_samples_per_s=timer.samples_per_s())
    return model, history.history


def evaluate(cfg: Config, ex: Experiment, model: keras.Model, data: datasets.LoadedData,
             batches: Batches, history: dict) -> np.ndarray:
    """Log the test scores and the last epoch's; return the predicted class of each test image."""
    test, y_pred = evaluate_model(model, batches.test, data.x_test, cfg.batch_size)
    ex.log(test_accuracy=test["accuracy"], test_loss=test["loss"],
           val_accuracy=history["val_accuracy"][-1], train_accuracy=history["accuracy"][-1],
           params=model.count_params(), test_errors=int(np.sum(y_pred != data.y_test)))
    return y_pred


def feature_maps_figure(image: np.ndarray, maps: dict[str, np.ndarray], title: str,
                        channels: int = 12) -> Figure:
    """Draw one input image and the first `channels` feature maps of each layer, a row each."""
    fig = Figure(figsize=(1.1 * (channels + 1), 1.25 * len(maps) + 0.5), layout="constrained")
    axes = fig.subplots(len(maps), channels + 1, squeeze=False)
    for row, (name, fmap) in zip(axes, maps.items()):  # fmap: (h, w, c)
        row[0].imshow(np.squeeze(image), cmap="gray")
        row[0].set_ylabel(f"{name}\n{'×'.join(map(str, fmap.shape))}", fontsize=8)
        for c, ax in enumerate(row[1:]):
            ax.imshow(fmap[..., c], cmap="viridis")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    return fig


def draw(ex: Experiment, model: keras.Model, data: datasets.LoadedData, history: dict,
         y_pred: np.ndarray) -> None:
    """Save the curves, the learned filters, feature maps, confusion matrix and mistakes."""
    ex.save_figure(plotting.history_curves(history, f"CNN on {data.name}"), "training_curves")
    kernel = model.get_layer("conv1").kernel.numpy()  # (3, 3, c_in, 32)
    filters = np.transpose(kernel, (3, 0, 1, 2))  # (32, 3, 3, c_in)
    ex.save_figure(plotting.image_grid(filters, ncols=8, title="First-layer filters (3×3)"),
                   "filters")
    probe = keras.Model(model.input, [model.get_layer(n).output for n in ("conv1", "conv2")])
    maps = [np.asarray(m[0], np.float32) for m in probe(data.x_test[:1], training=False)]
    ex.save_figure(feature_maps_figure(
        data.x_test[0], dict(zip(("conv1", "conv2"), maps)),
        f"Feature maps of a test image (label {data.classes[data.y_test[0]]})"), "feature_maps")
    accuracy = np.mean(y_pred == data.y_test)
    ex.save_figure(plotting.confusion_matrix(data.y_test, y_pred, data.classes,
                                             f"Test set: {accuracy:.2%} correct"),
                   "confusion_matrix")
    mistakes = plotting.misclassified(data.x_test, data.y_test, y_pred, data.classes)
    if mistakes is not None:
        ex.save_figure(mistakes, "misclassified")


# --- Concept diagram (saved as chapters/figures/cnn/concept_sliding_window.png) ---------
def window_panel(ax, size: int, k: int, stride: int, padding: str) -> None:
    """Draw a size×size input as `pad` pads it, and where a k×k window with `stride` lands."""
    grid = pad(tf.ones((1, size, size, 1)), k, k, stride, padding)[0, :, :, 0].numpy()  # 1: real
    n = grid.shape[0]
    out = (n - k) // stride + 1  # output positions per side
    ax.imshow(np.where(grid > 0, 1.0, 0.82), cmap="gray", vmin=0, vmax=1, extent=(0, n, n, 0))
    for t in range(n + 1):
        ax.plot([t, t], [0, n], color="grey", lw=0.6)
        ax.plot([0, n], [t, t], color="grey", lw=0.6)
    for (r, c) in np.argwhere(grid == 0):
        ax.text(c + 0.5, r + 0.5, "0", ha="center", va="center", color="grey", fontsize=8)
    for i in range(out):
        for j in range(out):  # the window of output (i, j) starts at (i·s, j·s) of the padded grid
            ax.plot(j * stride + k / 2, i * stride + k / 2, "o", color="C3", ms=5)
    for (i, j), color in (((0, 0), "C3"), ((out - 1, out - 1), "C0")):
        ax.add_patch(Rectangle((j * stride, i * stride), k, k, fill=False, lw=2.5, color=color))
    before, after = same_padding(size, k, stride) if padding == "same" else (0, 0)
    ax.set_title(f"'{padding}', {size}×{size} input, {k}×{k} window, stride {stride}\n"
                 f"padding {before} before, {after} after → {out}×{out} output", fontsize=9)
    ax.set(xlim=(-0.2, n + 0.2), ylim=(n + 0.2, -0.2), xticks=[], yticks=[])


def concept_figures() -> dict[str, Figure]:
    """The sliding window under 'valid' and 'same' padding, drawn with `same_padding` and `pad`."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    cases = ((5, 3, 1, "valid"), (5, 3, 2, "same"), (6, 3, 2, "same"))
    for ax, case in zip(fig.subplots(1, len(cases)), cases):
        window_panel(ax, *case)
    fig.suptitle("Where a 3×3 window lands: white = the image, grey = zero padding; "
                 "a dot per output, the first (red) and last (blue) windows outlined")
    return {"concept_sliding_window": fig}


def run(cfg: Config) -> dict:
    """Check conv2d/max_pool2d against tf.nn, train the CNN, evaluate it, draw what it learned."""
    with Experiment(cfg) as ex:
        data, batches = prepare_data(cfg, ex)
        check_from_scratch(cfg, ex, data)
        model, history = train(cfg, ex, data, batches)
        y_pred = evaluate(cfg, ex, model, data, batches, history)
        draw(ex, model, data, history, y_pred)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
