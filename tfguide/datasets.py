"""Data: where each data set comes from, how it is checked, how it is batched.

`load(name, ...)` looks for a data set in this order: a folder given by
`--data-dir` (or `TFGUIDE_DATA_DIR`), the Keras cache, a Keras download. When
none of them works (no network, or `--offline`), it falls back to the offline
stand-in shipped in `data/` and says so in `LoadedData.notice`.

Every file is checked when it is loaded, before anything trains: a file that
cannot be read, is damaged, or holds the wrong kind of numbers (strings, NaN,
pixels already scaled to [0, 1], fractional or out-of-range labels, counts
that do not match) is a one-line `DataError` that names the file and the fix.

Images come back as float32 in [0, 1] with a channel axis, `(n, h, w, c)`;
labels as int32. `pipeline(...)` turns arrays into a batched `tf.data.Dataset`.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import math
import os
import socket
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfguide import resources
from tfguide.config import DATA_DIR_VARIABLE

DOWNLOAD_TIMEOUT_S = 20
SPLITS = ("x_train", "y_train", "x_test", "y_test")
READ_CHUNK = 1 << 24  # bytes read at a time, so a header cannot make us allocate what is not there
DOWNLOAD_AGAIN = "download it again (see README, 'Data')"


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
    keras_cache: tuple[str, ...]  # what keras.datasets loads from, under ~/.keras/datasets
    idx: bool = False  # also accepts MNIST-style IDX .gz files
    url: str = ""
    sha256: str = ""  # of keras_cache[0], as keras.datasets checks it
    older_keras_cache: str = ""  # where Keras 2 kept the same file (sha256 too), if elsewhere


DIGIT_CLASSES = tuple(str(i) for i in range(10))
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

# The cache paths are those of the installed Keras 3 (keras/src/datasets/*.py and
# keras.utils.get_file); tests/test_datasets.py checks them against it.
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
        # Keras 3 keeps the downloaded archive under this name and unpacks it on every load.
        keras_cache=("cifar-10-batches-py-target_archive",),
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        older_keras_cache="cifar-10-batches-py.tar.gz",
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
        """Return what results.json records about the data (with the framing of its ink)."""
        info = {
            "name": self.name, "requested": self.requested, "source": self.source,
            "train": int(len(self.x_train)), "test": int(len(self.x_test)),
            "shape": list(self.input_shape), "classes": len(self.classes),
            "provenance": self.provenance, "files": list(self.files),
        }
        framing = ink_framing(self.x_train)
        return info if framing is None else {**info, "framing": framing}


# --- How the images frame their ink (read back by `predict`) ----------------------------
INK = 0.2  # a pixel is ink when brighter than this fraction of its image's brightest pixel


def ink_framing(x: np.ndarray, chunk: int = 4096) -> dict | None:
    """Measure how greyscale images (n, h, w, 1) in [0, 1] place their ink in the frame.

    MNIST scaled each digit's ink into a 20x20 box, then moved its centre of
    mass to the middle of 28x28; the 8x8 digits fill the frame's height and
    centre their box. `predict` frames a user's image the same way, from these
    numbers: the ink's box (pixels brighter than `INK` of the image's brightest),
    the box's longest side (median), and where the images put their ink: along
    each axis, by the box's centre or by the centre of mass, whichever varies
    less from image to image (the one the data set was aligned by; the 8x8
    digits: the box vertically, the mass horizontally). Positions are in
    pixels from the frame's top-left corner, which is (0, 0); a pixel's centre
    is at +0.5. Colour images are not framed: None.
    """
    if x.ndim != 4 or x.shape[-1] != 1 or len(x) == 0:
        return None
    h, w = x.shape[1:3]
    parts = []  # per chunk: (peak, long side, box centre y, x, mass centre y, x) of each image
    for start in range(0, len(x), chunk):
        img = np.asarray(x[start:start + chunk, ..., 0], np.float32)  # (k, h, w)
        peak = img.max(axis=(1, 2))  # (k,)
        ink = img > INK * peak[:, None, None]  # (k, h, w)
        rows, cols = ink.any(axis=2), ink.any(axis=1)  # (k, h), (k, w)
        top, bottom = rows.argmax(1), h - rows[:, ::-1].argmax(1)  # edges, (k,) each
        left, right = cols.argmax(1), w - cols[:, ::-1].argmax(1)
        total = img.sum(axis=(1, 2))  # (k,)
        keep = peak > 0  # a blank image has no ink to measure
        mass_y = img.sum(2) @ (np.arange(h) + 0.5) / np.where(keep, total, 1)  # (k,)
        mass_x = img.sum(1) @ (np.arange(w) + 0.5) / np.where(keep, total, 1)
        parts.append(np.stack([peak, np.maximum(bottom - top, right - left),
                               (top + bottom) / 2, (left + right) / 2, mass_y, mass_x])[:, keep])
    peak, side, box_y, box_x, mass_y, mass_x = np.concatenate(parts, axis=1)  # (6, n)
    if len(peak) == 0:
        return None
    by = {"box": (box_y, box_x), "mass": (mass_y, mass_x)}  # each (rows, columns)
    spread = {name: [float(ys.std()), float(xs.std())] for name, (ys, xs) in by.items()}
    place = [min(by, key=lambda name: spread[name][axis]) for axis in (0, 1)]  # per axis
    return {"ink": INK, "peak": round(float(np.median(peak)), 4),
            "box": round(float(np.median(side)), 4), "place": place,
            "centre": [round(float(by[name][axis].mean()), 4) for axis, name in enumerate(place)],
            "spread": {name: [round(s, 4) for s in sizes] for name, sizes in spread.items()},
            "images": int(len(peak))}


# --- Files and folders ----------------------------------------------------------------
def _unreadable(path: Path, err: OSError) -> DataError:
    """Turn an error from the file system into a DataError with the fix for that error."""
    if isinstance(err, PermissionError):
        return DataError(f"{path} cannot be read (permission denied): make it readable "
                         f"(chmod a+r {path}, and a+x on its folders) or copy it to a "
                         f"folder of your own.")
    if isinstance(err, IsADirectoryError):
        return DataError(f"{path} is a folder where a data file should be: move the folder "
                         f"away and put the file there.")
    if isinstance(err, FileNotFoundError):
        return DataError(f"{path} does not exist (a broken link?): put the data file there.")
    return DataError(f"{path} cannot be read ({err.strerror or err}): check the disk, "
                     f"or copy the file somewhere else and point tfguide there.")


def _open(path: Path):
    """Open a file for reading bytes; a file-system error becomes a DataError."""
    try:
        return open(path, "rb")
    except OSError as err:
        raise _unreadable(path, err) from None


def _kind(path: Path) -> str:
    """Return "file", "folder" or "missing"; a broken link or unreadable folder is an error."""
    try:
        if path.is_dir():
            return "folder"
        if path.is_file():
            return "file"
        if path.is_symlink():
            raise DataError(f"{path} is a link to {os.readlink(path)}, which does not "
                            f"exist: fix or remove the link.")
        return "missing"
    except PermissionError:
        raise DataError(f"{path.parent} cannot be read (permission denied): make it "
                        f"readable (chmod u+rx {path.parent}).") from None


def _listable(folder: Path, label: str, fix: str = "give an existing folder") -> None:
    """Check that `folder` (named in messages as `label`) is a folder that can be listed."""
    if not folder.exists():
        raise DataError(f"{label} does not exist: {fix}.")
    if not folder.is_dir():
        raise DataError(f"{label} is a file, not a folder: {fix}.")
    try:
        os.listdir(folder)
    except OSError as err:
        raise DataError(f"{label} cannot be read ({err.strerror}): make it readable "
                        f"(chmod u+rx {folder}) or {fix}.") from None


def data_folder(data_dir: Path | str | None = None) -> Path | None:
    """Return the folder to look in first: `data_dir` (--data-dir), else $TFGUIDE_DATA_DIR.

    The folder is checked here, when data are about to be read, so that a stale
    variable only matters to runs that read data from it.

    Raises:
        DataError: the folder does not exist, is a file, or cannot be read.
    """
    if data_dir is not None:
        folder = Path(data_dir)
        _listable(folder, f"--data-dir {folder}", "give the folder that holds the data files")
    elif os.environ.get(DATA_DIR_VARIABLE):
        folder = Path(os.environ[DATA_DIR_VARIABLE]).expanduser()  # as the shell would
        _listable(folder, f"{DATA_DIR_VARIABLE}={folder}",
                  f"set {DATA_DIR_VARIABLE} to the folder that holds the data files, or "
                  f"unset it (unset {DATA_DIR_VARIABLE})")
    else:
        return None
    return folder


def sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with _open(path) as f:
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        except OSError as err:
            raise _unreadable(path, err) from None
    return digest.hexdigest()


def shipped_file(filename: str) -> Path:
    """Return a file shipped in data/, after checking it is there and intact."""
    path = resources.data_dir() / filename
    fix = ("restore it with `git checkout data/` (or reinstall tfguide), "
           "or remake it with `python data/make_data.py`")
    if _kind(path) != "file":
        raise DataError(f"{path} is missing: {fix}.")
    if sha256(path) != CHECKSUMS[filename]:
        raise DataError(f"{path} is damaged (its SHA-256 checksum does not match): {fix}.")
    return path


def _read_bounded(stream, size: int) -> bytes:
    """Read at most size + 1 bytes, in chunks, so memory follows the data, not a header."""
    chunks, left = [], size + 1
    while left > 0:
        chunk = stream.read(min(left, READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_idx(path: Path) -> np.ndarray:
    """Read one MNIST-style IDX file (`.gz` or raw) of unsigned bytes."""
    with _open(path) as raw_file:
        stream = gzip.GzipFile(fileobj=raw_file) if str(path).endswith(".gz") else raw_file
        try:
            magic = stream.read(4)
            if len(magic) < 4 or magic[:3] != b"\x00\x00\x08":
                raise DataError(f"{path} is not an IDX file of unsigned bytes; "
                                f"{DOWNLOAD_AGAIN}.")
            ndim = magic[3]
            header = stream.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise DataError(f"{path} is truncated (its header is incomplete); "
                                f"{DOWNLOAD_AGAIN}.")
            dims = struct.unpack(f">{ndim}I", header)
            size = math.prod(dims)
            data = _read_bounded(stream, size)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path} cannot be read ({err}): it is truncated or not gzip; "
                            f"{DOWNLOAD_AGAIN}.") from None
    if len(data) != size:
        raise DataError(f"{path} is truncated or padded: the header promises "
                        f"{'x'.join(map(str, dims))} = {size:,} bytes of data but the file "
                        f"holds {len(data):,}{'' if len(data) <= size else ' or more'}; "
                        f"{DOWNLOAD_AGAIN}.")
    return np.frombuffer(data, np.uint8).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` (uint8) as a gzip-compressed IDX file."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _read_npy(archive: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    """Read one array of an .npz, checking its header against its size before reading it."""
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(member)
        if dtype.hasobject:
            raise DataError(f"{path}: {key} holds Python objects (pickled data), which "
                            f"tfguide never loads; save plain numeric arrays "
                            f"(np.savez with uint8 images and integer labels).")
        size = math.prod(shape) * dtype.itemsize
        if size != info.file_size - member.tell():
            raise DataError(f"{path}: the header of {key} claims shape {shape} "
                            f"({size:,} bytes) but the file holds "
                            f"{info.file_size - member.tell():,}; the file is truncated or "
                            f"damaged, {DOWNLOAD_AGAIN}.")
        data = _read_bounded(member, size)
    if len(data) != size:
        raise DataError(f"{path}: {key} is truncated ({len(data):,} of {size:,} bytes); "
                        f"{DOWNLOAD_AGAIN}.")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read a Keras-format `.npz` with x_train, y_train, x_test, y_test (no pickles)."""
    with _open(path) as f:
        try:
            if not zipfile.is_zipfile(f):
                raise DataError(f"{path} is not a readable .npz archive (a zip of .npy "
                                f"arrays): it is truncated or damaged, or another kind of "
                                f"file; {DOWNLOAD_AGAIN}.")
            with zipfile.ZipFile(f) as archive:
                missing = [k for k in SPLITS if f"{k}.npy" not in archive.namelist()]
                if missing:
                    raise DataError(f"{path} lacks the arrays {', '.join(missing)}; a data "
                                    f"file needs {', '.join(SPLITS)}.")
                return {k: _read_npy(archive, k, path) for k in SPLITS}
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile,
                NotImplementedError) as err:
            raise DataError(f"{path} cannot be read ({type(err).__name__}: {err}): it is "
                            f"truncated or damaged; {DOWNLOAD_AGAIN}.") from None


