"""Texts: every chapter has one, its code excerpts match the source, the README table matches."""
import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tfguide import excerpts, registry, resources

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ["Run it", "The idea", "From scratch", "The Keras way", "Results",
            "What changed from the original", "Going further"]
NAMES = [c.name for c in registry.CHAPTERS]


@pytest.mark.parametrize("name", NAMES)
def test_text_has_every_section_in_order(name):
    text = resources.chapter_text(name)
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert [h for h in headings if h in SECTIONS] == SECTIONS
    assert f"python -m tfguide.chapters.{name}" in text


@pytest.mark.parametrize("name", NAMES)
def test_code_excerpts_match_the_module(name):
    text = resources.chapter_text(name)
    found = excerpts.includes(text)
    assert found, "the text shows code from its module"
    assert excerpts.sync(text) == text, (
        f"excerpts drifted: run `python -m tfguide.excerpts chapters/{name}.md`")


def test_excerpt_check_catches_drift(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("x = 1\n# [start:a]\ndef f():\n    return 1\n# [end:a]\n")
    text = f"<!-- include: {module.name}:a -->\n```python\ndef f():\n    return 2\n```\n"
    synced = excerpts.sync(text, root=tmp_path)
    assert synced != text and "return 1" in synced


@pytest.mark.parametrize("name", NAMES)
def test_module_follows_the_chapter_contract(name):
    path = ROOT / "tfguide" / "chapters" / f"{name}.py"
    tree = ast.parse(path.read_text())
    assert f"chapters/{name}.md" in ast.get_docstring(tree)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"run", "main"} <= functions
    source = path.read_text()
    assert "tf.compat.v1" not in source and "tf.keras" not in source


def test_readme_table_matches_the_registry():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- chapters:start -->\n(.*?)\n<!-- chapters:end -->", readme, re.S)
    assert block, "README has a chapter table between chapters:start/end markers"
    assert block.group(1).strip() == registry.markdown_table()


def test_wheel_carries_texts_and_data(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("tfguide-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"tfguide/_texts/{n}.md" for n in NAMES} <= names
    assert {"tfguide/_data/digits.npz", "tfguide/_data/sunspots.csv"} <= names
    assert {f"tfguide/chapters/{n}.py" for n in NAMES} <= names


# --- Numbers and figures come from recorded runs (tfguide/record.py) ---------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_number_in_the_text_is_the_recorded_one(name):
    from tfguide import record

    text = resources.chapter_text(name)
    assert record.sync(name, text) == text, \
        f"chapters/{name}.md differs from its record: python -m tfguide record --sync {name}"


@pytest.mark.parametrize("name", NAMES)
def test_every_recorded_metric_is_quoted_in_the_text(name):
    from tfguide import record

    quoted = record.quoted_keys(resources.chapter_text(name))
    quoted = {k.split(".", 1)[1] if k.startswith("metrics.") else k for k in quoted}
    for full in (False, True):
        try:
            recorded = record.load(name, full)["metrics"]
        except FileNotFoundError:
            assert full, f"{name} has no record: python -m tfguide record {name}"
            continue
        prefix = "full:" if full else ""
        missing = [m for m in recorded if f"{prefix}{m}" not in quoted]
        assert not missing, f"chapters/{name}.md never quotes {prefix}{missing}"


@pytest.mark.parametrize("name", NAMES)
def test_the_text_shows_its_recorded_figures(name):
    text = resources.chapter_text(name)
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    shown = [link for link in links if link.startswith(f"figures/{name}/")]
    assert shown, f"chapters/{name}.md shows none of its figures"
    for link in links:
        assert (resources.texts_dir() / link).is_file(), f"{link} does not exist"


def test_records_and_figures_stay_small():
    from tfguide import record

    total = sum(p.stat().st_size for p in (resources.texts_dir() / "figures").rglob("*.png"))
    total += sum(p.stat().st_size for p in record.results_dir().glob("*.json"))
    assert total < 4_000_000, f"{total:,} bytes of recorded figures and results"


def test_a_hand_typed_number_in_a_record_fails_the_text_check(tmp_path, monkeypatch):
    from tfguide import record

    name = NAMES[0]
    texts = tmp_path / "chapters"
    shutil.copytree(resources.texts_dir(), texts)
    monkeypatch.setattr(resources, "texts_dir", lambda: texts)
    path = record.record_path(name)
    data = json.loads(path.read_text())
    metric = next(iter(data["metrics"]))
    data["metrics"][metric] = data["metrics"][metric] * 1.5 + 1
    path.write_text(json.dumps(data))
    text = resources.chapter_text(name)
    assert record.sync(name, text) != text


@pytest.mark.parametrize("page", ["PERFORMANCE"])
def test_pages_beside_the_chapters_quote_their_chapters_records(page):
    from tfguide import record

    assert page in record.PAGES
    text = (resources.texts_dir() / f"{page}.md").read_text(encoding="utf-8")
    assert record.quoted_keys(text), f"{page}.md quotes recorded numbers"
    assert record.sync(page, text) == text, \
        f"chapters/{page}.md differs from its records: python -m tfguide record --sync all"


def test_a_page_key_must_name_its_chapter():
    from tfguide import record

    with pytest.raises(record.RecordError, match="names its chapter first"):
        record.sync("PERFORMANCE", "<!-- result: val_loss -->1<!-- /result -->")


def test_a_recorded_text_fills_its_block_and_nothing_else(tmp_path, monkeypatch):
    from tfguide import record

    monkeypatch.setattr(record, "load", lambda name, full=False: {
        "details": {"sample": "ROMEO:\nWhat, <b>ho</b>!\n", "long": "x" * 5000,
                    "fence": "a\n```\nrm -rf /\n"}})
    text = "<!-- recorded: details.sample -->\n```text\nstale\n```\nafter\n"
    filled = record.sync(NAMES[0], text)
    assert filled == ("<!-- recorded: details.sample -->\n```text\nROMEO:\nWhat, <b>ho</b>!\n"
                      "```\nafter\n"), "shown as code: no character in it is markup"
    assert record.sync(NAMES[0], filled) == filled
    for key in ("long", "fence"):
        with pytest.raises(record.RecordError, match="not a text of at most"):
            record.sync(NAMES[0], f"<!-- recorded: details.{key} -->\n```text\n\n```\n")
