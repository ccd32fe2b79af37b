"""The exercises of chapter deploy: how `python -m tfguide check deploy` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/deploy.py and chapters/deploy.md.
"""
from __future__ import annotations

import decimal
import functools
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tfguide._quiet import silenced_stderr
from tfguide.chapters.deploy import round_half_away, tflite_interpreter
from tfguide.exercises import Exercise, Proof, worst


RANGES = ((0.0, 16.0), (0.0, 1.0), (-1.0, 1.0), (2.0, 6.0), (-3.0, -0.5), (-0.3, 5.2))
HALVES = np.array([[127, 0.5, -127], [2.5, -2.5, 0.5], [-0.5, 3.5, 10.5], [1.5, -127, -1.5]])


def _reference_model() -> keras.Model:
    """One Dense layer per input range (kernels of distinct shapes), the first with weights
    exactly halfway between two codes; a Conv2D whose channels differ a thousandfold."""
    keras.utils.set_random_seed(0)
    inputs = [keras.Input((4,), name=f"x{i}") for i in range(len(RANGES))]
    dense = [layers.Dense(3 + i, name=f"dense{i}") for i in range(len(RANGES))]
    image, conv = keras.Input((5, 5, 2), name="image"), layers.Conv2D(4, 3, name="conv")
    outputs = {f"y{i}": d(x) for i, (d, x) in enumerate(zip(dense, inputs))}
    outputs["z"] = layers.Flatten()(conv(image))  # (batch, 36)
    dense[0].kernel.assign(HALVES * 2.0 ** -np.arange(5, 8))  # scales 2^-5, 2^-6, 2^-7: exact
    conv.kernel.assign(conv.kernel * np.array([1.0, 10.0, 0.1, 100.0]))  # (3, 3, 2, 4)
    return keras.Model([*inputs, image], outputs)


