"""`python -m tfguide predict RUN_DIR IMAGE [IMAGE ...]`: classify your own image files.

RUN_DIR is a finished `cnn` or `mlp` run folder (it holds `model.keras` and
`results.json`, which says what data the model was trained on). Each image,
PNG, JPEG or any other format Pillow decodes, is turned into what the model saw
in training, and the top three classes are printed with their probabilities.

Every argument is checked before TensorFlow is imported: a missing run folder,
a folder without a model, a missing file, a folder given as an image or a file
that does not decode as an image is answered with one line and exit status 2.
The model is loaded in Keras safe mode. The deploy chapter uses the same
functions, so what it proves about this path holds for the command.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from tfguide import console

MODEL_FILE = "model.keras"
SERVABLE = ("cnn", "mlp")  # chapters whose run folders hold an image classifier
TOP_K = 3
INK_MARGIN = {"mnist": 4 / 20}  # MNIST digits fill a 20x20 box centred in 28x28; others fill theirs

CONVERSION = """\
How an image file becomes the model's input: it is decoded by Pillow (the format is read
from the file itself, not its name), turned upright by its EXIF orientation, laid on white
where it is transparent, converted to greyscale (RGB for a colour model) and scaled to
[0, 1]. tfguide's greyscale data sets (digits, MNIST, Fashion-MNIST) show light strokes on a
dark background, so a greyscale image whose border is brighter on average than the whole
image (dark ink on white paper) is inverted; the output says when it was. A greyscale image of
another size than the training images is then cropped to its ink (the pixels brighter than
half the brightest), padded to a centred square (with MNIST's margin: its digits fill a
20x20 box in 28x28) and resized (area averaging when shrinking, bilinear when enlarging).
An image of the training size is taken as it is."""


# --- The run folder ---------------------------------------------------------------------
def check_run_folder(run_dir: Path) -> dict:
    """Return the results.json record of a run folder that holds a servable model.

    Raises:
        console.UsageError: not a folder, no model.keras, no readable results.json, or a run of
            a chapter whose model is not an image classifier.
    """
    run_dir = Path(run_dir)
    hint = "pass a finished cnn or mlp run folder, e.g. runs/cnn/<time>/"
    if not run_dir.is_dir():
        raise console.UsageError(f"{run_dir} is not a folder: {hint}")
    if not (run_dir / MODEL_FILE).is_file():
        raise console.UsageError(f"{run_dir} holds no {MODEL_FILE}: {hint}")
    try:
        record = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        chapter, data = record["chapter"], record["data"]
        shape = tuple(int(n) for n in data["shape"])
        assert isinstance(data["name"], str) and len(shape) == 3
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise console.UsageError(f"{run_dir} has no readable results.json saying what data its "
                             f"model was trained on: {hint}") from None
    if chapter not in SERVABLE:
        raise console.UsageError(f"{run_dir} is a {chapter} run, whose model is not an image "
                             f"classifier: {hint}")
    return record


def latest_model_run(out: Path, chapter: str = "cnn") -> Path | None:
    """Return the newest finished run of `chapter` under `out` if it holds a model, else None."""
    from tfguide import runs

    run = runs.latest_run(Path(out), chapter)
    return run.dir if run is not None and (run.dir / MODEL_FILE).is_file() else None


def load_model(run_dir: Path, record: dict):
    """Load the run's model in Keras safe mode and check it classifies its data's images.

    Raises:
        console.UsageError: the file does not load, or the model's input or output does not
            match the data recorded in results.json.
    """
    import keras

    path = Path(run_dir) / MODEL_FILE
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)  # no optimizer
    except Exception as err:  # damaged zip, unknown layer, unsafe lambda, ...
        raise console.UsageError(f"{path} does not load ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:120] if str(err) else ''}): run the "
                             f"chapter again to save a fresh model") from None
    data = record["data"]
    want_in, want_out = (None, *data["shape"]), (None, int(data["classes"]))
    if tuple(model.input_shape) != want_in or tuple(model.output_shape) != want_out:
        raise console.UsageError(f"{path} takes {model.input_shape} and returns "
                             f"{model.output_shape}, but an image classifier for "
                             f"{data['name']} takes {want_in} and returns {want_out}: pass "
                             f"the run folder this model was trained in")
    return model


# --- Image files ------------------------------------------------------------------------
def check_image(path: Path) -> None:
    """Raise console.UsageError unless `path` is a file that decodes as an image."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise console.UsageError(f"{path} does not exist: give the path of an image file")
    if not path.is_file():
        raise console.UsageError(f"{path} is not a file: give image files, not folders")
    try:
        with Image.open(path) as img:
            img.load()  # decode every pixel: a truncated file fails here
    except Exception as err:  # Pillow raises several kinds for files it cannot read
        raise console.UsageError(f"{path} is not an image Pillow can decode ({type(err).__name__}); "
                             f"give a PNG or JPEG file") from None


