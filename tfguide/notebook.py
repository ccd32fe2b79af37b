"""Turn a chapter into a Jupyter notebook: its text as Markdown cells, its code as code cells.

`python -m tfguide notebook NAME [--out DIR] [--force]` writes `DIR/NAME.ipynb` (default
`notebooks/`; NAME `all` writes every chapter). It rewrites a notebook it wrote itself, but
refuses to replace one you have changed (edited or run and saved cells), or any other file,
unless you add `--force`. The notebook is made from two things that
already exist, so it cannot drift from them: the chapter text (`chapters/NAME.md`, split at
its `## ` sections) and the chapter module. Each code excerpt the text shows becomes a code
cell holding the module's current source between its `# [start:...]` / `# [end:...]`
markers; the run cell calls the module's own `run` on the `--quick` configuration, and a
later cell shows the figures it saved.

The format is written and validated with `nbformat` (the `notebook` extra:
`pip install -e ".[notebook]"`). Nothing here imports TensorFlow.
"""
from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from tfguide import config, console, excerpts, registry, resources
from tfguide.paths import replace_file

EXTRA_HINT = ('notebooks need the "notebook" extra: pip install -e ".[notebook]" '
              '(in a checkout) or pip install "tfguide[notebook]"')
FENCE = re.compile(r"^(`{3,}|~{3,})")


class MissingExtra(ImportError):
    """An optional dependency of this command is not installed."""


def _nbformat():
    try:
        import nbformat
    except ImportError:
        raise MissingExtra(EXTRA_HINT) from None
    return nbformat


def _install_spec() -> str:
    """Return what the setup cell pip-installs when the kernel lacks tfguide."""
    root = resources.texts_dir().parent
    if (root / "pyproject.toml").is_file():  # a checkout: install this folder
        return str(root)
    return "tfguide"


# --- Splitting the text ---------------------------------------------------------------
def sections(text: str) -> list[tuple[str | None, str]]:
    """Split a chapter text at `## ` headings (outside code fences): [(heading, body)].

    The part before the first heading comes first, with heading None.
    """
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    fence = None
    for line in text.splitlines(keepends=True):
        match = FENCE.match(line)
        if match and fence is None:
            fence = match.group(1)
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line.strip()[len(match.group(1)):]:
            fence = None  # a closing fence: same character, at least as long, no info string
        if fence is None and line.startswith("## "):
            parts.append((line[3:].strip(), []))
        else:
            parts[-1][1].append(line)
    return [(heading, "".join(lines)) for heading, lines in parts]


