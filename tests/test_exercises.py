"""Exercises: the scaffold is made from each chapter, and the checker proves a learner's code.

For every chapter that declares exercises: its own functions pass; the fresh
scaffold is all TODO (exit 1); every declared typical mistake fails with its
own hint. A learner's syntax error or exception is reported with their file
and line, never a tfguide traceback.
"""
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
    for exercise in exercises.declared(name):
        proof = exercise.prove(getattr(module, exercise.function))
        assert proof.passed, f"{name}.{exercise.function}: {proof}"
        assert exercise.mistakes, f"{name}.{exercise.function} names no typical mistake"


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_a_fresh_scaffold_is_todo_everywhere(name, tmp_path):
    path = exercises.write_scaffold(name, tmp_path)
    verdicts = exercises.check(name, path)
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
    verdicts = {v.function: v.status for v in exercises.check(name, path)}
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
