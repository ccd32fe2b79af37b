"""Data: the shipped digits, files from a folder, the Keras cache, the offline fallback, and
every way a file can be wrong (damaged, unreadable, or holding the wrong numbers)."""
import contextlib
import dataclasses
import gzip
import io
import json
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfguide import cli, datasets, resources


def fake_images(n, shape, seed=0, classes=10):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, *shape), dtype=np.uint8),
            rng.integers(0, classes, size=n, dtype=np.uint8))


def write_idx_set(folder, n_train=20, n_test=10, shape=(28, 28)):
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = fake_images(n_train, shape, seed=1)
    x_test, y_test = fake_images(n_test, shape, seed=2)
    for key, array in (("x_train", x_train), ("y_train", y_train),
                       ("x_test", x_test), ("y_test", y_test)):
        datasets.write_idx(folder / datasets.IDX_FILES[key], array)
    return x_train, y_train


def write_npz(path, shape=(28, 28), n=6, **arrays):
    """Write a Keras-format .npz of fake images, with some arrays replaced by `arrays`."""
    x, y = fake_images(n, shape)
    np.savez(path, **({"x_train": x, "y_train": y, "x_test": x, "y_test": y} | arrays))
    return path


def one_line_error(call) -> str:
    with pytest.raises(datasets.DataError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- The shipped stand-in, folders, the fallback --------------------------------------
def test_digits_are_the_real_uci_digits():
    d = datasets.load("digits")
    assert d.x_train.shape == (1438, 8, 8, 1) and d.x_test.shape == (359, 8, 8, 1)
    assert d.x_train.dtype == np.float32 and 0.0 <= d.x_train.min() and d.x_train.max() == 1.0
    assert d.num_classes == 10 and d.source == "offline-standin" and d.notice is None
    assert set(np.unique(d.y_test)) == set(range(10)), "every class is in the test split"
    assert np.bincount(d.y_train).min() >= 135
    assert d.info()["train"] == 1438 and "UCI" in d.provenance


def test_offline_flag_falls_back_with_one_line_notice():
    d = datasets.load("mnist", offline=True)
    assert (d.name, d.requested, d.source) == ("digits", "mnist", "offline-standin")
    assert "--offline" in d.notice and "--data-dir" in d.notice and "\n" not in d.notice


def test_failed_download_falls_back_without_hanging():
    d = datasets.load("fashion_mnist")  # the test network guard refuses the connection
    assert d.source == "offline-standin" and d.requested == "fashion_mnist"
    assert "download failed" in d.notice


@pytest.mark.parametrize("layout", ["flat", "subfolder"])
def test_idx_files_from_a_data_dir(tmp_path, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "mnist"
    x_train, y_train = write_idx_set(folder)
    d = datasets.load("mnist", data_dir=tmp_path)
    assert d.source == "data-dir" and d.x_train.shape == (20, 28, 28, 1)
    np.testing.assert_allclose(d.x_train[..., 0], x_train / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.y_train, y_train)
    assert d.info()["files"] == [str(folder / f) for f in datasets.IDX_FILES.values()]


def test_npz_from_a_data_dir(tmp_path):
    x, y = fake_images(12, (32, 32, 3))
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y[:, None], x_test=x, y_test=y)
    d = datasets.load("cifar10", data_dir=tmp_path)
    assert d.source == "data-dir" and d.input_shape == (32, 32, 3) and d.y_train.ndim == 1
    assert d.files == (str(tmp_path / "cifar10.npz"),)


def test_float_pixels_in_the_raw_range_are_fine(tmp_path):
    x, _ = fake_images(6, (28, 28))
    write_npz(tmp_path / "mnist.npz", x_train=x * 0.9 + 0.25,
              y_train=np.arange(6, dtype=np.float32))
    d = datasets.load("mnist", data_dir=tmp_path)
    assert d.y_train.dtype == np.int32 and list(d.y_train) == list(range(6))


def test_a_folder_without_the_data_set_says_so_not_only_offline(tmp_path):
    write_npz(tmp_path / "fashion_mnist.npz")
    d = datasets.load("mnist", data_dir=tmp_path, offline=True)
    assert d.source == "offline-standin"
    assert f"mnist is not in the data folder {tmp_path}" in d.notice and "\n" not in d.notice
    assert d.notice.index("data folder") < d.notice.index("--offline")


# --- TFGUIDE_DATA_DIR is checked where data are read ------------------------------------
def test_data_dir_from_the_environment(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "mnist")
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path))
    d = datasets.load("mnist")
    assert d.source == "data-dir" and str(tmp_path / "mnist") in d.files[0]
    other = tmp_path / "other"  # an explicit --data-dir wins over the variable
    other.mkdir()
    assert datasets.load("mnist", data_dir=other, offline=True).source == "offline-standin"


