"""Notebooks: every chapter's builds and validates; one chapter's quick path really runs."""
import ast
import json
import re
import subprocess
import sys

import pytest

from tfguide import excerpts, notebook, registry, resources
from tests.conftest import exit_status

nbformat = pytest.importorskip("nbformat", reason='notebooks need the "notebook" extra')

NAMES = [c.name for c in registry.CHAPTERS]


def code_cells(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_valid_and_interleaves_text_and_code(name, tmp_path):
    path = notebook.write(name, tmp_path)
    assert path == tmp_path / f"{name}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert len({c.id for c in nb.cells}) == len(nb.cells), "cell ids are unique"

    setup = code_cells(nb)[0]
    assert "pip" in setup and "import tfguide" in setup
    assert f"from tfguide.chapters import {name} as chapter" in setup
    assert nb.cells[0].cell_type == "markdown" and nb.cells[1].source == setup

    text = resources.chapter_text(name)
    headings = re.findall(r"^## (.+)$", text, re.M)
    shown = re.findall(r"^## (.+)$", markdown(nb), re.M)
    assert shown == headings, "every section, in the text's order"
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("code") > 3 and "markdown" in kinds[2:], "text and code interleave"

    for source in code_cells(nb):
        ast.parse(source)  # every code cell is valid Python
    run_cells = [s for s in code_cells(nb) if "cli.run_chapter(" in s]
    assert len(run_cells) == 1
    assert f"cli.run_chapter({name!r}, [\"--quick\"" in run_cells[0]
    assert any("display(Image(" in s for s in code_cells(nb)), "a cell shows the run's figures"


@pytest.mark.parametrize("name", NAMES)
def test_code_cells_hold_the_modules_current_source(name):
    nb = notebook.build(name)
    cells = code_cells(nb)
    text = resources.chapter_text(name)
    shown = 0
    for path, part, _ in excerpts.includes(text):
        code = excerpts.excerpt((excerpts.ROOT / path).read_text(), part).rstrip("\n")
        in_code = any(cell.endswith("\n" + code) for cell in cells)
        in_text = code in markdown(nb)
        assert in_code or in_text, f"excerpt {part!r} is in the notebook"
        shown += in_code
    assert shown, "at least one excerpt is a runnable code cell"
    # No prose is lost: every line of the text outside its code blocks is in a Markdown cell.
    prose = notebook.FIGURE_LINK.sub(lambda m: f"![{m['alt']}](attachment:"
                                     f"{m['path'].replace('/', '_')})", excerpts.INCLUDE.sub("", text))
    prose = notebook.MARKERS.sub("", prose)  # the numbers stay, their record markers go
    prose = notebook.PAGE_LINK.sub(lambda m: f"]({notebook.TEXTS_LINK}{m['page']}"
                                   f"{m['anchor'] or ''})", prose)  # links lead from notebooks/
    for line in prose.splitlines():
        if line.strip() and not line.startswith("## "):
            assert line.strip() in markdown(nb) or any(line.strip() in c for c in cells), line


def test_cells_take_code_from_the_module_not_from_a_stale_text():
    path, part, code = excerpts.includes(resources.chapter_text(NAMES[0]))[0]
    stale = (f"Before.\n\n<!-- include: {path}:{part} -->\n"
             "```python\ndef stale():\n    pass\n```\n\nAfter.")
    pieces = notebook.pieces(stale)
    kinds = [kind for kind, _ in pieces]
    assert kinds == ["markdown", "code", "markdown"]
    assert "def stale" not in pieces[1][1] and pieces[1][1].endswith(code.rstrip("\n"))


def test_fragments_that_cannot_run_alone_stay_as_shown_code():
    assert notebook._is_definitions("def f():\n    return 1\n\nclass A:\n    pass\n")
    assert not notebook._is_definitions("history = model.fit(x, y)\n")
    assert not notebook._is_definitions("def broken(:\n")


def test_sections_ignore_headings_inside_code_blocks():
    text = "# T\n\nintro\n\n## One\n\n```text\n## not a heading\n```\n\n## Two\n\nend\n"
    assert [h for h, _ in notebook.sections(text)] == [None, "One", "Two"]
    assert "## not a heading" in notebook.sections(text)[1][1]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "tfguide", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def errors(result):
    return [ln for ln in result.stderr.splitlines() if not ln.startswith("import time:")]


def test_notebook_command_writes_the_file_without_tensorflow(tmp_path):
    result = run_cli("notebook", NAMES[0], "--out", str(tmp_path / "nb"))
    assert result.returncode == 0, errors(result)
    assert (tmp_path / "nb" / f"{NAMES[0]}.ipynb").is_file()
    assert not re.search(r"\| (tensorflow|keras)(\.|$)", result.stderr, re.M)


@pytest.mark.parametrize("args,needle", [
    (["notebook"], "a chapter name (or `all`) is needed"),
    (["notebook", "nosuch"], "Unknown chapter 'nosuch'"),
    (["notebook", NAMES[0], "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_notebook_command_lines_exit_2_with_one_line(args, needle):
    result = run_cli(*args)
    assert result.returncode == 2
    (line,) = errors(result)
    assert line.startswith("tfguide: error:") and needle in line


def test_missing_extra_is_one_clear_line(tmp_path):
    code = ("import sys; sys.modules['nbformat'] = None\n"  # as if the extra were absent
            "from tfguide.__main__ import main\n"
            f"main(['notebook', {NAMES[0]!r}, '--out', {str(tmp_path)!r}])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"tfguide: error: {notebook.EXTRA_HINT}"]
    assert 'pip install -e ".[notebook]"' in notebook.EXTRA_HINT
    assert not list(tmp_path.iterdir())


def test_quick_path_executes_in_a_kernel(tmp_path, monkeypatch):
    """Run gradient_descent's notebook top to bottom in a real kernel (about 10 s idle)."""
    pytest.importorskip("nbclient", reason='executing notebooks needs the "notebook" extra')
    pytest.importorskip("ipykernel", reason='executing notebooks needs the "notebook" extra')
    from nbclient import NotebookClient

    # A kernel spec for this very interpreter, so the kernel imports this tfguide.
    spec = tmp_path / "jupyter" / "kernels" / "tfguide-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tfguide test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    work = tmp_path / "work"
    work.mkdir()
    nb = notebook.build("gradient_descent")
    NotebookClient(nb, timeout=300, kernel_name="tfguide-test",
                   resources={"metadata": {"path": str(work)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "gradient_descent: ok" in text, "the run cell printed the summary"
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    (result,) = work.glob("runs/gradient_descent/*/results.json")
    run = json.loads(result.read_text())
    assert run["status"] == "ok" and run["config"]["quick"]
    assert run["metrics"]["param_error"] < 1e-3 and run["metrics"]["keras_param_error"] < 1e-3
    assert len(pictures) == len(list(result.parent.glob("figures/*.png"))) >= 1


# --- Never losing what you wrote ------------------------------------------------------
def write_cli(*args):
    """Run `notebook ARGS` in this process; return its exit status."""
    return exit_status(notebook.main, *args)


def edit_source(nb):
    nb["cells"][0]["source"] = "# my notes\n" + "".join(nb["cells"][0]["source"])


def add_output(nb):  # the notebook was run and saved
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}]
    cell["execution_count"] = 1


def drop_record(nb):  # written by a tfguide that kept no record of its cells
    del nb["metadata"]["tfguide"]["cells_sha256"]


def not_tfguide(nb):  # a notebook of the same name from elsewhere
    del nb["metadata"]["tfguide"]


def test_rewrites_its_own_unchanged_notebook(tmp_path, capsys):
    name = NAMES[0]
    assert write_cli(name, "--out", str(tmp_path)) == 0
    first = (tmp_path / f"{name}.ipynb").read_text()
    # Metadata a viewer adds on opening (no change to cells) does not count as an edit.
    nb = json.loads(first)
    nb["metadata"]["widgets"] = {}
    nb["cells"][0].setdefault("metadata", {})["collapsed"] = False
    (tmp_path / f"{name}.ipynb").write_text(json.dumps(nb))
    assert write_cli(name, "--out", str(tmp_path)) == 0
    assert (tmp_path / f"{name}.ipynb").read_text() == first
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.ipynb"], "no temporary files left"


@pytest.mark.parametrize("change", [edit_source, add_output, drop_record, not_tfguide])
def test_a_changed_notebook_is_kept_unless_forced(change, tmp_path, capsys):
    name = NAMES[0]
    path = tmp_path / f"{name}.ipynb"
    notebook.write(name, tmp_path)
    nb = json.loads(path.read_text())
    change(nb)
    mine = json.dumps(nb)
    path.write_text(mine)
    capsys.readouterr()
    assert write_cli(name, "--out", str(tmp_path)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"tfguide: error: {path} ")
    assert line.endswith("add --force to replace it")
    assert path.read_text() == mine
    assert write_cli(name, "--out", str(tmp_path), "--force") == 0
    assert path.read_text() != mine
    assert write_cli(name, "--out", str(tmp_path)) == 0, "after --force it is tfguide's again"


@pytest.mark.parametrize("kind", ["text", "not json", "a link", "a folder"])
def test_other_files_in_the_way_are_kept(kind, tmp_path, capsys):
    name = NAMES[0]
    path, elsewhere = tmp_path / "nb" / f"{name}.ipynb", tmp_path / "mine.txt"
    path.parent.mkdir()
    elsewhere.write_text("keep me")
    if kind == "a link":
        path.symlink_to(elsewhere)
    elif kind == "a folder":
        path.mkdir()
    else:
        path.write_text("keep me" if kind == "text" else '["not", "a notebook"]')
    before = path.read_text() if path.is_file() else None
    assert write_cli(name, "--out", str(path.parent)) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert (path.read_text() if path.is_file() else None) == before
    forced = write_cli(name, "--out", str(path.parent), "--force")
    assert elsewhere.read_text() == "keep me", "a link is replaced, never written through"
    if kind == "a folder":
        assert forced == 2 and path.is_dir(), "a folder is never replaced"
    else:
        assert forced == 0 and not path.is_symlink()
        assert json.loads(path.read_text())["metadata"]["tfguide"]["chapter"] == name


def test_all_refuses_before_writing_any(tmp_path, capsys):
    last = tmp_path / f"{NAMES[-1]}.ipynb"
    last.write_text("my own notes")
    assert write_cli("all", "--out", str(tmp_path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == [last.name]
    assert last.read_text() == "my own notes"


@pytest.mark.parametrize("out", ["{tmp}/file/sub", "{tmp}/file", "/proc/tfguide-notebooks",
                                 "{tmp}/" + "x" * 300, "", "{tmp}/locked"],
                         ids=["under a file", "a file", "in /proc", "too long", "empty",
                              "read-only"])
def test_an_impossible_out_is_one_line_exit_2(out, unwritable, capsys):
    tmp_path = unwritable
    capsys.readouterr()
    assert write_cli(NAMES[0], "--out", out.format(tmp=tmp_path)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("tfguide: error: --out must be a folder") and "Received: --out=" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "locked"]
    assert not list((tmp_path / "locked").iterdir())


def test_recorded_figures_travel_inside_the_notebook():
    name = "cnn"
    nb = notebook.build(name)
    attached = [c for c in nb.cells if c.cell_type == "markdown" and c.get("attachments")]
    text = resources.chapter_text(name)
    if "](figures/" not in text:
        pytest.skip("the text shows no recorded figure yet")
    assert attached, "the text's figures are embedded as attachments"
    for cell in attached:
        for key, bundle in cell.attachments.items():
            assert f"attachment:{key}" in cell.source
            assert bundle["image/png"]
    assert not any("](figures/" in c.source for c in nb.cells if c.cell_type == "markdown")


def test_every_exercise_has_a_cell_to_write_it_and_a_cell_to_check_it():
    from tfguide import exercises

    name = "cnn"
    if "## Exercises" not in resources.chapter_text(name):
        pytest.skip("the text has no Exercises section yet")
    nb = notebook.build(name)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    for function, _ in exercises.declared_in_source(exercises.declarations_source(name)):
        stub = next(i for i, s in enumerate(sources) if s.startswith(f"def {function}("))
        assert "raise NotImplementedError" in sources[stub]
        assert f"exercises.check_function({name!r}, {function!r}, {function})" in sources[stub + 1]


def test_links_to_other_texts_still_lead_there_from_the_notebooks_folder(monkeypatch):
    text = ("# T\n\nSee the [glossary](GLOSSARY.md), [cnn](cnn.md#the-idea) and "
            "[keras.io](https://keras.io/a.md).\n\n## Run it\n\nRun.\n")
    monkeypatch.setattr(resources, "chapter_text", lambda name: text)
    md = markdown(notebook.build(NAMES[0]))
    assert "[cnn](../chapters/cnn.md#the-idea)" in md
    assert "(https://keras.io/a.md)" in md, "an address with a scheme is left alone"
    assert "[glossary](../chapters/GLOSSARY.md)" in md


def test_record_markers_leave_only_their_numbers():
    md = markdown(notebook.build(NAMES[0]))
    assert "<!-- result" not in md and "<!-- /result" not in md
    assert (notebook.Path(__file__).parent.parent / "chapters" / "GLOSSARY.md").is_file()
