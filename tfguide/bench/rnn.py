"""What `python -m tfguide bench` times of chapter rnn: its main model (`workload`)."""
from __future__ import annotations

from tfguide import registry
from tfguide.bench.workloads import Workload
from tfguide.chapters.rnn import compile_classifier, make_memory_task


def workload(quick: bool, seed: int) -> Workload:
    """The LSTM classifier on the memory task, for `python -m tfguide bench`."""
    defaults = registry.get("rnn")
    x, y = make_memory_task(2048 if quick else 8192, seed)
    return Workload(build=lambda: compile_classifier("lstm", x.shape[1:],
                                                     defaults.learning_rate),
                    x=x, y=y, batch_size=defaults.batch_size,
                    note=f"LSTM classifier on {len(x)} memory-task sequences of "
                         f"{x.shape[1]} steps")
