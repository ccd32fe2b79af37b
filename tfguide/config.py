"""The run configuration every chapter receives, and the checks on its values.

No TensorFlow here: the CLI builds and validates a `Config` before anything
heavy is imported.
"""
from __future__ import annotations

import dataclasses
import json
import os
import types
from pathlib import Path
from typing import Any, Callable, Mapping

from tfguide import paths
from tfguide.console import SetupError, UsageError, bad_value, printable

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


SERVABLE = ("cnn", "mlp")  # chapters whose run folders hold an image classifier
MODEL_FILE = "model.keras"
MAX_RESULTS = 16 << 20  # bytes; a results.json is a few kilobytes
DATA_DIR_VARIABLE = "TFGUIDE_DATA_DIR"  # the data folder when no --data-dir is given
MAX_CLASSES = 100_000
MAX_SIDE = 4096  # pixels of one side of a training image


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _framing_problem(framing: object, shape: list) -> str | None:
    """Say what is wrong with a results.json's data.framing (see datasets.ink_framing)."""
    def number(v, low, high):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high

    if not isinstance(framing, dict):
        return "is not an object"
    side = max(shape[:2])
    centre = framing.get("centre")
    if not (number(framing.get("ink"), 0.01, 0.99) and number(framing.get("peak"), 0.01, 1)
            and number(framing.get("box"), 1, side) and isinstance(framing.get("place"), list)
            and len(framing["place"]) == 2 and all(p in ("box", "mass") for p in framing["place"])
            and isinstance(centre, list) and len(centre) == 2
            and all(number(c, 0, s) for c, s in zip(centre, shape))):
        return "is not the measure tfguide writes (ink, peak, box, place, centre)"
    return None