# --- Checks on what was read ------------------------------------------------------------
def _is_number_array(a: np.ndarray) -> bool:
    return a.dtype.kind in "iuf"  # signed, unsigned, float (not bool, complex, str, bytes)


def _check_images(x: np.ndarray, key: str, where: str, src: ImageSource) -> None:
    h, w, c = src.shape
    top = f"{src.max_value:g}"
    if not _is_number_array(x):
        raise DataError(f"{where}: {key} holds {x.dtype} values, not pixel numbers; save the "
                        f"images as integers 0..{top} (uint8).")
    image = tuple(x.shape[1:])
    if x.ndim not in (3, 4) or image not in ((h, w), (h, w, c)):
        hint = ""
        if x.ndim == 4 and image == (c, h, w):
            hint = f" They look channels-first: transpose to (n, {h}, {w}, {c})."
        elif x.ndim == 2 and image == (h * w * c,):
            hint = f" They look flattened: reshape to (n, {h}, {w}{f', {c}' if c > 1 else ''})."
        raise DataError(f"{where}: {key} has shape {x.shape}, but {src.name} images are "
                        f"{h}x{w}x{c}, so the array must be (n, {h}, {w}"
                        f"{f', {c}' if c > 1 else '[, 1]'}).{hint} Is this the right file "
                        f"for --data {src.name}?")
    if len(x) == 0:
        raise DataError(f"{where}: {key} has 0 images; {DOWNLOAD_AGAIN}.")
    if x.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise DataError(f"{where}: {key} has {bad:,} NaN or infinite pixel values: "
                            f"remake the file from the raw pixels 0..{top}, or "
                            f"{DOWNLOAD_AGAIN}.")
    lo, hi = x.min(), x.max()
    if lo == hi:
        raise DataError(f"{where}: every pixel of {key} is {lo:g}, so the images are blank; "
                        f"the file is damaged, {DOWNLOAD_AGAIN}.")
    if hi <= 1 < src.max_value and lo >= 0:
        raise DataError(f"{where}: {key} holds values from {lo:g} to {hi:g}, already "
                        f"scaled to [0, 1], but tfguide expects the raw {src.name} pixels 0..{top} "
                        f"and scales them itself: save the raw values "
                        f"(e.g. np.round(x * {top}).astype('uint8')).")
    if lo < 0 or hi > src.max_value:
        raise DataError(f"{where}: {key} holds values in [{lo:g}, {hi:g}], outside "
                        f"{src.name}'s raw pixel range 0..{top}: save the raw pixel values "
                        f"0..{top} (uint8), not normalised or rescaled ones.")


