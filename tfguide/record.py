"""Recorded reference runs: where every number and figure in a chapter text comes from.

`python -m tfguide record NAME|all [--full]` runs a chapter as its text says
(the `--quick` run with the default seed; `--full`: the full run) and writes

    chapters/results/NAME.json       metrics, config, runtime, data, wall time, date, machine
    chapters/results/NAME.full.json  the same for the full run (`--full`)
    chapters/figures/NAME/*.png      the quick run's figures, as palette PNGs

then refreshes the numbers in `chapters/NAME.md`. A text never types a result;
it marks where one goes, and `python -m tfguide record --sync NAME|all` (or a
record) fills it in:

    <!-- result: test_accuracy -->0.9861<!-- /result -->
    <!-- result: full:wall_s | .0f -->42<!-- /result -->

The key is a dotted path into the record (`data.train`, `config.epochs`); a
bare name means `metrics.NAME`, except the record's own `wall_s`, `date`,
`machine` and `command`; `full:` reads the full
run's record and `race:` the chapter's bench race (`record NAME --race`). After `|`
comes a format: `pct` (98.61%), `int` (1,295), or a
Python format spec (`.3f`, `.2e`); the default is the summary table's.

The tests run every chapter's quick run and `compare` its metrics with the
record under the tolerances below, so a change that moves a number must
re-record it, and the diff shows what moved.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
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

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("wall_s", "date", "machine", "command", "chapter")  # record keys that are not metrics
MARKER = re.compile(r"<!-- result: (?P<key>[\w.:]+)(?: \| (?P<fmt>[\w.,%+-]+))? -->"
                    r"(?P<value>.*?)<!-- /result -->")

# --- Tolerances: how far a fresh quick run may land from its record ----------------------
# (kind, tolerance) by metric name, first match wins. Timings are shown, never compared.
TOLERANCES: tuple[tuple[str, str, float], ...] = (
    (r"(_per_s|_s|_ms|_ms_per_image|_seconds)$", "timing", 0.0),
    # trained for as many seconds as another model: moves with the machine's speed
    (r"^lstm_val_loss$", "relative", 0.15),
    (r"^(params|parameters|test_errors|.*_count|.*_bytes|vocab_size)$", "exact", 0.0),
    (r"(_err|_error|_max_change)$", "error", 10.0),  # at most 10× the recorded error (or 1e-6)
    (r"accuracy|agreement", "band", 0.03),  # ±3 percentage points
    (r"_p$", "band", 1.0),  # p-values: shown, any value in [0, 1]
    (r".*", "relative", 0.05),  # losses, ratios, everything else: ±5 %
)


def tolerance(name: str) -> tuple[str, float]:
    """Return (kind, tolerance) for metric `name` (see TOLERANCES)."""
    for pattern, kind, tol in TOLERANCES:
        if re.search(pattern, name):
            return kind, tol
    raise AssertionError("the last pattern matches every name")


def compare(recorded: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Return what differs between a recorded run's metrics and a fresh run's (empty if none)."""
    problems = [f"{n}: recorded but no longer produced" for n in recorded if n not in fresh]
    problems += [f"{n}: produced but not recorded (re-record)" for n in fresh if n not in recorded]
    for name in sorted(set(recorded) & set(fresh)):
        old, new = recorded[name], fresh[name]
        if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
            if old != new:
                problems.append(f"{name}: recorded {old!r}, now {new!r}")
            continue
        kind, tol = tolerance(name)
        ok = {
            "timing": True,
            "exact": new == old,
            "error": abs(new) <= max(tol * abs(old), 1e-6),
            "band": abs(new - old) <= tol,
            "relative": abs(new - old) <= tol * max(abs(old), 1e-12),
        }[kind]
        if not ok:
            problems.append(f"{name}: recorded {old:.6g}, now {new:.6g} ({kind} tolerance {tol:g})")
    return problems


# --- Files ----------------------------------------------------------------------------------
def results_dir() -> Path:
    return resources.texts_dir() / "results"


def figures_dir(name: str) -> Path:
    return resources.texts_dir() / "figures" / name


KINDS = {False: "", True: ".full", "race": ".race"}  # the quick run, the full run, a bench race


def record_path(name: str, full: bool | str = False) -> Path:
    return results_dir() / f"{name}{KINDS[full]}.json"


def load(name: str, full: bool | str = False) -> dict:
    """Return chapter `name`'s recorded run (FileNotFoundError if never recorded)."""
    return json.loads(record_path(name, full).read_text(encoding="utf-8"))


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


