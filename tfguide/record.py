"""Recorded reference runs: where every number and figure in a chapter text comes from.

`python -m tfguide record NAME|all [--full] [--seeds N]` runs a chapter as its text says
(the `--quick` run with the default seed; `--full`: the full run) and writes

    chapters/results/NAME.json       metrics, config, runtime, data, wall time, date, machine,
                                     and each metric's spread over N seeds (quick runs)
    chapters/results/NAME.full.json  the same for the full run (`--full`, one seed)
    chapters/figures/NAME/*.png      the quick run's figures, as palette PNGs, and the
                                     chapter's concept diagrams (tfguide.concepts)

then refreshes the numbers in `chapters/NAME.md`. A text never types a result;
it marks where one goes, and `python -m tfguide record --sync NAME|all` (or a
record) fills it in:

    <!-- result: test_accuracy -->0.9861<!-- /result -->
    <!-- result: full:wall_s | .0f -->42<!-- /result -->
    <!-- result: spread:test_accuracy | .3f -->0.006<!-- /result -->

The key is a dotted path into the record (`data.train`, `config.epochs`); a
bare name means `metrics.NAME`, except the record's own `wall_s`, `date`,
`machine`, `command` and `seeds`; `full:` reads the full run's record, `race:`
the chapter's bench race (`record NAME --race`) and `spread:` how far a metric
of the quick run moved over the recorded seeds (largest minus smallest). After
`|` comes a format: `pct` (98.61%), `int` (1,295), or a Python format spec
(`.3f`, `.2e`); the default is the summary table's. A format is for a number:
a text or list value takes none. Every value is checked for its type and
written with the characters that mean something to Markdown or HTML as
character references, so a results file can put only plain text into a text.

`record` writes into a source checkout (the `chapters/` folder beside the
package) and refuses at once elsewhere. Records, texts and figures are replaced
whole (a new file renamed over the old, a new figures folder swapped in), so a
run that fails, or a second `record` running at the same time, leaves whole files.

The tests run every chapter's quick run and `compare` its metrics with the
record under the tolerances below, so a change that moves a number must
re-record it, and the diff shows what moved.
"""
from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from tfguide import cli, console, registry, resources
from tfguide.config import format_metric
from tfguide.paths import replace_file

TOP_LEVEL = ("wall_s", "date", "machine", "command", "chapter", "seeds")  # not metrics
MARKER = re.compile(r"<!-- result: (?P<key>[\w.:]+)(?: \| (?P<fmt>[\w.,%+-]+))? -->"
                    r"(?P<value>(?:(?!<!--).)*?)<!-- /result -->", re.S)
OPENING = re.compile(r"<!-- result:")


class RecordError(Exception):
    """A record, a text or a checkout that `record` cannot use; the message says what to do."""


# --- Tolerances: how far a fresh quick run may land from its record ----------------------
# A floor (kind, tolerance) by metric name, first match wins. Timings are shown, never compared.
TOLERANCES: tuple[tuple[str, str, float], ...] = (
    (r"(_per_s|_s|_ms|_ms_per_image|_seconds)$", "timing", 0.0),
    # trained for as many seconds as another model: moves with the machine's speed
    (r"^lstm_val_loss$", "relative", 0.15),
    # fixed by the model and the data, not by training: the same on every machine
    (r"^(params|parameters|\w+_params|\w+_weights|\w*_count|\w+_bytes|vocab_size)$",
     "exact", 0.0),
    (r"(_err|_error|_max_change)$", "error", 10.0),  # at most 10× the recorded error (or 1e-6)
    (r"accuracy|agreement", "band", 0.03),  # ±3 percentage points
    (r"_p$", "band", 1.0),  # p-values: shown, any value in [0, 1]
    (r".*", "relative", 0.05),  # losses, ratios, counts of mistakes, everything else: ±5 %
)

# Seeded training is repeatable on one machine but not bit-identical across processors
# (other oneDNN kernels, another summation order), and a tiny difference grows through
# training: a run on another CPU behaves like a run with another seed. So `record` runs the
# quick run with SEEDS seeds and stores each metric's spread (largest minus smallest), and
# `compare` allows any metric but the exact ones SPREADS × that spread, or its floor above,
# whichever is wider. Why 5 and 3: if a fresh run were one more draw from the seeds'
# (normal) distribution, it lands more than 3 ranges of 5 draws from the recorded one with
# probability 0.3 % (simulated; 3 ranges of 3 draws: 4 %, 2 ranges of 5: 1.4 %), and the
# floors make it rarer still. A run on another processor moves less than another seed does.
SEEDS = 5
SPREADS = 3.0


