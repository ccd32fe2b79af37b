"""Every registered chapter keeps the chapter contract (DESIGN.md, "A chapter").

One parametrized sweep over the registry: the quick run writes a complete,
self-describing run folder; the module has the shape a reader expects and
imports no other chapter; what it lends to others is declared.
"""
import ast
import csv
import json
import re
from pathlib import Path

import pytest

from tfguide import record, registry

NAMES = [c.name for c in registry.CHAPTERS]
ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def module_source(name: str) -> str:
    return (ROOT / "tfguide" / "chapters" / f"{name}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", NAMES)
def test_quick_run_writes_a_complete_run_folder(quick_run, name):
    metrics, run_dir = quick_run(name)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok" and results["chapter"] == name
    assert results["metrics"] == pytest.approx(metrics, nan_ok=True)
    assert metrics and all(isinstance(v, (int, float)) for v in metrics.values())
    assert results["data"]["source"], "the run says where its data came from"
    assert {"device", "precision", "strategy", "replicas", "tensorflow", "keras"} <= \
        set(results["runtime"])
    figures = sorted((run_dir / "figures").glob("*.png"))
    assert figures, "a chapter draws what it teaches"
    for png in figures:
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 2000
    histories = sorted(run_dir.glob("history*.csv"))
    assert histories, "training leaves its history"
    with open(histories[0], newline="") as f:
        assert len(list(csv.reader(f))) >= 2, "a header and at least one row"
    listed = set(results["files"])
    assert {p.relative_to(run_dir).as_posix() for p in figures} <= listed


@pytest.mark.parametrize("name", NAMES)
def test_quick_run_reproduces_the_recorded_run(quick_run, name):
    metrics, _ = quick_run(name)
    recorded = record.load(name)
    assert recorded["command"] == f"python -m tfguide.chapters.{name} --quick"
    problems = record.compare(recorded["metrics"], metrics, recorded.get("spread"))
    assert not problems, (f"{name}'s quick run moved from chapters/results/{name}.json "
                          f"(re-record with python -m tfguide record {name}): {problems}")


@pytest.mark.parametrize("name,old,new,ok", [
    ("test_accuracy", 0.98, 0.96, True), ("test_accuracy", 0.98, 0.94, False),
    ("params", 21386, 21386, True), ("params", 21386, 21387, False),
    ("conv_max_abs_err", 6.7e-6, 3e-5, True), ("conv_max_abs_err", 6.7e-6, 1e-4, False),
    ("causal_max_change", 0.0, 5e-7, True), ("causal_max_change", 0.0, 1e-3, False),
    ("test_loss", 0.0672, 0.069, True), ("test_loss", 0.0672, 0.08, False),
    ("train_samples_per_s", 16354.0, 3.0, True), ("wall_s", 4.6, 400.0, True),
])
def test_tolerances_per_kind_of_metric(name, old, new, ok):
    assert (record.compare({name: old}, {name: new}) == []) == ok


def test_a_metric_added_or_dropped_is_a_difference():
    assert record.compare({"a": 1.0}, {"a": 1.0, "b": 2.0}) == ["b: produced but not recorded "
                                                                "(re-record)"]
    assert record.compare({"a": 1.0, "b": 2.0}, {"a": 1.0}) == ["b: recorded but no longer "
                                                                "produced"]


@pytest.mark.parametrize("name", NAMES)
def test_every_quick_record_carries_its_spread_over_seeds(name):
    recorded = record.load(name)
    assert len(recorded.get("seeds", [])) >= 2, f"re-record with python -m tfguide record {name}"
    assert set(recorded["spread"]) == {n for n, v in recorded["metrics"].items()
                                       if isinstance(v, (int, float))}
    moved = [n for n, s in recorded["spread"].items() if s and record.tolerance(n)[0] == "exact"]
    assert not moved, f"{moved} depend on the seed: they cannot be compared exactly"


