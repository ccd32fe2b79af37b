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
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure

from tfguide import bench, chapters, cli, datasets, exercises, plotting
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
def build_model(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
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
    x = layers.Dropout(0.5, name="dropout")(x)
    # float32 outputs even under mixed precision: a float16 softmax can round to 0 or 1
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probs")(x)  # (batch, num_classes)
    return keras.Model(inputs, outputs, name="convnet")
# [end:keras]


# [start:compile]
def compile_model(input_shape: tuple[int, ...], num_classes: int,
                  learning_rate: float) -> keras.Model:
    """Build the CNN and compile it for integer labels 0 … num_classes − 1."""
    model = build_model(input_shape, num_classes)
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


# --- What others borrow: bench -------------------------------------------------------
def bench_workload(quick: bool, seed: int) -> bench.Workload:
    """The CNN on random MNIST-shaped images, for `python -m tfguide bench`."""
    return bench.image_workload("cnn", lambda shape, lr: compile_model(shape, 10, lr),
                                quick, seed)


def _epochs_to_target(model: keras.Model, fit_args: dict, test: tuple, target: float,
                      max_epochs: int) -> dict:
    """Train one epoch at a time until the test accuracy reaches `target`; time the training."""
    seconds, reached, accuracy = 0.0, None, 0.0
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        model.fit(**fit_args, epochs=1, verbose=0)
        seconds += time.perf_counter() - start
        accuracy = model.evaluate(*test, verbose=0, return_dict=True)["accuracy"]
        if accuracy >= target:
            reached = epoch
            break
    return {"seconds": seconds if reached else None, "steps": reached, "value": float(accuracy)}


def bench_race(quick: bool, seed: int, build: Callable | None = None) -> dict:
    """The CNN on the digits to 97% test accuracy: this chapter's recipe vs keras.io's.

    Both recipes train the same `build_model` on the shipped digits for at most
    30 epochs and score it on the test set after each; `seconds` is the training
    time until the target is first reached (None if never), `steps` the epochs.
    The digits are small, so `quick` changes nothing. `build(make, *args)`
    builds each model: `python -m tfguide bench` passes its `Runtime.build`
    (strategy and --jit); by default `make(*args)`, with Keras's own XLA
    choice (on for a single GPU, off on a CPU, like --jit auto).
    """
    target, max_epochs = 0.97, 30
    build = build or (lambda make, *args: make(*args))
    data = datasets.load("digits")
    defaults = chapters.get("cnn")
    one_hot = lambda y: keras.utils.to_categorical(y, data.num_classes)  # noqa: E731

    def keras_io(input_shape, num_classes):  # categorical cross-entropy on one-hot labels
        model = build_model(input_shape, num_classes)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    keras.utils.set_random_seed(seed)
    reference = _epochs_to_target(
        build(keras_io, data.input_shape, data.num_classes),
        dict(x=data.x_train, y=one_hot(data.y_train), batch_size=128, shuffle=True),
        (data.x_test, one_hot(data.y_test)), target, max_epochs)
    keras.utils.set_random_seed(seed)
    ours = _epochs_to_target(
        build(compile_model, data.input_shape, data.num_classes, defaults.learning_rate),
        dict(x=datasets.pipeline(data.x_train, data.y_train, defaults.batch_size, shuffle=True,
                                 seed=seed)),
        (data.x_test, data.y_test), target, max_epochs)
    return {
        "what": "CNN on the digits to 97% test accuracy", "metric": "test_accuracy",
        "target": target,
        "reference": {"recipe": "keras.io mnist_convnet: Adam 1e-3, batch 128, one-hot labels",
                      **reference},
        "tfguide": {"recipe": f"tfguide cnn: Adam {defaults.learning_rate:g}, batch "
                              f"{defaults.batch_size}, integer labels, datasets.pipeline",
                    **ours},
    }


# --- What others borrow: exercises (python -m tfguide exercise cnn, check cnn) ---------
def _random(shape: tuple[int, ...], seed: int) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float64)


def _twin_error(ours, theirs, *inputs) -> float:
    """max_abs_err, or inf when the two outputs do not even have the same shape."""
    if tuple(ours(*inputs).shape) != tuple(theirs(*inputs).shape):
        return float("inf")
    return max_abs_err(ours, theirs, *inputs)