# Code between [start:…]/[end:…] markers is shown in chapters/deploy.md; refresh the text with
# python -m tfguide.excerpts chapters/deploy.md after editing it.
# [start:invert]
def is_dark_on_light(grey: np.ndarray) -> bool:
    """True when the border of a greyscale image (h, w) is brighter than the whole image.

    The border is mostly background; dark ink on light paper makes it brighter
    than the average pixel, light strokes on a dark ground darker.
    """
    h, w = grey.shape
    b = max(1, min(h, w) // 16)  # the frame: 1 pixel for 8x8 or 28x28, more for photos
    border = np.concatenate([grey[:b].ravel(), grey[-b:].ravel(),
                             grey[:, :b].ravel(), grey[:, -b:].ravel()])
    return bool(border.mean() > grey.mean())
# [end:invert]


def centre_ink(grey: np.ndarray, margin: float) -> np.ndarray:
    """Crop a light-on-dark image (h, w) to its ink, pad it to a centred square plus margin."""
    ys, xs = np.nonzero(grey > grey.max() / 2)  # the ink: brighter than half the brightest
    if len(ys) == 0:
        return grey
    ink = grey[ys.min():ys.max() + 1, xs.min():xs.max() + 1]  # (ink_h, ink_w)
    side = round(max(ink.shape) * (1 + 2 * margin))
    square = np.zeros((side, side), grey.dtype)  # (side, side), dark
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return square


def resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize (H, W) or (H, W, c) to (h, w[, c]): area averaging to shrink, bilinear to enlarge."""
    from PIL import Image

    shrink = x.shape[0] >= h and x.shape[1] >= w
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    planes = [x] if x.ndim == 2 else [x[..., i] for i in range(x.shape[2])]
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize((w, h), method))
           for p in planes]  # each (h, w), float32
    return out[0] if x.ndim == 2 else np.stack(out, axis=-1)


# [start:read_image]
def read_image(path: Path, shape: Sequence[int], data: str = "") -> tuple[np.ndarray, bool]:
    """Turn an image file into what a model trained on `data` saw: (h, w, c) float32 in [0, 1].

    Returns the image and whether it was inverted (see `CONVERSION`).
    """
    from PIL import Image, ImageOps

    h, w, c = shape
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            img = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img)
        if img.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale
            x = np.asarray(img, np.float32) / 65535  # (H, W)
            x = x if c == 1 else np.repeat(x[..., None], 3, axis=-1)  # (H, W[, 3])
        else:
            x = np.asarray(img.convert("L" if c == 1 else "RGB"), np.float32) / 255  # (H, W[, 3])
    inverted = c == 1 and is_dark_on_light(x)
    if inverted:
        x = 1 - x  # dark ink on white paper -> light strokes on a dark background
    if c == 1 and x.shape != (h, w):
        x = centre_ink(x, INK_MARGIN.get(data, 0.0))  # (side, side)
    return resize(x, h, w).reshape(h, w, c), inverted
# [end:read_image]


def top_k(probs: np.ndarray, classes: Sequence[str], k: int = TOP_K) -> list[tuple[str, float]]:
    """Return the k most probable (class name, probability) pairs, most probable first."""
    best = np.argsort(probs)[::-1][:k]
    return [(classes[i], float(probs[i])) for i in best]


def classify(model, images: Sequence[np.ndarray]) -> np.ndarray:
    """Return the model's class probabilities for images (h, w, c): (n, classes)."""
    return model.predict(np.stack(images), verbose=0)


# --- Command line -----------------------------------------------------------------------
def parse(argv: Sequence[str]) -> tuple[Path, dict, list[Path]]:
    """Check the command line (no TensorFlow): return the run folder, its record, the images."""
    parser = console.Parser("python -m tfguide predict",
                        "Print the top-3 classes of a trained model for each image file. "
                        + CONVERSION)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished cnn or mlp run folder")
    parser.add_argument("images", metavar="IMAGE", nargs="*", help="image files to classify")
    args = parser.parse_args(list(argv))
    if not args.images:
        raise console.UsageError("give at least one image file after RUN_DIR: "
                             "python -m tfguide predict RUN_DIR IMAGE [IMAGE ...]")
    run_dir = Path(args.run_dir).expanduser()
    record = check_run_folder(run_dir)
    images = [Path(p).expanduser() for p in args.images]
    for path in images:
        check_image(path)
    return run_dir, record, images


def main(argv: Sequence[str]) -> None:
    """Classify image files with a run's model and print the top-3 classes of each."""
    try:
        run_dir, record, paths = parse(argv)
    except console.UsageError as err:
        console.fail(str(err), 2)

    from tfguide import datasets  # imports TensorFlow

    try:
        model = load_model(run_dir, record)
    except console.UsageError as err:
        console.fail(str(err), 2)
    data = record["data"]
    source = datasets.SOURCES.get(data["name"])
    classes = source.classes if source else tuple(str(i) for i in range(data["classes"]))
    read = [read_image(p, data["shape"], data["name"]) for p in paths]
    probs = classify(model, [x for x, _ in read])  # (n, classes)
    h, w, c = data["shape"]
    print(f"{run_dir}: {record['chapter']} model trained on {data['name']} "
          f"({h}x{w}, {'greyscale' if c == 1 else 'colour'})")
    for path, (_, inverted), p in zip(paths, read, probs):
        best = ", ".join(f"{name} {prob:.1%}" for name, prob in top_k(p, classes))
        print(f"{path}: {best}" + ("  (inverted: dark on light)" if inverted else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