def _check_labels(y: np.ndarray, key: str, where: str, n_images: int, images_where: str,
                  src: ImageSource) -> None:
    k = len(src.classes)
    if not _is_number_array(y):
        raise DataError(f"{where}: {key} holds {y.dtype} values, not class numbers; save the "
                        f"labels as integers 0..{k - 1}.")
    if y.ndim == 2 and y.shape[1] == k and k > 1:
        raise DataError(f"{where}: {key} has shape {y.shape}, one-hot rows; tfguide wants "
                        f"one class number per image: save y.argmax(axis=1).")
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] != 1):
        raise DataError(f"{where}: {key} has shape {y.shape}; labels must be one class "
                        f"number per image, shape (n,) or (n, 1).")
    if len(y) != n_images:
        x_key = "x" + key[1:]
        if where == images_where:
            counts = f"{where}: {x_key} has {n_images:,} images but {key} has {len(y):,} labels"
        else:
            counts = f"{images_where} holds {n_images:,} images but {where} {len(y):,} labels"
        raise DataError(f"{counts}; a file is truncated or the arrays do not belong together: "
                        f"{DOWNLOAD_AGAIN}.")
    if y.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(y)))
        if bad:
            raise DataError(f"{where}: {key} has {bad:,} NaN or infinite labels; every "
                            f"image needs a class 0..{k - 1}: fix or drop those images, or "
                            f"{DOWNLOAD_AGAIN}.")
        fractional = y[y != np.round(y)]
        if fractional.size:
            raise DataError(f"{where}: {key} has {fractional.size:,} fractional labels "
                            f"(e.g. {fractional.flat[0]:g}); labels are class numbers: save "
                            f"them as integers 0..{k - 1}.")
    if y.min() < 0 or y.max() >= k:
        raise DataError(f"{where}: {key} has labels outside 0..{k - 1} (from {y.min():g} to "
                        f"{y.max():g}); the file is damaged or belongs to another data set "
                        f"than --data {src.name}.")


