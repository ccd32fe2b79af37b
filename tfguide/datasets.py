"""Data: where each data set comes from, how it is checked, how it is batched.

`load(name, ...)` looks for a data set in this order: a folder given by
`--data-dir` (or `TFGUIDE_DATA_DIR`), the Keras cache, a Keras download. When
none of them works (no network, or `--offline`), it falls back to the offline
stand-in shipped in `data/` and says so in `LoadedData.notice`. A damaged file is
a `DataError` that names the file and the fix: nothing trains on garbage.

Images come back as float32 in [0, 1] with a channel axis, `(n, h, w, c)`;
labels as int32. `pipeline(...)` turns arrays into a batched `tf.data.Dataset`.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import os
import socket
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfguide import resources

DOWNLOAD_TIMEOUT_S = 20


class DataError(Exception):
    """A data file is missing, damaged or of the wrong shape; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """A labelled image data set tfguide knows how to find."""

    name: str
    shape: tuple[int, int, int]  # one image, (h, w, c)
    classes: tuple[str, ...]
    max_value: float  # the raw pixel maximum, for scaling to [0, 1]
    provenance: str
    keras_cache: tuple[str, ...]  # files under ~/.keras/datasets that mean "cached"
    idx: bool = False  # also accepts MNIST-style IDX .gz files
    url: str = ""
    sha256: str = ""  # of the Keras download, when Keras publishes one


DIGIT_CLASSES = tuple(str(i) for i in range(10))
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

SOURCES: dict[str, ImageSource] = {
    "digits": ImageSource(
        name="digits", shape=(8, 8, 1), classes=DIGIT_CLASSES, max_value=16.0,
        provenance="UCI optdigits 8x8 handwritten digits as bundled by scikit-learn "
                   "(CC BY 4.0), shipped in data/digits.npz",
        keras_cache=(),
    ),
    "mnist": ImageSource(
        name="mnist", shape=(28, 28, 1), classes=DIGIT_CLASSES, max_value=255.0,
        provenance="MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0)",
        keras_cache=("mnist.npz",), idx=True, url=KERAS_URL + "mnist.npz",
        sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    ),
    "fashion_mnist": ImageSource(
        name="fashion_mnist", shape=(28, 28, 1),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
        max_value=255.0, provenance="Fashion-MNIST (Zalando Research; MIT licence)",
        keras_cache=tuple(f"fashion-mnist/{f}" for f in IDX_FILES.values()), idx=True,
        url=KERAS_URL + "fashion-mnist/",
    ),
    "cifar10": ImageSource(
        name="cifar10", shape=(32, 32, 3),
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
        max_value=255.0, provenance="CIFAR-10 (Krizhevsky, 2009)",
        keras_cache=("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"),
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
}
STANDIN = "digits"
CHECKSUMS = {  # files shipped in data/ (see data/README.md)
    "digits.npz": "b652800a0421b5ab7776c4a493c70bfdbb63cb8c057291bf95c4c2466cafa396",
    "sunspots.csv": "a7459ac790a1e40cf4b78b44fdf8248c9a0514ed672ec42cc555f4e8ddcbfd1b",
}


@dataclasses.dataclass(frozen=True)
class LoadedData:
    """Train and test arrays plus where they came from."""

    name: str  # what was loaded
    requested: str  # what was asked for (differs when the stand-in was used)
    source: str  # data-dir, keras-cache, download, offline-standin or synthetic
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    classes: tuple[str, ...] = ()
    provenance: str = ""
    notice: str | None = None  # one line to tell the user (e.g. why the stand-in is used)
    files: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.x_train)[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def info(self) -> dict:
        """Return what results.json records about the data."""
        return {
            "name": self.name, "requested": self.requested, "source": self.source,
            "train": int(len(self.x_train)), "test": int(len(self.x_test)),
            "shape": list(self.input_shape), "classes": len(self.classes),
            "provenance": self.provenance, "files": list(self.files),
        }


# --- Files ----------------------------------------------------------------------------
def sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_file(filename: str) -> Path:
    """Return a file shipped in data/, after checking it is there and intact."""
    path = resources.data_dir() / filename
    fix = ("restore it with `git checkout data/` (or reinstall tfguide), "
           "or remake it with `python data/make_data.py`")
    if not path.is_file():
        raise DataError(f"{path} is missing: {fix}.")
    if sha256(path) != CHECKSUMS[filename]:
        raise DataError(f"{path} is damaged (its SHA-256 checksum does not match): {fix}.")
    return path


def read_idx(path: Path) -> np.ndarray:
    """Read one MNIST-style IDX file (`.gz` or raw) of unsigned bytes."""
    fix = "download it again (see README, 'Data')"
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} cannot be read ({err}): it is truncated or not gzip; "
                        f"{fix}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes; {fix}.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (its header is incomplete); {fix}.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path} is truncated or padded: the header promises "
                        f"{'x'.join(map(str, dims))} bytes of data but the file holds "
                        f"{len(raw) - header}; {fix}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` (uint8) as a gzip-compressed IDX file."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read a Keras-format `.npz` with x_train, y_train, x_test, y_test (no pickles)."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)}; a data file "
                                f"needs {', '.join(keys)}.")
            return {k: f[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} cannot be read ({err}): it is truncated or damaged; "
                        f"download it again (see README, 'Data').") from None