def tolerance(name: str) -> tuple[str, float]:
    """Return the floor (kind, tolerance) for metric `name` (see TOLERANCES)."""
    for pattern, kind, tol in TOLERANCES:
        if re.search(pattern, name):
            return kind, tol
    raise AssertionError("the last pattern matches every name")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(recorded: dict[str, Any], fresh: dict[str, Any],
            spread: dict[str, Any] | None = None) -> list[str]:
    """Return what differs between a recorded run's metrics and a fresh run's (empty if none).

    `spread` is the record's measured spread over seeds (metric: largest − smallest); a
    metric may move SPREADS times its spread, or as far as its floor allows if that is wider.
    """
    spread = spread or {}
    problems = [f"{n}: recorded but no longer produced" for n in recorded if n not in fresh]
    problems += [f"{n}: produced but not recorded (re-record)" for n in fresh if n not in recorded]
    for name in sorted(set(recorded) & set(fresh)):
        old, new = recorded[name], fresh[name]
        if not _number(old) or not _number(new):
            if old != new:
                problems.append(f"{name}: recorded {old!r}, now {new!r}")
            continue
        kind, tol = tolerance(name)
        if kind == "timing":
            continue
        if kind == "exact":
            if new != old:
                problems.append(f"{name}: recorded {old:.6g}, now {new:.6g} (exact)")
            continue
        width = spread.get(name, 0.0)
        width = SPREADS * width if _number(width) and math.isfinite(width) else 0.0
        within_floor = {
            "error": abs(new) <= max(tol * abs(old), 1e-6),
            "band": abs(new - old) <= tol,
            "relative": abs(new - old) <= tol * max(abs(old), 1e-12),
        }[kind]
        if not (within_floor or abs(new - old) <= width):
            problems.append(f"{name}: recorded {old:.6g}, now {new:.6g} ({kind} floor {tol:g}; "
                            f"{SPREADS:g} × its spread over seeds = {width:.3g})")
    return problems


def spread_of(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Return each numeric metric's spread (largest − smallest) over the runs' metrics."""
    names = [n for n in runs[0] if all(_number(r.get(n)) for r in runs)]
    return {n: float(max(r[n] for r in runs) - min(r[n] for r in runs)) for n in names}


# --- Files ----------------------------------------------------------------------------------
def results_dir() -> Path:
    return resources.texts_dir() / "results"


def figures_dir(name: str) -> Path:
    return resources.texts_dir() / "figures" / name


KINDS = {False: "", True: ".full", "race": ".race"}  # the quick run, the full run, a bench race
FLAGS = {False: "", True: " --full", "race": " --race"}


def record_path(name: str, full: bool | str = False) -> Path:
    return results_dir() / f"{name}{KINDS[full]}.json"


def _shown(path: Path) -> str:
    """`path` as a reader finds it from the checkout: chapters/results/NAME.json."""
    try:
        return Path(path).relative_to(resources.texts_dir().parent).as_posix()
    except ValueError:
        return str(path)


def load(name: str, full: bool | str = False) -> dict:
    """Return chapter `name`'s recorded run.

    Raises:
        FileNotFoundError: it was never recorded.
        RecordError: the file is damaged (not JSON, not an object, not UTF-8).
    """
    path = record_path(name, full)
    fix = (f"restore it (git checkout -- {_shown(path)}) or re-record it with "
           f"python -m tfguide record {name}{FLAGS[full]}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as err:
        raise RecordError(f"{_shown(path)} is not valid JSON (line {err.lineno}, column "
                          f"{err.colno}: {err.msg}): {fix}") from None
    except (UnicodeDecodeError, RecursionError):
        raise RecordError(f"{_shown(path)} cannot be read as a record: {fix}") from None
    except OSError as err:
        raise RecordError(f"{_shown(path)} cannot be read ({err.strerror}): {fix}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{_shown(path)} holds a JSON {type(data).__name__}, not a record: {fix}")
    return data


def machine() -> str:
    """Describe this machine in one line: CPU model, cores, OS."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def checkout() -> Path:
    """Return the source checkout `record` writes into; RecordError (one line) if there is none.

    An installed wheel carries its texts inside the package: a record there would rewrite
    site-packages, where the reader cannot find it (and often may not write).
    """
    texts = resources.texts_dir()
    root = texts.parent
    if texts.name != "chapters" or not (root / "pyproject.toml").is_file():
        raise RecordError(
            f"record rewrites the chapter texts of a source checkout, and this tfguide is an "
            f"installed package ({Path(__file__).resolve().parent}): clone the tfguide "
            f"repository and run pip install -e . in it to record")
    for folder in (texts, texts / "results", texts / "figures"):
        if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
            raise RecordError(f"{folder} is not writable: record needs to replace the records, "
                              "figures and texts in it")
    return root


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode())