def _check_arrays(arrays: dict[str, np.ndarray], files: dict[str, Path | str],
                 src: ImageSource) -> None:
    """Check raw images and labels before anything trains on them.

    Args:
        arrays: x_train, y_train, x_test, y_test as read from disk.
        files: for each array, the file (or description) it came from, for messages.
        src: the data set they should be.

    Raises:
        DataError: wrong dtype, shape or range, non-finite values, fractional or
            out-of-range labels, or image and label counts that differ.
    """
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        x_where, y_where = str(files[f"x_{split}"]), str(files[f"y_{split}"])
        if x.ndim == 0 or y.ndim == 0:
            raise DataError(f"{x_where if x.ndim == 0 else y_where}: x_{split}/y_{split} "
                            f"must be arrays with one entry per image; {DOWNLOAD_AGAIN}.")
        _check_images(x, f"x_{split}", x_where, src)
        _check_labels(y, f"y_{split}", y_where, len(x), x_where, src)


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


def _checked(arrays: dict, files: dict, src: ImageSource, **fields) -> LoadedData:
    _check_arrays(arrays, files, src)
    return _loaded(arrays, src, files=tuple(dict.fromkeys(map(str, files.values()))), **fields)


# --- Sources, in order ----------------------------------------------------------------
def _read_idx_set(paths: dict[str, Path]) -> tuple[dict, dict]:
    return {k: read_idx(p) for k, p in paths.items()}, paths


