"""What `python -m tfguide bench` times of chapter gradient_descent: its main model (`workload`)."""
from __future__ import annotations

from tfguide.bench.workloads import Workload
from tfguide.chapters.gradient_descent import compile_model, make_regression


def workload(quick: bool, seed: int) -> Workload:
    """The Keras model and its data for `python -m tfguide bench`."""
    X, y = make_regression(16384 if quick else 65536, seed)
    x = X[:, :1].numpy().astype("float32")  # (n, 1): the feature, without the column of ones
    return Workload(build=lambda: compile_model(0.01), x=x,
                    y=y.numpy().astype("float32")[:, None], batch_size=256,
                    note=f"Dense(1) on {len(x)} points")
