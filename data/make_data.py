"""Make the small real data sets tfguide ships in this folder.

Run once, from the repository root, with scikit-learn and statsmodels installed
(they bundle the data; neither is needed to use tfguide):

    pip install scikit-learn statsmodels
    python data/make_data.py

Writes `digits.npz` and `sunspots.csv` and prints their SHA-256 checksums,
which `tfguide/datasets.py` checks on every load.
"""
import csv
import hashlib
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


if __name__ == "__main__":
    for name, make in (("digits.npz", make_digits), ("sunspots.csv", make_sunspots)):
        target = HERE / name
        make(target)
        print(f"{name}: sha256 {hashlib.sha256(target.read_bytes()).hexdigest()}")