def _compact_png(source: Path, target: Path) -> None:
    """Copy a figure as a palette PNG (about a third of the size, same look for plots)."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").quantize(256).save(target, optimize=True)


def _swap_folder(new: Path, target: Path) -> None:
    """Put folder `new` in `target`'s place; the old one is moved aside, then removed.

    A reader sees the old folder or the new one, whole, never a half-filled one; of two
    records swapping at once, the later one's folder stays.
    """
    for _ in range(100):
        try:
            os.rename(new, target)  # succeeds when target is absent (or an empty folder)
            return
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        aside = target.with_name(f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.old")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue  # another record moved it aside first
        shutil.rmtree(aside, ignore_errors=True)
    raise RecordError(f"could not replace {_shown(target)}: another record keeps replacing it")


def write_figures(name: str, run_dir: Path, concepts: bool = False) -> Path:
    """Replace chapters/figures/NAME/ at once with the run's figures, as palette PNGs, and
    (`concepts`) the chapter's concept diagrams, drawn again (tfguide.concepts)."""
    target = figures_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".new", dir=target.parent))
    try:
        for png in sorted((Path(run_dir) / "figures").glob("*.png")):
            _compact_png(png, new / png.name)
        if concepts:
            from tfguide import concepts as concept_diagrams

            concept_diagrams.draw(name, new)
        new.chmod(0o755)
        _swap_folder(new, target)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return target


def read_run(run_dir: Path) -> dict:
    """Return a finished run folder's results.json (RecordError if the run did not end ok)."""
    run = json.loads((Path(run_dir) / "results.json").read_text(encoding="utf-8"))
    if run.get("status") != "ok":
        raise RecordError(f"the run in {run_dir} ended with status {run.get('status')}")
    return run


def write_record(name: str, run_dir: Path, command: str, full: bool = False,
                 spread: dict[str, float] | None = None,
                 seeds: Sequence[int] | None = None, concepts: bool = False) -> Path:
    """Turn a finished run folder into chapter `name`'s record (and figures, for quick runs).

    `spread` and `seeds`: each metric's spread over the quick runs of these seeds;
    `concepts`: draw the chapter's concept diagrams into its figures too.
    """
    run = read_run(run_dir)
    keep = ("quick", "epochs", "batch_size", "learning_rate", "seed", "data", "device",
            "precision", "jit", "strategy", "options")
    payload = {
        "chapter": name, "command": command, "metrics": run["metrics"],
        "config": {k: run["config"][k] for k in keep if k in run["config"]},
        "runtime": {k: v for k, v in run["runtime"].items() if k != "devices"},
        "data": {k: v for k, v in run["data"].items() if k != "files"},
        "wall_s": run["wall_s"], "date": run["created"][:10], "machine": machine(),
    }
    if run.get("details"):
        payload["details"] = run["details"]
    if spread is not None:
        payload["seeds"] = list(seeds or [])
        payload["spread"] = spread
    if not full:
        write_figures(name, run_dir, concepts)
    path = record_path(name, full)
    _write_json(path, payload)
    return path


