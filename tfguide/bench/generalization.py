"""What `python -m tfguide bench` times of chapter generalization: its main model (`workload`)."""
from __future__ import annotations

from tfguide.bench.workloads import Workload, image_workload
from tfguide.chapters.generalization import compile_model


def workload(quick: bool, seed: int) -> Workload:
    """The plain two-layer MLP of the comparison on random MNIST-shaped images."""
    return image_workload("generalization", lambda shape, lr: compile_model(shape, 10, lr),
                          quick, seed)