def model_run(folder: Path) -> dict:
    """Return the results.json record of a finished cnn or mlp run folder holding its model.

    No TensorFlow: `predict` and deploy's `--from` check a run folder with this
    before anything heavy loads. The record's `data` says what the model takes
    (`shape`, `classes`) and, from newer runs, how its images frame their ink.

    Raises:
        ValueError: what is wrong with the folder, as words that follow its name
            ("holds no model.keras", "is a rnn run, ...").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError("is not a folder" if folder.exists() else "does not exist")
    if not (folder / MODEL_FILE).is_file():
        raise ValueError(f"holds no {MODEL_FILE}")
    path = folder / "results.json"
    if not path.exists():
        raise ValueError("holds no results.json")
    try:  # a folder the user names is followed even if it is a link: they chose it
        record = paths.read_json(path, MAX_RESULTS)
    except ValueError as err:
        raise ValueError(f"has a results.json that {err}") from None
    if not isinstance(record, dict):
        raise ValueError("has a results.json that is not a JSON object")
    chapter = record.get("chapter")
    if chapter not in SERVABLE:  # checked first: an rnn run has no image data to describe
        raise ValueError(f"is a {printable(chapter[:40])} run, whose model is not an image "
                         f"classifier" if isinstance(chapter, str) else
                         'has a results.json without "chapter"')
    status = record.get("status")
    if status != "ok":
        raise ValueError(f'is an unfinished run (its results.json says "status": '
                         f'{json.dumps(status)[:40]}, not "ok")')
    data = record.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError('has a results.json without the "data" its model was trained on')
    shape = data.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and _whole(shape[2], 1, 4)
            and all(_whole(n, 1, MAX_SIDE) for n in shape[:2])):
        raise ValueError('has a results.json whose "data.shape" is not an image shape '
                         '[height, width, channels]')
    if not _whole(data.get("classes"), 2, MAX_CLASSES):
        raise ValueError(f'has a results.json whose "data.classes" is not a whole number from '
                         f'2 to {MAX_CLASSES:,}')
    if "framing" in data and (why := _framing_problem(data["framing"], shape)):
        raise ValueError(f'has a results.json whose "data.framing" {why}')
    return record


def run_folder(text: str) -> str:
    """Parse a run folder option (deploy's `--from`): a finished cnn or mlp run, or "latest"."""
    if text == "latest":
        return text
    allowed = "a finished cnn or mlp run folder (e.g. runs/cnn/<time>), or latest"
    if not text:
        raise ValueError(f"{allowed}; this one is an empty name")
    try:
        model_run(Path(text).expanduser())
    except ValueError as err:
        raise ValueError(f"{allowed}; this one {err}") from None
    return text


def int_up_to(limit: int) -> Callable[[str], int]:
    """Return a check that parses a whole number from 1 to `limit` (a bound on time or memory)."""
    allowed = f"an integer from 1 to {limit:,}"

    def check_fn(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ValueError(allowed) from None
        if not 1 <= value <= limit:
            raise ValueError(allowed)
        return value

    return check_fn


def hidden_widths(text: str) -> tuple[int, ...]:
    """Parse mlp's --hidden: the units of each hidden layer, comma-separated (256,128)."""
    parts = text.split(",")
    if not all(p.strip().isdigit() and 0 < int(p) <= 100_000 for p in parts):
        raise ValueError("positive whole numbers of units separated by commas, e.g. 256,128")
    return tuple(int(p) for p in parts)


def dropout_rate(text: str) -> float:
    """Parse cnn's --dropout: a fraction from 0 (no dropout) up to, not including, 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:  # NaN fails too
        raise ValueError("a fraction from 0 up to (not including) 1")
    return value


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


# --- Flags: a value check applied to a command-line flag raises a one-line UsageError ----
def check(flag: str, text: str, check_fn: Callable[[str], object]):
    """Parse `text` with `check_fn` (a check above); a bad value is a `UsageError`."""
    try:
        return check_fn(text)
    except (TypeError, ValueError) as err:
        allowed = describe(check_fn)
        if allowed == "a valid value" and err.args:
            allowed = str(err.args[0])
        raise bad_value(flag, text, allowed) from None


def output_folder(flag: str, text: str) -> Path:
    """Return `text` as a folder tfguide may create and write in."""
    if not text:
        raise bad_value(flag, repr(text), "a folder name (it is created if missing)")
    try:
        return paths.check_output_folder(Path(text))
    except paths.PathError as err:
        raise UsageError(f"{flag} must be a folder you can write in (it is created if "
                         f"missing), but {err}. Received: {flag}={text}") from None


def writable_folder(flag: str, text: str) -> Path:
    """Return `text` as a folder this user can write in, made if missing (notebook, book)."""
    if not text:
        raise bad_value(flag, repr(text), "a folder name (it is created if missing)")
    try:
        return paths.make_folder(Path(text))
    except paths.PathError as err:
        raise bad_value(flag, text, f"a folder you can write in ({err})") from None


def existing_folder(flag: str, text: str) -> Path:
    """Return `text` as a folder that must already exist."""
    path = Path(text).expanduser()
    if not text or not path.is_dir():
        raise UsageError(f"{flag} must be an existing folder. Received: {flag}={text}")
    return path


def _is_address(text: object) -> bool:
    host, _, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def cluster_addresses(raw: str) -> tuple[list[str], str]:
    """Check a TF_CONFIG value; return (every task's "host:port", this task's).

    Raises:
        ValueError: what is wrong with it.
    """
    try:
        spec = json.loads(raw)
    except ValueError:
        raise ValueError("it is not valid JSON") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) \
            or not isinstance(spec.get("task"), dict):
        raise ValueError('it needs a "cluster" object and a "task" object')
    cluster, task = spec["cluster"], spec["task"]
    for job, tasks in cluster.items():
        if job not in ("chief", "worker") or not isinstance(tasks, list) or not tasks \
                or not all(_is_address(t) for t in tasks):
            raise ValueError(f'cluster["{job}"] must be a list of "host:port" strings of the '
                             f'jobs "chief" (at most one task) or "worker"')
    if "worker" not in cluster or len(cluster.get("chief", [])) > 1:
        raise ValueError('the cluster needs a "worker" list and at most one "chief"')
    job, index = task.get("type"), task.get("index")
    if job not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[job]):
        raise ValueError(f'task {{"type": {job!r}, "index": {index!r}}} is not a task of the '
                         f"cluster")
    everyone = [t for j in ("chief", "worker") for t in cluster.get(j, [])]
    if len(set(everyone)) != len(everyone):
        raise ValueError("two tasks share one host:port")
    return everyone, cluster[job][index]


def check_environment() -> None:
    """Refuse an environment tfguide cannot run in, before TensorFlow loads.

    Raises:
        SetupError: says what to change.
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise SetupError(f"tfguide runs Keras on TensorFlow, but the environment sets "
                         f"KERAS_BACKEND={backend}: unset it (unset KERAS_BACKEND) or set "
                         f"KERAS_BACKEND=tensorflow")