def write_race(name: str) -> Path | None:
    """Run chapter `name`'s full bench race and record it (None if it declares no race)."""
    from tfguide import bench, runtime  # imports TensorFlow
    from tfguide.config import Config

    if not bench.has_race(name):
        return None
    rt = runtime.configure(Config(chapter=name))
    race = bench.chapter_race(name, quick=False, seed=0, build=rt.build)
    ref, ours = race["reference"]["seconds"], race["tfguide"]["seconds"]
    payload = {"chapter": name, "command": f"python -m tfguide bench --chapters {name}",
               **race, "ratio": ours / ref if ref and ours else None,
               "date": dt.date.today().isoformat(), "machine": machine()}
    path = record_path(name, "race")
    _write_json(path, payload)
    return path


# --- Filling a text -----------------------------------------------------------------------------
def lookup(name: str, key: str, records: dict[bool | str, dict]) -> Any:
    """Return the value a marker's `key` names in chapter `name`'s records."""
    prefix, _, rest = key.partition(":") if ":" in key else ("", "", key)
    full = {"": False, "full": True, "race": "race", "spread": False}.get(prefix)
    if full is None:
        raise RecordError(f"chapters/{name}.md quotes {key!r}: the prefix must be full:, "
                          "race: or spread:")
    path = rest.split(".")
    if full not in records:
        try:
            records[full] = load(name, full)
        except FileNotFoundError:
            raise RecordError(f"{_shown(record_path(name, full))} does not exist: run "
                              f"python -m tfguide record {name}{FLAGS[full]}") from None
    value = records[full]
    if prefix == "spread":
        path = ["spread", *path]
    elif len(path) == 1 and path[0] not in TOP_LEVEL and full != "race":  # a bare name: a metric
        path = ["metrics", *path]
    for part in path:
        if not isinstance(value, dict) or part not in value:
            raise RecordError(f"chapters/{name}.md quotes {key!r}, which "
                              f"{record_path(name, full).name} does not have")
        value = value[part]
    return value


MAX_TEXT = 200  # characters: a recorded text (a date, a machine) is one short line
# Characters that mean something to Markdown or HTML: written as numeric character
# references, which both read as the character itself and never as markup.
_SPECIAL = re.compile(r"[&<>\"'\\`*_\[\]|~#!$]")


def escape(text: str) -> str:
    """Return `text` safe to stand anywhere in a Markdown text, even at a line's start."""
    text = _SPECIAL.sub(lambda m: f"&#{ord(m[0])};", text)
    text = re.sub(r"^(\d+)([.)])(?=\s|$)", lambda m: f"{m[1]}&#{ord(m[2])};", text)
    if re.match(r"[-+](\s|$)|=|\s", text):  # a list item, an underline, an indent
        text = f"&#{ord(text[0])};{text[1:]}"
    return text


def render(value: Any, fmt: str | None, what: str = "the value") -> str:
    """Format a recorded value for the text, escaped; RecordError if its type does not fit.

    `what` names the value in the error (`chapters/results/mlp.json: metrics.test_loss`).
    """
    if _number(value):
        if fmt is None:
            return escape(format_metric(value))
        try:
            if fmt == "pct":
                return escape(f"{value:.2%}")
            if fmt == "int":
                return escape(f"{int(round(value)):,}")
            return escape(format(value, fmt))
        except (ValueError, OverflowError) as err:
            raise RecordError(f"{what} ({value!r}) cannot be written as {fmt!r}: {err}") from None
    if isinstance(value, str) or (isinstance(value, list) and value and all(
            _number(v) or isinstance(v, str) for v in value)):
        if fmt is not None:
            raise RecordError(f"{what} is {_kind(value)}, and the text formats it as a number "
                              f"(| {fmt}): fix the record or re-record it")
        parts = [v if isinstance(v, str) else format_metric(v)
                 for v in (value if isinstance(value, list) else [value])]
        text = ", ".join(parts)
        if len(text) > MAX_TEXT or not all(c.isprintable() for c in text):
            raise RecordError(f"{what} is not one line of printable text of at most "
                              f"{MAX_TEXT} characters: fix the record or re-record it")
        return escape(text)
    raise RecordError(f"{what} is {_kind(value)}, not a number or a line of text: "
                      "fix the record or re-record it")


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"text ({console.printable(value[:40])!r})"
    return {bool: "true or false", type(None): "null", dict: "an object",
            list: "a list"}.get(type(value), type(value).__name__)


