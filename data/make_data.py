"""Make the small real data sets tfguide ships in this folder.

Run once, from the repository root, with scikit-learn and statsmodels installed
(they bundle the data; neither is needed to use tfguide), and the plain-text
Tiny Shakespeare corpus at `../shared/data/tinyshakespeare.txt` (or pass its path
in `TINYSHAKESPEARE`):

    pip install scikit-learn statsmodels
    python data/make_data.py

Writes `digits.npz`, `sunspots.csv` and `tinyshakespeare.txt.gz` and prints their
SHA-256 checksums, which tfguide checks on every load (`tfguide/datasets.py`;
the corpus in `tfguide/chapters/language_model.py`).
"""
import csv
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
TEST_FRACTION = 0.2


def make_digits(path: Path) -> None:
    """The 1,797 UCI optdigits 8x8 images, grey levels 0..16, split 80/20 per class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    labels = digits.target.astype(np.uint8)
    rng = np.random.default_rng(SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):  # stratified: the same share of every class in the test set
        idx = np.flatnonzero(labels == c)
        chosen = rng.choice(idx, size=round(len(idx) * TEST_FRACTION), replace=False)
        test[chosen] = True
    train_idx = rng.permutation(np.flatnonzero(~test))
    test_idx = rng.permutation(np.flatnonzero(test))
    with open(path, "wb") as f:  # np.savez_compressed embeds no timestamps: reproducible bytes
        np.savez_compressed(
            f,
            x_train=images[train_idx], y_train=labels[train_idx],
            x_test=images[test_idx], y_test=labels[test_idx],
        )


def make_sunspots(path: Path) -> None:
    """Yearly mean sunspot numbers, 1700-2008, as statsmodels bundles them."""
    import statsmodels.api as sm

    frame = sm.datasets.sunspots.load_pandas().data
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["year", "sunspots"])
        for year, value in zip(frame["YEAR"], frame["SUNACTIVITY"]):
            writer.writerow([int(year), f"{value:.1f}"])


def make_tinyshakespeare(path: Path) -> None:
    """Tiny Shakespeare (1,115,394 characters), gzip-compressed with no timestamp or name."""
    source = Path(os.environ.get("TINYSHAKESPEARE",
                                 HERE.parent.parent / "shared" / "data" / "tinyshakespeare.txt"))
    raw = source.read_bytes()
    expected = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    if hashlib.sha256(raw).hexdigest() != expected:
        raise SystemExit(f"{source} is not the published Tiny Shakespeare (sha256 {expected})")
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f,
                                              compresslevel=9, mtime=0) as gz:
        gz.write(raw)  # mtime=0 and no file name: the same bytes on every run


if __name__ == "__main__":
    for name, make in (("digits.npz", make_digits), ("sunspots.csv", make_sunspots),
                       ("tinyshakespeare.txt.gz", make_tinyshakespeare)):
        target = HERE / name
        make(target)
        print(f"{name}: sha256 {hashlib.sha256(target.read_bytes()).hexdigest()}")
