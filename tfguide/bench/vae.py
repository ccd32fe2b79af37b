"""What `python -m tfguide bench` times of chapter vae: its main model (`workload`)."""
from __future__ import annotations

from tfguide.bench.workloads import Workload, image_workload
from tfguide.chapters.vae import compile_vae


def workload(quick: bool, seed: int) -> Workload:
    """The VAE on random MNIST-shaped images, for `python -m tfguide bench`."""
    return image_workload("vae", lambda shape, lr: compile_vae(shape, 2, lr, seed),
                          quick, seed, labels=False)