# Texts beside the chapters whose numbers come from chapters' records: each key there starts
# with the chapter's name (`language_model:race:ratio`).
PAGES = ("PERFORMANCE",)
# A recorded text shown whole (generated samples): the marker line, then a fenced block that
# --sync fills; it is shown as code, so no character in it can act as markup.
RECORDED = re.compile(r"^<!-- recorded: (?P<key>[\w.:]+) -->\n```text\n(?P<body>.*?)^```$",
                      re.M | re.S)
MAX_BLOCK = 2_000  # characters of a recorded text block


def _owner(name: str, key: str) -> tuple[str, str]:
    """Return (chapter, key within its records) for a marker of text `name`."""
    first, _, rest = key.partition(":")
    if first in registry.BY_NAME and rest:
        return first, rest
    if name in PAGES:
        raise RecordError(f"chapters/{name}.md quotes {key!r}: a key outside a chapter's text "
                          f"names its chapter first, e.g. language_model:race:ratio")
    return name, key


def block(value: Any, what: str) -> str:
    """Return a recorded text for a fenced block; RecordError if it is not one."""
    if not isinstance(value, str) or len(value) > MAX_BLOCK or "```" in value or not all(
            c.isprintable() or c == "\n" for c in value):
        raise RecordError(f"{what} is not a text of at most {MAX_BLOCK:,} printable characters "
                          "(lines allowed, no ```): fix the record or re-record it")
    return value.rstrip("\n") + "\n"


def sync(name: str, text: str) -> str:
    """Return text `name`'s `text` with every result marker filled from its records.

    `name` is a chapter, or one of PAGES whose keys name their chapter first.

    Raises:
        RecordError: a marker that is not closed, a record missing or damaged, a key the
            record does not have, a value of the wrong type for its format.
    """
    records: dict[str, dict[bool | str, dict]] = {}

    def value_of(key: str) -> tuple[Any, str]:
        chapter, inner = _owner(name, key)
        full = {"full": True, "race": "race"}.get(inner.partition(":")[0], False)
        what = f"{_shown(record_path(chapter, full))}: {inner}"
        return lookup(chapter, inner, records.setdefault(chapter, {})), what

    def fill(m: re.Match) -> str:
        key = m["key"]
        value, what = value_of(key)
        value = render(value, m["fmt"], what)
        fmt = f" | {m['fmt']}" if m["fmt"] else ""
        return f"<!-- result: {key}{fmt} -->{value}<!-- /result -->"

    def fill_block(m: re.Match) -> str:
        value, what = value_of(m["key"])
        return f"<!-- recorded: {m['key']} -->\n```text\n{block(value, what)}```"

    text = RECORDED.sub(fill_block, text)

    matched = {m.start() for m in MARKER.finditer(text)}
    for opening in OPENING.finditer(text):
        if opening.start() not in matched:
            line = text.count("\n", 0, opening.start()) + 1
            raise RecordError(f"chapters/{name}.md line {line}: a result marker that is not "
                              "of the form <!-- result: KEY | FORMAT -->VALUE<!-- /result -->")
    return MARKER.sub(fill, text)


def quoted_keys(text: str) -> set[str]:
    """Return every key a text quotes."""
    return {m["key"] for m in MARKER.finditer(text)}


def sync_file(name: str) -> bool:
    """Refresh `chapters/NAME.md` (a chapter or one of PAGES; replaced whole); return whether
    anything changed."""
    path = resources.texts_dir() / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    new = sync(name, text)
    if new != text:
        replace_file(path, new.encode("utf-8"))
    return new != text