def _calibration(n: int = 16):
    """Calibration inputs spanning exactly RANGES (the first sample holds both ends)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        sample = {f"x{j}": rng.uniform(lo, hi, (1, 4)) for j, (lo, hi) in enumerate(RANGES)}
        for j, (lo, hi) in enumerate(RANGES if i == 0 else ()):
            sample[f"x{j}"][0, :2] = lo, hi  # (1, 4): the range's two ends
        sample["image"] = rng.normal(size=(1, 5, 5, 2))
        yield {name: x.astype(np.float32) for name, x in sample.items()}


@functools.cache
def tflite_reference() -> dict:
    """Convert the reference model to int8 with TFLite; return what the converter stored
    (per-channel kernels, calibrated input ranges) and what the interpreter computed
    (int8 outputs and their DEQUANTIZE to float32)."""
    model = _reference_model()
    with tempfile.TemporaryDirectory() as folder, silenced_stderr():
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _calibration
        with warnings.catch_warnings():  # calibration's interpreter; keeping every tensor
            warnings.filterwarnings("ignore", message=".*(is deprecated|preserve_all_tensors)")
            interpreter = tflite_interpreter(converter.convert(),
                                             experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    params = {i: (float(t["quantization_parameters"]["scales"][0]),
                  int(t["quantization_parameters"]["zero_points"][0]))
              for i, t in details.items() if len(t["quantization_parameters"]["scales"]) == 1}
    ops = interpreter._get_ops_details()  # which tensor each QUANTIZE/DEQUANTIZE op reads
    kernels = {tuple(t["shape"]): t for t in details.values()
               if len(t["quantization_parameters"]["scales"]) > 1 and t["dtype"] == np.int8}
    reference = {"kernels": [], "inputs": [], "outputs": []}
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            w = layer.kernel.numpy()  # (..., c_out)
            stored = kernels[np.moveaxis(w, -1, 0).shape]  # (c_out, ...)
            reference["kernels"].append((layer.name, w, interpreter.get_tensor(stored["index"]),
                                         stored["quantization_parameters"]["scales"]))
    names = {d["index"]: name for name, d in runner.get_input_details().items()}
    for op in ops:
        if op["op_name"] == "QUANTIZE" and names.get(op["inputs"][0], "x").startswith("x"):
            reference["inputs"].append((RANGES[int(names[op["inputs"][0]][1:])],
                                        params[op["outputs"][0]]))
    rng = np.random.default_rng(1)
    for _ in range(4):  # inputs up to twice outside the calibrated ranges: saturated codes too
        runner(**{f"x{j}": rng.uniform(2 * lo - hi, 2 * hi - lo, (1, 4)).astype(np.float32)
                  for j, (lo, hi) in enumerate(RANGES)},
               image=rng.normal(size=(1, 5, 5, 2)).astype(np.float32) * 2)
        for op in ops:
            if op["op_name"] == "DEQUANTIZE" and op["inputs"][0] in params:
                q, x = (interpreter.get_tensor(op[k][0]) for k in ("inputs", "outputs"))
                reference["outputs"].append((q, *params[op["inputs"][0]], x))
    return reference


def prove_round_half_away(round_fn) -> Proof:
    """The codes TFLite stored for weights halfway between two codes; Python's decimal
    module (ROUND_HALF_UP: halves away from zero) on a grid of halves and random numbers."""
    _, w, stored, scales = tflite_reference()["kernels"][0]  # dense0: HALVES · scale_c
    x = np.concatenate([np.arange(-6.5, 7), np.random.default_rng(0).normal(0, 40, 200)])
    exact = np.array([float(decimal.Decimal(v).quantize(1, decimal.ROUND_HALF_UP)) for v in x])
    return worst([("what TFLite stored for w / scale = k + 0.5", _max_diff(
        round_fn(w / scales.astype(np.float32)), np.moveaxis(stored, 0, -1))),
        ("halves and random numbers vs decimal.ROUND_HALF_UP", _max_diff(round_fn(x), exact))],
        1e-6)


def prove_quantize_weights(quantize_fn) -> Proof:
    """Codes and scales vs the int8 kernels TFLite stored, axis -1 (Keras's layout: output
    channel last) and axis 0 (TFLite's: output channel first)."""
    errors = []
    for name, w, stored, scales in tflite_reference()["kernels"]:
        for axis, kernel, codes in ((-1, w, np.moveaxis(stored, 0, -1)),
                                    (0, np.moveaxis(w, -1, 0), stored)):
            q, scale = quantize_fn(kernel, axis=axis)
            errors += [(f"{name} kernel {kernel.shape}, axis {axis}: codes", _max_diff(q, codes)),
                       (f"{name} kernel {kernel.shape}, axis {axis}: scales",
                        _max_diff(np.asarray(scale) / scales, np.ones_like(scales)))]
    return worst(errors, 1e-6)


def prove_activation_params(params_fn) -> Proof:
    """Scale and zero point vs what the converter chose for inputs calibrated on [lo, hi]."""
    errors = []
    for (lo, hi), (scale, zero_point) in tflite_reference()["inputs"]:
        got_scale, got_zero = params_fn(lo, hi)
        errors.append((f"range [{lo:g}, {hi:g}] (TFLite: scale {scale:.6g}, zero point "
                       f"{zero_point}; yours: {got_scale:.6g}, {got_zero})",
                       max(abs(got_zero - zero_point), abs(got_scale - scale) / scale)))
    return worst(errors, 1e-6)


def prove_dequantize(dequantize_fn) -> Proof:
    """The interpreter's own DEQUANTIZE of int8 outputs (saturated codes included); the
    stored per-channel kernels as scale_c · q."""
    errors = []
    for i, (q, scale, zero_point, x) in enumerate(tflite_reference()["outputs"]):
        errors.append((f"output {i} (scale {scale:.4g}, zero point {zero_point})",
                       _max_diff(dequantize_fn(q, scale, zero_point), x) / np.abs(x).max()))
    for name, _, stored, scales in tflite_reference()["kernels"]:
        q = np.moveaxis(stored, 0, -1)  # (..., c_out), a scale per channel on the last axis
        exact = q.astype(np.float64) * scales
        errors.append((f"{name} kernel, one scale per channel",
                       _max_diff(dequantize_fn(q, scales), exact) / np.abs(exact).max()))
    return worst(errors, 1e-6)


def _max_diff(ours, theirs) -> float:
    """The largest absolute difference, or inf when the shapes differ."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else float("inf")


def _round_half_even(x):
    return np.round(x)


def _round_half_up(x):
    return np.floor(np.asarray(x) + 0.5)


def _round_toward_zero(x):
    return np.trunc(x)


def _quantize_per_tensor(w, axis=-1):
    scale = np.abs(w).max() / 127
    q = np.clip(round_half_away(w / scale), -127, 127).astype(np.int8)
    return q, np.full(w.shape[axis], scale)


def _quantize_by_128(w, axis=-1):
    others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    scale = np.abs(w).max(axis=others, keepdims=True) / 128
    return np.clip(round_half_away(w / scale), -128, 127).astype(np.int8), scale.reshape(-1)


def _quantize_asymmetric(w, axis=-1):
    others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    lo, hi = w.min(axis=others, keepdims=True), w.max(axis=others, keepdims=True)
    scale = (hi - lo) / 255
    q = np.clip(round_half_away((w - lo) / scale) - 128, -128, 127).astype(np.int8)
    return q, scale.reshape(-1)


def _quantize_half_even(w, axis=-1):
    others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    scale = np.abs(w).max(axis=others, keepdims=True) / 127
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale.reshape(-1)


def _params_zero_outside(lo, hi):
    scale = (hi - lo) / 255
    return scale, int(round_half_away(-128 - lo / scale))


def _params_half_even(lo, hi):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255
    return scale, round(-128 - lo / scale)


def _params_uint8(lo, hi):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255
    return scale, int(round_half_away(-lo / scale))


def _params_256_levels(lo, hi):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 256
    return scale, int(round_half_away(-128 - lo / scale))


def _dequantize_in_int8(q, scale, zero_point=0):
    return np.asarray(scale, np.float32) * (q - zero_point).astype(np.float32)


def _dequantize_zero_point_outside(q, scale, zero_point=0):
    return np.asarray(scale, np.float32) * q.astype(np.float32) - zero_point


def _dequantize_adding_zero_point(q, scale, zero_point=0):
    return np.asarray(scale, np.float32) * (q.astype(np.float32) + zero_point)


_PROBE_W = HALVES * np.array([2.0 ** -5, 1.0, 2.0 ** -7])  # (4, 3): halves; channel 1 larger
_PROBE_Q = np.array([-128, -1, 0, 127], np.int8)
HALVES_AWAY = ("TFLite rounds halves away from zero (2.5 -> 3, -0.5 -> -1); np.round and "
               "round() send them to the even neighbour")
EXERCISES = (
    Exercise(
        "round_half_away", prove_round_half_away, "add 0.5 with the sign of x "
        "(np.copysign), then cut off the fraction with np.trunc",
        probe=lambda f: f(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.7, 0.7])),
        mistakes={HALVES_AWAY: _round_half_even,
                  "floor(x + 0.5) rounds -0.5 up to 0: halves go away from zero, also below "
                  "zero": _round_half_up,
                  "round, do not truncate: 0.7 is 1, not 0": _round_toward_zero}),
    Exercise(
        "quantize_weights", prove_quantize_weights, "per output channel (reduce over every "
        "other axis): scale = max|w| / 127, q = round_half_away(w / scale) as int8",
        probe=lambda f: np.concatenate([np.ravel(v) for v in f(_PROBE_W)]),
        mistakes={"one scale per output channel, not one for the whole kernel: a channel of "
                  "small weights would get only a few codes": _quantize_per_tensor,
                  "weights are symmetric: divide the largest |w| by 127, not 128, so that -w "
                  "is as exact as w and q stays in [-127, 127]": _quantize_by_128,
                  "weights are symmetric around 0 (zero point 0, scale max|w| / 127), not "
                  "spread from their min to their max": _quantize_asymmetric,
                  HALVES_AWAY: _quantize_half_even}),
    Exercise(
        "activation_params", prove_activation_params, "widen [lo, hi] to include 0; scale = "
        "(hi - lo) / 255; zero_point = round_half_away(-128 - lo / scale)",
        probe=lambda f: [f(lo, hi) for lo, hi in ((-1.0, 1.0), (2.0, 6.0), (-0.3, 5.2))],
        mistakes={"widen [lo, hi] to include 0 first: zero (padding, ReLU's output) must be "
                  "exactly representable": _params_zero_outside,
                  HALVES_AWAY: _params_half_even,
                  "int8 codes run from -128 to 127: the zero point is -128 - lo / scale, not "
                  "uint8's -lo / scale": _params_uint8,
                  "255 steps lie between the 256 codes: scale = (hi - lo) / 255":
                      _params_256_levels}),
    Exercise(
        "dequantize", prove_dequantize, "scale * (q - zero_point), with q cast to float32 "
        "before the subtraction",
        probe=lambda f: f(_PROBE_Q, 0.5, 98),
        mistakes={"cast q to float before subtracting: in int8, 127 - (-128) wraps around to "
                  "-1": _dequantize_in_int8,
                  "subtract the zero point from q before scaling: scale · (q − zero_point)":
                      _dequantize_zero_point_outside,
                  "x = scale · (q − zero_point): the zero point is subtracted, not added":
                      _dequantize_adding_zero_point}),
)