def _from_dir(src: ImageSource, folder: Path) -> tuple[dict, dict] | None:
    """Look in folder for <name>.npz, <name>/<name>.npz or IDX files (in <name>/ or folder).

    Returns:
        (arrays, files) or None when the folder holds nothing for `src`.
    """
    sub = folder / src.name
    has_sub = _kind(sub) == "folder"
    if has_sub:
        _listable(sub, f"The data folder {sub}", "give a folder you can read")
    for npz in (folder / f"{src.name}.npz", sub / f"{src.name}.npz"):
        kind = _kind(npz)
        if kind == "folder":
            raise DataError(f"{npz} is a folder, but tfguide reads {src.name}.npz as a file "
                            f"(a Keras-format .npz): move the folder away and put the file "
                            f"there.")
        if kind == "file":
            return read_npz(npz), dict.fromkeys(SPLITS, npz)
    if not src.idx:
        return None
    for where in ((sub,) if has_sub else ()) + (folder,):
        paths = {k: where / f for k, f in IDX_FILES.items()}
        kinds = {k: _kind(p) for k, p in paths.items()}
        if any(kind == "folder" for kind in kinds.values()):
            bad = next(p for k, p in paths.items() if kinds[k] == "folder")
            raise DataError(f"{bad} is a folder where an IDX file should be: move it away "
                            f"and put the file there.")
        present = [k for k, kind in kinds.items() if kind == "file"]
        if len(present) == len(paths):
            return _read_idx_set(paths)
        if present:
            missing = [paths[k].name for k in paths if k not in present]
            raise DataError(f"{where} has some IDX files for {src.name} but not "
                            f"{', '.join(missing)}; put all four there.")
    return None


def keras_cache_dir() -> Path:
    """Return the folder where keras.utils.get_file keeps downloaded data sets.

    The same rule as Keras 3: $KERAS_HOME, else ~/.keras (/tmp/.keras when the
    home folder or that folder is not writable), then `datasets/`.
    """
    if "KERAS_HOME" in os.environ:
        base = os.environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        base = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    base = os.path.expanduser(base)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(),
                            ".keras")
    return Path(base) / "datasets"


def _keras_load(name: str):
    import keras

    return getattr(keras.datasets, name).load_data()


def _as_arrays(loaded) -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = loaded
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _cache_files(src: ImageSource) -> dict[str, Path]:
    """Return, for each array of `src`, the file in the Keras cache that holds it."""
    files = [keras_cache_dir() / f for f in src.keras_cache]
    return dict(zip(IDX_FILES, files)) if len(files) == 4 else dict.fromkeys(SPLITS, files[0])