@pytest.mark.parametrize("state", ["missing", "a file", "unreadable"])
def test_a_stale_data_dir_variable_is_one_line_naming_it(tmp_path, monkeypatch, state):
    folder = tmp_path / "data"
    if state == "a file":
        folder.write_text("not a folder")
    elif state == "unreadable":
        folder.mkdir()
        deny_listing(monkeypatch, folder)
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(folder))
    message = one_line_error(lambda: datasets.load("mnist", offline=True))
    assert f"TFGUIDE_DATA_DIR={folder}" in message and "unset TFGUIDE_DATA_DIR" in message
    assert datasets.load("digits").source == "offline-standin", "digits read nothing from it"
    monkeypatch.setenv("TFGUIDE_DATA_DIR", "")  # set but empty: as if unset
    assert datasets.data_folder() is None


def test_a_bad_data_dir_argument_is_named_as_such(tmp_path):
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path / "nope"))
    assert message.startswith(f"--data-dir {tmp_path / 'nope'} does not exist")


# --- Class: bad data that would train without complaint ----------------------------------
def with_value(a, value):
    """Return a float copy of `a` whose first entry is `value`."""
    a = a.astype(np.float32)
    a.flat[0] = value
    return a


x6, y6 = fake_images(6, (28, 28))
BAD_CONTENTS = {
    "float images already scaled to [0, 1]":
        ({"x_train": x6 / 255.0}, "x_train holds values from 0 to 1, already scaled"),
    "float images scaled to [0, 1], test split only":
        ({"x_test": (x6 / 255.0).astype(np.float32)}, "x_test holds values from 0 to 1"),
    "images normalised to [-1, 1]":
        ({"x_train": x6 / 127.5 - 1}, r"outside mnist's raw pixel range 0\.\.255"),
    "images far outside 0..255":
        ({"x_train": x6.astype(np.float32) * 1000}, "values in \\[0, 255000\\], outside"),
    "16-bit images": ({"x_train": x6.astype(np.uint16) * 256}, "outside mnist's raw"),
    "all-NaN images": ({"x_train": np.full(x6.shape, np.nan)}, "4,704 NaN or infinite pixel"),
    "one infinite pixel": ({"x_test": with_value(x6, np.inf)}, "x_test has 1 NaN or infinite"),
    "blank images": ({"x_train": np.zeros_like(x6)}, "every pixel of x_train is 0"),
    "string images": ({"x_train": x6.astype(str)}, "x_train holds <U3 values, not pixel"),
    "boolean images": ({"x_train": x6 > 127}, "x_train holds bool values"),
    "complex images": ({"x_train": x6 + 0j}, "x_train holds complex128 values"),
    "fractional labels": ({"y_train": y6 + 0.5}, "y_train has 6 fractional labels"),
    "a NaN label": ({"y_test": with_value(y6, np.nan)}, "y_test has 1 NaN or infinite labels"),
    "string labels": ({"y_train": y6.astype(str)}, "y_train holds <U3 values, not class"),
    "labels out of range": ({"y_train": np.array([0, 1, 2, 42, 3, 4])}, "outside 0..9"),
    "negative labels": ({"y_test": np.array([0, -1, 2, 3, 4, 5])}, "outside 0..9"),
    "one-hot labels": ({"y_train": np.eye(10)[y6]}, "one-hot rows.*argmax"),
    "labels of shape (n, 2)": ({"y_train": np.zeros((6, 2), np.uint8)}, "shape \\(6, 2\\)"),
    "fewer labels than images": ({"y_train": y6[:2]}, "x_train has 6 images but y_train has 2"),
    "an empty split": ({"x_test": x6[:0], "y_test": y6[:0]}, "x_test has 0 images"),
    "images of another size": ({"x_train": np.zeros((6, 10, 10), np.uint8)}, "shape.*28x28x1"),
    "flattened images": ({"x_train": x6.reshape(6, 784)}, "look flattened: reshape to"),
    "a scalar": ({"y_train": np.array(3)}, "one entry per image"),
}