def prove_same_padding(same_padding_fn) -> exercises.Proof:
    """'same' padding by hand, then a 'valid' conv, must equal tf.nn.conv2d(..., 'SAME')."""
    errors = []
    for size, k, stride in ((5, 2, 2), (6, 3, 2), (7, 4, 1), (8, 5, 3), (4, 4, 1), (9, 1, 2)):
        x, kernel = _random((1, size, size, 1), 0), _random((k, k, 1, 1), 1)
        before, after = same_padding_fn(size, k, stride)
        spec = [[0, 0], [before, after], [before, after], [0, 0]]
        errors.append((f"size {size}, kernel {k}, stride {stride}", _twin_error(
            lambda x: tf.nn.conv2d(tf.pad(x, spec), kernel, stride, "VALID"),
            lambda x: tf.nn.conv2d(x, kernel, stride, "SAME"), x)))
    return exercises.worst(errors, 1e-12)


def prove_pad(pad_fn) -> exercises.Proof:
    """pad(x, ..., 'same') then a 'valid' conv must equal the 'same' conv, for any kernel."""
    errors = []
    for h, w, kh, kw, stride in ((5, 5, 3, 3, 1), (6, 7, 3, 2, 2), (5, 5, 2, 2, 2)):
        x, kernel = _random((2, h, w, 3), 0), _random((kh, kw, 3, 2), 1)
        errors.append((f"{h}×{w} input, {kh}×{kw} kernel, stride {stride}", _twin_error(
            lambda x: tf.nn.conv2d(pad_fn(x, kh, kw, stride, "same"), kernel, stride, "VALID"),
            lambda x: tf.nn.conv2d(x, kernel, stride, "SAME"), x)))
    return exercises.worst(errors, 1e-9)


def prove_conv2d(conv2d_fn) -> exercises.Proof:
    """conv2d vs tf.nn.conv2d in float64, values and gradients, strides 1 and 2, both paddings."""
    errors = []
    for b, h, w, c_in, kh, kw, c_out in ((2, 5, 5, 1, 3, 3, 4), (1, 6, 7, 3, 3, 2, 5),
                                         (1, 5, 5, 2, 2, 2, 3)):
        x, kernel = _random((b, h, w, c_in), 0), _random((kh, kw, c_in, c_out), 1)
        for stride in (1, 2):
            for padding in PADDINGS:
                errors.append((f"{h}×{w} input, {kh}×{kw} kernel, stride {stride}, {padding}",
                               _twin_error(lambda x, k: conv2d_fn(x, k, stride, padding),
                                           lambda x, k: tf.nn.conv2d(x, k, stride,
                                                                     padding.upper()),
                                           x, kernel)))
    return exercises.worst(errors, 1e-9)


def prove_max_pool2d(max_pool2d_fn) -> exercises.Proof:
    """max_pool2d vs tf.nn.max_pool2d in float64, values and gradients (no ties)."""
    errors = []
    for b, h, w, c, size, stride in ((2, 6, 6, 3, 2, 2), (1, 7, 5, 2, 3, 2), (1, 5, 5, 1, 2, 2)):
        x = _random((b, h, w, c), 2) - 3.0  # mostly negative: a zero pad would win
        for padding in PADDINGS:
            errors.append((f"{h}×{w} input, window {size}, stride {stride}, {padding}",
                           _twin_error(lambda x: max_pool2d_fn(x, size, stride, padding),
                                       lambda x: tf.nn.max_pool2d(x, size, stride,
                                                                  padding.upper()), x)))
    return exercises.worst(errors, 1e-12)


def prove_avg_pool2d(avg_pool2d_fn) -> exercises.Proof:
    """avg_pool2d vs tf.nn.avg_pool2d in float64, values and gradients, both paddings."""
    errors = []
    for b, h, w, c, size, stride in ((2, 6, 6, 3, 2, 2), (1, 7, 5, 2, 3, 2), (1, 5, 5, 1, 2, 1)):
        x = _random((b, h, w, c), 3) + 2.0  # mostly positive: a padded zero would show
        for padding in PADDINGS:
            errors.append((f"{h}×{w} input, window {size}, stride {stride}, {padding}",
                           _twin_error(lambda x: avg_pool2d_fn(x, size, stride, padding),
                                       lambda x: tf.nn.avg_pool2d(x, size, stride,
                                                                  padding.upper()), x)))
    return exercises.worst(errors, 1e-12)


