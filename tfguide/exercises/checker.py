"""The checker: prove a learner's functions the way the chapter proves its own.

`python -m tfguide check NAME [FILE] [--timeout SECONDS]` runs, for each of the
chapter's from-scratch functions, the proof the chapter runs on its own version
(against TensorFlow, Keras, finite differences or a closed form) on the
learner's version. One line per function, printed as soon as it is known:

    PASS  conv2d       max error 6.1e-06 <= 1e-04
    FAIL  conv2d       max error 0.83 > 1e-04 (stride 2, same): hint for the usual mistake
    TODO  max_pool2d   still raises NotImplementedError

The learner's file runs in a worker process, never in the checker's own, so that
nothing it does by accident changes the verdict: a function that calls
`sys.exit`, `exit()` or `os._exit`, runs past the time limit, crashes the
process or returns the wrong kind of value is a FAIL with one line saying so,
and the worker is started again for the functions after it. The checker exits
with 0 only when every function passes; it compares each passing proof's error
with its tolerance once more in its own process. An exception in the learner's
code is shown with the learner's own file and line, never tfguide's.

It is not a sandbox: the learner's file runs with the learner's rights, and a
file written to fool the checker (by replacing the proofs in the worker) can.

In a notebook, `check_function` proves a function defined in a cell in the
notebook's own process (no time limit there; the kernel's stop button ends it).
"""
from __future__ import annotations

import dataclasses
import linecache
import math
import multiprocessing
import os
import re
import signal
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tfguide import config, console, registry
from tfguide.exercises.scaffold import (_chapter_arg, declarations_source, declared,
                                        declared_in_source)

DEFAULT_TIMEOUT = 10.0  # CPU seconds for each function's proof, and for the file's import
MAX_TIMEOUT = 3600.0
WALL_FACTOR = 6  # a function that waits instead of computing is stopped after 6 × the limit
START_LIMIT = 600.0  # seconds for a worker to load TensorFlow and the chapter's proofs
MAX_FRAMES = 12  # traceback lines shown, after repeated lines are collapsed


class LearnerError(Exception):
    """The learner's file cannot be imported; the message shows their file and line."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    function: str
    status: str  # PASS, FAIL, TODO, ERROR, MISSING
    detail: str
    error: float | None = None  # the proof's numbers, for a PASS checked again by the parent
    tolerance: float | None = None


# --- The learner's own traceback ---------------------------------------------------------------
def _is_learners(filename: str, path: Path | None) -> bool:
    if path is not None:
        try:
            return Path(filename).resolve() == Path(path).resolve()
        except (OSError, ValueError):
            return False
    # a notebook cell: anything but tfguide's, Python's and the libraries' own files
    here = str(Path(__file__).resolve().parent.parent)
    return not (filename.startswith(here) or "site-packages" in filename
                or filename.startswith(sys.prefix) or filename.startswith(sys.base_prefix))


def _learner_frames(err: BaseException, path: Path | None) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(err.__traceback__) if _is_learners(f.filename, path)]


def _message(err: BaseException) -> str:
    """`Type: message` of an exception, even one whose message cannot be shown; kept short."""
    try:
        text = str(err)
    except Exception:  # the learner's own exception class may fail to print itself
        text = "(its message cannot be shown)"
    text = text if len(text) <= 500 else text[:500] + " …"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def learner_traceback(err: BaseException, path: Path | None) -> str:
    """Return the learner's part of a traceback: their frames, then the error.

    A line repeated more than three times in a row is collapsed as Python does
    ("[Previous line repeated N more times]"), and at most MAX_FRAMES lines are shown.
    """
    lines: list[str] = []
    last, repeats = None, 0

    def flush():
        if repeats > 3:
            lines.append(f"  [Previous line repeated {repeats - 3} more times]")

    for f in _learner_frames(err, path):
        line = (f'  {Path(f.filename).name}, line {f.lineno}, in {f.name}: '
                f'{(f.line or linecache.getline(f.filename, f.lineno or 0)).strip()}')
        if line == last:
            repeats += 1
            if repeats <= 3:
                lines.append(line)
            continue
        flush()
        last, repeats = line, 1
        lines.append(line)
    flush()
    if len(lines) > MAX_FRAMES:
        keep = MAX_FRAMES // 2
        lines = [*lines[:keep], f"  [{len(lines) - 2 * keep + 1} more lines]",
                 *lines[-keep + 1:]]
    return "\n".join([*lines, f"  {_message(err)}"])


def _where(err: BaseException, path: Path | None) -> str:
    """` (FILE, line N)`: the learner's line an exception came from, or ''."""
    frames = _learner_frames(err, path)
    return f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""


