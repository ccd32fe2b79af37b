"""The scaffold: a chapter's from-scratch functions, written out for a learner to fill in.

`python -m tfguide exercise NAME [--out DIR] [--force]` writes `exercises/NAME.py`:
the chapter's from-scratch functions with their signatures and docstrings,
each body replaced by `raise NotImplementedError` and a one-line hint. It is
made from the chapter module's own source, so it cannot drift from it. The file
is written at once (a new file renamed into place): never through a link, never
half-written on a full disk, and never over the learner's work without --force.

Nothing here imports TensorFlow.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Sequence

from tfguide import config, console, paths, registry


def exercise_module(name: str) -> str:
    """Return the module that declares chapter `name`'s exercises: tfguide.exercises.NAME."""
    registry.get(name)  # a KeyError names the known chapters
    own = f"tfguide.exercises.{name}"
    return own if importlib.util.find_spec(own) is not None else registry.get(name).module


def declared(name: str) -> tuple:
    """Return the exercises of chapter `name` (importing the module that declares them)."""
    module = importlib.import_module(exercise_module(name))
    return tuple(getattr(module, "EXERCISES", ()))


def declared_in_source(source: str) -> list[tuple[str, str | None]]:
    """Read (function, hint) of each `Exercise(...)` in a module's `EXERCISES`, without importing it.

    A hint that is not a plain string in the source comes back as None.
    """
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "EXERCISES"
                                                for t in node.targets):
            for call in ast.walk(node.value):
                if isinstance(call, ast.Call) and getattr(call.func, "attr",
                                                          getattr(call.func, "id", "")) == "Exercise":
                    args = {**dict(zip(("function", "prove", "hint"), call.args)),
                            **{k.arg: k.value for k in call.keywords}}
                    hint = args.get("hint")
                    hint = hint.value if isinstance(hint, ast.Constant) else None
                    found.append((args["function"].value, hint))
    return found


def module_source(name: str) -> str:
    """Return chapter `name`'s module source (without importing it)."""
    spec = importlib.util.find_spec(registry.get(name).module)
    return Path(spec.origin).read_text(encoding="utf-8")


def declarations_source(name: str) -> str:
    """Return the source of the module declaring chapter `name`'s exercises (without importing it)."""
    spec = importlib.util.find_spec(exercise_module(name))
    return Path(spec.origin).read_text(encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class Stubs:
    """The pieces of an exercise file: what the functions need, the functions, what uses them."""

    imports: list[str]
    preamble: list[str]  # constants and classes the functions use
    functions: list[str]  # one stub per exercise, in order
    epilogue: list[str]  # constants that refer to the functions (e.g. a table of them)


def stubs(name: str, source: str, functions: Sequence[tuple[str, str]]) -> Stubs:
    """Cut chapter `name`'s `source` into an exercise file's pieces.

    A stub keeps the function's signature and docstring, its shape comments as a
    guide, and raises NotImplementedError with the hint.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    missing = [f for f, _ in functions if f not in defined]
    if missing:
        raise KeyError(f"{name} declares exercises it does not define: {', '.join(missing)}")
    names = {f for f, _ in functions}
    used = {n.id for f in names for n in ast.walk(defined[f]) if isinstance(n, ast.Name)}

    def bound(node) -> set[str]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return {(a.asname or a.name).split(".")[0] for a in node.names}
        if isinstance(node, ast.ClassDef):
            return {node.name}
        return {t.id for t in node.targets if isinstance(t, ast.Name)}

    def refers(node) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}

    needed = [node for node in tree.body if isinstance(node, (ast.Assign, ast.ClassDef))
              and bound(node) & used]
    used |= {n for node in needed for n in refers(node)}  # what those need in turn
    imports = [ast.get_source_segment(source, node) for node in tree.body
               if isinstance(node, (ast.Import, ast.ImportFrom)) and bound(node) & used]
    preamble = [ast.get_source_segment(source, node) for node in needed
                if not refers(node) & names]
    epilogue = [ast.get_source_segment(source, node) for node in needed
                if refers(node) & names]
    out = []
    for function, hint in functions:
        node = defined[function]
        body = node.body
        doc = ast.get_docstring(node) is not None
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        end = body[0].end_lineno if doc else body[0].lineno - 1
        indent = " " * body[0].col_offset
        hint = hint.replace("\\", "\\\\").replace('"', '\\"')
        out.append("\n".join([*lines[start - 1:end],
                              *_shape_guide(lines[end:node.end_lineno], indent),
                              f'{indent}raise NotImplementedError("{hint}")']))
    return Stubs(imports, preamble, out, epilogue)


def scaffold(name: str, source: str, functions: Sequence[tuple[str, str]]) -> str:
    """Return the exercise file for chapter `name`, made from its module's `source`.

    Args:
        functions: (function, hint) of each exercise, in order.
    """
    parts = stubs(name, source, functions)
    out = [f'"""Exercises for chapter {name}: write each function, then run',
           f"python -m tfguide check {name} (this file) to prove it the way the chapter does.",
           "",
           f"Made by `python -m tfguide exercise {name}` from tfguide/chapters/{name}.py;",
           f"the text, chapters/{name}.md, explains each function.",
           '"""', "from __future__ import annotations", "", *parts.imports]
    for block in parts.preamble:
        out += ["", block]
    for stub in parts.functions:
        out += ["", "", stub]
    if parts.epilogue:
        out += ["", "", *parts.epilogue]
    return "\n".join(out) + "\n"


