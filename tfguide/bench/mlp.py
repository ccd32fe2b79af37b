"""What `python -m tfguide bench` times of chapter mlp: its main model (`workload`)."""
from __future__ import annotations

from tfguide.bench.workloads import Workload, image_workload
from tfguide.chapters.mlp import compile_model


def workload(quick: bool, seed: int) -> Workload:
    """The MLP on random MNIST-shaped images, for `python -m tfguide bench`."""
    return image_workload("mlp", lambda shape, lr: compile_model(shape, 10, lr),
                          quick, seed)
