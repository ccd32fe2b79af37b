"""Data: the shipped digits, files from a folder, the offline fallback, damaged files."""
import gzip
import shutil

import numpy as np
import pytest

from tfguide import datasets, resources


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


def test_npz_from_a_data_dir(tmp_path):
    x, y = fake_images(12, (32, 32, 3))
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y[:, None], x_test=x, y_test=y)
    d = datasets.load("cifar10", data_dir=tmp_path)
    assert d.source == "data-dir" and d.input_shape == (32, 32, 3) and d.y_train.ndim == 1


def test_fashion_mnist_from_the_keras_cache():
    write_idx_set(datasets.keras_cache_dir() / "fashion-mnist")
    try:
        d = datasets.load("fashion_mnist")
        assert d.source == "keras-cache" and d.x_test.shape == (10, 28, 28, 1)
        assert d.classes[-1] == "Ankle boot"
    finally:
        shutil.rmtree(datasets.keras_cache_dir() / "fashion-mnist")


def test_damaged_keras_cache_file_is_an_error():
    cache = datasets.keras_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    x, y = fake_images(5, (28, 28))
    np.savez(cache / "mnist.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    try:
        with pytest.raises(datasets.DataError) as err:
            datasets.load("mnist")
        assert str(cache / "mnist.npz") in str(err.value) and "delete it" in str(err.value)
        assert (cache / "mnist.npz").exists(), "nothing is deleted behind the user's back"
    finally:
        (cache / "mnist.npz").unlink(missing_ok=True)


def truncate(path):
    path.write_bytes(path.read_bytes()[:-40])


def corrupt_header(path):
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x0d\x03" + b"\x00" * 64)  # float data, not unsigned bytes


def truncate_payload(path):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))


@pytest.mark.parametrize("damage,needle", [
    (truncate, "truncated or not gzip"),
    (corrupt_header, "not an IDX file"),
    (truncate_payload, "truncated or padded"),
])
def test_damaged_idx_names_the_file_and_the_fix(tmp_path, damage, needle):
    write_idx_set(tmp_path)
    bad = tmp_path / datasets.IDX_FILES["x_test"]
    damage(bad)
    with pytest.raises(datasets.DataError) as err:
        datasets.load("mnist", data_dir=tmp_path)
    assert needle in str(err.value) and str(bad) in str(err.value)
    assert "download it again" in str(err.value)


@pytest.mark.parametrize("arrays,needle", [
    ({"x_train": np.zeros((4, 10, 10), np.uint8)}, "wrong|shape"),
    ({"y_train": np.array([0, 1, 2, 42], np.uint8)}, "labels outside 0..9"),
    ({"y_train": np.array([0, 1], np.uint8)}, "has 4 images but y_train has 2"),
])
def test_wrong_arrays_are_rejected(tmp_path, arrays, needle):
    x, y = fake_images(4, (28, 28))
    good = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    np.savez(tmp_path / "mnist.npz", **(good | arrays))
    with pytest.raises(datasets.DataError, match=needle):
        datasets.load("mnist", data_dir=tmp_path)


def test_pickled_arrays_are_refused(tmp_path):
    x, y = fake_images(4, (28, 28))
    objects = np.array([x, "not an image"], dtype=object)
    np.savez(tmp_path / "mnist.npz", x_train=objects, y_train=y, x_test=x, y_test=y)
    with pytest.raises(datasets.DataError, match="cannot be read"):
        datasets.load("mnist", data_dir=tmp_path)


def test_truncated_npz_is_an_error(tmp_path):
    x, y = fake_images(50, (28, 28))
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    truncate(tmp_path / "mnist.npz")
    with pytest.raises(datasets.DataError, match="truncated or damaged"):
        datasets.load("mnist", data_dir=tmp_path)


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
