"""Deploying a model: from a run folder to image files, TF Serving and TFLite.

Takes a trained image classifier (a `cnn` or `mlp` run folder) out of the
course and proves at every step that its answers did not change: wraps it with
the preprocessing it was trained with, so that it takes raw pixels; classifies
PNG files through `python -m tfguide predict`; exports a SavedModel in
TensorFlow Serving's layout and runs it in a fresh process that cannot import
Keras; converts it to TFLite in float32 and in int8, re-deriving the int8
weights by hand; and measures each artefact's size, accuracy and latency.

Text: chapters/deploy.md. Ports 003 §3 (the "deploy" step) and 001 §5 (edge devices).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure

from tfguide import cli, datasets, plotting, predict
from tfguide._quiet import silenced_stderr
from tfguide.config import Config
from tfguide.results import Experiment

ARTEFACTS = ("keras", "savedmodel", "tflite", "tflite_int8")
TFLITE_FILES = {"tflite": "model.tflite", "tflite_int8": "model_int8.tflite"}


# --- Prepare the model and its data --------------------------------------------------
def find_model_run(cfg: Config) -> Path:
    """Return the run folder to deploy: --from, else the newest cnn run, else a new one."""
    if cfg.options["from"] != "latest":
        return Path(cfg.options["from"]).expanduser()
    latest = predict.latest_model_run(cfg.out, "cnn")
    if latest is not None:
        return latest
    print(f"No finished cnn run under {cfg.out}/cnn: training one first "
          f"(python -m tfguide.chapters.cnn --quick).", file=sys.stderr)
    flags = ["--quick", "--out", str(cfg.out), "--seed", str(cfg.seed), "--device", cfg.device]
    return cli.run_chapter("cnn", flags + (["--offline"] if cfg.offline else []))[1]


@dataclasses.dataclass(frozen=True)
class TestSet:
    """Raw test pixels as a camera or file gives them, and what they mean."""

    name: str  # the data set
    pixels: np.ndarray  # (n, h, w) or (n, h, w, c) uint8, from 0 to max_value
    labels: np.ndarray  # (n,) int
    calibration: np.ndarray  # a few hundred raw training images, for int8 quantisation
    calibration_labels: np.ndarray  # their labels (a checkpointed epoch trains on them)
    shape: tuple[int, int, int]  # (h, w, c) of one image as the model takes it
    max_value: float  # the raw pixel maximum (255 for MNIST, 16 for the digits)
    classes: tuple[str, ...]


def raw_pixels(x: np.ndarray, max_value: float) -> np.ndarray:
    """Undo tfguide's scaling: (n, h, w, c) floats in [0, 1] -> uint8 pixels, no channel axis
    for greyscale."""
    pixels = np.round(x * max_value).astype(np.uint8)  # (n, h, w, c)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels  # (n, h, w) for greyscale


def prepare_data(ex: Experiment, cfg: Config, record: dict, model_run: Path) -> TestSet:
    """Load the data the model was trained on, as raw pixels."""
    name = record["data"]["name"]
    data = ex.load_data(name)
    if data.name != name:  # e.g. MNIST is not on this machine: the stand-in is no use here
        raise datasets.DataError(f"The model in {model_run} was trained on {name}, which is "
                                 f"not available here; pass --data-dir with its files.")
    n_test = 2000 if cfg.quick else len(data.x_test)  # --quick on a large set: a subset
    source = datasets.SOURCES[name]
    pick = np.random.default_rng(cfg.seed).choice(
        len(data.x_train), min(cfg.options["calibration_images"], len(data.x_train)),
        replace=False)
    ex.details.update(model_run=str(model_run), model_chapter=record["chapter"])
    return TestSet(name, raw_pixels(data.x_test[:n_test], source.max_value),
                   data.y_test[:n_test], raw_pixels(data.x_train[pick], source.max_value),
                   data.y_train[pick], source.shape, source.max_value, source.classes)


# --- From scratch: int8 quantisation ------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/deploy.md; refresh the text with
# python -m tfguide.excerpts chapters/deploy.md after editing it.
# [start:quantize]
def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero, as TFLite does (C's round).

    2.5 -> 3 and -0.5 -> -1, where np.round and Python's round give 2 and 0
    (they send halves to the even neighbour).
    """
    return np.trunc(x + np.copysign(0.5, x))


