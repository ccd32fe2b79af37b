"""Run folders: the newest finished run of a chapter, its results.json, its closing summary.

No TensorFlow here: the book, `predict` and `deploy --from latest` find runs
without loading it. A run folder is made by `paths.make_run_dir` and filled by
`results.Experiment`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

from tfguide import paths
from tfguide.config import MAX_RESULTS, format_metric


def _quiet(message: str) -> None:
    pass


SCALAR = (str, int, float, bool, type(None))
CONFIG_FLAGS = ("epochs", "batch_size", "learning_rate", "seed", "data", "device", "precision",
                "jit", "strategy")  # the flags `run_command` repeats
SHOWN = {  # the values of results.json the book shows: each a string, number, bool or null
    "config": ("quick", *CONFIG_FLAGS),
    "runtime": ("device", "precision", "strategy", "replicas"),
    "data": ("name", "source", "train", "test"),
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def results_problem(results: Any) -> str | None:
    """Return what in a results.json the book cannot show (a value of the wrong type), or None."""
    if not isinstance(results, dict):
        return "it is not a JSON object"
    for key in ("chapter", "status", "created"):
        if key in results and not isinstance(results[key], str):
            return f'"{key}" is not a string'
    if "wall_s" in results and not _number(results["wall_s"]):
        return '"wall_s" is not a number'
    files = results.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return '"files" is not a list of names'
    sections = {key: results.get(key) for key in ("metrics", "config", "runtime", "data")}
    if isinstance(sections["config"], dict):
        sections["config.options"] = sections["config"].get("options")
    for key, section in sections.items():
        if section is None:
            continue
        if not isinstance(section, dict):
            return f'"{key}" is not an object'
        for name in section if key in ("metrics", "config.options") else SHOWN[key]:
            if not isinstance(section.get(name), SCALAR):
                return f'"{key}.{name}" is not a single value'
    return None


@dataclasses.dataclass
class Run:
    """The latest finished run of a chapter, as read from its results.json."""

    dir: Path
    results: dict[str, Any]

    def figures(self, note: Callable[[str], None] = _quiet) -> list[Path]:
        """Return the figures the run wrote: PNG files in figures/ that its results.json lists.

        A figure that is a link or not a regular file, or one the run did not list (older
        runs list no files: then all are taken), is skipped with a note.
        """
        folder = self.dir / "figures"
        if folder.is_symlink():
            note(f"skipped {folder}: a link, not the folder the run wrote")
            return []
        listed = self.results.get("files")
        found = []
        for png in sorted(folder.glob("*.png")):
            if listed is not None and f"figures/{png.name}" not in listed:
                note(f"skipped {png}: its run's results.json does not list it")
            elif png.is_symlink() or not png.is_file():
                note(f"skipped {png}: a link or special file, not a figure the run wrote")
            else:
                found.append(png)
        return found


def _created(results: dict, folder: Path) -> tuple:
    try:
        when = dt.datetime.fromisoformat(results["created"])
        if when.tzinfo is None:
            when = when.astimezone()
        return (when.timestamp(), folder.name)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return (0.0, folder.name)


def read_results(path: Path) -> tuple[Any, str | None]:
    """Read a run's results.json: return (results, None), or (None, why it is skipped).

    Found by a scan of the runs folder, so a link is skipped, not followed: a run
    folder the user names (predict, deploy's --from) is read by config.model_run,
    which follows it.
    """
    if path.parent.is_symlink() or path.is_symlink():
        return None, "a link, not a run folder tfguide wrote"
    if not path.is_file():
        return None, "not a regular file"
    try:
        return paths.read_json(path, MAX_RESULTS), None
    except ValueError as err:
        return None, str(err)


def latest_run(runs: Path, name: str, note: Callable[[str], None] = _quiet) -> Run | None:
    """Return the newest run of chapter `name` that finished ("status": "ok"), or None.

    Failed and interrupted runs, and runs of another chapter, are passed over; a results.json
    that is unreadable, damaged, a link or holds a value of the wrong type is skipped with a
    note (to `note`), and an older run shown instead.
    """
    folder = Path(runs) / name
    if folder.is_symlink():
        note(f"skipped {folder}: a link, not the folder tfguide writes runs in")
        return None
    found = []
    for path in sorted(folder.glob("*/results.json")):
        results, why = read_results(path)
        if why is None and isinstance(results, dict) and results.get("status") != "ok":
            continue
        why = why or results_problem(results)
        if why:
            note(f"skipped {path}: {why}")
            continue
        if results.get("chapter", name) != name:
            continue
        found.append((_created(results, path.parent), Run(path.parent, results)))
    return max(found, key=lambda item: item[0])[1] if found else None


def load_results(run_dir: Path) -> dict:
    """Read a run folder's results.json."""
    return json.loads((Path(run_dir) / "results.json").read_text())


def summary(run_dir: Path) -> str:
    """Return the short table printed at the end of a run."""
    r = load_results(run_dir)
    rt, data = r["runtime"], r.get("data") or {}
    width = max([len(k) for k in r["metrics"]] + [8])
    lines = [f"\n{r['chapter']}: {r['status']} in {r['wall_s']:.1f} s", "-" * (width + 16)]
    lines += [f"  {name:<{width}}  {format_metric(value)}" for name, value in r["metrics"].items()]
    lines.append("-" * (width + 16))
    jit = "on" if rt["jit"] else "off"
    if rt.get("jit_mode") == "auto":  # a chapter may still compile a model with XLA
        jit = f"auto ({jit})"
    lines.append(f"  runtime  {rt['device']}, {rt['precision']}, jit {jit}, "
                 f"strategy {rt['strategy']} ({rt['replicas']} replica"
                 f"{'s' if rt['replicas'] != 1 else ''})")
    if data:
        lines.append(f"  data     {data['name']} ({data['source']}): "
                     f"{data['train']:,} train, {data['test']:,} test")
    figures = [f for f in r["files"] if f.startswith("figures/")]
    others = sorted({f for f in r["files"] if not f.startswith("figures/")} | {"results.json"})
    histories = [f for f in others if f.startswith("history") and f.endswith(".csv")]
    if len(histories) > 3:  # a run of many models: one training history each
        others = [f for f in others if f not in histories] + [f"{len(histories)} history_*.csv"]
    lines.append(f"  files    {run_dir}/")
    lines.append(f"           {', '.join(others)}, {len(figures)} figures")
    return "\n".join(lines)


def show_figures(run_dir: Path) -> None:
    """Open the run's figures in windows (for `--show`)."""
    import matplotlib.pyplot as plt

    for path in sorted((Path(run_dir) / "figures").glob("*.png")):
        fig = plt.figure(path.stem)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(plt.imread(path))
        ax.axis("off")
    plt.show()