def _check_arrays(arrays: dict[str, np.ndarray], src: ImageSource, where: str) -> None:
    h, w, c = src.shape
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        image = tuple(x.shape[1:])
        if image not in ((h, w), (h, w, c)):
            raise DataError(f"{where}: x_{split} holds images of shape {image}, but {src.name} "
                            f"images are {h}x{w}x{c}. Is this the right file for --data "
                            f"{src.name}?")
        y = y.reshape(-1)
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"{where}: x_{split} has {len(x)} images but y_{split} has "
                            f"{len(y)} labels; the file is damaged, download it again.")
        if y.min() < 0 or y.max() >= len(src.classes):
            raise DataError(f"{where}: y_{split} has labels outside 0..{len(src.classes) - 1}; "
                            f"the file is damaged or belongs to another data set.")


def _loaded(arrays: dict[str, np.ndarray], src: ImageSource, **fields) -> LoadedData:
    """Scale checked raw arrays to float32 images in [0, 1] and int32 labels."""
    def images(x):
        x = np.asarray(x, dtype=np.float32) / src.max_value
        return x.reshape((len(x),) + src.shape)

    return LoadedData(
        name=src.name, x_train=images(arrays["x_train"]), x_test=images(arrays["x_test"]),
        y_train=np.asarray(arrays["y_train"]).reshape(-1).astype(np.int32),
        y_test=np.asarray(arrays["y_test"]).reshape(-1).astype(np.int32),
        classes=src.classes, provenance=src.provenance, **fields,
    )


# --- Sources, in order ----------------------------------------------------------------
def _from_dir(src: ImageSource, data_dir: Path) -> tuple[dict, list[Path]] | None:
    """Look in data_dir for <name>.npz, <name>/<name>.npz or IDX files (in <name>/ or the dir)."""
    for npz in (data_dir / f"{src.name}.npz", data_dir / src.name / f"{src.name}.npz"):
        if npz.is_file():
            return read_npz(npz), [npz]
    if src.idx:
        for folder in (data_dir / src.name, data_dir):
            paths = {k: folder / f for k, f in IDX_FILES.items()}
            present = [p for p in paths.values() if p.is_file()]
            if len(present) == len(paths):
                return {k: read_idx(p) for k, p in paths.items()}, list(paths.values())
            if present and folder == data_dir / src.name:
                missing = [p.name for p in paths.values() if not p.is_file()]
                raise DataError(f"{folder} has some IDX files for {src.name} but not "
                                f"{', '.join(missing)}; put all four there.")
    return None


