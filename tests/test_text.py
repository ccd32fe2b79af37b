"""Texts: every chapter has one, its code excerpts match the source, the README table matches."""
import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tfguide import chapters, excerpts, resources

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ["Run it", "The idea", "From scratch", "The Keras way", "Results",
            "What changed from the original", "Going further"]
NAMES = [c.name for c in chapters.CHAPTERS]


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
    assert block.group(1).strip() == chapters.markdown_table()


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