@pytest.mark.parametrize("case", BAD_CONTENTS)
def test_bad_contents_are_refused_at_load_time(tmp_path, case):
    arrays, needle = BAD_CONTENTS[case]
    path = write_npz(tmp_path / "mnist.npz", **arrays)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert message.startswith(f"{path}: ") or message.startswith(f"{path} ")
    assert re.search(needle, message), message


def test_channels_first_colour_images_get_the_transpose_hint(tmp_path):
    x, y = fake_images(4, (3, 32, 32))
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    message = one_line_error(lambda: datasets.load("cifar10", data_dir=tmp_path))
    assert "channels-first: transpose to (n, 32, 32, 3)" in message


def test_the_digits_range_is_their_own(tmp_path, monkeypatch):
    """The check uses each data set's raw range: 0..16 for the digits, not 0..255."""
    for name in datasets.CHECKSUMS:
        shutil.copy(resources.data_dir() / name, tmp_path / name)
    arrays = datasets.read_npz(tmp_path / "digits.npz")
    arrays["x_test"] = arrays["x_test"].astype(np.int32) * 16  # 0..256 where 0..16 is expected
    np.savez(tmp_path / "digits.npz", **arrays)
    monkeypatch.setattr(resources, "data_dir", lambda: tmp_path)
    monkeypatch.setitem(datasets.CHECKSUMS, "digits.npz", datasets.sha256(tmp_path / "digits.npz"))
    message = one_line_error(lambda: datasets.load("digits"))
    assert "outside digits's raw pixel range 0..16" in message


def test_idx_label_errors_name_both_files(tmp_path):
    write_idx_set(tmp_path, n_train=20)
    labels = tmp_path / datasets.IDX_FILES["y_train"]
    datasets.write_idx(labels, np.arange(19) % 10)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    images = tmp_path / datasets.IDX_FILES["x_train"]
    assert f"{images} holds 20 images but {labels} 19 labels" in message
    datasets.write_idx(labels, np.full(20, 12))
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert message.startswith(f"{labels}: y_train has labels outside 0..9")


def test_bad_data_stops_the_chapter_before_it_trains(tmp_path, capsys):
    write_npz(tmp_path / "mnist.npz", x_train=x6 / 255.0)
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:
        cli.main("tfguide.chapters.mlp", argv=["--quick", "--data", "mnist", "--data-dir",
                                               str(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 1 and len(err.splitlines()) == 1 and "already scaled" in err
    assert not list(out.rglob("history*.csv")) and not list(out.rglob("model.keras"))
    for results in out.rglob("results.json"):
        assert json.loads(results.read_text())["status"] == "failed"


# --- Class: damaged or unreadable files end in one line with the right fix ---------------
def truncate(path):
    path.write_bytes(path.read_bytes()[:-40])


def corrupt_header(path):
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x0d\x03" + b"\x00" * 64)  # float data, not unsigned bytes


def truncate_payload(path):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))


def corrupt_stream(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64  # inside the deflate data
    path.write_bytes(bytes(raw))


def absurd_dims(path):
    with gzip.open(path, "wb") as f:  # 4 billion images of 4 billion by 4 billion pixels
        f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", *[2**32 - 1] * 3) + b"\x00" * 64)


@pytest.mark.parametrize("damage,needle", [
    (truncate, "truncated or not gzip"),
    (corrupt_header, "not an IDX file"),
    (truncate_payload, "truncated or padded"),
    (corrupt_stream, "truncated or not gzip"),
    (absurd_dims, "4294967295x4294967295x4294967295"),
])
def test_damaged_idx_names_the_file_and_the_fix(tmp_path, damage, needle):
    write_idx_set(tmp_path, n_train=200, n_test=100)
    bad = tmp_path / datasets.IDX_FILES["x_test"]
    damage(bad)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert needle in message and str(bad) in message
    assert "download it again" in message


def npz_with_member(path, name, payload, compress=zipfile.ZIP_STORED):
    """Write a data .npz whose member `name` has the raw bytes `payload`."""
    x, y = fake_images(4, (28, 28))
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        for key, array in {"x_train": x, "y_train": y, "x_test": x, "y_test": y}.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array)
            archive.writestr(f"{key}.npy", payload if key == name else buffer.getvalue())


def absurd_npy_header():
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)})
    return buffer.getvalue() + b"\x00" * 100


