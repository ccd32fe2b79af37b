"""Exercises: the scaffold is made from each chapter, and the checker proves a learner's code.

For every chapter that declares exercises: its own functions pass; the fresh
scaffold is all TODO (exit 1); every declared typical mistake fails with its
own hint. A learner's syntax error or exception is reported with their file
and line, never a tfguide traceback. Nothing the learner's file does by accident
(exit, hang, crash, a wrong kind of answer, Ctrl-C) changes the verdict, and
the scaffold is never written through a link or left half-written.
"""
import math
import os
import resource
import signal
import subprocess
import sys

import pytest

from tfguide import exercises, registry

WITH_EXERCISES = [c.name for c in registry.CHAPTERS if exercises.declared(c.name)]
MISTAKES = [(name, e.function, hint) for name in WITH_EXERCISES
            for e in exercises.declared(name) for hint in e.mistakes]


def run_tfguide(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tfguide", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_most_chapters_have_exercises():
    assert len(WITH_EXERCISES) >= len(registry.CHAPTERS) - 1


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_the_chapters_own_functions_pass(name):
    module = __import__(registry.get(name).module, fromlist=["_"])
    for exercise in exercises.declared(name):  # as the checker calls them (watching the answers)
        verdict = exercises.check_one(exercise, module, None)
        assert verdict.status == "PASS", f"{name}.{exercise.function}: {verdict}"
        assert exercise.mistakes, f"{name}.{exercise.function} names no typical mistake"


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_a_fresh_scaffold_is_todo_everywhere(name, tmp_path):
    path = exercises.write_scaffold(name, tmp_path)
    verdicts = exercises.check(name, path, in_process=True)
    assert verdicts and all(v.status == "TODO" for v in verdicts), exercises.report(verdicts)
    with pytest.raises(FileExistsError):
        exercises.write_scaffold(name, tmp_path)  # never overwrites the learner's work


@pytest.mark.parametrize("name,function,hint", MISTAKES)
def test_a_typical_mistake_fails_with_its_hint(name, function, hint, tmp_path):
    exercise = next(e for e in exercises.declared(name) if e.function == function)
    wrong = exercise.mistakes[hint]
    module = type(sys)("learner")
    setattr(module, function, wrong)
    verdict = exercises.check_one(exercise, module, tmp_path / "learner.py")
    assert verdict.status == "FAIL" and verdict.detail.endswith(hint), verdict


def test_filling_in_the_chapters_function_turns_todo_into_pass(tmp_path):
    name = WITH_EXERCISES[0]
    path = exercises.write_scaffold(name, tmp_path)
    exercise = exercises.declared(name)[0]
    source = path.read_text()
    module = __import__(registry.get(name).module, fromlist=["_"])
    import inspect

    mine = inspect.getsource(getattr(module, exercise.function))
    path.write_text(source + "\n\n" + mine)  # a later definition replaces the stub
    verdicts = {v.function: v.status for v in exercises.check(name, path, in_process=True)}
    assert verdicts[exercise.function] == "PASS"


def test_learner_syntax_error_names_their_file_and_line(tmp_path):
    name = WITH_EXERCISES[0]
    path = tmp_path / f"{name}.py"
    path.write_text("import numpy as np\n\ndef broken(:\n    pass\n")
    result = run_tfguide("check", name, str(path))
    assert result.returncode == 1
    assert f"{path}, line 3: SyntaxError" in result.stderr and "Traceback" not in result.stderr


def test_learner_exception_shows_their_traceback_only(tmp_path):
    name = WITH_EXERCISES[0]
    path = exercises.write_scaffold(name, tmp_path)
    function = exercises.declared(name)[0].function
    path.write_text(path.read_text() + f"\n\ndef {function}(*args, **kwargs):\n"
                    "    values = [1, 2]\n    return values[5]\n")
    result = run_tfguide("check", name, str(path))
    assert result.returncode == 1
    assert "ERROR" in result.stdout and f"{path.name}, line" in result.stdout
    assert "IndexError: list index out of range" in result.stdout
    assert "tfguide/" not in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_exercise_and_check_commands_from_a_new_users_folder(tmp_path):
    name = WITH_EXERCISES[0]
    made = run_tfguide("exercise", name, cwd=tmp_path)
    assert made.returncode == 0 and (tmp_path / "exercises" / f"{name}.py").is_file()
    again = run_tfguide("exercise", name, cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    checked = run_tfguide("check", name, cwd=tmp_path)
    assert checked.returncode == 1 and "TODO" in checked.stdout


@pytest.mark.parametrize("args,needle", [(["check"], "a chapter name is needed"),
                                         (["check", "nosuch"], "NAME must be one of"),
                                         (["exercise", "nosuch"], "NAME must be one of"),
                                         (["check", "cnn", "/no/such.py"], "no exercise file")])
def test_bad_exercise_arguments_are_one_line(args, needle):
    result = run_tfguide(*args)
    assert result.returncode == 2 and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- Nothing the learner's code does by accident changes the verdict ---------------------------
HOSTILE_CNN = """import os, sys
def same_padding(size, k, stride):
    sys.exit(0)
def pad(x, kh, kw, stride, padding, value=0.0):
    return None
def conv2d(x, kernel, stride=1, padding="valid"):
    return {"answer": x}
def max_pool2d(x, size=2, stride=None, padding="valid"):
    os._exit(0)
def avg_pool2d(x, size=2, stride=None, padding="valid"):
    while True:
        pass
"""


def test_exit_hang_and_crash_each_fail_in_one_line(tmp_path):
    path = tmp_path / "cnn.py"
    path.write_text(HOSTILE_CNN)
    result = run_tfguide("check", "cnn", str(path), "--timeout", "2")
    lines = {line.split()[1]: line for line in result.stdout.splitlines()[:5]}
    assert result.returncode == 1, result.stdout + result.stderr
    assert "called sys.exit(0) (cnn.py, line 3)" in lines["same_padding"]
    assert "returned None, expected an array of shape (" in lines["pad"]
    assert "returned a dict, expected an array of shape (" in lines["conv2d"]
    assert "ended the checker's process with status 0" in lines["max_pool2d"]
    assert "ran longer than 2 s (--timeout to change)" in lines["avg_pool2d"]
    assert all(line.startswith("FAIL") for line in lines.values())
    assert "0 of 5 pass" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("source,needle", [("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
                                           ("while True:\n    pass\n", "ran longer than 1 s")])
def test_a_file_that_exits_or_hangs_when_imported_is_one_line(tmp_path, source, needle):
    path = tmp_path / "cnn.py"
    path.write_text(source)
    result = run_tfguide("check", "cnn", str(path), "--timeout", "1")
    assert result.returncode == 1 and needle in result.stderr and "while it was imported" in \
        result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_ctrl_c_keeps_the_lines_already_printed_and_says_one_line(tmp_path):
    path = tmp_path / "cnn.py"
    path.write_text("import sys\ndef same_padding(size, k, stride):\n    sys.exit(0)\n"
                    "def pad(x, kh, kw, stride, padding, value=0.0):\n    while True:\n"
                    "        pass\n")
    child = subprocess.Popen([sys.executable, "-m", "tfguide", "check", "cnn", str(path),
                              "--timeout", "100"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = child.stdout.readline()  # same_padding's verdict; pad now loops
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert first.startswith("FAIL") and "same_padding" in first
    assert child.returncode == 130 and "Traceback" not in err
    assert err.strip() == "tfguide: error: interrupted after 1 of 5 functions"


def _learner(tmp_path, source: str, name: str = "mlp.py"):
    path = tmp_path / name
    path.write_text(source)
    return path, exercises.load_learner_file(path, "mlp")


def _verdicts(chapter, module, path):
    return {e.function: exercises.check_one(e, module, path)
            for e in exercises.declared(chapter) if hasattr(module, e.function)}


def test_wrong_kinds_of_answer_are_named(tmp_path):
    path, module = _learner(tmp_path, """import numpy as np
from tfguide.chapters.mlp import sparse_cross_entropy as _theirs
def softmax(z):
    return np.asarray(z)[0]
def mlp_forward(weights, x):
    return 1j
def sparse_cross_entropy(labels, probs):
    return str(_theirs(labels, probs))
""")
    found = _verdicts("mlp", module, path)
    assert found["softmax"].detail.startswith("returned an array of shape (5,), expected shape "
                                              "(3, 5): ")  # then the hint
    assert found["mlp_forward"].detail.startswith("returned a complex number, expected an "
                                                  "array of shape")
    assert found["sparse_cross_entropy"].detail.startswith("returned str '0.")  # not a PASS
    assert found["sparse_cross_entropy"].detail.endswith("expected a number")
    assert all(v.status == "FAIL" for v in found.values())


def test_exit_and_interrupt_in_a_notebook_cell_are_verdicts():
    def softmax(z):
        sys.exit(3)

    def mlp_forward(weights, x):
        raise KeyboardInterrupt

    assert "FAIL" in exercises.check_function("mlp", "softmax", softmax)
    assert "called sys.exit(3)" in exercises.check_function("mlp", "softmax", softmax)
    assert "interrupted" in exercises.check_function("mlp", "mlp_forward", mlp_forward)


def test_runaway_recursion_is_collapsed_as_python_does(tmp_path):
    path, module = _learner(tmp_path, "def softmax(z):\n    return softmax(z)\n")
    verdict = _verdicts("mlp", module, path)["softmax"]
    lines = verdict.detail.splitlines()
    assert verdict.status == "ERROR" and len(lines) <= 8, verdict.detail
    assert "more times]" in verdict.detail and lines[-1].strip().startswith("RecursionError")


def test_any_file_name_and_any_ordinary_python(tmp_path):
    path = tmp_path / "my answers.txt"
    path.write_text("from __future__ import annotations\nimport dataclasses\n"
                    "from tfguide.chapters.cnn import *\n\n"
                    "@dataclasses.dataclass\nclass Window:\n    size: int = 2\n")
    verdicts = exercises.check("cnn", path, in_process=True)
    assert all(v.status == "PASS" for v in verdicts), exercises.report(verdicts)


@pytest.mark.parametrize("data", [b"\x00\x01binary\xff" * 50, b"a = 1\x00\n"])
def test_binary_or_compiled_files_are_refused_in_one_line(tmp_path, data):
    path = tmp_path / "mlp.pyc"
    path.write_bytes(data)
    with pytest.raises(exercises.LearnerError, match="is not Python source"):
        exercises.load_learner_file(path, "mlp")


def test_a_pass_needs_its_own_numbers_to_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises.Proof, "passed", property(lambda self: True))  # a cheat
    path, module = _learner(tmp_path, "def softmax(z):\n    return z * 0\n")
    assert _verdicts("mlp", module, path)["softmax"].status == "FAIL"
    told = exercises.Verdict("softmax", "PASS", "max error inf <= 1e-12", math.inf, 1e-12)
    assert exercises.confirmed(told).status == "FAIL"  # what the command checks once more


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1e9", "nan"])
def test_bad_timeouts_are_one_line(value):
    result = run_tfguide("check", "cnn", "--timeout", value)
    assert result.returncode == 2 and "--timeout must be" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- The scaffold is written at once, never through a link -------------------------------------
def test_exercise_never_writes_through_a_link(tmp_path):
    name = WITH_EXERCISES[0]
    out, outside, precious = tmp_path / "e", tmp_path / "OUTSIDE.py", tmp_path / "precious.txt"
    out.mkdir()
    (out / f"{name}.py").symlink_to(outside)  # dangling
    with pytest.raises(FileExistsError, match="is a link"):
        exercises.write_scaffold(name, out)
    assert not outside.exists()
    precious.write_text("precious")
    (out / f"{name}.py").unlink()
    (out / f"{name}.py").symlink_to(precious)
    path = exercises.write_scaffold(name, out, force=True)  # replaces the link itself
    assert precious.read_text() == "precious"
    assert not path.is_symlink() and "NotImplementedError" in path.read_text()


def _small_files(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_exercise_on_a_full_disk_leaves_nothing_behind(tmp_path):
    name = WITH_EXERCISES[0]
    full = subprocess.run([sys.executable, "-m", "tfguide", "exercise", name, "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          preexec_fn=_small_files(512), env={**os.environ,
                                                             "PYTHONDONTWRITEBYTECODE": "1"})
    assert full.returncode == 1 and len(full.stderr.strip().splitlines()) == 1, full.stderr
    assert f"cannot write {tmp_path / (name + '.py')}" in full.stderr
    assert list(tmp_path.iterdir()) == []  # no 0-byte or half file, no temporary file
    again = run_tfguide("exercise", name, "--out", str(tmp_path))
    assert again.returncode == 0 and (tmp_path / f"{name}.py").stat().st_size > 512