@pytest.mark.parametrize("name", NAMES)
def test_module_reads_top_to_bottom_and_imports_no_other_chapter(name):
    tree = ast.parse(module_source(name))
    assert ast.get_docstring(tree) and f"chapters/{name}.md" in ast.get_docstring(tree)
    assert "SEEDS.md" not in ast.get_docstring(tree)
    others = {c.module for c in registry.CHAPTERS if c.name != name}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = {f"{node.module}.{a.name}" for a in node.names} | {node.module or ""}
        elif isinstance(node, ast.Import):
            names = {a.name for a in node.names}
        else:
            continue
        assert not names & others, f"{name} imports another chapter: {names & others}"
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions[-1] == "main" and "run" in functions


@pytest.mark.parametrize("name", NAMES)
def test_run_reads_as_a_table_of_contents(name):
    tree = ast.parse(module_source(name))
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    length = run.end_lineno - run.lineno + 1
    assert length <= 40, f"{name}.run is {length} lines: name its steps as functions"


@pytest.mark.parametrize("name", NAMES)
def test_marked_code_says_where_it_is_shown(name):
    source = module_source(name)
    first = source.index("# [start:")
    assert f"chapters/{name}.md" in source[max(0, first - 300):first], \
        "a comment above the first excerpt marker names the text and how to refresh it"


@pytest.mark.parametrize("name", NAMES)
def test_what_others_borrow_is_declared(name):
    from tfguide import bench

    work = bench.chapter_workload(name, quick=True, seed=0)
    if work is None:
        pytest.skip(f"{name} declares no bench workload")
    assert isinstance(work, bench.Workload) and work.batch_size > 0 and work.note


@pytest.mark.parametrize("name", NAMES)
def test_a_chapter_module_is_a_lesson(name):
    """Under 600 lines, and nothing of the checker or of bench in it: those live beside them."""
    source = module_source(name)
    assert len(source.splitlines()) <= 600
    imported = {alias.name for node in ast.walk(ast.parse(source))
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    modules = {node.module for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ImportFrom) and node.module}
    assert not {"exercises", "bench"} & imported
    assert not any(m.startswith(("tfguide.exercises", "tfguide.bench")) for m in modules)
    assert "def prove_" not in source and "EXERCISES" not in source


def test_a_bare_key_is_a_metric_unless_it_is_the_records_own(tmp_path, monkeypatch):
    from tfguide import resources

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "demo.json").write_text(
        '{"metrics": {"loss": 0.25, "date": 1.0}, "wall_s": 4.56, "date": "2026-11-25"}')
    (tmp_path / "results" / "demo.full.json").write_text('{"metrics": {}, "wall_s": 42.0}')
    (tmp_path / "results" / "demo.race.json").write_text('{"ratio": 0.68, "tfguide": {"steps": 750}}')
    monkeypatch.setattr(resources, "texts_dir", lambda: tmp_path)
    text = ("<!-- result: loss -->?<!-- /result --> <!-- result: wall_s | .1f -->?<!-- /result --> "
            "<!-- result: date -->?<!-- /result --> <!-- result: full:wall_s | .0f -->?<!-- /result -->"
            " <!-- result: metrics.date -->?<!-- /result --> <!-- result: race:ratio | .2f -->?"
            "<!-- /result --> <!-- result: race:tfguide.steps | int -->?<!-- /result -->")
    filled = record.sync("demo", text)
    values = [v for v in re.findall(r"-->([^<]*)<!-- /result", filled)]
    assert values == ["0.2500", "4.6", "2026-11-25", "42", "1.0000", "0.68", "750"]
    with pytest.raises(record.RecordError, match="prefix must be full:, race: or spread:"):
        record.sync("demo", "<!-- result: fast:loss -->?<!-- /result -->")


def test_importing_the_chapters_does_not_start_tensorflow():
    """Multi-worker training must configure TensorFlow before its first op: no op at import."""
    import subprocess
    import sys

    modules = "; ".join(f"import {c.module}" for c in registry.CHAPTERS)
    code = (f"import tfguide; {modules}; from tfguide import runtime; "
            "print('fresh' if runtime.use_logical_cpus(2) else 'started')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.strip().endswith("fresh"), result.stderr[-2000:]