def damaged_compressed_npz(path):
    x, y = fake_images(50, (28, 28))
    np.savez_compressed(path, x_train=x, y_train=y, x_test=x, y_test=y)
    corrupt_stream(path)


@pytest.mark.parametrize("make,needle", [
    (lambda p: truncate(write_npz(p, n=50)), "truncated or damaged"),
    (damaged_compressed_npz, "truncated or damaged"),
    (lambda p: npz_with_member(p, "x_train", absurd_npy_header()),
     "the header of x_train claims shape (1000000000000, 28, 28)"),
    (lambda p: npz_with_member(p, "x_test", absurd_npy_header(), zipfile.ZIP_DEFLATED),
     "claims shape (1000000000000, 28, 28)"),
    (lambda p: np.save(open(p, "wb"), np.zeros((4, 28, 28))), "not a readable .npz archive"),
    (lambda p: p.write_bytes(os.urandom(300)), "not a readable .npz archive"),
    (lambda p: write_npz(p, x_train=np.array([x6, "not an image"], dtype=object)), "pickled"),
    (lambda p: np.savez(p, x_train=x6, y_train=y6), "lacks the arrays x_test, y_test"),
])
def test_damaged_npz_is_one_line(tmp_path, make, needle):
    path = tmp_path / "mnist.npz"
    make(path)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert str(path) in message and needle in message


def deny_reading(monkeypatch, path):
    """Make `open(path)` inside tfguide.datasets fail as for a file of someone else's."""
    def fake_open(file, *args, **kwargs):
        if Path(file) == Path(path):
            raise PermissionError(13, "Permission denied", str(file))
        return open(file, *args, **kwargs)
    monkeypatch.setattr(datasets, "open", fake_open, raising=False)


def deny_listing(monkeypatch, folder):
    real = os.listdir

    def fake_listdir(path="."):
        if Path(path) == Path(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(os, "listdir", fake_listdir)


@pytest.mark.parametrize("layout", ["npz", "idx"])
def test_an_unreadable_file_says_permission_not_damage(tmp_path, monkeypatch, layout):
    if layout == "npz":
        path = write_npz(tmp_path / "mnist.npz")
    else:
        write_idx_set(tmp_path)
        path = tmp_path / datasets.IDX_FILES["y_test"]
    deny_reading(monkeypatch, path)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert message.startswith(f"{path} cannot be read (permission denied): make it readable")
    assert "download" not in message and "damaged" not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file; simulated above")
def test_a_really_unreadable_file(tmp_path):
    path = write_npz(tmp_path / "mnist.npz")
    path.chmod(0)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert "permission denied" in message


def test_unreadable_folders_are_named(tmp_path, monkeypatch):
    deny_listing(monkeypatch, tmp_path)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert message.startswith(f"--data-dir {tmp_path} cannot be read (Permission denied)")
    monkeypatch.undo()
    write_idx_set(tmp_path / "mnist")
    deny_listing(monkeypatch, tmp_path / "mnist")
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path))
    assert f"The data folder {tmp_path / 'mnist'} cannot be read" in message