_EXIT_CALL = re.compile(r"\b(?:sys\.exit|os\._exit|exit|quit)\([^()]*\)")


def _exit_text(err: SystemExit, path: Path | None) -> str:
    """`called exit()` (the learner's own words, from their line), and where."""
    frames = _learner_frames(err, path)
    line = (frames[-1].line or "") if frames else ""
    call = _EXIT_CALL.search(line)
    what = call.group(0) if call else f"sys.exit({'' if err.code is None else repr(err.code)})"
    return f"called {what}{_where(err, path)}"


# --- Loading the learner's file ----------------------------------------------------------------
def compile_learner_file(path: Path) -> types.CodeType:
    """Compile the learner's file, whatever its name ends in; a `LearnerError` says what is wrong.

    Nothing of it runs: the checker does this before it starts a worker.
    """
    path = Path(path)
    try:
        source = path.read_bytes()
    except OSError as err:
        raise LearnerError(f"cannot read {path}: {(err.strerror or str(err)).lower()}") from None
    try:
        code = compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as err:
        if err.lineno is None or b"\0" in source:
            raise LearnerError(f"{path} is not Python source (it holds binary data: a .pyc, or "
                               f"not a program at all); give the .py file you wrote") from None
        raise LearnerError(f"{path}, line {err.lineno}: SyntaxError: {err.msg}") from None
    except ValueError as err:  # what some Pythons raise for a NUL byte
        raise LearnerError(f"{path} is not Python source ({err}); give the .py file you "
                           f"wrote") from None
    return code


