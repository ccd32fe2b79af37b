"""The exercises of chapter cnn: how `python -m tfguide check cnn` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/cnn.py and chapters/cnn.md.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfguide.chapters.cnn import PADDINGS, max_abs_err, pad, same_padding
from tfguide.exercises import Exercise, Proof, worst


def _random(shape: tuple[int, ...], seed: int) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float64)


def _twin_error(ours, theirs, *inputs) -> float:
    """max_abs_err, or inf when the two outputs do not even have the same shape."""
    if tuple(ours(*inputs).shape) != tuple(theirs(*inputs).shape):
        return float("inf")
    return max_abs_err(ours, theirs, *inputs)


def prove_same_padding(same_padding_fn) -> Proof:
    """'same' padding by hand, then a 'valid' conv, must equal tf.nn.conv2d(..., 'SAME')."""
    errors = []
    for size, k, stride in ((5, 2, 2), (6, 3, 2), (7, 4, 1), (8, 5, 3), (4, 4, 1), (9, 1, 2)):
        x, kernel = _random((1, size, size, 1), 0), _random((k, k, 1, 1), 1)
        before, after = same_padding_fn(size, k, stride)
        spec = [[0, 0], [before, after], [before, after], [0, 0]]
        errors.append((f"size {size}, kernel {k}, stride {stride}", _twin_error(
            lambda x: tf.nn.conv2d(tf.pad(x, spec), kernel, stride, "VALID"),
            lambda x: tf.nn.conv2d(x, kernel, stride, "SAME"), x)))
    return worst(errors, 1e-12)


def prove_pad(pad_fn) -> Proof:
    """pad(x, ..., 'same') then a 'valid' conv must equal the 'same' conv, for any kernel."""
    errors = []
    for h, w, kh, kw, stride in ((5, 5, 3, 3, 1), (6, 7, 3, 2, 2), (5, 5, 2, 2, 2)):
        x, kernel = _random((2, h, w, 3), 0), _random((kh, kw, 3, 2), 1)
        errors.append((f"{h}×{w} input, {kh}×{kw} kernel, stride {stride}", _twin_error(
            lambda x: tf.nn.conv2d(pad_fn(x, kh, kw, stride, "same"), kernel, stride, "VALID"),
            lambda x: tf.nn.conv2d(x, kernel, stride, "SAME"), x)))
    return worst(errors, 1e-9)


def prove_conv2d(conv2d_fn) -> Proof:
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
    return worst(errors, 1e-9)


def prove_max_pool2d(max_pool2d_fn) -> Proof:
    """max_pool2d vs tf.nn.max_pool2d in float64, values and gradients (no ties)."""
    errors = []
    for b, h, w, c, size, stride in ((2, 6, 6, 3, 2, 2), (1, 7, 5, 2, 3, 2), (1, 5, 5, 1, 2, 2)):
        x = _random((b, h, w, c), 2) - 3.0  # mostly negative: a zero pad would win
        for padding in PADDINGS:
            errors.append((f"{h}×{w} input, window {size}, stride {stride}, {padding}",
                           _twin_error(lambda x: max_pool2d_fn(x, size, stride, padding),
                                       lambda x: tf.nn.max_pool2d(x, size, stride,
                                                                  padding.upper()), x)))
    return worst(errors, 1e-12)


def prove_avg_pool2d(avg_pool2d_fn) -> Proof:
    """avg_pool2d vs tf.nn.avg_pool2d in float64, values and gradients, both paddings."""
    errors = []
    for b, h, w, c, size, stride in ((2, 6, 6, 3, 2, 2), (1, 7, 5, 2, 3, 2), (1, 5, 5, 1, 2, 1)):
        x = _random((b, h, w, c), 3) + 2.0  # mostly positive: a padded zero would show
        for padding in PADDINGS:
            errors.append((f"{h}×{w} input, window {size}, stride {stride}, {padding}",
                           _twin_error(lambda x: avg_pool2d_fn(x, size, stride, padding),
                                       lambda x: tf.nn.avg_pool2d(x, size, stride,
                                                                  padding.upper()), x)))
    return worst(errors, 1e-12)


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
    Exercise(
        "same_padding", prove_same_padding, "ceil(size / stride) outputs need "
        "max((out - 1) * stride + k - size, 0) padding in all; split it in two",
        probe=lambda f: [f(5, 2, 2), f(6, 3, 2), f(8, 5, 3)],
        mistakes={EXTRA_AT_END: _pads_extra_first}),
    Exercise(
        "pad", prove_pad, "'valid' returns x as it is; 'same' pads rows and columns by "
        "same_padding with tf.pad(..., constant_values=value)",
        probe=lambda f: f(tf.constant(_PROBE_X), 2, 2, 2, "same"),
        mistakes={EXTRA_AT_END: _pad_extra_first}),
    Exercise(
        "conv2d", prove_conv2d, "pad, then for each output position take the kh×kw×c_in "
        "patch at (i·stride, j·stride) and tf.tensordot it with the kernel over 3 axes",
        probe=lambda f: f(tf.constant(_PROBE_X), tf.constant(_PROBE_K), 2, "same"),
        mistakes={EXTRA_AT_END: _conv2d_extra_first,
                  "tf.nn.conv2d slides the kernel as it is (a cross-correlation): do not flip "
                  "it": _conv2d_flipped}),
    Exercise(
        "max_pool2d", prove_max_pool2d, "pad with -inf (which never wins), then take "
        "tf.reduce_max over each size×size window",
        probe=lambda f: f(tf.constant(_PROBE_X - 20.0), 2, 2, "same"),
        mistakes={"pad 'same' windows with -inf, not 0: a zero in the padding beats every "
                  "negative value": _max_pool2d_zero_pad}),
    Exercise(
        "avg_pool2d", prove_avg_pool2d, "sum each window of the zero-padded x and divide by "
        "the number of real pixels in it (pad a tensor of ones the same way to count them)",
        probe=lambda f: f(tf.constant(_PROBE_X + 20.0), 2, 2, "same"),
        mistakes={"divide each 'same' window by its real pixels, not by size²: TensorFlow "
                  "leaves the padding out of the average": _avg_pool2d_counting_pads}),
)