# --- Command line -------------------------------------------------------------------------------
def _seed_count(text: str) -> int:
    if not re.fullmatch(r"\d+", text) or not 2 <= int(text) <= 20:
        raise ValueError("a whole number from 2 to 20")
    return int(text)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = console.Parser("python -m tfguide record",
                       "Record a chapter's reference run and fill its text's numbers from it.")
    p.add_argument("name", nargs="?", help="a chapter name, or `all`")
    p.add_argument("--full", action="store_true", help="record the full run (slow), not --quick")
    p.add_argument("--seeds", default=None, metavar="N",
                   help=f"quick runs: run with N seeds (default {SEEDS}: the default seed and "
                        "the next ones) and record each metric's spread, which the tests allow "
                        f"{SPREADS:g} times over")
    p.add_argument("--race", action="store_true",
                   help="record the chapter's bench race (its recipe against a reference recipe)")
    p.add_argument("--sync", action="store_true",
                   help="only refresh the texts' numbers from the existing records")
    args = p.parse_args(list(argv))
    if args.name is None:
        raise console.UsageError("a chapter name (or `all`) is needed. Known chapters: "
                                 + ", ".join(registry.BY_NAME))
    if args.name != "all":
        console.choice("NAME", args.name, [*registry.BY_NAME, "all"])
    if args.seeds is not None and (args.full or args.race or args.sync):
        raise console.UsageError("--seeds is for a quick record: a full run, a race and "
                                 "--sync run no seeds")
    try:
        args.seeds = SEEDS if args.seeds is None else _seed_count(args.seeds)
    except ValueError as err:
        raise console.bad_value("--seeds", args.seeds, str(err)) from None
    return args


def record_quick(name: str, seeds: int) -> Path:
    """Record chapter `name`'s quick run (default seed) and its metrics' spread over `seeds`."""
    command = f"python -m tfguide.chapters.{name} --quick"
    with tempfile.TemporaryDirectory(prefix="tfguide-record-") as out:
        _, run_dir = cli.run_chapter(name, ["--quick", "--out", out])
        first = read_run(run_dir)
        seed0 = int(first["config"]["seed"])
        used, metrics = [seed0], [first["metrics"]]
        for seed in range(seed0 + 1, seed0 + seeds):
            print(f"record {name}: the quick run with --seed {seed} "
                  f"({len(used) + 1} of {seeds}), for the spread", file=sys.stderr)
            fresh, _ = cli.run_chapter(name, ["--quick", "--seed", str(seed), "--out", out])
            used.append(seed)
            metrics.append(fresh)
        spread = spread_of(metrics)
        moved = [n for n, s in spread.items() if s and tolerance(n)[0] == "exact"]
        if moved:
            print(f"tfguide: note: {name}: {', '.join(moved)} moved between seeds although "
                  "its tolerance is exact: fix TOLERANCES in tfguide/record.py", file=sys.stderr)
        return write_record(name, run_dir, command, spread=spread, seeds=used, concepts=True)


def main(argv: Sequence[str]) -> None:
    try:
        args = parse(argv)
    except console.UsageError as err:
        console.fail(str(err), 2)
    try:
        checkout()
    except RecordError as err:
        console.fail(str(err), 1)
    names = list(registry.BY_NAME) if args.name == "all" else [args.name]
    for name in names:
        try:
            if args.race:
                path = write_race(name)
                if path is not None:
                    console.say(f"recorded {_shown(path)}")
            elif args.full:
                with tempfile.TemporaryDirectory(prefix="tfguide-record-") as out:
                    _, run_dir = cli.run_chapter(name, ["--out", out])
                    path = write_record(name, run_dir, f"python -m tfguide.chapters.{name}",
                                        full=True)
                console.say(f"recorded {_shown(path)}")
            elif not args.sync:
                path = record_quick(name, args.seeds)
                console.say(f"recorded {_shown(path)} (spread over {args.seeds} seeds) and "
                            f"{_shown(figures_dir(name))}/")
            changed = sync_file(name)
        except console.UsageError as err:
            console.fail(str(err), 2)
        except (RecordError, console.SetupError) as err:
            console.fail(str(err), 1)
        except OSError as err:
            where = f" ({err.filename})" if err.filename else ""
            console.fail(f"record {name} could not write its files{where}: "
                         f"{err.strerror or err}; the old ones are left whole", 1)
        console.say(f"chapters/{name}.md: {'numbers refreshed' if changed else 'up to date'}")
    for page in PAGES:  # their numbers come from the chapters' records
        if not (resources.texts_dir() / f"{page}.md").is_file():
            continue
        try:
            changed = sync_file(page)
        except RecordError as err:
            console.fail(str(err), 1)
        except OSError as err:
            console.fail(f"record could not write chapters/{page}.md: {err.strerror or err}", 1)
        if changed:
            console.say(f"chapters/{page}.md: numbers refreshed")
    print(f"recorded on {dt.date.today()}, {machine()}", file=sys.stderr)