def load_learner_file(path: Path, name: str):
    """Import the learner's file as a module (on purpose: it is their code), whatever its name.

    The module is registered in `sys.modules` while it runs, as an import would,
    so that anything ordinary Python does (a `@dataclass`, pickling, `inspect`) works.
    """
    path = Path(path)
    code = compile_learner_file(path)
    module = types.ModuleType(f"tfguide_exercise_{name}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        exec(code, module.__dict__)
        return module
    except SystemExit as err:
        problem = f"{path} {_exit_text(err, path)} while it was imported: it must only " \
                  f"define functions"
    except KeyboardInterrupt as err:
        problem = f"{path} raised KeyboardInterrupt while it was imported{_where(err, path)}"
    except Exception as err:  # their module-level code failed
        problem = f"{path} failed to import:\n{learner_traceback(err, path)}"
    sys.modules.pop(module.__name__, None)
    raise LearnerError(problem)


# --- What a function returned -----------------------------------------------------------------
def _kind(x: Any) -> str:
    if x is None:
        return "None"
    if isinstance(x, (str, bytes)):
        return "text"
    if isinstance(x, complex) or "complex" in str(getattr(x, "dtype", "")):
        return "complex"
    if isinstance(x, Mapping):
        return "dict"
    if isinstance(x, (bool, int, float)) or type(x).__module__ == "numpy" and not hasattr(
            x, "__len__"):
        return "number"
    if getattr(x, "shape", None) is not None:
        return "array"
    if isinstance(x, (tuple, list)):
        return "sequence"
    if callable(x):
        return "function"
    return type(x).__name__


def _shape(x: Any) -> tuple | None:
    shape = getattr(x, "shape", None)
    try:
        if shape is not None:
            return tuple(shape)
        import numpy as np

        return tuple(np.shape(x)) if _kind(x) in ("number", "sequence") else None
    except Exception:  # ragged, symbolic, or not numbers at all
        return None


def _describe(x: Any) -> str:
    kind = _kind(x)
    if kind == "None":
        return "None"
    if kind == "text":
        shown = repr(x)
        return f"{type(x).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"
    if kind == "complex":
        return "complex numbers" if getattr(x, "shape", ()) else "a complex number"
    if kind == "number":
        return "a number"
    if kind == "array":
        return f"an array of shape {_shape(x)}"
    if kind == "sequence":
        return f"a {type(x).__name__} of {len(x)}"
    return {"dict": "a dict", "function": "a function"}.get(kind, f"a {kind}")


def _mismatch(got: Any, want: Any) -> str | None:
    """Say how `got` differs in kind or shape from `want` (the chapter's answer), or None."""
    numeric = ("number", "array", "sequence")
    g, w = _kind(got), _kind(want)
    if w == "sequence" and g == "sequence" and (_shape(got) is None or _shape(want) is None):
        if len(got) != len(want):
            return f"returned {_describe(got)}, expected {_describe(want)}"
        return next(filter(None, map(_mismatch, got, want)), None)
    if g != w and not (g in numeric and w in numeric):
        return f"returned {_describe(got)}, expected {_describe(want)}"
    if g in numeric and w in numeric:
        gs, ws = _shape(got), _shape(want)
        if gs is not None and ws is not None and gs != ws and None not in gs + ws:
            wanted = "a number" if w == "number" else f"shape {ws}"
            return f"returned {_describe(got)}, expected {wanted}"
    return None


class _Watched:
    """The learner's function, called by the proof as it is; keeps a few calls to describe."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.calls: list[tuple[tuple, dict, Any]] = []  # the first few
        self.odd: tuple[tuple, dict, Any] | None = None  # the first None, text or complex
        self.__name__ = getattr(fn, "__name__", "function")
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        if len(self.calls) < 3:
            self.calls.append((args, kwargs, out))
        if self.odd is None and _kind(out) in ("None", "text", "complex"):
            self.odd = (args, kwargs, out)
        return out


def _reference(exercise) -> Callable | None:
    """The chapter's own version of the exercise's function, when it can be found."""
    try:
        chapter = registry.get(exercise.prove.__module__.rsplit(".", 1)[-1])
        import importlib

        return getattr(importlib.import_module(chapter.module), exercise.function, None)
    except Exception:
        return None


def _wrong_return(exercise, watched: _Watched, calls: Sequence) -> str | None:
    """Compare what the learner's function returned with the chapter's answer to the same call."""
    reference = _reference(exercise)
    if reference is None:
        return None
    for args, kwargs, out in calls:
        try:
            want = reference(*args, **kwargs)
        except Exception:
            continue
        found = _mismatch(out, want)
        if found:
            return found
    return None


# --- Proving one function ---------------------------------------------------------------------
def _within(error: Any, tolerance: Any) -> bool:
    """The pass rule, apart from `Proof.passed`: a finite error no larger than the tolerance."""
    try:
        error, tolerance = float(error), float(tolerance)
    except (TypeError, ValueError):
        return False
    return math.isfinite(error) and math.isfinite(tolerance) and 0 <= error <= tolerance


def confirmed(verdict: Verdict) -> Verdict:
    """Return `verdict`, unless it is a PASS its own numbers do not bear out (then a FAIL)."""
    if verdict.status != "PASS" or _within(verdict.error, verdict.tolerance):
        return verdict
    return Verdict(verdict.function, "FAIL", f"max error {verdict.error} is not within "
                   f"{verdict.tolerance}: the proof's own numbers do not pass (was the checker "
                   f"changed from your file?)", verdict.error, verdict.tolerance)


def _diagnose(exercise, fn: Callable) -> str:
    """Name the known mistake `fn` makes, if its answer on the probe input matches one."""
    if exercise.probe is None:
        return exercise.hint
    import numpy as np

    try:
        got = np.asarray(exercise.probe(fn), dtype=np.float64)
    except (Exception, SystemExit):
        return exercise.hint
    for hint, wrong in exercise.mistakes.items():
        try:
            expected = np.asarray(exercise.probe(wrong), dtype=np.float64)
        except Exception:
            continue
        if got.shape == expected.shape and np.allclose(got, expected, rtol=1e-4, atol=1e-6):
            return hint
    return exercise.hint


def check_one(exercise, module, path: Path | None, fn: Callable | None = None) -> Verdict:
    """Prove one of the learner's functions (`fn`, or `module`'s) as the chapter proves its own.

    Runs in the calling process: the command line calls it in a worker process.
    """
    name = exercise.function
    fn = fn or getattr(module, name, None)
    if not callable(fn):
        return Verdict(name, "MISSING", f"{path or 'the notebook'} defines no function {name}")
    watched = _Watched(fn)
    try:
        proof = exercise.prove(watched)
    except NotImplementedError:
        return Verdict(name, "TODO", "still raises NotImplementedError")
    except SystemExit as err:
        return Verdict(name, "FAIL", f"{_exit_text(err, path)}: a function must return its "
                                     f"answer, not end the program")
    except KeyboardInterrupt as err:
        return Verdict(name, "FAIL", f"was interrupted (KeyboardInterrupt){_where(err, path)}")
    except Exception as err:
        if _learner_frames(err, path):
            return Verdict(name, "ERROR", "your code raised an exception:\n"
                           + learner_traceback(err, path))
        wrong = _wrong_return(exercise, watched, [c for c in (watched.odd,) if c]
                              + watched.calls)
        if wrong:
            return Verdict(name, "FAIL", wrong)
        returned = f" ({_describe(watched.calls[-1][2])})" if watched.calls else ""
        return Verdict(name, "FAIL", f"the proof could not use what it returned{returned}: "
                                     f"{_message(err)}")
    error, tolerance = getattr(proof, "error", None), getattr(proof, "tolerance", None)
    if watched.odd is not None:  # a str that reads as a number, complex numbers: never right
        wrong = _wrong_return(exercise, watched, [watched.odd])
        if wrong:
            return Verdict(name, "FAIL", wrong, error, tolerance)
    where = f" ({proof.case})" if getattr(proof, "case", "") else ""
    if proof.passed and _within(error, tolerance):
        return Verdict(name, "PASS", f"max error {error:.2g} <= {tolerance:.0e}",
                       float(error), float(tolerance))
    diagnosis = _diagnose(exercise, fn)
    if diagnosis == exercise.hint:  # no known mistake: was the answer even of the right shape?
        wrong = _wrong_return(exercise, watched, watched.calls)
        if wrong:
            return Verdict(name, "FAIL", f"{wrong}: {diagnosis}")
    return Verdict(name, "FAIL", f"max error {error:.2g} > {tolerance:.0e}{where}: {diagnosis}")


def check_function(name: str, function: str, fn: Callable) -> str:
    """Prove one function written in a notebook cell, in this process; return its report line."""
    exercise = next((e for e in declared(name) if e.function == function), None)
    if exercise is None:
        raise KeyError(f"{name} has no exercise {function!r}")
    return report([check_one(exercise, types.ModuleType("notebook"), None, fn=fn)])


def report(verdicts: Sequence[Verdict]) -> str:
    """Return the one-line-per-function report."""
    width = max(len(v.function) for v in verdicts)
    return "\n".join(_line(v, width) for v in verdicts)


def _line(verdict: Verdict, width: int) -> str:
    return f"{verdict.status:<7} {verdict.function:<{width}}  {verdict.detail}"


# --- The worker process -------------------------------------------------------------------------
def _die_with(parent: int) -> None:
    """Ask Linux to end this worker if the checker itself is killed (no orphan left looping)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent:
        os._exit(1)