def _is_definitions(code: str) -> bool:
    """Whether `code` only defines things (functions, classes), so running it is safe."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    return bool(tree.body) and all(isinstance(node, kinds) for node in tree.body)


def pieces(body: str) -> list[tuple[str, str]]:
    """Split a section body into ("markdown", text) and ("code", source) pieces.

    An included excerpt becomes a code piece with the module's *current* source (not the
    copy in the text); an excerpt that is not a plain definition (e.g. lines from inside
    `run`) would not run on its own, so it stays in the Markdown as shown code.
    """
    out: list[tuple[str, str]] = []
    last = 0
    for match in excerpts.INCLUDE.finditer(body):
        path, name = match["path"], match["name"]
        code = excerpts.excerpt((excerpts.ROOT / path).read_text(encoding="utf-8"), name)
        if not _is_definitions(code):
            continue
        out.append(("markdown", body[last:match.start()]))
        out.append(("code", f"# {path}, excerpt {name!r} (run it to define it here too)\n"
                            + code.rstrip("\n")))
        last = match.end()
    out.append(("markdown", body[last:]))
    return [(kind, text.strip("\n")) for kind, text in out if text.strip()]


# --- Cells that run the chapter -------------------------------------------------------
def setup_code(chapter: registry.Chapter) -> str:
    return f'''\
from __future__ import annotations  # the module's own annotation rules, for the cells below

# Setup: make tfguide importable in this kernel (Jupyter, Colab), then load the chapter.
import importlib.util, subprocess, sys

TFGUIDE = {_install_spec()!r}  # what pip installs if tfguide is missing: a folder, a wheel or a URL
if importlib.util.find_spec("tfguide") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", TFGUIDE], check=True)

from pathlib import Path

import tfguide  # quiets TensorFlow's start-up logs
from tfguide import cli, runs
from tfguide.chapters import {chapter.name} as chapter

# The module's names (tf, keras, its helpers) are made available here, so the code cells
# below run exactly as they do in the module.
globals().update({{k: v for k, v in vars(chapter).items() if not k.startswith("__")}})'''


def run_code(chapter: registry.Chapter) -> str:
    return f'''\
# Run the chapter's own experiment: the same as
#   python -m {chapter.module} --quick
# Remove "--quick" for the full run; any other flag of `--help` works here too.
metrics, run_dir = cli.run_chapter({chapter.name!r}, ["--quick", "--out", "runs"])
print(runs.summary(run_dir))'''


FIGURES_CODE = '''\
# The figures your run saved (after the run cell under "Run it").
from IPython.display import Image, display

for png in sorted((Path(run_dir) / "figures").glob("*.png")):
    print(png.name)
    display(Image(filename=str(png)))'''


def intro_note(chapter: registry.Chapter) -> str:
    return (f"> This notebook is made from `chapters/{chapter.name}.md` and the module "
            f"`{chapter.module}` by `python -m tfguide notebook {chapter.name}`. Run the cells "
            "in order: the first one imports tfguide (installing it if the kernel lacks it: "
            "on Colab, set `TFGUIDE` to a wheel you uploaded or a repository URL), the code "
            "cells hold the module's own source, and the run cell calls the module's `run`. "
            "A term in **bold** is explained where it first appears and listed in the "
            f"[glossary]({TEXTS_LINK}GLOSSARY.md).")


# --- The notebook ---------------------------------------------------------------------
TEXTS_LINK = "../chapters/"  # from notebooks/ (the default --out) to the texts of a checkout
MARKERS = re.compile(r"<!-- /?(?:result|recorded)(?:: [^<>]*?)? -->")
PAGE_LINK = re.compile(r"\]\((?P<page>[A-Za-z_]+\.md)(?P<anchor>#[\w\-]*)?\)")
FIGURE_LINK = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<path>figures/[\w\-]+/[\w\-.]+\.png)\)")


def attach_figures(markdown: str) -> tuple[str, dict]:
    """Embed the text's recorded figures as cell attachments, so the notebook stands alone."""
    attachments = {}

    def embed(m: re.Match) -> str:
        path = resources.texts_dir() / m["path"]
        if not path.is_file():
            return m.group(0)
        key = m["path"].replace("/", "_")
        attachments[key] = {"image/png": base64.b64encode(path.read_bytes()).decode("ascii")}
        return f"![{m['alt']}](attachment:{key})"

    return FIGURE_LINK.sub(embed, markdown), attachments


def exercise_cells(name: str) -> list[tuple[str, str]]:
    """For each exercise: a cell with the function to write, then a cell that checks it."""
    from tfguide import exercises

    source = exercises.module_source(name)
    declared = exercises.declared_in_source(exercises.declarations_source(name))
    if not declared:
        return []
    functions = [(f, hint or "see the text above") for f, hint in declared]
    stubs = exercises.stubs(name, source, functions).functions
    cells = [("markdown", "Write each function in its cell (the chapter's own version is "
                          "defined above; yours replaces it here), then run the check below it: "
                          "it proves your function the way the chapter proves its own. "
                          f"Outside the notebook: `python -m tfguide exercise {name}`, then "
                          f"`python -m tfguide check {name}`.")]
    for (function, _), stub in zip(functions, stubs):
        cells.append(("code", stub))
        cells.append(("code", f"from tfguide import exercises\n\n"
                              f"print(exercises.check_function({name!r}, {function!r}, "
                              f"{function}))"))
    return cells


def build(name: str):
    """Return chapter `name` as an `nbformat` v4 notebook (validated)."""
    nbformat = _nbformat()
    from nbformat import v4

    chapter = registry.get(name)
    text = resources.chapter_text(name)
    cells = []

    def add(kind: str, source: str) -> None:
        make = v4.new_code_cell if kind == "code" else v4.new_markdown_cell
        attachments = {}
        if kind == "markdown":
            source, attachments = attach_figures(source)
            source = MARKERS.sub("", source)  # the numbers stay, their record markers go
            source = PAGE_LINK.sub(lambda m: f"]({TEXTS_LINK}{m['page']}{m['anchor'] or ''})",
                                   source)  # another text (GLOSSARY.md, cnn.md) from notebooks/
        cell = make(source, id=f"{name[:50]}-{len(cells):03d}")
        if attachments:
            cell.attachments = attachments
        cells.append(cell)

    parts = sections(text)
    heading_names = [h for h, _ in parts]
    for heading, body in parts:
        if heading is None:
            add("markdown", body.strip("\n") + "\n\n" + intro_note(chapter))
            add("code", setup_code(chapter))
            continue
        for kind, source in pieces(f"## {heading}\n\n{body.lstrip()}"):
            add(kind, source)
        if heading == "Run it":
            add("code", run_code(chapter))
            if "Results" not in heading_names:
                add("code", FIGURES_CODE)
        elif heading == "Results":
            add("code", FIGURES_CODE)
        elif heading == "Exercises":
            for kind, source in exercise_cells(name):
                add(kind, source)
    if "Run it" not in heading_names:  # a text without the usual sections still runs
        add("code", run_code(chapter))
        add("code", FIGURES_CODE)

    nb = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "tfguide": {"chapter": name},
    })
    nbformat.validate(nb)
    return nb


