"""What bench times: a chapter's main model on data of a known size, and the clocks of a race.

Each `tfguide/bench/NAME.py` builds its chapter's `Workload` from the chapter
module's own functions, so bench times exactly the model the lesson trains.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from tfguide import registry


@dataclasses.dataclass
class Workload:
    """A chapter's main model and the arrays to time it on (`tfguide/bench/NAME.py`'s `workload`)."""

    build: Callable  # () -> a compiled keras.Model; bench builds it through Runtime.build
    x: object
    y: object  # None for a model that trains on x alone (the VAE)
    batch_size: int
    note: str


def synthetic_images(shape: tuple[int, ...], n: int, classes: int, seed: int):
    """Random images in [0, 1) and labels: speed does not depend on the values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape), dtype=np.float32),
            rng.integers(0, classes, size=n).astype("int32"))


def image_workload(name: str, make: Callable, quick: bool, seed: int,
                   labels: bool = True) -> Workload:
    """Chapter `name`'s image model on random MNIST-shaped images, with its batch size.

    Args:
        make: `make(shape, learning_rate)` builds and compiles the model.
        labels: False for a model that trains on the images alone (the VAE).
    """
    defaults = registry.get(name)
    shape = (28, 28, 1)
    x, y = synthetic_images(shape, 4096 if quick else 16384, 10, seed)
    return Workload(build=lambda: make(shape, defaults.learning_rate), x=x,
                    y=y if labels else None, batch_size=defaults.batch_size,
                    note=f"build_model({shape}) on {len(x)} random MNIST-shaped images")