def _serve(conn, name: str, parent: int) -> None:
    """The worker: load the chapter's proofs, then the learner's file, then prove on request.

    It ends quietly when the checker has gone (its connection closed).
    """
    try:
        _answer(conn, name, parent)
    except (EOFError, OSError):
        pass


def _answer(conn, name: str, parent: int) -> None:
    _die_with(parent)
    try:
        chosen = declared(name)  # imports TensorFlow, once per worker
        if "tensorflow" in sys.modules:  # start TensorFlow's runtime outside any time limit
            sys.modules["tensorflow"].constant(1.0) + 1.0
    except Exception as err:
        conn.send(("broken", _message(err)))
        return
    conn.send(("ready", [e.function for e in chosen]))
    module, path = None, None
    while True:
        request, argument = conn.recv()
        try:
            if request == "load":
                path = Path(argument)
                folder = str(path.resolve().parent)
                if folder not in sys.path:  # its neighbours import, as with `python FILE`
                    sys.path.append(folder)
                try:
                    module = load_learner_file(path, name)
                    reply = ("loaded", None)
                except LearnerError as err:
                    reply = ("refused", str(err))
            else:
                v = check_one(chosen[argument], module, path)
                reply = ("verdict", (v.function, v.status, v.detail,
                                     None if v.error is None else float(v.error),
                                     None if v.tolerance is None else float(v.tolerance)))
        except BaseException as err:  # the report itself failed: an object that cannot be shown
            reply = ("verdict", (chosen[argument].function, "ERROR",
                                 f"could not be reported on: {_message(err)}", None, None)) \
                if request == "check" else ("refused", f"{path} could not be loaded: "
                                                       f"{_message(err)}")
        for stream in (sys.stdout, sys.stderr):  # the learner's prints before the verdict
            try:
                stream.flush()
            except Exception:
                pass
        conn.send(reply)