def _compact_png(source: Path, target: Path) -> None:
    """Copy a figure as a palette PNG (about a third of the size, same look for plots)."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").quantize(256).save(target, optimize=True)


def write_record(name: str, run_dir: Path, command: str, full: bool = False) -> Path:
    """Turn a finished run folder into chapter `name`'s record (and figures, for quick runs)."""
    run = json.loads((Path(run_dir) / "results.json").read_text())
    if run["status"] != "ok":
        raise RuntimeError(f"the run in {run_dir} ended with status {run['status']}")
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
    path = record_path(name, full)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not full:
        figures = figures_dir(name)
        shutil.rmtree(figures, ignore_errors=True)
        figures.mkdir(parents=True)
        for png in sorted((Path(run_dir) / "figures").glob("*.png")):
            _compact_png(png, figures / png.name)
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
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# --- Filling a text -----------------------------------------------------------------------------
def lookup(name: str, key: str, records: dict[bool, dict]) -> Any:
    """Return the value a marker's `key` names in chapter `name`'s records."""
    prefix, _, rest = key.partition(":") if ":" in key else ("", "", key)
    full = {"": False, "full": True, "race": "race"}.get(prefix)
    if full is None:
        raise KeyError(f"chapters/{name}.md quotes {key!r}: the prefix must be full: or race:")
    path = rest.split(".")
    if full not in records:
        try:
            records[full] = load(name, full)
        except FileNotFoundError:
            raise KeyError(f"{record_path(name, full)} does not exist: run "
                           f"python -m tfguide record {name}"
                           f"{ {False: '', True: ' --full', 'race': ' --race'}[full] }") from None
    value = records[full]
    if len(path) == 1 and path[0] not in TOP_LEVEL and full != "race":  # a bare name: a metric
        path = ["metrics", *path]
    for part in path:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"chapters/{name}.md quotes {key!r}, which "
                           f"{record_path(name, full).name} does not have")
        value = value[part]
    return value


def render(value: Any, fmt: str | None) -> str:
    """Format a recorded value for the text."""
    if fmt is None:
        return format_metric(value)
    if fmt == "pct":
        return f"{value:.2%}"
    if fmt == "int":
        return f"{int(round(value)):,}"
    return format(value, fmt)


def sync(name: str, text: str) -> str:
    """Return chapter `name`'s `text` with every result marker filled from its records."""
    records: dict[bool, dict] = {}

    def fill(m: re.Match) -> str:
        value = render(lookup(name, m["key"], records), m["fmt"])
        fmt = f" | {m['fmt']}" if m["fmt"] else ""
        return f"<!-- result: {m['key']}{fmt} -->{value}<!-- /result -->"

    return MARKER.sub(fill, text)


def quoted_keys(text: str) -> set[str]:
    """Return every key a text quotes."""
    return {m["key"] for m in MARKER.finditer(text)}


def sync_file(name: str) -> bool:
    """Refresh `chapters/NAME.md` in place; return whether anything changed."""
    path = resources.texts_dir() / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    new = sync(name, text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


# --- Command line -------------------------------------------------------------------------------
def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = console.Parser("python -m tfguide record",
                   "Record a chapter's reference run and fill its text's numbers from it.")
    p.add_argument("name", nargs="?", help="a chapter name, or `all`")
    p.add_argument("--full", action="store_true", help="record the full run (slow), not --quick")
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
    return args


def main(argv: Sequence[str]) -> None:
    try:
        args = parse(argv)
    except console.UsageError as err:
        console.fail(str(err), 2)
    names = list(registry.BY_NAME) if args.name == "all" else [args.name]
    for name in names:
        if args.race:
            path = write_race(name)
            if path is not None:
                print(f"recorded {path.relative_to(resources.texts_dir().parent)}")
        elif not args.sync:
            flags = [] if args.full else ["--quick"]
            command = f"python -m tfguide.chapters.{name} {' '.join(flags)}".strip()
            with tempfile.TemporaryDirectory(prefix="tfguide-record-") as out:
                _, run_dir = cli.run_chapter(name, [*flags, "--out", out])
                path = write_record(name, run_dir, command, full=args.full)
            print(f"recorded {path.relative_to(resources.texts_dir().parent)}"
                  f"{'' if args.full else f' and chapters/figures/{name}/'}")
        try:
            changed = sync_file(name)
        except KeyError as err:
            console.fail(err.args[0], 1)
        print(f"chapters/{name}.md: {'numbers refreshed' if changed else 'up to date'}")
    print(f"recorded on {dt.date.today()}, {machine()}", file=sys.stderr)