def test_an_unreadable_shipped_file_says_permission(monkeypatch):
    path = resources.data_dir() / "digits.npz"
    deny_reading(monkeypatch, path)
    message = one_line_error(lambda: datasets.load("digits"))
    assert message.startswith(f"{path} cannot be read (permission denied)")


@pytest.mark.parametrize("setup,needle", [
    (lambda d: (d / "mnist.npz").mkdir(), "mnist.npz is a folder"),
    (lambda d: (d / "mnist").mkdir() or (d / "mnist" / "mnist.npz").mkdir(),
     "mnist/mnist.npz is a folder"),
    (lambda d: write_idx_set(d) and (d / datasets.IDX_FILES["y_test"]).unlink(),
     "has some IDX files for mnist but not t10k-labels-idx1-ubyte.gz"),
    (lambda d: write_idx_set(d / "mnist")
     and (d / "mnist" / datasets.IDX_FILES["x_train"]).unlink(),
     "but not train-images-idx3-ubyte.gz; put all four there"),
    (lambda d: (d / datasets.IDX_FILES["x_train"]).mkdir(),
     "train-images-idx3-ubyte.gz is a folder where an IDX file should be"),
    (lambda d: (d / "mnist.npz").symlink_to(d / "gone.npz"), "which does not exist"),
])
def test_a_folder_that_almost_holds_the_data_is_an_error(tmp_path, setup, needle):
    setup(tmp_path)
    message = one_line_error(lambda: datasets.load("mnist", data_dir=tmp_path, offline=True))
    assert needle in message and "--offline" not in message