def _cpu_seconds(pid: int) -> float | None:
    """CPU time process `pid` has used (Linux's /proc), or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _Stopped(Exception):
    """The worker did not answer: it ran out of time (`what` is None) or ended (`what` says how)."""

    def __init__(self, what: str | None):
        super().__init__(what)
        self.what = what


def _ended(code: int | None) -> str:
    if code is None:
        return "closed the checker's connection to it"
    if code >= 0:
        return (f"ended the checker's process with status {code} (os._exit?) instead of "
                f"returning")
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    more = ", out of memory?" if -code == signal.SIGKILL else ""
    return f"crashed the checker's process (signal {name}{more})"


class Session:
    """A learner's file loaded in a worker process; each function proved under a time limit.

    A function that runs too long or ends the worker gets its verdict here, and
    the next function gets a fresh worker.
    """

    def __init__(self, name: str, path: Path, timeout: float = DEFAULT_TIMEOUT):
        self.name, self.path, self.timeout = name, Path(path), float(timeout)
        self.functions: list[str] = []
        self._proc = self._conn = None

    def __enter__(self) -> "Session":
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the worker (it may be looping in the learner's code: no asking)."""
        if self._proc is not None:
            self._conn.close()
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join()
            self._proc = self._conn = None

    def _receive(self, limit: float, wall: float | None = None):
        """The worker's next message, or `_Stopped` once it has used `limit` seconds of CPU time.

        CPU time, not time on the clock: on a busy machine a proof waits for its
        turn without being cut short. A worker that waits rather than computes
        (a sleep, a lock) is stopped after `wall` seconds on the clock.
        """
        wall = limit if wall is None else wall
        start = time.monotonic()
        used = _cpu_seconds(self._proc.pid)
        try:
            while not self._conn.poll(0.2):
                now = _cpu_seconds(self._proc.pid)
                if now is None or used is None:  # no per-process clock here: the wall clock
                    if time.monotonic() - start > limit:
                        raise _Stopped(None)
                elif now - used > limit or time.monotonic() - start > wall:
                    raise _Stopped(None)
            return self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            raise _Stopped(_ended(self._proc.exitcode)) from None

    def _start(self) -> None:
        try:
            self._begin()
        except BaseException:  # Ctrl-C while it starts, or a file that cannot be loaded
            self.close()
            raise

    def _begin(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._proc = context.Process(target=_serve, args=(theirs, self.name, os.getpid()),
                                     name=f"tfguide check {self.name}")
        ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker never sees Ctrl-C
        try:
            self._proc.start()
        finally:
            signal.signal(signal.SIGINT, ignored)
        theirs.close()
        try:
            kind, value = self._receive(START_LIMIT)
        except _Stopped as stop:
            raise console.SetupError(f"the checker's worker for {self.name} "
                                     f"{stop.what or f'did not start in {START_LIMIT:g} s'}")
        if kind != "ready":
            raise console.SetupError(f"the proofs of chapter {self.name} could not be loaded: "
                                     f"{value}")
        self.functions = value
        self._conn.send(("load", str(self.path)))
        try:
            kind, value = self._receive(self.timeout, WALL_FACTOR * self.timeout)
        except _Stopped as stop:
            raise LearnerError(f"{self.path} {stop.what or self._too_long()} while it was "
                               f"imported") from None
        if kind != "loaded":
            raise LearnerError(value)

    def _too_long(self) -> str:
        return f"ran longer than {self.timeout:g} s (--timeout to change)"

    def verdict(self, index: int) -> Verdict:
        """Prove the learner's `functions[index]` in the worker, within the time limit."""
        function = self.functions[index]
        if self._proc is None:
            self._start()
        try:
            self._conn.send(("check", index))
            kind, value = self._receive(self.timeout, WALL_FACTOR * self.timeout)
        except _Stopped as stop:
            self.close()
            return Verdict(function, "FAIL", stop.what or self._too_long())
        except OSError:  # it ended before the question was asked
            self._proc.join(5)
            what = _ended(self._proc.exitcode)
            self.close()
            return Verdict(function, "FAIL", what)
        return confirmed(Verdict(*value))


def check(name: str, path: Path, timeout: float = DEFAULT_TIMEOUT,
          in_process: bool = False) -> list[Verdict]:
    """Check every exercise of chapter `name` in the learner's file `path`.

    Args:
        timeout: seconds each function (and the file's import) may take.
        in_process: run the learner's code here, without a time limit (for tests
            of the proofs themselves; the command line never does).
    """
    if in_process:
        module = load_learner_file(path, name)
        return [confirmed(check_one(e, module, path)) for e in declared(name)]
    with Session(name, path, timeout) as session:
        return [session.verdict(i) for i in range(len(session.functions))]


# --- Command line -------------------------------------------------------------------------------
def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_TIMEOUT:
        raise ValueError(f"a number of seconds > 0 and <= {MAX_TIMEOUT:g}")
    return value


def _terminate(signum, frame):
    raise console.Terminated()


def check_main(argv: Sequence[str]) -> None:
    """`python -m tfguide check NAME [FILE] [--timeout SECONDS]`."""
    p = console.Parser("python -m tfguide check",
                       "Prove your from-scratch functions the way the chapter proves its own. "
                       "Your file runs in a separate process: a function that exits, hangs or "
                       "crashes is a FAIL. Exit status 0 only when every function passes.")
    p.add_argument("name", nargs="?", help="a chapter name")
    p.add_argument("file", nargs="?", help="your exercise file (default exercises/NAME.py)")
    p.add_argument("--timeout", default=f"{DEFAULT_TIMEOUT:g}", metavar="SECONDS",
                   help=f"CPU seconds each function's proof (and your file's import) may "
                        f"use (default {DEFAULT_TIMEOUT:g}); one that waits instead of "
                        f"computing is stopped after {WALL_FACTOR} times that")
    try:
        args = p.parse_args(list(argv))
        name = _chapter_arg(args)
        timeout = config.check("--timeout", args.timeout, _seconds)
    except console.UsageError as err:
        console.fail(str(err), 2)
    path = Path(args.file or f"exercises/{name}.py").expanduser()
    if not path.is_file():
        hint = f"; make it with python -m tfguide exercise {name}" if not args.file else ""
        console.fail(f"no exercise file {path}{hint}", 2)
    if not declared_in_source(declarations_source(name)):
        console.fail(f"{name} has no from-scratch function to check", 2)
    signal.signal(signal.SIGTERM, _terminate)
    verdicts: list[Verdict] = []
    functions: list[str] = []
    try:
        compile_learner_file(path)  # a syntax error is answered before TensorFlow loads
        with Session(name, path, timeout) as session:
            functions = session.functions
            width = max(len(f) for f in functions)
            for i in range(len(functions)):
                verdicts.append(session.verdict(i))
                console.say(_line(verdicts[-1], width))
    except LearnerError as err:
        print(f"tfguide: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except console.SetupError as err:
        console.fail(str(err), 1)
    except KeyboardInterrupt as stop:
        what = "terminated" if isinstance(stop, console.Terminated) else "interrupted"
        done = f" after {len(verdicts)} of {len(functions)} functions" if functions else ""
        print(f"\ntfguide: error: {what}{done}", file=sys.stderr)
        raise SystemExit(143 if isinstance(stop, console.Terminated) else 130) from None
    passed = sum(v.status == "PASS" for v in verdicts)
    console.say(f"\n{passed} of {len(verdicts)} pass")
    raise SystemExit(0 if passed == len(verdicts) else 1)