# --- Writing it without losing your changes ------------------------------------------
class WouldOverwrite(Exception):
    """The notebook's path holds a file tfguide did not write, or one changed since."""


def cells_hash(cells: list) -> str:
    """Return a hash of what a reader changes in a notebook: each cell's kind, source, outputs."""
    def source(cell):
        text = cell.get("source", "")
        return "".join(text) if isinstance(text, list) else text  # files store lists of lines

    seen = [[c.get("cell_type"), source(c), c.get("outputs", [])] for c in cells]
    return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()


def check_target(path: Path, force: bool = False) -> None:
    """Refuse to replace a file at `path` unless tfguide wrote it unchanged (or `force`).

    A notebook records the hash of the cells it was written with; running cells and saving
    (outputs), or editing them, changes that hash.

    Raises:
        WouldOverwrite: one line naming the file, why it is kept, and what to do.
    """
    if path.is_dir() and not path.is_symlink():
        raise WouldOverwrite(f"{path} is a folder; move it away or give another --out")
    if force or not os.path.lexists(path):
        return
    if path.is_symlink():
        why = "is a link"
    elif not path.is_file():
        why = "is not a regular file"
    elif path.stat().st_size > 64 << 20:
        why = "is far larger than a notebook tfguide writes"
    else:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
            kept = nb["metadata"]["tfguide"].get("cells_sha256")
            why = ("has no record of the cells tfguide wrote (an older tfguide made it)"
                   if kept is None else None if kept == cells_hash(nb["cells"]) else
                   "has changed since tfguide wrote it")
        except (OSError, ValueError, LookupError, TypeError, AttributeError, RecursionError):
            why = "was not written by tfguide"
    if why:
        raise WouldOverwrite(f"{path} {why}; move it away, or add --force to replace it")


def write(name: str, out: Path, force: bool = False) -> Path:
    """Write chapter `name`'s notebook to `out/NAME.ipynb` and return the path.

    Raises:
        WouldOverwrite: a file is there that tfguide did not write or that was changed
            (unless `force`).
    """
    nbformat = _nbformat()
    nb = build(name)
    nb.metadata.tfguide["cells_sha256"] = cells_hash(nb.cells)
    path = Path(out) / f"{name}.ipynb"
    check_target(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(nb)
    replace_file(path, (text if text.endswith("\n") else text + "\n").encode("utf-8"))
    return path


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and validate `notebook NAME|all [--out DIR] [--force]`."""
    parser = console.Parser("python -m tfguide notebook", "Write a chapter as a Jupyter notebook.")
    parser.add_argument("name", nargs="?", help="a chapter name, or `all`")
    parser.add_argument("--out", metavar="DIR", default="notebooks",
                        help="folder for NAME.ipynb (default notebooks/)")
    parser.add_argument("--force", action="store_true",
                        help="replace NAME.ipynb even if you changed it (or tfguide did not "
                        "write it)")
    args = parser.parse_args(list(argv))
    if args.name is None:
        raise console.UsageError("a chapter name (or `all`) is needed. Known chapters: "
                             + ", ".join(registry.BY_NAME))
    if args.name != "all" and args.name not in registry.BY_NAME:
        raise console.UsageError(f"Unknown chapter {args.name!r}. Known chapters: "
                             + ", ".join(registry.BY_NAME) + " (or `all`).")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tfguide notebook NAME|all [--out DIR] [--force]`."""
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except console.UsageError as err:
        console.fail(str(err), 2)
    names = list(registry.BY_NAME) if args.name == "all" else [args.name]
    try:
        _nbformat()
        out = config.writable_folder("--out", args.out)
        for name in names:  # refuse before writing any
            check_target(out / f"{name}.ipynb", args.force)
        for name in names:
            print(f"wrote {write(name, out, args.force)}")
    except MissingExtra as err:
        console.fail(str(err), 1)
    except (console.UsageError, WouldOverwrite) as err:
        console.fail(str(err), 2)
    except FileNotFoundError as err:  # a chapter without its text
        console.fail(str(err), 1)
    except OSError as err:  # a disk that is full, a folder removed meanwhile
        console.fail(f"could not write the notebook: {err}", 1)
