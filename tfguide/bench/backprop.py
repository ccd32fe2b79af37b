"""What `python -m tfguide bench` times of chapter backprop: its main model (`workload`)."""
from __future__ import annotations

import numpy as np

from tfguide.bench.workloads import Workload
from tfguide.chapters.backprop import compile_model, make_spirals


def workload(quick: bool, seed: int) -> Workload:
    """The two-layer net, in float32, on the spirals, for `python -m tfguide bench`."""
    X, y = make_spirals(16384 if quick else 65536, seed)
    return Workload(build=lambda: compile_model(64, 0.5, dtype="float32"),
                    x=X.astype("float32"), y=np.eye(2, dtype="float32")[y],
                    batch_size=256, note=f"2-64-2 network on {len(X)} spiral points")