def _pads_extra_first(size: int, k: int, stride: int) -> tuple[int, int]:
    before, after = same_padding(size, k, stride)
    return after, before


def _pad_extra_first(x, kh, kw, stride, padding, value=0.0):
    (top, bottom), (left, right) = (_pads_extra_first(x.shape[1], kh, stride),
                                    _pads_extra_first(x.shape[2], kw, stride))
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=value)


def _conv2d_extra_first(x, kernel, stride=1, padding="valid"):
    kh, kw = kernel.shape[:2]
    x = _pad_extra_first(x, kh, kw, stride, padding) if padding == "same" else x
    return tf.nn.conv2d(x, kernel, stride, "VALID")


def _conv2d_flipped(x, kernel, stride=1, padding="valid"):
    return tf.nn.conv2d(x, kernel[::-1, ::-1], stride, padding.upper())


def _max_pool2d_zero_pad(x, size=2, stride=None, padding="valid"):
    stride = stride or size
    x = pad(x, size, size, stride, padding, value=0.0)
    return tf.nn.max_pool2d(x, size, stride, "VALID")


def _avg_pool2d_counting_pads(x, size=2, stride=None, padding="valid"):
    stride = stride or size
    x = pad(x, size, size, stride, padding)
    return tf.nn.avg_pool2d(x, size, stride, "VALID")  # divides by size², padding included


# NumPy, not tensors: importing a chapter must not start TensorFlow (multi-worker needs that)
_PROBE_X = np.arange(-12.5, 12.5).reshape(1, 5, 5, 1)  # odd size: uneven 'same' padding
_PROBE_K = np.array([[1.0, 2.0], [-3.0, 0.5]])[:, :, None, None]  # not symmetric
EXTRA_AT_END = ("TensorFlow puts the extra row and column of 'same' padding at the end "
                "(bottom and right): before = total // 2, after = total - total // 2")
EXERCISES = (
    exercises.Exercise(
        "same_padding", prove_same_padding, "ceil(size / stride) outputs need "
        "max((out - 1) * stride + k - size, 0) padding in all; split it in two",
        probe=lambda f: [f(5, 2, 2), f(6, 3, 2), f(8, 5, 3)],
        mistakes={EXTRA_AT_END: _pads_extra_first}),
    exercises.Exercise(
        "pad", prove_pad, "'valid' returns x as it is; 'same' pads rows and columns by "
        "same_padding with tf.pad(..., constant_values=value)",
        probe=lambda f: f(tf.constant(_PROBE_X), 2, 2, 2, "same"),
        mistakes={EXTRA_AT_END: _pad_extra_first}),
    exercises.Exercise(
        "conv2d", prove_conv2d, "pad, then for each output position take the kh×kw×c_in "
        "patch at (i·stride, j·stride) and tf.tensordot it with the kernel over 3 axes",
        probe=lambda f: f(tf.constant(_PROBE_X), tf.constant(_PROBE_K), 2, "same"),
        mistakes={EXTRA_AT_END: _conv2d_extra_first,
                  "tf.nn.conv2d slides the kernel as it is (a cross-correlation): do not flip "
                  "it": _conv2d_flipped}),
    exercises.Exercise(
        "max_pool2d", prove_max_pool2d, "pad with -inf (which never wins), then take "
        "tf.reduce_max over each size×size window",
        probe=lambda f: f(tf.constant(_PROBE_X - 20.0), 2, 2, "same"),
        mistakes={"pad 'same' windows with -inf, not 0: a zero in the padding beats every "
                  "negative value": _max_pool2d_zero_pad}),
    exercises.Exercise(
        "avg_pool2d", prove_avg_pool2d, "sum each window of the zero-padded x and divide by "
        "the number of real pixels in it (pad a tensor of ones the same way to count them)",
        probe=lambda f: f(tf.constant(_PROBE_X + 20.0), 2, 2, "same"),
        mistakes={"divide each 'same' window by its real pixels, not by size²: TensorFlow "
                  "leaves the padding out of the average": _avg_pool2d_counting_pads}),
)


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


def train(cfg: Config, ex: Experiment, data: datasets.LoadedData, batches: Batches):
    """Build the CNN in the run's strategy scope, fit it, save it; return it and its history."""
    model = ex.runtime.build(compile_model, data.input_shape, data.num_classes,
                             cfg.learning_rate)
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
