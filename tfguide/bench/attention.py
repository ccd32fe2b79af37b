"""What `python -m tfguide bench` times of chapter attention: its main model (`workload`)."""
from __future__ import annotations

from tfguide import registry
from tfguide.bench.workloads import Workload
from tfguide.chapters.attention import SEQ_LEN, VOCAB_SIZE, compile_model, make_reversal


def workload(quick: bool, seed: int) -> Workload:
    """The encoder reversing random digit sequences, for `python -m tfguide bench`."""
    defaults = registry.get("attention")
    x, y = make_reversal(4096 if quick else 16384, SEQ_LEN, VOCAB_SIZE, seed)
    return Workload(
        build=lambda: compile_model(SEQ_LEN, VOCAB_SIZE, defaults.learning_rate), x=x, y=y,
        batch_size=defaults.batch_size,
        note=f"build_model({SEQ_LEN}, {VOCAB_SIZE}) reversing {len(x)} digit sequences")
