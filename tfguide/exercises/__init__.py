"""Exercises that check themselves: write a chapter's from-scratch functions, then prove them.

`python -m tfguide exercise NAME [--out DIR] [--force]` writes `exercises/NAME.py`:
the chapter's from-scratch functions with their signatures and docstrings,
each body replaced by `raise NotImplementedError` and a one-line hint. It is
made from the chapter module's own source, so it cannot drift from it.

`python -m tfguide check NAME [FILE]` imports the learner's file and runs, for
each function, the proof the chapter runs on its own version (against
TensorFlow, Keras, finite differences or a closed form). One line per function:

    PASS  conv2d       max error 6.1e-06 <= 1e-04
    FAIL  conv2d       max error 0.83 > 1e-04 (stride 2, same): hint for the usual mistake
    TODO  max_pool2d   still raises NotImplementedError

It exits with 0 only when every function passes. An exception in the
learner's code is shown with the learner's own file and line, never tfguide's.

A chapter declares its exercises (what the scaffold and the checker borrow):

    EXERCISES = (Exercise("conv2d", prove=prove_conv2d, probe=..., hint="...",
                          mistakes={"the extra 'same' row goes at the end": conv2d_pad_first}),)

`prove(fn) -> Proof` runs the chapter's proof on `fn`; `probe(fn)` calls `fn` on
one fixed input, and when a failing answer matches what a known mistake gives
on that input, the checker names the mistake.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import linecache
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tfguide import config, console, registry


@dataclasses.dataclass(frozen=True)
class Proof:
    """The result of a chapter's proof on one function: its worst error and where it was."""

    error: float
    tolerance: float
    case: str = ""  # the worst input case, in words

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance  # NaN fails


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One from-scratch function a learner writes, and how the chapter proves it."""

    function: str  # its name in the chapter module
    prove: Callable[[Callable], Proof]
    hint: str  # one line: what to do (shown in the scaffold and on a failure)
    probe: Callable[[Callable], Any] | None = None  # fn's output on one fixed input
    mistakes: Mapping[str, Callable] = dataclasses.field(default_factory=dict)  # hint -> wrong fn


def worst(errors: Sequence[tuple[str, float]], tolerance: float) -> Proof:
    """Return the Proof of the largest error among (case, error) pairs."""
    case, error = max(errors, key=lambda pair: (pair[1] != pair[1], pair[1]))  # NaN first
    return Proof(float(error), tolerance, case)


def exercise_module(name: str) -> str:
    """Return the module that declares chapter `name`'s exercises: tfguide.exercises.NAME."""
    registry.get(name)  # a KeyError names the known chapters
    own = f"tfguide.exercises.{name}"
    return own if importlib.util.find_spec(own) is not None else registry.get(name).module


def declared(name: str) -> tuple[Exercise, ...]:
    """Return the exercises of chapter `name` (importing the module that declares them)."""
    module = importlib.import_module(exercise_module(name))
    return tuple(getattr(module, "EXERCISES", ()))


# --- The scaffold ------------------------------------------------------------------------------
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
    """Write `out/NAME.py` (refusing to replace an existing file unless `force`)."""
    path = Path(out) / f"{name}.py"
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (your work?): check it with python -m tfguide "
                              f"check {name} {path}, or add --force to replace it")
    source = module_source(name)
    functions = declared_in_source(declarations_source(name))
    if any(hint is None for _, hint in functions):  # a hint built from names: ask the module
        functions = [(e.function, e.hint) for e in declared(name)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scaffold(name, source, functions), encoding="utf-8")
    return path


# --- The checker ------------------------------------------------------------------------------
class LearnerError(Exception):
    """The learner's file cannot be imported; the message shows their file and line."""


def _is_learners(filename: str, path: Path | None) -> bool:
    if path is not None:
        return Path(filename).resolve() == Path(path).resolve()
    # a notebook cell: anything but tfguide's, Python's and the libraries' own files
    here = str(Path(__file__).resolve().parent)
    return not (filename.startswith(here) or "site-packages" in filename
                or filename.startswith(sys.prefix) or filename.startswith(sys.base_prefix))


def learner_traceback(err: BaseException, path: Path | None) -> str:
    """Return the learner's part of a traceback: their frames, then the error."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _is_learners(f.filename, path)]
    lines = [f'  {Path(f.filename).name}, line {f.lineno}, in {f.name}: '
             f'{(f.line or linecache.getline(f.filename, f.lineno)).strip()}' for f in frames]
    return "\n".join([*lines, f"  {type(err).__name__}: {err}"])


def load_learner_file(path: Path, name: str):
    """Import the learner's file as a module (on purpose: it is their code)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"tfguide_exercise_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise LearnerError(f"{path}, line {err.lineno}: SyntaxError: {err.msg}") from None
    except Exception as err:  # their module-level code failed
        raise LearnerError(f"{path} failed to import:\n{learner_traceback(err, path)}") from None
    return module


