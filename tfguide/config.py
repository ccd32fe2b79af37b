"""The run configuration every chapter receives, and the checks on its values.

No TensorFlow here: the CLI builds and validates a `Config` before anything
heavy is imported.
"""
from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Mapping

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("float32", "mixed")
JIT_MODES = ("auto", "on", "off")
STRATEGIES = ("auto", "one", "mirrored", "multiworker")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs; filled by the CLI, read by `run(cfg)`."""

    chapter: str
    quick: bool = False
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 42
    data: str = "digits"
    data_dir: Path | None = None
    offline: bool = False
    out: Path = Path("runs")
    device: str = "auto"
    precision: str = "float32"
    jit: str = "auto"
    strategy: str = "auto"
    deterministic: bool = False
    tensorboard: bool = False
    show: bool = False
    verbose: bool = False
    options: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    run_dir: Path | None = None  # set by the CLI; a run makes its own when None

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready values."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[field.name] = value
        return out


# --- Value checks: each returns the parsed value or raises ValueError -----------------
def positive_int(text: str) -> int:
    """Parse a whole number greater than zero."""
    value = int(text)
    if value <= 0:
        raise ValueError("a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """Parse a whole number zero or greater."""
    value = int(text)
    if value < 0:
        raise ValueError("an integer >= 0")
    return value


MAX_SEED = 2**32 - 1  # NumPy's and Keras's seeds are 32-bit


def seed(text: str) -> int:
    """Parse a random seed: a whole number from 0 to 2³² − 1."""
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"an integer from 0 to {MAX_SEED}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number greater than zero."""
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise ValueError("a finite number > 0")
    return value


def run_folder(text: str) -> str:
    """Parse a run folder option (deploy's `--from`): an existing folder, or "latest"."""
    if text != "latest" and not Path(text).expanduser().is_dir():
        raise ValueError("an existing run folder (e.g. runs/cnn/<time>), or latest")
    return text


def non_empty_text(text: str) -> str:
    """Accept any text that is not empty (for options such as --prompt)."""
    if not text:
        raise ValueError("a non-empty text")
    return text


def describe(check) -> str:
    """Say in words what a check accepts, for error messages."""
    return {
        positive_int: "a positive integer",
        non_negative_int: "an integer >= 0",
        positive_float: "a finite number > 0",
        seed: f"an integer from 0 to {MAX_SEED}",
    }.get(check, "a valid value")


def format_metric(value: Any) -> str:
    """Format a metric for a table: whole numbers as such, tiny or huge ones in e-notation."""
    if isinstance(value, float):
        size = abs(value)
        if value.is_integer() and 10 <= size < 1e9:  # counts: parameters, errors
            return f"{int(value):,}"
        if size >= 1e6 or size < 1e-3:
            return f"{value:.3e}"
        return f"{value:,.1f}" if size >= 100 else f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