def keras_cache_dir() -> Path:
    """Return the folder where Keras keeps downloaded data sets."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "datasets"


def _keras_load(name: str):
    import keras

    return getattr(keras.datasets, name).load_data()


def _from_keras_cache(src: ImageSource) -> LoadedData:
    cache = keras_cache_dir()
    files = [cache / f for f in src.keras_cache]
    fix = "delete it and run again with network access to download a fresh copy"
    if src.sha256 and sha256(files[0]) != src.sha256:
        raise DataError(f"The cached file {files[0]} is damaged (its SHA-256 checksum does not "
                        f"match): {fix}.")
    try:
        arrays = _as_arrays(_keras_load(src.name))
    except Exception as err:  # a damaged cache makes Keras try (and fail) to download again
        raise DataError(f"The cached {src.name} files under {cache} cannot be read "
                        f"({type(err).__name__}: {err}): {fix}.") from None
    _check_arrays(arrays, src, str(files[0]))
    return _loaded(arrays, src, requested=src.name, source="keras-cache",
                   files=tuple(map(str, files)))


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(saved)


def _as_arrays(loaded) -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = loaded
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def load_digits(requested: str = STANDIN, notice: str | None = None) -> LoadedData:
    """Load the shipped 8x8 digits (the offline stand-in for the image data sets)."""
    path = shipped_file("digits.npz")
    arrays = read_npz(path)
    src = SOURCES[STANDIN]
    _check_arrays(arrays, src, str(path))
    return _loaded(arrays, src, requested=requested, source="offline-standin", notice=notice,
                   files=(str(path),))


def load(name: str, data_dir: Path | None = None, offline: bool = False) -> LoadedData:
    """Load a labelled image data set, falling back to the shipped digits when offline.

    Args:
        name: one of `SOURCES` (digits, mnist, fashion_mnist, cifar10).
        data_dir: a folder to look in first (`--data-dir` / `TFGUIDE_DATA_DIR`).
        offline: never try to download.

    Raises:
        DataError: a file that was found is damaged or of the wrong shape.
    """
    if name not in SOURCES:
        raise DataError(f"Unknown data set {name!r}. Known: {', '.join(SOURCES)}.")
    if name == STANDIN:
        return load_digits()
    src = SOURCES[name]
    if data_dir is not None:
        found = _from_dir(src, Path(data_dir))
        if found is not None:
            arrays, paths = found
            _check_arrays(arrays, src, str(paths[0]))
            return _loaded(arrays, src, requested=name, source="data-dir",
                           files=tuple(map(str, paths)))
    cache = keras_cache_dir()
    if all((cache / f).is_file() for f in src.keras_cache):
        return _from_keras_cache(src)
    if offline:
        reason = "--offline was given"
    else:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                arrays = _as_arrays(_keras_load(name))
            _check_arrays(arrays, src, f"the downloaded {name}")
            return _loaded(arrays, src, requested=name, source="download",
                           files=tuple(str(cache / f) for f in src.keras_cache))
        except DataError:
            raise
        except Exception as err:  # no network, DNS failure, timeout, HTTP error
            detail = str(err).split(" -- ")[-1].strip()[:80] or type(err).__name__
            reason = f"the download failed: {detail}"
    notice = (f"{name} is not available ({reason}); using the offline stand-in '{STANDIN}' "
              f"(1,797 real 8x8 digits). To use {name}, download it (e.g. {src.url}) into a "
              f"folder and pass --data-dir, or run once with network access.")
    return load_digits(requested=name, notice=notice)


def load_series(name: str = "sunspots") -> tuple[np.ndarray, np.ndarray, str]:
    """Load a shipped time series as (years, values, provenance)."""
    if name != "sunspots":
        raise DataError(f"Unknown series {name!r}. Known: sunspots.")
    path = shipped_file("sunspots.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    years = np.array([int(r["year"]) for r in rows], dtype=np.int32)
    values = np.array([float(r["sunspots"]) for r in rows], dtype=np.float32)
    provenance = ("Yearly mean sunspot numbers 1700-2008 as bundled by statsmodels "
                  "(NOAA NGDC; public domain), shipped in data/sunspots.csv")
    return years, values, provenance


# --- Splits and pipelines --------------------------------------------------------------
def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a seeded random `fraction` of `n` examples for validation.

    Returns:
        (train_idx, val_idx): index arrays; the validation part has
        floor(fraction * n) examples, the same rule in every chapter.
    """
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(fraction * n)
    return order[n_val:], order[:n_val]


def _index_batches(n: int, batch_size: int, shuffle: bool, seed: int,
                   drop_remainder: bool) -> tf.data.Dataset:
    """Yield one vector of example indices per batch, a fresh seeded order each epoch.

    The permutation is made in one op (`stateless_shuffle`) from a seed that
    `Dataset.random` redraws, deterministically, every time the data set is
    iterated, i.e. every epoch; element-by-element shuffling of n indices costs
    several times more.
    """
    full = n // batch_size * batch_size

    def split(order):  # (n,) -> batches of indices
        batches = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full], (-1, batch_size)))
        if full < n and not drop_remainder:
            batches = batches.concatenate(tf.data.Dataset.from_tensors(order[full:]))
        return batches

    if shuffle:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        orders = seeds.map(lambda s: tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([s, tf.constant(seed, tf.int64)])))
    else:
        orders = tf.data.Dataset.from_tensors(tf.range(n, dtype=tf.int64))
    return orders.flat_map(split)


def pipeline(x, y=None, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0,
             drop_remainder: bool = False) -> tf.data.Dataset:
    """Batch in-memory arrays into a `tf.data.Dataset` (seeded shuffle, prefetch).

    Whole batches are gathered from the arrays by index, which is much faster
    than slicing element by element and then batching.

    Args:
        x: an array, or a tuple/dict of arrays with the same first dimension.
        y: targets (optional), same structure rules as `x`.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch, in an order fixed by `seed`.
        seed: shuffle seed.
        drop_remainder: drop the last, smaller batch.
    """
    data = x if y is None else (x, y)
    n = len(tf.nest.flatten(data)[0])
    indices = _index_batches(n, batch_size, shuffle, seed, drop_remainder)
    arrays = tf.data.Dataset.from_tensors(data).repeat()

    def gather(idx, tensors):
        return tf.nest.map_structure(lambda t: tf.gather(t, idx), tensors)

    ds = tf.data.Dataset.zip((indices, arrays)).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    batches = n // batch_size if drop_remainder else -(-n // batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))  # progress bars know the end
    return ds.prefetch(tf.data.AUTOTUNE)