@dataclasses.dataclass(frozen=True)
class Verdict:
    function: str
    status: str  # PASS, FAIL, TODO, ERROR, MISSING
    detail: str


def _diagnose(exercise: Exercise, fn: Callable) -> str:
    """Name the known mistake `fn` makes, if its answer on the probe input matches one."""
    if exercise.probe is None:
        return exercise.hint
    import numpy as np

    try:
        got = np.asarray(exercise.probe(fn), dtype=np.float64)
    except Exception:
        return exercise.hint
    for hint, wrong in exercise.mistakes.items():
        try:
            expected = np.asarray(exercise.probe(wrong), dtype=np.float64)
        except Exception:
            continue
        if got.shape == expected.shape and np.allclose(got, expected, rtol=1e-4, atol=1e-6):
            return hint
    return exercise.hint


def check_one(exercise: Exercise, module, path: Path | None, fn: Callable | None = None
              ) -> Verdict:
    """Prove one of the learner's functions (`fn`, or `module`'s) as the chapter proves its own."""
    fn = fn or getattr(module, exercise.function, None)
    if not callable(fn):
        return Verdict(exercise.function, "MISSING", f"{path or 'the notebook'} defines no "
                                                     f"function {exercise.function}")
    try:
        proof = exercise.prove(fn)
    except NotImplementedError:
        return Verdict(exercise.function, "TODO", "still raises NotImplementedError")
    except Exception as err:
        return Verdict(exercise.function, "ERROR",
                       "your code raised an exception:\n" + learner_traceback(err, path))
    where = f" ({proof.case})" if proof.case else ""
    if proof.passed:
        return Verdict(exercise.function, "PASS",
                       f"max error {proof.error:.2g} <= {proof.tolerance:.0e}")
    return Verdict(exercise.function, "FAIL", f"max error {proof.error:.2g} > "
                   f"{proof.tolerance:.0e}{where}: {_diagnose(exercise, fn)}")


def check(name: str, path: Path) -> list[Verdict]:
    """Check every exercise of chapter `name` in the learner's file `path`."""
    module = load_learner_file(path, name)
    return [check_one(exercise, module, path) for exercise in declared(name)]


def check_function(name: str, function: str, fn: Callable) -> str:
    """Prove one function written in a notebook cell; return its report line."""
    exercise = next((e for e in declared(name) if e.function == function), None)
    if exercise is None:
        raise KeyError(f"{name} has no exercise {function!r}")
    return report([check_one(exercise, type(sys)("notebook"), None, fn=fn)])


def report(verdicts: Sequence[Verdict]) -> str:
    """Return the one-line-per-function report."""
    width = max(len(v.function) for v in verdicts)
    return "\n".join(f"{v.status:<7} {v.function:<{width}}  {v.detail}" for v in verdicts)


# --- Command lines ---------------------------------------------------------------------------
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
    except OSError as err:
        console.fail(f"cannot write the exercise file in {out}: {err.strerror}", 2)
    listed = ", ".join(functions)
    console.say(f"wrote {path}: {listed}\nfill them in, then run: python -m tfguide check {name}"
            f"{'' if path == Path('exercises') / f'{name}.py' else f' {path}'}")


def check_main(argv: Sequence[str]) -> None:
    """`python -m tfguide check NAME [FILE]`."""
    p = console.Parser("python -m tfguide check",
                   "Prove your from-scratch functions the way the chapter proves its own.")
    p.add_argument("name", nargs="?", help="a chapter name")
    p.add_argument("file", nargs="?", help="your exercise file (default exercises/NAME.py)")
    try:
        args = p.parse_args(list(argv))
        name = _chapter_arg(args)
    except console.UsageError as err:
        console.fail(str(err), 2)
    path = Path(args.file or f"exercises/{name}.py").expanduser()
    if not path.is_file():
        hint = f"; make it with python -m tfguide exercise {name}" if not args.file else ""
        console.fail(f"no exercise file {path}{hint}", 2)
    try:
        verdicts = check(name, path)
    except LearnerError as err:
        print(f"tfguide: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    if not verdicts:
        console.fail(f"{name} has no from-scratch function to check", 2)
    console.say(report(verdicts))
    passed = sum(v.status == "PASS" for v in verdicts)
    console.say(f"\n{passed} of {len(verdicts)} pass")
    raise SystemExit(0 if passed == len(verdicts) else 1)