def test_damaged_shipped_file_fails_its_checksum(tmp_path, monkeypatch):
    for name in datasets.CHECKSUMS:
        shutil.copy(resources.data_dir() / name, tmp_path / name)
    raw = bytearray((tmp_path / "digits.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "digits.npz").write_bytes(bytes(raw))
    monkeypatch.setattr(resources, "data_dir", lambda: tmp_path)
    with pytest.raises(datasets.DataError, match="checksum.*git checkout data/"):
        datasets.load("digits")
    (tmp_path / "sunspots.csv").unlink()
    with pytest.raises(datasets.DataError, match="sunspots.csv is missing"):
        datasets.load_series("sunspots")


# --- Class: the Keras cache is where the installed Keras 3 puts it -----------------------
@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    """An empty Keras home for this test, seen the same way by Keras and by tfguide."""
    from keras.src.backend import config

    (tmp_path / "keras").mkdir()  # Keras makes its home when it is imported
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return datasets.keras_cache_dir()


def test_keras_cache_dir_is_keras_own():
    from keras.src.backend import config

    assert datasets.keras_cache_dir() == Path(config.keras_home()) / "datasets"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_cache_paths_and_checksums_match_the_installed_keras(keras_cache, monkeypatch, name):
    """Let keras.datasets.<name>.load_data() 'download' and see where it puts what."""
    import keras
    from keras.src.utils import file_utils

    targets, hashes = [], []

    def fake_urlretrieve(url, target, *args):
        targets.append(Path(target))
        Path(target).write_bytes(b"placeholder")

    def fake_validate(path, file_hash, **kwargs):
        hashes.append(file_hash)
        return True

    monkeypatch.setattr(file_utils, "urlretrieve", fake_urlretrieve)
    monkeypatch.setattr(file_utils, "validate_file", fake_validate)
    with pytest.warns(UserWarning) if name == "cifar10" else contextlib.nullcontext():
        with pytest.raises(Exception):  # the placeholders are not data, of course
            getattr(keras.datasets, name).load_data()
    src = datasets.SOURCES[name]
    assert sorted(targets) == sorted(keras_cache / f for f in src.keras_cache)
    assert hashes == ([src.sha256] if src.sha256 else [])


def test_cifar10_in_the_keras_cache_is_found_offline(keras_cache, monkeypatch):
    archive = keras_cache / datasets.SOURCES["cifar10"].keras_cache[0]
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"stands for the archive keras downloaded")
    monkeypatch.setitem(datasets.SOURCES, "cifar10", dataclasses.replace(
        datasets.SOURCES["cifar10"], sha256=datasets.sha256(archive)))
    x, y = fake_images(8, (32, 32, 3))
    monkeypatch.setattr(datasets, "_keras_load", lambda name: ((x, y[:, None]), (x, y[:, None])))
    d = datasets.load("cifar10", offline=True)
    assert (d.source, d.files, d.notice) == ("keras-cache", (str(archive),), None)
    archive.write_bytes(b"damaged")
    message = one_line_error(lambda: datasets.load("cifar10", offline=True))
    assert str(archive) in message and "checksum" in message and "delete it" in message


def test_an_older_keras_copy_of_cifar10_is_pointed_out(keras_cache, monkeypatch):
    older = keras_cache / "cifar-10-batches-py.tar.gz"
    older.parent.mkdir(parents=True)
    older.write_bytes(b"stands for the archive an older keras downloaded")
    monkeypatch.setitem(datasets.SOURCES, "cifar10", dataclasses.replace(
        datasets.SOURCES["cifar10"], sha256=datasets.sha256(older)))
    d = datasets.load("cifar10", offline=True)
    assert d.source == "offline-standin" and "\n" not in d.notice
    assert f"rename the copy an older Keras downloaded, {older}, to " \
           f"{keras_cache / 'cifar-10-batches-py-target_archive'}" in d.notice


def test_fashion_mnist_from_the_keras_cache(keras_cache):
    write_idx_set(keras_cache / "fashion-mnist")
    d = datasets.load("fashion_mnist", offline=True)
    assert d.source == "keras-cache" and d.x_test.shape == (10, 28, 28, 1)
    assert d.classes[-1] == "Ankle boot"
    labels = keras_cache / "fashion-mnist" / datasets.IDX_FILES["y_test"]
    datasets.write_idx(labels, np.full(10, 10))
    assert str(labels) in one_line_error(lambda: datasets.load("fashion_mnist", offline=True))


def test_the_cache_is_used_when_the_data_folder_lacks_the_set(keras_cache, tmp_path):
    write_idx_set(keras_cache / "fashion-mnist")
    d = datasets.load("fashion_mnist", data_dir=tmp_path, offline=True)
    assert d.source == "keras-cache" and "not in the data folder" in d.notice
    assert "using the Keras cache" in d.notice


def test_a_download_records_the_cache_files_it_wrote(keras_cache, monkeypatch):
    x, y = fake_images(8, (32, 32, 3))
    monkeypatch.setattr(datasets, "_keras_load", lambda name: ((x, y), (x, y)))
    d = datasets.load("cifar10")
    archive = keras_cache / "cifar-10-batches-py-target_archive"
    assert d.source == "download" and d.info()["files"] == [str(archive)]
    monkeypatch.setattr(datasets, "_keras_load", lambda name: ((x / 255, y), (x, y)))
    message = one_line_error(lambda: datasets.load("cifar10"))
    assert message.startswith(f"{archive}: x_train holds values from 0 to 1")


def test_a_folder_where_keras_keeps_a_file_is_an_error(keras_cache):
    (keras_cache / "mnist.npz").mkdir(parents=True)
    message = one_line_error(lambda: datasets.load("mnist", offline=True))
    assert f"{keras_cache / 'mnist.npz'} is a folder where Keras keeps" in message


def test_damaged_keras_cache_file_is_an_error(keras_cache):
    keras_cache.mkdir(parents=True)
    write_npz(keras_cache / "mnist.npz")
    message = one_line_error(lambda: datasets.load("mnist"))
    assert str(keras_cache / "mnist.npz") in message and "delete it" in message
    assert (keras_cache / "mnist.npz").exists(), "nothing is deleted behind the user's back"


# --- Series and pipelines -------------------------------------------------------------
def test_sunspots_series():
    years, values, provenance = datasets.load_series("sunspots")
    assert len(years) == len(values) == 309 and (years[0], years[-1]) == (1700, 2008)
    assert values.dtype == np.float32 and values.min() >= 0 and values.max() > 150
    assert "public domain" in provenance


def test_pipeline_batches_every_example_once_in_a_seeded_order():
    x = np.arange(50, dtype=np.float32)[:, None]
    y = np.arange(50)

    def epoch(ds):
        return np.concatenate([b[1].numpy() for b in ds])

    ds = datasets.pipeline(x, y, batch_size=16, shuffle=True, seed=3)
    first, second = epoch(ds), epoch(ds)
    assert sorted(first) == list(range(50)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(first, epoch(datasets.pipeline(x, y, 16, shuffle=True, seed=3)))
    sizes = [len(b[1]) for b in datasets.pipeline(x, y, 16)]
    assert sizes == [16, 16, 16, 2] and datasets.pipeline(x, y, 16).cardinality() == 4
    assert [len(b[1]) for b in datasets.pipeline(x, y, 16, drop_remainder=True)] == [16] * 3
    xb, yb = next(iter(datasets.pipeline(x, y, 8)))
    np.testing.assert_array_equal(xb.numpy()[:, 0], yb.numpy())


def test_pipeline_keeps_structures():
    inputs = {"a": np.ones((6, 2), np.float32), "b": np.zeros((6,), np.int32)}
    batch = next(iter(datasets.pipeline(inputs, batch_size=4)))
    assert set(batch) == {"a", "b"} and batch["a"].shape == (4, 2)


def test_split_validation_floors_and_is_seeded():
    train, val = datasets.split_validation(25, 0.1, seed=1)
    assert len(val) == 2 and len(train) == 23
    assert sorted(np.concatenate([train, val])) == list(range(25))
    np.testing.assert_array_equal(val, datasets.split_validation(25, 0.1, seed=1)[1])


# --- How the images frame their ink (read back by predict) ---------------------------------
def mnist_like(digits: np.ndarray) -> np.ndarray:
    """Frame 8x8 digits as MNIST framed its digits: ink scaled into a 20x20 box, then moved
    (by whole pixels) so its centre of mass is at the middle of 28x28. (n, 28, 28, 1)."""
    from PIL import Image

    out = np.zeros((len(digits), 28, 28, 1), np.float32)
    for i, x in enumerate(digits[..., 0]):
        big = np.asarray(Image.fromarray(x).resize((20, 20), Image.Resampling.BILINEAR))
        big = np.clip(big, 0, 1)
        cy = big.sum(1) @ (np.arange(20) + 0.5) / big.sum()
        cx = big.sum(0) @ (np.arange(20) + 0.5) / big.sum()
        top, left = int(round(14 - cy)), int(round(14 - cx))
        out[i, top:top + 20, left:left + 20, 0] = big
    return out


def test_ink_framing_finds_how_each_data_set_aligns_its_digits():
    data = datasets.load("digits")
    framing = data.info()["framing"]  # what results.json records for every image chapter
    assert framing["place"] == ["box", "mass"], "the 8x8 digits fill the height, mass across"
    assert framing["box"] == 8 and framing["centre"][0] == pytest.approx(4.0, abs=0.01)
    assert framing["images"] == len(data.x_train) and framing["peak"] == 1.0
    mnist = datasets.ink_framing(mnist_like(data.x_train[:400]))
    assert mnist["place"] == ["mass", "mass"]
    assert mnist["centre"] == pytest.approx([14.0, 14.0], abs=0.1)
    assert 18 <= mnist["box"] <= 20


def test_ink_framing_skips_blank_and_colour_images():
    x = np.zeros((3, 6, 6, 1), np.float32)
    x[0, 1:5, 2:4] = 1.0
    framing = datasets.ink_framing(x)
    assert framing["images"] == 1 and framing["box"] == 4
    assert framing["centre"] == [3.0, 3.0]
    assert datasets.ink_framing(np.zeros((2, 6, 6, 3), np.float32)) is None
    assert datasets.ink_framing(np.zeros((2, 6, 6, 1), np.float32)) is None