def _from_keras_cache(src: ImageSource) -> tuple[dict, dict] | None:
    """Read `src` from the Keras cache without network, or return None when it is not there."""
    cache = keras_cache_dir()
    files = [cache / f for f in src.keras_cache]
    kinds = [_kind(f) for f in files]
    if "folder" in kinds:
        raise DataError(f"{files[kinds.index('folder')]} is a folder where Keras keeps a "
                        f"downloaded file: move it away (Keras then downloads a fresh copy).")
    if not files or kinds != ["file"] * len(files):
        return None
    fix = "delete it and run again with network access to download a fresh copy"
    if src.sha256 and sha256(files[0]) != src.sha256:
        raise DataError(f"The cached file {files[0]} is damaged (its SHA-256 checksum does not "
                        f"match): {fix}.")
    if files[0].suffix == ".npz":
        return read_npz(files[0]), _cache_files(src)
    if src.idx:
        return _read_idx_set(_cache_files(src))
    try:  # an archive Keras unpacks itself; its checksum matches, so Keras will not download
        arrays = _as_arrays(_keras_load(src.name))
    except Exception as err:
        raise DataError(f"The cached {src.name} file {files[0]} cannot be read "
                        f"({type(err).__name__}: {err}): {fix}.") from None
    return arrays, _cache_files(src)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(saved)


def _download(src: ImageSource) -> tuple[dict, dict]:
    """Download `src` through Keras into its cache (network errors are raised as they come)."""
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
        return _as_arrays(_keras_load(src.name)), _cache_files(src)


def load_digits(requested: str = STANDIN, notice: str | None = None) -> LoadedData:
    """Load the shipped 8x8 digits (the offline stand-in for the image data sets)."""
    path = shipped_file("digits.npz")
    return _checked(read_npz(path), dict.fromkeys(SPLITS, path), SOURCES[STANDIN],
                    requested=requested, source="offline-standin", notice=notice)


def load(name: str, data_dir: Path | None = None, offline: bool = False) -> LoadedData:
    """Load a labelled image data set, falling back to the shipped digits when offline.

    Args:
        name: one of `SOURCES` (digits, mnist, fashion_mnist, cifar10).
        data_dir: a folder to look in first (`--data-dir`); when None, the folder in
            $TFGUIDE_DATA_DIR, if that is set.
        offline: never try to download.

    Raises:
        DataError: the data folder cannot be read, or a file that was found is
            damaged or holds the wrong kind of data.
    """
    if name not in SOURCES:
        raise DataError(f"Unknown data set {name!r}. Known: {', '.join(SOURCES)}.")
    if name == STANDIN:
        return load_digits()
    src = SOURCES[name]
    folder = data_folder(data_dir)
    not_in_folder = ""
    if folder is not None:
        found = _from_dir(src, folder)
        if found is not None:
            return _checked(*found, src, requested=name, source="data-dir")
        idx = ", the four IDX files" if src.idx else ""
        not_in_folder = (f"{name} is not in the data folder {folder} (looked for "
                         f"{name}.npz{idx} there and in {name}/)")
    cached = _from_keras_cache(src)
    if cached is not None:
        return _checked(*cached, src, requested=name, source="keras-cache",
                        notice=f"{not_in_folder}; using the Keras cache." if folder else None)
    if offline:
        reason = "--offline was given"
    else:
        try:
            return _checked(*_download(src), src, requested=name, source="download",
                            notice=f"{not_in_folder}; downloaded it." if folder else None)
        except DataError:
            raise
        except Exception as err:  # no network, DNS failure, timeout, HTTP error
            detail = str(err).split(" -- ")[-1].strip()[:80] or type(err).__name__
            reason = f"the download failed: {detail}"
    fix = ("put its files there" if folder is not None else
           f"download it (e.g. {src.url}) into a folder and pass --data-dir")
    older = keras_cache_dir() / src.older_keras_cache
    if src.older_keras_cache and _kind(older) == "file" and sha256(older) == src.sha256:
        fix = (f"rename the copy an older Keras downloaded, {older}, to "
               f"{keras_cache_dir() / src.keras_cache[0]} (where Keras 3 looks for it)")
    notice = (f"{not_in_folder + '; ' if not_in_folder else ''}{name} is not available "
              f"({reason}); using the offline stand-in '{STANDIN}' (1,797 real 8x8 digits). "
              f"To use {name}, {fix}, or run once with network access.")
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