_ASSIGNED = re.compile(r"^\s*([A-Za-z_][\w, ]*?)\s*[+\-*/@]?=[^=].*?#\s*(.+)$")
_RETURNED = re.compile(r"^\s*return\b.*?#\s*(.+)$")


def _shape_guide(body: Sequence[str], indent: str) -> list[str]:
    """Keep a body's shape comments as a guide: `# name: (batch, h, w, c)` lines."""
    guide = []
    for line in body:
        if "#" not in line or line.strip().startswith("#"):
            continue
        assigned, returned = _ASSIGNED.match(line), _RETURNED.match(line)
        if assigned:
            guide.append(f"{indent}# {assigned.group(1).strip()}: {assigned.group(2).strip()}")
        elif returned:
            guide.append(f"{indent}# returns: {returned.group(1).strip()}")
    return [f"{indent}# Shapes along the way, from the chapter's version:", *guide] if guide \
        else []


def write_scaffold(name: str, out: Path, force: bool = False) -> Path:
    """Write `out/NAME.py` at once (a new file renamed into place), never through a link.

    An existing file is replaced only with `force`; a link at `out/NAME.py` is
    refused without `force` and replaced itself (never its target) with it.
    Nothing is left behind when the write fails (a full disk).

    Raises:
        FileExistsError: NAME.py exists (or is a link) and `force` is not set.
        OSError: the file could not be written (the message names it and says why).
    """
    path = Path(out) / f"{name}.py"
    if os.path.lexists(path) and not force:
        if path.is_symlink():
            raise FileExistsError(f"{path} is a link (to {os.readlink(path)}); tfguide never "
                                  f"writes through a link: remove it, or add --force to "
                                  f"replace the link itself")
        raise FileExistsError(f"{path} exists (your work?): check it with python -m tfguide "
                              f"check {name} {path}, or add --force to replace it")
    source = module_source(name)
    functions = declared_in_source(declarations_source(name))
    if any(hint is None for _, hint in functions):  # a hint built from names: ask the module
        functions = [(e.function, e.hint) for e in declared(name)]
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.replace_file(path, scaffold(name, source, functions).encode("utf-8"))
    return path


# --- Command line ------------------------------------------------------------------------------
def _chapter_arg(args: argparse.Namespace) -> str:
    if args.name is None:
        raise console.UsageError("a chapter name is needed. Known chapters: "
                             + ", ".join(registry.BY_NAME))
    return console.choice("NAME", args.name, list(registry.BY_NAME))


def exercise_main(argv: Sequence[str]) -> None:
    """`python -m tfguide exercise NAME [--out DIR] [--force]`."""
    p = console.Parser("python -m tfguide exercise",
                   "Write a chapter's from-scratch functions as exercises to fill in.")
    p.add_argument("name", nargs="?", help="a chapter name")
    p.add_argument("--out", default="exercises", metavar="DIR",
                   help="folder for NAME.py (default exercises/)")
    p.add_argument("--force", action="store_true", help="replace an existing exercise file")
    try:
        args = p.parse_args(list(argv))
        name = _chapter_arg(args)
        out = config.output_folder("--out", args.out)
    except console.UsageError as err:
        console.fail(str(err), 2)
    try:
        functions = [f for f, _ in declared_in_source(declarations_source(name))]  # no TensorFlow
        if not functions:
            console.fail(f"{name} has no from-scratch function to write: its text says why", 2)
        path = write_scaffold(name, out, args.force)
    except FileExistsError as err:
        console.fail(str(err), 2)
    except OSError as err:  # a full disk, a folder where the file goes: nothing is left behind
        console.fail(f"cannot write {Path(out) / f'{name}.py'}: "
                     f"{(err.strerror or type(err).__name__).lower()}", 1)
    listed = ", ".join(functions)
    console.say(f"wrote {path}: {listed}\nfill them in, then run: python -m tfguide check {name}"
            f"{'' if path == Path('exercises') / f'{name}.py' else f' {path}'}")
