"""`python -m tfguide predict RUN_DIR IMAGE [IMAGE ...]`: classify your own image files.

RUN_DIR is a finished `cnn` or `mlp` run folder (it holds `model.keras` and
`results.json`, which says what data the model was trained on and how its
training images frame their ink). Each image, PNG, JPEG or any other format
Pillow decodes, is turned into what the model saw in training, and the top
three classes are printed with their probabilities.

Every argument is checked, and every image decoded, before TensorFlow is
imported: a missing or unfinished run folder, a damaged model file, a missing
file, a folder, a pipe or device given as an image, a file that does not decode
as an image or one larger than `MAX_PIXELS` is answered with one line and exit
status 2. The model is loaded in Keras safe mode. The deploy chapter uses the
same functions, so what it proves about this path holds for the command.
"""
from __future__ import annotations

import contextlib
import math
import stat
import sys
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple, Sequence

import numpy as np

from tfguide import config, console

MODEL_FILE = config.MODEL_FILE
SERVABLE = config.SERVABLE  # chapters whose run folders hold an image classifier
TOP_K = 3
MAX_PIXELS = 100_000_000  # the largest image read: 100 megapixels, e.g. 10,000 x 10,000
WORK_SIDE = 1024  # a larger image is shrunk (while decoding, for JPEG) to this longest side
NO_INK = 0.1  # an image whose brightest ink is this close to its background is blank
INK_MARGIN = {"mnist": 4 / 20}  # for runs without a framing record: MNIST's 20x20 box in 28x28

CONVERSION = f"""\
How an image file becomes the model's input: it is decoded by Pillow (the format is read
from the file itself, not its name; an animation from its first frame), shrunk while
decoding when it is larger than {WORK_SIDE} pixels a side, turned upright by its EXIF
orientation, laid on white where it is transparent, converted to greyscale (RGB for a colour
model) and scaled to [0, 1]. tfguide's greyscale data sets (digits, MNIST, Fashion-MNIST)
show light strokes on a dark background, so a greyscale image whose border is brighter on
average than the whole image (dark ink on white paper) is inverted; the output says when it
was. A greyscale image of another size than the training images is then framed the way the
training images frame their ink, as measured from them when the model was trained (results.json,
"data.framing"): the paper's level (the border's median) is taken away, the ink's box (pixels
brighter than the recorded fraction of the brightest) is scaled to the training images' median
longest side and placed where they place theirs, along each axis by the box's centre or the
centre of mass, whichever they align by; then it is area-averaged to the training size and
brightened to the training ink's level. A run made before tfguide recorded this centres the
ink's box instead (with a note). An image with no ink (one colour) is not classified. An image
of the training size is taken as it is. Images are read one at a time and before TensorFlow
loads; one of more than {MAX_PIXELS // 10**6} megapixels is refused (a JPEG is decoded at up to
1/8 of its size, so it may be 8 times larger a side). Peak memory: at most about 6 bytes per
pixel of the largest image (about {6 * MAX_PIXELS // 10**6 + 30} MB at the limit; 4 for an
8-bit PNG, far less for a JPEG) while reading, then TensorFlow's own, about 650 MB on a CPU."""


class Reading(NamedTuple):
    """An image file as the model sees it."""

    image: np.ndarray | None  # (h, w, c) float32 in [0, 1]; None when no ink was found
    inverted: bool  # dark ink on light paper, inverted to the training's light on dark
    note: str = ""  # what else to tell the user (an animation's first frame, no ink)


# --- The run folder ---------------------------------------------------------------------
def check_run_folder(run_dir: Path) -> dict:
    """Return the results.json record of a run folder that holds a servable model.

    Raises:
        console.UsageError: not a folder, no model.keras, no readable or complete
            results.json, an unfinished run, or a run of a chapter whose model is not
            an image classifier.
    """
    try:
        return config.model_run(Path(run_dir))
    except ValueError as err:
        raise console.UsageError(f"{run_dir} {err}: pass a finished cnn or mlp run folder, "
                                 f"e.g. runs/cnn/<time>/") from None


def latest_model_run(out: Path, chapter: str = "cnn") -> Path | None:
    """Return the newest finished run of `chapter` under `out` if it holds a model, else None."""
    from tfguide import runs

    run = runs.latest_run(Path(out), chapter)
    return run.dir if run is not None and (run.dir / MODEL_FILE).is_file() else None