def quantize_weights(w: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel: w ≈ scale_c · q, q in [-127, 127].

    scale_c = max|w_c| / 127, so each channel's largest weight maps to ±127.
    Returns q (int8, the shape of w) and the scales (one per channel on `axis`).
    """
    others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    scale = np.abs(w).max(axis=others, keepdims=True) / 127  # (1, ..., channels, ..., 1)
    q = np.clip(round_half_away(w / scale), -127, 127).astype(np.int8)  # the shape of w
    return q, scale.reshape(-1)


def activation_params(lo: float, hi: float) -> tuple[float, int]:
    """Affine int8 for values in [lo, hi]: x ≈ scale · (q − zero_point), q in [-128, 127]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero must be exactly representable
    scale = (hi - lo) / 255
    return scale, int(round_half_away(-128 - lo / scale))


def dequantize(q: np.ndarray, scale, zero_point=0) -> np.ndarray:
    """Map int8 codes back to real numbers: scale · (q − zero_point)."""
    return np.asarray(scale, np.float32) * (q.astype(np.float32) - zero_point)
# [end:quantize]


# [start:check_int8]
def int8_weight_mismatches(trained: keras.Model, interpreter) -> int:
    """Count int8 weights in the TFLite flatbuffer that differ from `quantize_weights`.

    TFLite keeps kernels with the output channel first: a Conv2D kernel
    (kh, kw, c_in, c_out) is stored as (c_out, kh, kw, c_in), a Dense kernel
    (in, out) as (out, in).
    """
    interpreter.allocate_tensors()  # makes the stored tensors readable
    stored = {tuple(t["shape"]): interpreter.get_tensor(t["index"])
              for t in interpreter.get_tensor_details()
              if t["dtype"] == np.int8 and len(t["quantization_parameters"]["scales"]) > 1}
    mismatches = 0
    for layer in trained.layers:  # the trained model's own layers, in order
        if not isinstance(layer, (layers.Conv2D, layers.Dense)):
            continue
        ours, _ = quantize_weights(layer.kernel.numpy(), axis=-1)  # (..., c_out)
        ours = np.moveaxis(ours, -1, 0)  # (c_out, ...), TFLite's layout
        theirs = stored[ours.shape]
        mismatches += int(np.sum(ours != theirs))
    return mismatches
# [end:check_int8]


# --- The Keras way -------------------------------------------------------------------------
# [start:serving]
def build_serving_model(trained: keras.Model, shape: tuple[int, int, int],
                        max_value: float) -> keras.Model:
    """Wrap a model trained on floats in [0, 1] so it takes raw uint8 pixels.

    The scaling and the channel axis it was trained with become layers, saved
    and exported with the weights: whoever serves it needs no tfguide code.
    """
    h, w, c = shape
    pixels = keras.Input(shape=(h, w) if c == 1 else (h, w, c), dtype="uint8", name="pixels")
    x = layers.Rescaling(1 / max_value, name="scale")(pixels)  # float32 in [0, 1]
    x = layers.Reshape((h, w, c), name="channels")(x)  # (batch, h, w, c)
    probabilities = trained(x)  # (batch, classes)
    return keras.Model(pixels, {"probabilities": probabilities}, name="serving")
# [end:serving]


# [start:checkpoint]
def train_on(model_file: Path, x: np.ndarray, y: np.ndarray, folder: Path) -> keras.Model:
    """Load a saved model and train it one more epoch, writing a checkpoint after it."""
    model = keras.saving.load_model(model_file)  # layers, weights and the optimizer's state
    save = keras.callbacks.ModelCheckpoint(folder / "epoch_{epoch}.weights.h5",
                                           save_weights_only=True)  # after every epoch
    model.fit(x, y, epochs=1, batch_size=32, callbacks=[save], verbose=0)
    return model


def restore(model: keras.Model, weights_file: Path) -> keras.Model:
    """A new model with `model`'s layers and the weights stored in `weights_file`."""
    twin = keras.models.clone_model(model)  # the same layers, freshly initialised
    twin.load_weights(weights_file)  # every weight replaced by the saved one
    return twin
# [end:checkpoint]


# [start:export]
def export_savedmodel(serving: keras.Model, model_dir: Path) -> Path:
    """Export to TF Serving's layout, model_dir/<version>/, the next version number.

    The SavedModel's `serving_default` signature takes `pixels` and returns
    `probabilities`, the names of the model's input and output. It is written
    under a name that is not a number, which TF Serving ignores, and renamed to
    its version only once complete: a server watching model_dir never loads half.
    """
    versions = [int(p.name) for p in model_dir.glob("*") if p.name.isdigit()]
    version_dir = model_dir / str(max(versions, default=0) + 1)
    partial = model_dir / f".{version_dir.name}.partial"
    try:
        serving.export(partial, format="tf_saved_model", verbose=False)
        partial.rename(version_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # what a failed export left behind
    return version_dir
# [end:export]


# [start:fresh]
SERVE_WITHOUT_KERAS = """
import io, sys
sys.modules["keras"] = None  # from here on, `import keras` fails in this process
import numpy as np
import tensorflow as tf

serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
pixels = np.load(io.BytesIO(sys.stdin.buffer.read()))  # (n, h, w[, c]) uint8
outputs = serve(pixels=tf.constant(pixels))  # {"probabilities": (n, classes)}
sent = io.BytesIO()  # np.save needs a file it can seek in; a pipe is not one
np.save(sent, outputs["probabilities"].numpy())
sys.stdout.buffer.write(sent.getvalue())
"""


def predict_in_fresh_process(version_dir: Path, pixels: np.ndarray) -> np.ndarray:
    """Run the exported signature in a new Python process that imports only TensorFlow."""
    sent = io.BytesIO()
    np.save(sent, pixels)
    # -I (isolated): no module from the current folder or PYTHONPATH can stand in for TF's
    command = [sys.executable, "-I", "-c", SERVE_WITHOUT_KERAS, str(version_dir)]
    done = subprocess.run(command, input=sent.getvalue(), capture_output=True, timeout=600)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise RuntimeError(f"the SavedModel check failed in a fresh process: {error[-1]}")
    return np.load(io.BytesIO(done.stdout))
# [end:fresh]


# [start:rest]
def rest_request(pixels: np.ndarray) -> str:
    """The JSON body of a TF Serving REST predict call: one instance per image."""
    return json.dumps({"signature_name": "serving_default", "instances": pixels.tolist()})


def decode_rest_request(body: str, signature) -> dict[str, tf.Tensor]:
    """Turn a request body into the signature's inputs: one batch of the input's dtype."""
    ((name, spec),) = signature.structured_input_signature[1].items()
    values = np.asarray(json.loads(body)["instances"])  # (n, h, w[, c])
    batch = values.astype(spec.dtype.as_numpy_dtype)
    if not np.array_equal(batch, values):  # 0.5 or 300 is no uint8
        raise ValueError(f"{name} takes {spec.dtype.name} values; the instances do not fit")
    if not spec.shape.is_compatible_with(batch.shape):
        raise ValueError(f"instances of shape {batch.shape[1:]} do not fit {name}: {spec.shape}")
    return {name: tf.constant(batch)}
# [end:rest]


# [start:tflite]
def to_tflite(version_dir: Path, calibration: np.ndarray | None = None) -> bytes:
    """Convert the exported SavedModel to TFLite; with calibration images, to int8.

    Post-training quantisation runs the calibration images through the model
    to find each activation's range, then stores weights and activations as
    int8; inputs and outputs stay as they were (uint8 pixels, float32 scores).
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(version_dir))
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({"pixels": x[None]} for x in calibration)
    with warnings.catch_warnings():  # calibration uses TF's own interpreter, which warns
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        return converter.convert()


def tflite_classifier(model: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """Load a TFLite model into an interpreter; return classify(pixels) -> probabilities."""
    runner = tflite_interpreter(model).get_signature_runner("serving_default")
    return lambda pixels: runner(pixels=pixels)["probabilities"]  # (n, classes)
# [end:tflite]


def c_logs(verbose: bool):
    """Let TensorFlow's C++ log lines through when verbose; hide them otherwise."""
    return contextlib.nullcontext() if verbose else silenced_stderr()


def tflite_interpreter(model: bytes, **options):
    """LiteRT's interpreter (the ai-edge-litert package), else TensorFlow's deprecated one."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            return tf.lite.Interpreter(model_content=model, **options)
    return Interpreter(model_content=model, **options)


# --- Run -------------------------------------------------------------------------------
def ms_per_image(classify: Callable, pixels: np.ndarray, repeats: int) -> float:
    """Median wall time of `repeats` single-image calls, in milliseconds, after a warm-up."""
    classify(pixels[:1])
    times = []
    for i in range(repeats):
        one = pixels[i % len(pixels)][None]  # (1, h, w[, c])
        start = time.perf_counter()
        classify(one)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of images whose most probable class is their label."""
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def check_preprocessing(ex: Experiment, trained: keras.Model, serving: keras.Model,
                        test: TestSet) -> np.ndarray:
    """Log the serving model's agreement with the trained one, and two train/serve skews.

    A client that sends an image file's 8-bit pixels (0-255) to a model that
    expects [0, 1] forgot the /255; one that divides by 255 before a model that
    divides again scaled twice.
    """
    x = test.pixels.reshape((-1, *test.shape)) / np.float32(test.max_value)  # (n, h, w, c)
    probs = serving.predict(test.pixels, verbose=0)["probabilities"]  # (n, classes)
    ex.log(test_accuracy=accuracy(probs, test.labels), test_confidence=probs.max(1).mean(),
           preprocessing_max_abs_err=np.abs(probs - trained.predict(x, verbose=0)).max())
    predicted = {"test": probs.argmax(1)}
    for name, inputs in {"unscaled": x * 255, "scaled_twice": x / 255}.items():
        p = trained.predict(inputs, verbose=0)  # (n, classes)
        ex.log(**{f"{name}_accuracy": accuracy(p, test.labels),
                  f"{name}_confidence": p.max(axis=1).mean()})
        predicted[name] = p.argmax(1)
    ex.details["predicted_classes"] = {name: np.bincount(y, minlength=len(test.classes)).tolist()
                                       for name, y in predicted.items()}
    return probs


def check_files(ex: Experiment, trained: keras.Model, test: TestSet,
                n: int = 8) -> tuple[list, np.ndarray]:
    """Write test images as PNG files, classify them like `predict` does, compare the labels."""
    from PIL import Image

    folder = ex.dir / "images"
    folder.mkdir()
    paths = []
    for i, pixels in enumerate(test.pixels[:n]):
        paths.append(folder / f"test_{i:02d}_label_{test.classes[test.labels[i]]}.png")
        eight_bit = np.round(pixels.astype(np.float32) * 255 / test.max_value).astype(np.uint8)
        Image.fromarray(eight_bit).save(paths[-1])  # an 8-bit PNG, as image editors write
    images = [predict.read_image(p, test.shape).image for p in paths]  # the training size: as is
    from_files = predict.classify(trained, images)  # (n, classes)
    from_arrays = trained.predict(test.pixels[:n].reshape((n, *test.shape)) / test.max_value,
                                  verbose=0)
    ex.log(predict_agreement=np.mean(from_files.argmax(1) == from_arrays.argmax(1)))
    ex.details["png_files"] = n
    return images, from_files


def convert(ex: Experiment, version_dir: Path, test: TestSet) -> dict[str, bytes]:
    """Convert the SavedModel to TFLite in float32 and int8; save both in the run folder."""
    with c_logs(ex.cfg.verbose):  # the converter's and the interpreter's lines, once each
        tflite = {"tflite": to_tflite(version_dir),
                  "tflite_int8": to_tflite(version_dir, test.calibration)}
        tflite_interpreter(tflite["tflite"]).allocate_tensors()
    for name, model in tflite.items():
        ex.write_file(TFLITE_FILES[name], model)
    interpreter = type(tflite_interpreter(tflite["tflite"]))
    ex.details["calibration_images"] = len(test.calibration)
    ex.details["tflite_interpreter"] = f"{interpreter.__module__}.{interpreter.__name__}"
    if not interpreter.__module__.startswith("ai_edge_litert"):
        print("Note: ai-edge-litert is not installed; the TFLite models run in TensorFlow's "
              "deprecated tf.lite.Interpreter (pip install -e \".[tflite]\").", file=sys.stderr)
    return tflite


def compare_artefacts(ex: Experiment, serving: keras.Model, version_dir: Path,
                      tflite: dict[str, bytes], test: TestSet, keras_probs: np.ndarray) -> None:
    """Run every artefact on the test set; log its accuracy, error and latency."""
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    classify = {"keras": lambda x: serving.predict(x, verbose=0)["probabilities"],
                "savedmodel": lambda x: signature(pixels=tf.constant(x))["probabilities"],
                **{name: tflite_classifier(model) for name, model in tflite.items()}}
    probs = {name: classify[name](test.pixels) for name in tflite}
    probs["keras"] = keras_probs
    probs["savedmodel"] = predict_in_fresh_process(version_dir, test.pixels)
    calls = 20 if ex.cfg.quick else 100  # timed single-image calls; 10× as many for the fast ones
    ex.details["latency_calls"] = {name: calls * (1 if name == "keras" else 10)
                                   for name in ARTEFACTS}
    for name, repeats in ex.details["latency_calls"].items():
        ex.log(**{f"{name}_ms_per_image": ms_per_image(classify[name], test.pixels, repeats)})
        if name != "keras":  # the Keras model's own accuracy is test_accuracy
            ex.log(**{f"{name}_accuracy": accuracy(probs[name], test.labels),
                      f"{name}_max_abs_err": np.abs(probs[name] - keras_probs).max()})


def check_checkpoints(ex: Experiment, model_run: Path, test: TestSet) -> None:
    """Train a copy one epoch with a checkpoint; log how far the restored copy's answers are."""
    x = test.calibration.reshape((-1, *test.shape)) / np.float32(test.max_value)  # (n, h, w, c)
    trained = train_on(model_run / predict.MODEL_FILE, x, test.calibration_labels,
                       ex.dir / "checkpoints")
    twin = restore(trained, ex.dir / "checkpoints" / "epoch_1.weights.h5")
    ex.log(checkpoint_max_abs_err=np.abs(twin.predict(x, verbose=0)
                                         - trained.predict(x, verbose=0)).max())


def check_int8_weights(ex: Experiment, trained: keras.Model, int8_model: bytes) -> None:
    """Log how many kernel weights the int8 model holds, and how many differ from ours."""
    kernels = [layer.kernel for layer in trained.layers
               if isinstance(layer, (layers.Conv2D, layers.Dense))]
    ex.log(int8_weights=sum(int(np.prod(k.shape)) for k in kernels),
           int8_weight_mismatches=int8_weight_mismatches(trained, tflite_interpreter(int8_model)))


def artefact_sizes(model_run: Path, version_dir: Path, tflite: dict[str, bytes]) -> dict:
    """File sizes in bytes: the .keras file, the SavedModel folder, the TFLite models."""
    saved = sum(p.stat().st_size for p in version_dir.rglob("*") if p.is_file())
    return {"keras": (model_run / predict.MODEL_FILE).stat().st_size, "savedmodel": saved,
            **{name: len(model) for name, model in tflite.items()}}


def log_sizes(ex: Experiment, sizes: dict[str, int], trained: keras.Model) -> None:
    """Log file sizes: in bytes, but the SavedModel's in kB (its traced function names, and so
    its size, vary by a few bytes from one process to the next); and what they hold."""
    ex.log(**{f"{name}_bytes": size for name, size in sizes.items() if name != "savedmodel"},
           savedmodel_kb=sizes["savedmodel"] / 1000, params=trained.count_params(),
           int8_size_ratio=sizes["tflite_int8"] / sizes["tflite"])


def draw(ex: Experiment, test: TestSet, files: tuple[list, np.ndarray],
         sizes: dict[str, int]) -> None:
    """Draw the artefacts' size, accuracy and latency; the files as the model saw them; the skew."""
    m = ex.metrics
    correct = {name: m["test_accuracy" if name == "keras" else f"{name}_accuracy"]
               for name in ARTEFACTS}
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    names = list(ARTEFACTS)[::-1]  # keras at the top
    left.barh(names, [sizes[n] / 1000 for n in names], color="tab:blue")
    for i, name in enumerate(names):
        left.annotate(f" {correct[name]:.1%} correct", (sizes[name] / 1000, i), va="center",
                      fontsize=8)
    left.set(xlabel="file size (kB)", title="Size, and test accuracy",
             xlim=(0, 1.45 * max(sizes.values()) / 1000))
    right.barh(names, [m[f"{n}_ms_per_image"] for n in names], color="tab:orange")
    right.set(xscale="log", xlabel="ms per image (median of single-image calls)",
              title="Latency")
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="x")
    ex.save_figure(fig, "artefacts")

    images, probs = files
    titles = [f"{test.classes[test.labels[i]]} → {test.classes[p.argmax()]} {p.max():.0%}"
              for i, p in enumerate(probs)]
    ex.save_figure(plotting.image_grid(np.stack(images), titles, ncols=8,
                                       title="PNG files read back by predict (true → predicted)"),
                   "files")
    ex.save_figure(skew_figure(m, ex.details["predicted_classes"], test.classes), "skew")


def skew_figure(m: dict, counts: dict[str, list[int]], classes) -> Figure:
    """Bars of how often each class is predicted, as trained and under the two skews."""
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.add_subplot()
    labels = {"test": "as trained, in [0, 1]", "unscaled": "0-255, the /255 forgotten",
              "scaled_twice": "divided by 255 twice"}
    width = 0.8 / len(counts)
    for i, (name, n) in enumerate(counts.items()):
        ax.bar(np.arange(len(classes)) + (i - 1) * width, n, width,
               label=f"{labels[name]}: {m[f'{name}_accuracy']:.1%} correct, "
                     f"mean top probability {m[f'{name}_confidence']:.1%}")
    ax.set_xticks(np.arange(len(classes)), classes)
    ax.set(xlabel="predicted class", ylabel="test images",
           title="Train/serve skew: the same model fed differently scaled pixels")
    ax.set_ylim(0, 1.45 * max(max(n) for n in counts.values()))
    ax.legend(fontsize=8, loc="upper right")
    return fig


def concept_figures() -> dict[str, Figure]:
    """The artefacts and the functions that make them; int8's scale and zero point on a line."""
    tiny = keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(10)],
                            name="trained")
    serving = build_serving_model(tiny, (8, 8, 1), 16.0)  # its layers name the boxes
    steps = " → ".join(f"{layer.name}" for layer in serving.layers)
    boxes = [(0.0, 1, "trained Keras model\nmodel.keras\nfloats in [0, 1] → probabilities"),
             (1.6, 1, f"serving model\n{steps}\n{serving.inputs[0].dtype} pixels in"),
             (3.15, 1, "SavedModel\nexport/digits_cnn/1/\nsignature serving_default"),
             (4.5, 1.6, f"TFLite float32\n{TFLITE_FILES['tflite']}"),
             (4.5, 0.4, f"TFLite int8\n{TFLITE_FILES['tflite_int8']}")]
    arrows = [(0, 1, "build_serving_model", 0.15), (1, 2, "export_savedmodel", 0.15),
              (2, 3, "to_tflite", 0.2), (2, 4, "to_tflite + calibration", -0.25)]
    fig = Figure(figsize=(13, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for x, y, label in boxes:
        ax.text(x, y, label, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.5", fc="lavender" if x else "honeydew"))
    for a, b, label, dy in arrows:
        (x0, y0, _), (x1, y1, _) = boxes[a], boxes[b]
        half = (0.58, 0.7, 0.55, 0.35, 0.35)  # each box's half width
        ax.annotate("", (x1 - half[b], y1), (x0 + half[a], y0), arrowprops=dict(arrowstyle="->"))
        ax.text((x0 + x1) / 2 + 0.05, (y0 + y1) / 2 + dy, label, ha="center", fontsize=8,
                color="tab:blue", family="monospace")
    ax.set(xlim=(-0.6, 5.0), ylim=(0, 2), title="One trained model, four forms: each arrow is "
           "a function of this chapter, each form checked against the first")
    ax.axis("off")

    lo, hi = -0.5, 1.5
    scale, zero = activation_params(lo, hi)
    codes = np.array([-128, zero, 0, 64, 127])
    fig2 = Figure(figsize=(10, 2.6), layout="constrained")
    ax = fig2.add_subplot()
    ax.axhline(0, color="black", lw=1)
    ax.vlines(dequantize(np.arange(-128, 128), scale, zero), -0.04, 0.04, lw=0.3)  # all 256
    for q, x in zip(codes, dequantize(codes, scale, zero)):
        ax.plot([x, x], [-0.1, 0.1], color="tab:red" if q == zero else "black")
        ax.text(x, 0.2, f"q = {q}", ha="center", fontsize=9)
        ax.text(x, -0.35, f"x = {x:.3f}", ha="center", fontsize=9)
    ax.set(xlim=(lo - 0.15, hi + 0.15), ylim=(-0.6, 0.5), yticks=[],
           title=f"int8 for values in [{lo}, {hi}]: x = s (q − z), s = 2/255 = {scale:.5f}, "
                 f"z = {zero} (red: q = z is x = 0 exactly; a thin tick per code)")
    ax.spines[["left", "right", "top"]].set_visible(False)
    return {"concept_artefacts": fig, "concept_int8": fig2}


def run(cfg: Config) -> dict:
    """Serve a trained classifier four ways and prove each one gives the model's answers."""
    model_run = find_model_run(cfg)  # before this run's runtime: it may train a CNN first
    with Experiment(cfg) as ex:
        record = predict.check_run_folder(model_run)
        trained = predict.load_model(model_run, record)
        test = prepare_data(ex, cfg, record, model_run)
        if (model_run / "history.csv").is_file():  # the deployed model's training, kept
            shutil.copy(model_run / "history.csv", ex.dir / "history.csv")

        serving = build_serving_model(trained, test.shape, test.max_value)
        keras_probs = check_preprocessing(ex, trained, serving, test)
        files = check_files(ex, trained, test)
        check_checkpoints(ex, model_run, test)

        model_dir = ex.dir / "export" / f"{test.name}_{record['chapter']}"
        version_dir = export_savedmodel(serving, model_dir)
        ex.write_file("request.json", rest_request(test.pixels[:3]).encode())
        tflite = convert(ex, version_dir, test)
        check_int8_weights(ex, trained, tflite["tflite_int8"])

        compare_artefacts(ex, serving, version_dir, tflite, test, keras_probs)
        sizes = artefact_sizes(model_run, version_dir, tflite)
        log_sizes(ex, sizes, trained)
        draw(ex, test, files, sizes)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
