"""`record`: tolerances from measured spread, and the texts, records and figures it writes.

Nothing here trains a model: a fake chapter run writes a finished run folder, and the
records and texts live in a checkout made under tmp_path.
"""
import html as html_lib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfguide import cli, record, resources
from tests.conftest import exit_status

TEXT = ("Recorded on <!-- result: date -->2026-11-25<!-- /result --> on\n"
        "<!-- result: machine -->AMD EPYC<!-- /result -->: loss "
        "<!-- result: test_loss | .4f -->0.2500<!-- /result -->.\n")
RECORD = {"chapter": "mlp", "command": "python -m tfguide.chapters.mlp --quick",
          "metrics": {"test_loss": 0.25, "test_accuracy": 0.9}, "config": {"seed": 42},
          "wall_s": 4.5, "date": "2026-11-25", "machine": "AMD EPYC",
          "seeds": [42, 43, 44], "spread": {"test_loss": 0.02, "test_accuracy": 0.01}}


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A source checkout under tmp_path: pyproject.toml, chapters/mlp.md and its record."""
    root = tmp_path / "repo"
    texts = root / "chapters"
    (texts / "results").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'tfguide'\n")
    (texts / "mlp.md").write_text(TEXT)
    (texts / "results" / "mlp.json").write_text(json.dumps(RECORD))
    monkeypatch.setattr(resources, "texts_dir", lambda: texts)
    return texts


def set_record(texts: Path, **changes) -> None:
    (texts / "results" / "mlp.json").write_text(json.dumps({**RECORD, **changes}))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfguide: error: "), err
    return err[0]


# --- Class 0: a metric may move as far as its seeds move it -------------------------------------
@pytest.mark.parametrize("name,old,new,spread,ok", [
    # the reliability report's case: 7.3 % off, outside ±5 %, within 3 spreads
    ("ae_prior_nn_mse", 0.019413, 0.0179955, 0.0006, True),
    ("ae_prior_nn_mse", 0.019413, 0.0179955, 0.0003, False),  # outside both
    ("ae_prior_nn_mse", 0.019413, 0.0179955, None, False),  # no spread: the ±5 % floor
    ("ae_prior_nn_mse", 0.019413, 0.0195, 0.0, True),  # the floor holds when seeds agree
    ("test_accuracy", 0.98, 0.93, 0.02, True), ("test_accuracy", 0.98, 0.91, 0.02, False),
    ("test_errors", 5, 8, 2, True), ("test_errors", 5, 12, 2, False),  # no longer exact
    ("params", 21386, 21387, 5.0, False),  # what training does not touch stays exact
    ("tflite_bytes", 90800, 90801, 5.0, False), ("lstm_params", 110016, 110017, 5.0, False),
    ("conv_max_abs_err", 6.7e-6, 2e-4, 1e-4, True), ("conv_max_abs_err", 6.7e-6, 2e-3, 1e-4, False),
    ("train_samples_per_s", 16354.0, 3.0, 0.0, True),  # timings: shown, never compared
])
def test_a_metric_may_move_three_times_its_spread_over_seeds(name, old, new, spread, ok):
    spreads = None if spread is None else {name: spread}
    problems = record.compare({name: old}, {name: new}, spreads)
    assert (problems == []) == ok, problems


def test_the_spread_is_largest_minus_smallest_over_seeds():
    runs = [{"loss": 0.5, "params": 10, "note": "x"}, {"loss": 0.7, "params": 10, "note": "y"},
            {"loss": 0.4, "params": 10, "note": "z"}]
    assert record.spread_of(runs) == pytest.approx({"loss": 0.3, "params": 0.0})


def fake_chapter(calls):
    """A stand-in for cli.run_chapter: a finished run folder whose loss moves with --seed."""
    from PIL import Image

    def run_chapter(name, argv):
        argv = list(argv)
        seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 42
        calls.append(seed)
        run_dir = Path(argv[argv.index("--out") + 1]) / name / f"run-{seed}"
        (run_dir / "figures").mkdir(parents=True)
        Image.new("RGB", (40, 30), (seed, 0, 0)).save(run_dir / "figures" / "loss.png")
        metrics = {"test_loss": 0.25 + (seed - 42) / 100, "params": 7, "train_s": seed}
        (run_dir / "results.json").write_text(json.dumps({
            "status": "ok", "metrics": metrics, "config": {"seed": seed, "quick": True},
            "runtime": {"device": "cpu"}, "data": {"source": "fake"}, "wall_s": 1.0,
            "created": "2026-12-03T00:00:00"}))
        return metrics, run_dir

    return run_chapter


def test_record_stores_the_default_seeds_run_and_the_spread_over_seeds(checkout, monkeypatch):
    from tfguide import concepts

    calls = []
    monkeypatch.setattr(cli, "run_chapter", fake_chapter(calls))
    monkeypatch.setattr(concepts, "draw", lambda name, folder: [
        (Path(folder) / "concept_idea.png").write_bytes(b"\x89PNG drawn")])
    assert exit_status(record.main, "mlp", "--seeds", "3") == 0
    saved = json.loads((checkout / "results" / "mlp.json").read_text())
    assert calls == [42, 43, 44] and saved["seeds"] == [42, 43, 44]
    assert saved["metrics"]["test_loss"] == 0.25 and saved["config"]["seed"] == 42
    assert saved["spread"]["test_loss"] == pytest.approx(0.02)
    assert saved["spread"]["params"] == 0
    assert saved["command"] == "python -m tfguide.chapters.mlp --quick"
    assert sorted(p.name for p in (checkout / "figures" / "mlp").iterdir()) == \
        ["concept_idea.png", "loss.png"], "the concept diagrams are drawn beside the run's"
    spread = record.sync("mlp", "<!-- result: spread:test_loss | .3f -->?<!-- /result --> "
                                "over seeds <!-- result: seeds -->?<!-- /result -->")
    assert "-->0.020<!--" in spread and "-->42, 43, 44<!--" in spread


@pytest.mark.parametrize("flags", [["--seeds", "1"], ["--seeds", "x"], ["--seeds", "3", "--full"],
                                   ["--seeds", "3", "--sync"]])
def test_seeds_are_checked_before_anything_runs(flags, checkout, monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_chapter", lambda *a: pytest.fail("ran"))
    assert exit_status(record.main, "mlp", *flags) == 2
    assert "--seeds" in one_error_line(capsys)


# --- #5: record writes into a source checkout, and refuses elsewhere at once ---------------------
def test_record_outside_a_checkout_refuses_before_running(tmp_path, monkeypatch, capsys):
    installed = tmp_path / "site-packages" / "tfguide" / "_texts"
    (installed / "results").mkdir(parents=True)
    monkeypatch.setattr(resources, "texts_dir", lambda: installed)
    monkeypatch.setattr(cli, "run_chapter", lambda *a: pytest.fail("ran before refusing"))
    for flags in (["mlp"], ["--sync", "mlp"], ["all"]):
        assert exit_status(record.main, *flags) == 1
        line = one_error_line(capsys)
        assert "installed package" in line and "pip install -e ." in line
    assert list(installed.rglob("*")) == [installed / "results"]


def test_record_in_a_checkout_it_may_not_write_refuses_before_running(checkout, monkeypatch,
                                                                      capsys):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real_access(p, mode) and
                        not str(p).endswith("results"))
    monkeypatch.setattr(cli, "run_chapter", lambda *a: pytest.fail("ran before refusing"))
    assert exit_status(record.main, "mlp") == 1
    assert "results is not writable" in one_error_line(capsys)


# --- #2 and #14: a value is checked and escaped; the text keeps its markers -------------------------
EVIL = {"machine": 'evil<!-- /result --> INJECTED <!-- result: machine -->x<script>alert(1)</script>',
        "date": "2026-11-26 <img src=x onerror=alert(2)>"}


def test_markup_in_a_record_reaches_the_text_as_plain_characters(checkout):
    set_record(checkout, **EVIL)
    assert record.sync_file("mlp")
    text = (checkout / "mlp.md").read_text()
    assert "<script" not in text and "<img" not in text and "INJECTED <!--" not in text
    assert text.count("<!-- result:") == 3 and text.count("<!-- /result -->") == 3
    assert record.quoted_keys(text) == {"date", "machine", "test_loss"}
    set_record(checkout)  # the record restored: the text is whole again
    record.sync_file("mlp")
    assert (checkout / "mlp.md").read_text() == TEXT


@pytest.mark.parametrize("value", ["# heading", "- item", "1. item", "*bold* _x_ `c` [l](u) |",
                                   "a\\b", "  indented", "= underline", "~~gone~~ &amp; <b>"])
def test_an_escaped_value_renders_as_itself_anywhere_in_markdown(value):
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    for where in ("{}", "text {} text", "| a |\n| --- |\n| {} |"):
        html = md.render(where.format(record.escape(value)))
        assert value in html_lib.unescape(html), (value, where, html)
        assert not any(tag in html for tag in ("<h1", "<li", "<em", "<strong", "<code", "<a ",
                                               "<pre", "<s>", "<b>", "<del"))


@pytest.mark.parametrize("machine", ["two\nlines", "tab\there", "\x1b[31mred", "x" * 201])
def test_a_value_that_is_not_one_short_printable_line_is_refused(checkout, machine, capsys):
    set_record(checkout, machine=machine)
    assert exit_status(record.main, "--sync", "mlp") == 1
    assert "chapters/results/mlp.json: machine is not one line" in one_error_line(capsys)
    assert (checkout / "mlp.md").read_text() == TEXT


# --- #15: a damaged or wrongly typed record is one line, and the text stays as it was -------------
DAMAGED = {
    "truncated": '{"metrics": ',
    "merge conflict": '<<<<<<< HEAD\n{"metrics": {}}\n=======\n{}\n>>>>>>> other\n',
    "a list": "[1, 2]",
    "not utf-8": b'{"date": "\xff"}',
    "deeply nested": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_record_is_one_line(case, checkout, capsys):
    path = checkout / "results" / "mlp.json"
    raw = DAMAGED[case]
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    assert exit_status(record.main, "--sync", "mlp") == 1
    line = one_error_line(capsys)
    assert "chapters/results/mlp.json" in line and "record mlp" in line
    assert (checkout / "mlp.md").read_text() == TEXT


@pytest.mark.parametrize("value,says", [("0.25", "is text ('0.25')"), (True, "is true or false"),
                                        (None, "is null"), ({"a": 1}, "is an object"),
                                        ([1, 2], "is a list")])
def test_a_value_of_the_wrong_type_for_its_format_is_one_line(value, says, checkout, capsys):
    set_record(checkout, metrics={"test_loss": value})
    assert exit_status(record.main, "--sync", "mlp") == 1
    line = one_error_line(capsys)
    assert "chapters/results/mlp.json: test_loss" in line and says in line
    assert (checkout / "mlp.md").read_text() == TEXT


def test_a_marker_the_text_broke_is_named_not_left_stale(checkout, capsys):
    (checkout / "mlp.md").write_text(TEXT.replace("<!-- /result -->.", "."))
    assert exit_status(record.main, "--sync", "mlp") == 1
    assert "chapters/mlp.md line 2: a result marker" in one_error_line(capsys)


def test_a_value_split_over_lines_by_an_old_sync_is_repaired(checkout):
    (checkout / "mlp.md").write_text(TEXT.replace("2026-11-25", "2026\n11-26"))
    record.sync_file("mlp")
    assert (checkout / "mlp.md").read_text() == TEXT


# --- #16: records, texts and figures are replaced whole -------------------------------------------
def make_run(folder: Path, figures=("a.png", "b.png", "c.png"), loss=0.25) -> Path:
    from PIL import Image

    (folder / "figures").mkdir(parents=True)
    for i, name in enumerate(figures):
        Image.new("RGB", (64, 48), (i * 40, 0, 0)).save(folder / "figures" / name)
    (folder / "results.json").write_text(json.dumps({
        "status": "ok", "metrics": {"test_loss": loss}, "config": {"seed": 42},
        "runtime": {"device": "cpu"}, "data": {"source": "fake"}, "wall_s": 1.0,
        "created": "2026-12-03T00:00:00"}))
    return folder


def test_a_record_that_fails_leaves_the_old_figures_and_record_whole(checkout, tmp_path,
                                                                     monkeypatch):
    record.write_record("mlp", make_run(tmp_path / "run"), "cmd")
    run = make_run(tmp_path / "run2", loss=0.5)
    before = {p.name: p.read_bytes() for p in (checkout / "figures" / "mlp").iterdir()}
    saved = (checkout / "results" / "mlp.json").read_bytes()
    real, done = record._compact_png, []

    def fail_on_the_second(source, target):
        if done:
            raise OSError(28, "No space left on device", str(target))
        done.append(real(source, target))

    monkeypatch.setattr(record, "_compact_png", fail_on_the_second)
    with pytest.raises(OSError):
        record.write_record("mlp", run, "cmd")
    after = {p.name: p.read_bytes() for p in (checkout / "figures" / "mlp").iterdir()}
    assert after == before and (checkout / "results" / "mlp.json").read_bytes() == saved
    assert sorted(p.name for p in (checkout / "figures").iterdir()) == ["mlp"], "no leftovers"


def test_two_records_at_once_leave_whole_files(checkout, tmp_path):
    run = make_run(tmp_path / "run")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from tfguide import record, resources
        resources.texts_dir = lambda: Path({str(checkout)!r})
        errors = []
        for _ in range(25):
            try:
                record.write_record("mlp", Path({str(run)!r}), "cmd")
                assert record.sync_file("mlp") in (True, False)
            except Exception as err:
                errors.append(repr(err))
        print(len(errors), errors[:1])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [out.split(" ", 1)[0] for out, _ in outputs] == ["0", "0"], outputs
    assert sorted(p.name for p in (checkout / "figures").iterdir()) == ["mlp"]
    assert sorted(p.name for p in (checkout / "figures" / "mlp").iterdir()) == \
        ["a.png", "b.png", "c.png"]
    assert json.loads((checkout / "results" / "mlp.json").read_text())["metrics"] == \
        {"test_loss": 0.25}
    assert sorted(p.name for p in (checkout / "results").iterdir()) == ["mlp.json"]