def check_model_file(path: Path) -> None:
    """Refuse a model file Keras could not read, or one holding paths outside itself.

    A `.keras` file is a zip archive; its members are checked (CRC) here, so an
    empty, truncated or foreign file is named as such, not as a Keras error.
    """
    again = "run the chapter again to save a fresh model"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        raise console.UsageError(f"{path} is not a Keras model file (empty, truncated or not a "
                                 f"zip archive): {again}") from None
    except OSError as err:
        raise console.UsageError(f"{path} cannot be read ({err.strerror or err}): {again}"
                                 ) from None
    outside = [n for n in names if n.startswith(("/", "\\")) or ".." in PurePosixPath(n).parts]
    if outside:
        raise console.UsageError(f"{path} holds a file named {outside[0][:60]!r}, outside the "
                                 f"archive, which no saved Keras model has: it was not written "
                                 f"by Keras; {again}")
    if damaged is not None or "config.json" not in names:
        why = f"{damaged[:60]!r} is damaged" if damaged else "it has no config.json"
        raise console.UsageError(f"{path} is not a whole Keras model file ({why}): {again}")


def _first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of an error message, cut at a word if it is still long."""
    text = " ".join(text.split())
    end = text.find(". ")
    text = text if end < 0 else text[:end + 1]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def load_model(run_dir: Path, record: dict):
    """Load the run's model in Keras safe mode and check it classifies its data's images.

    Raises:
        console.UsageError: the file does not load, holds code, or the model's input or
            output does not match the data recorded in results.json.
    """
    import keras

    path = Path(run_dir) / MODEL_FILE
    check_model_file(path)
    try:
        with warnings.catch_warnings():  # Keras's own warnings are not this command's
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # unknown layer, unsafe lambda, bad weights, ...
        message = str(err)
        if "safe_mode" in message or "unsafe" in message.lower():
            raise console.UsageError(f"{path} holds Python code (a Lambda layer), which "
                                     f"tfguide does not run: use a model saved by the cnn or "
                                     f"mlp chapter") from None
        raise console.UsageError(f"{path} does not load ({type(err).__name__}: "
                                 f"{_first_sentence(message)}): run the chapter again to save "
                                 f"a fresh model") from None
    data = record["data"]
    want_in, want_out = (None, *data["shape"]), (None, int(data["classes"]))
    if tuple(model.input_shape) != want_in or tuple(model.output_shape) != want_out:
        raise console.UsageError(f"{path} takes {model.input_shape} and returns "
                                 f"{model.output_shape}, but an image classifier for "
                                 f"{data['name']} takes {want_in} and returns {want_out}: "
                                 f"pass the run folder this model was trained in")
    return model


def framing_of(data: dict) -> dict:
    """How the model's training images frame their ink: results.json's record of it or, for a
    run made before tfguide measured it, the old rule (the ink's box centred, filling the frame
    but for MNIST's margin)."""
    if "framing" in data:
        return data["framing"]
    h, w, _ = data["shape"]
    margin = INK_MARGIN.get(data["name"], 0.0)
    return {"ink": 0.5, "peak": 1.0, "box": min(h, w) / (1 + 2 * margin),
            "place": ["box", "box"], "centre": [h / 2, w / 2]}


# --- Image files ------------------------------------------------------------------------
def check_image(path: Path) -> None:
    """Raise console.UsageError unless `path` is a regular file (not a folder, pipe or device)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise console.UsageError(f"{path} does not exist: give the path of an image file"
                                 ) from None
    except OSError as err:
        raise console.UsageError(f"{path} cannot be read ({err.strerror}): give the path of "
                                 f"an image file you can read") from None
    if stat.S_ISDIR(mode):
        raise console.UsageError(f"{path} is not a file: give image files, not folders")
    if not stat.S_ISREG(mode):
        kind = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) \
            else "a device"
        raise console.UsageError(f"{path} is {kind}, not a file: give image files")


@contextlib.contextmanager
def _own_pixel_limit():
    """Let Pillow open any image: `decode` checks the size itself, against MAX_PIXELS."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode(path: Path, colour: bool) -> tuple[np.ndarray, str]:
    """Decode an image file, once and reduced: (H, W) or, for colour, (H, W, 3) in [0, 1].

    An image larger than WORK_SIDE a side is shrunk by a whole factor, by the
    JPEG decoder itself where it can (draft mode) and by averaging otherwise,
    before any float copy is made. Returns the pixels and a note (an animation).

    Raises:
        console.UsageError: not an image Pillow decodes, or more than MAX_PIXELS.
    """
    from PIL import Image

    def refuse(err: Exception):
        return console.UsageError(f"{path} is not an image Pillow can decode "
                                  f"({type(err).__name__}); give a PNG or JPEG file")

    with _own_pixel_limit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings (EXIF, palette) are not the user's
        try:
            img = Image.open(path)
        except Exception as err:  # Pillow raises several kinds for files it cannot read
            raise refuse(err) from None
        with img:
            w, h = img.size
            frames = getattr(img, "n_frames", 1)
            try:
                orientation = img.getexif().get(0x0112)
                factor = math.ceil(max(w, h) / WORK_SIDE)
                if factor > 1 and img.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 the size
                    img.draft(img.mode, (math.ceil(w / factor), math.ceil(h / factor)))
            except Exception:  # a damaged EXIF block: read the image as stored
                orientation = None
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise console.UsageError(
                    f"{path} is {w:,} x {h:,} pixels ({w * h / 1e6:,.0f} megapixels); predict "
                    f"reads images of at most {MAX_PIXELS / 1e6:,.0f} megapixels (e.g. "
                    f"10,000 x 10,000; a JPEG 8 times larger a side): shrink it first")
            try:
                img.load()  # decode every pixel: a truncated file fails here
                x = _flatten(img, colour, math.ceil(max(img.size) / WORK_SIDE))
            except Exception as err:
                raise refuse(err) from None
    if orientation in range(2, 9):
        x = _transpose(x, orientation)
    return x, (f"the first frame of {frames}" if frames > 1 else "")


def _flatten(img, colour: bool, factor: int) -> np.ndarray:
    """Reduce a decoded image by `factor`, lay it on white, return (H, W[, 3]) in [0, 1]."""
    sixteen = img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N")
    alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if sixteen:  # 16-bit greyscale, kept at its depth
        mode, scale = "I", 65535
    else:
        mode, scale = ("RGB" if colour else "L") + ("A" if alpha else ""), 255
    if factor > 1 and img.mode in ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK"):
        img = img.reduce(factor)  # averages factor x factor blocks, before any copy
        factor = 1
    if img.mode != mode:
        img = img.convert(mode)
    if factor > 1:
        img = img.reduce(factor)
    x = np.asarray(img, np.float32) / scale  # (H, W[, channels])
    if sixteen:
        x = np.clip(x, 0, 1)
        return np.repeat(x[..., None], 3, axis=-1) if colour else x
    if alpha:
        a = x[..., -1:]  # (H, W, 1): 1 opaque, 0 transparent
        x = x[..., :-1] * a + (1 - a)  # transparent -> white paper
    return x if colour else x.reshape(x.shape[:2])


def _transpose(x: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W[, c]) upright as EXIF orientation 2-8 asks."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](x))


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


def background(grey: np.ndarray) -> float:
    """The paper's level: the median of the image's border (1 pixel, more for photos)."""
    h, w = grey.shape
    b = max(1, min(h, w) // 16)
    return float(np.median(np.concatenate([grey[:b].ravel(), grey[-b:].ravel(),
                                           grey[:, :b].ravel(), grey[:, -b:].ravel()])))


def area_weights(start: float, step: float, n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights that average [start + i*step, start + (i+1)*step) of n_in pixels.

    Pixel r covers [r, r + 1); outside 0..n_in there is only background (0).
    Shrinking (step >= 1) averages areas exactly; enlarging interpolates linearly.
    """
    lo = start + step * np.arange(n_out)[:, None]  # (n_out, 1): each output pixel's interval
    r = np.arange(n_in)[None, :]  # (1, n_in)
    if step >= 1:
        overlap = np.clip(np.minimum(lo + step, r + 1) - np.maximum(lo, r), 0, None)
        return (overlap / step).astype(np.float32)  # (n_out, n_in)
    centre = lo + step / 2  # enlarging: a tent around each output pixel's centre
    return np.clip(1 - np.abs(centre - (r + 0.5)), 0, None).astype(np.float32)


# [start:frame]
def frame_ink(grey: np.ndarray, shape: Sequence[int], framing: dict) -> np.ndarray | None:
    """Frame the ink of a light-on-dark image (H, W) as the training images frame theirs.

    `framing` is what `datasets.ink_framing` measured on the training images: the
    ink's threshold and brightness, the median longest side of its box, and where
    they put it (`place`, for rows and columns: the box's centre or the centre of
    mass, at `centre`).
    Returns (h, w) in [0, 1], or None when there is no ink.
    """
    h, w = shape[:2]
    x = np.clip(grey - background(grey), 0, None)  # the paper becomes 0
    if x.max() < NO_INK:
        return None
    ys, xs = np.nonzero(x > 0.5 * x.max())  # the ink's core, clear of paper noise
    side = max(ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min())
    pad = side // 4 + 2  # around it, the ink's soft edge; specks further away are dropped
    y0, x0 = max(0, ys.min() - pad), max(0, xs.min() - pad)
    x = x[y0:ys.max() + 1 + pad, x0:xs.max() + 1 + pad]  # (H', W')
    ys, xs = np.nonzero(x > framing["ink"] * x.max())  # the ink, as the training measured it
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(bottom - top, right - left)  # the box's longest side
    mass = ((x.sum(1) @ (np.arange(x.shape[0]) + 0.5)) / x.sum(),  # centre of mass (y, x)
            (x.sum(0) @ (np.arange(x.shape[1]) + 0.5)) / x.sum())
    box = ((top + bottom) / 2, (left + right) / 2)  # the box's centre (y, x)
    cy, cx = ((mass if place == "mass" else box)[axis]
              for axis, place in enumerate(framing["place"]))
    step = side / framing["box"]  # image pixels per training pixel
    ty, tx = framing["centre"]
    rows = area_weights(cy - ty * step, step, h, x.shape[0])  # (h, H')
    cols = area_weights(cx - tx * step, step, w, x.shape[1])  # (w, W')
    out = rows @ x @ cols.T  # (h, w)
    if out.max() <= 0:
        return None
    return np.clip(out * (framing["peak"] / out.max()), 0, 1)  # as bright as training ink
# [end:frame]
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
def read_image(path: Path, shape: Sequence[int], framing: dict | None = None) -> Reading:
    """Turn an image file into what the model saw in training: (h, w, c) float32 in [0, 1].

    `framing` says how the training images frame their ink (`frame_ink`); by
    default the ink's box is centred, filling the frame. See `CONVERSION`.
    """
    h, w, c = shape
    x, note = decode(path, colour=c == 3)  # (H, W) greyscale or (H, W, 3) RGB
    if c == 3:
        return Reading(resize(x, h, w), False, note)
    inverted = is_dark_on_light(x)
    if inverted:
        x = 1 - x  # dark ink on white paper -> light strokes on a dark background
    if x.shape != (h, w):
        framing = framing or {"ink": 0.5, "peak": 1.0, "box": min(h, w),
                              "place": ["box", "box"], "centre": [h / 2, w / 2]}
        x = frame_ink(x, (h, w), framing)  # (h, w), or None: no ink
    elif x.max() - background(x) < NO_INK:
        x = None
    if x is None:
        return Reading(None, inverted, "no ink found: the image is all one colour")
    return Reading(x.reshape(h, w, c).astype(np.float32), inverted, note)
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
    check_model_file(run_dir / MODEL_FILE)
    images = [Path(p).expanduser() for p in args.images]
    for path in images:
        check_image(path)
    return run_dir, record, images


def _classify_files(argv: Sequence[str]) -> None:
    try:
        run_dir, record, paths = parse(argv)
        data = record["data"]
        h, w, c = data["shape"]
        if c == 1 and "framing" not in data:
            print(f"Note: {console.printable(run_dir)} does not record how its training images "
                  f"frame their ink (it was made before tfguide measured that); each image's "
                  f"ink is centred by its box instead. Train the model again for the "
                  f"training images' own framing.", file=sys.stderr)
        framing = framing_of(data)
        read = [read_image(p, data["shape"], framing) for p in paths]  # before TensorFlow
    except console.UsageError as err:
        console.fail(str(err), 2)

    from tfguide import datasets  # imports TensorFlow

    try:
        model = load_model(run_dir, record)
    except console.UsageError as err:
        console.fail(str(err), 2)
    source = datasets.SOURCES.get(data["name"])
    classes = source.classes if source and len(source.classes) == data["classes"] \
        else tuple(str(i) for i in range(data["classes"]))
    inked = [r.image for r in read if r.image is not None]
    probs = iter(classify(model, inked) if inked else [])  # (n, classes)
    console.say(f"{console.printable(run_dir)}: {record['chapter']} model trained on "
                f"{console.printable(data['name'][:40])} "
                f"({h}x{w}, {'greyscale' if c == 1 else 'colour'})")
    for path, reading in zip(paths, read):
        notes = ["inverted: dark on light"] * reading.inverted + [reading.note] * bool(reading.note)
        if reading.image is None:
            answer = "no ink found (the image is all one colour); nothing to classify"
            notes = notes[:-1]
        else:
            answer = ", ".join(f"{name} {p:.1%}" for name, p in top_k(next(probs), classes))
        console.say(f"{console.printable(path)}: {answer}"
                    + (f"  ({'; '.join(notes)})" if notes else ""))


def main(argv: Sequence[str]) -> None:
    """Classify image files with a run's model and print the top-3 classes of each."""
    try:
        _classify_files(argv)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main(sys.argv[1:])
