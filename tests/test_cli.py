"""The shared command line: every bad value exits 2 with one clear line."""
import errno
import os
import json
import signal
import socket
import time
import subprocess
import sys

import pytest

from tfguide import cli, console, registry
from tfguide.__main__ import list_chapters


def run_cmd(*args, env=None, env_extra=None, timeout=120, **popen):
    if env_extra is not None:
        env = {**os.environ, **(env or {}), **env_extra}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **popen)


BAD_VALUES = [
    ("--epochs", "0", "positive integer"),
    ("--epochs", "-3", "positive integer"),
    ("--epochs", "ten", "positive integer"),
    ("--epochs", "1.5", "positive integer"),
    ("--batch-size", "0", "positive integer"),
    ("--batch-size", "-1", "positive integer"),
    ("--learning-rate", "0", "finite number > 0"),
    ("--learning-rate", "-0.1", "finite number > 0"),
    ("--learning-rate", "nan", "finite number > 0"),
    ("--learning-rate", "inf", "finite number > 0"),
    ("--learning-rate", "fast", "finite number > 0"),
    ("--seed", "-1", "integer from 0 to 4294967295"),
    ("--seed", "x", "integer from 0 to 4294967295"),
    ("--seed", str(2**32), "integer from 0 to 4294967295"),
    ("--data", "", "one of"),
    ("--data-dir", "", "existing folder"),
    ("--out", "", "a folder name"),
    ("--data", "imagenet", "one of"),
    ("--device", "tpu", "one of auto, cpu, gpu"),
    ("--precision", "half", "one of float32, mixed"),
    ("--jit", "maybe", "one of auto, on, off"),
    ("--strategy", "ring", "one of auto, one, mirrored, multiworker"),
    ("--data-dir", "/no/such/folder", "existing folder"),
]


@pytest.mark.parametrize("flag,value,allowed", BAD_VALUES)
def test_bad_value_names_flag_value_and_what_is_allowed(flag, value, allowed):
    with pytest.raises(console.UsageError) as err:
        cli.parse("gradient_descent", [flag, value])
    message = str(err.value)
    assert flag in message and value in message and allowed in message
    assert "\n" not in message


def test_out_that_is_a_file_is_rejected(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(console.UsageError, match="--out must be a folder"):
        cli.parse("gradient_descent", ["--out", str(target)])


@pytest.mark.parametrize("argv,needle", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--epochs"], "expected one argument"),
])
def test_unknown_or_incomplete_flags(argv, needle):
    with pytest.raises(console.UsageError, match=needle):
        cli.parse("gradient_descent", argv)


@pytest.mark.parametrize("name", [c.name for c in registry.CHAPTERS])
def test_every_chapter_accepts_multiworker_given_a_valid_tf_config(monkeypatch, name):
    if ("--strategy", "multiworker") in [r[:2] for r in registry.get(name).refuses]:
        with pytest.raises(console.UsageError, match="trains nothing"):  # deploy trains nothing
            cli.parse(name, ["--strategy", "multiworker"])
        return
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(console.UsageError, match="needs the TF_CONFIG"):
        cli.parse(name, ["--strategy", "multiworker"])
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(console.UsageError, match="not a valid cluster"):
        cli.parse(name, ["--strategy", "multiworker"])
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, '
                                    '"task": {"type": "worker", "index": 1}}')
    assert cli.parse(name, ["--strategy", "multiworker"]).strategy == "multiworker"


def test_data_dir_from_environment_is_checked_only_where_data_is_read(monkeypatch, tmp_path):
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path))
    assert cli.parse("gradient_descent", []).data_dir is None, "the loaders read the variable"
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path / "missing"))  # stale: harmless here
    assert cli.parse("gradient_descent", []).data_dir is None
    result = run_cmd("-m", "tfguide", "text", "gradient_descent",
                     env_extra={"TFGUIDE_DATA_DIR": str(tmp_path / "missing")})
    assert result.returncode == 0


def test_a_data_dir_variable_naming_a_file_is_named_as_the_variable(monkeypatch, tmp_path):
    from tfguide import datasets

    (tmp_path / "one.png").write_bytes(b"not a folder")
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path / "one.png"))
    cfg = cli.parse("cnn", ["--quick", "--data", "mnist", "--out", str(tmp_path / "runs")])
    assert cfg.data_dir is None, "not recorded as a --data-dir the user never gave"
    with pytest.raises(datasets.DataError) as err:
        datasets.load(cfg.data, cfg.data_dir, offline=True)
    message = str(err.value)
    assert message.startswith(f"TFGUIDE_DATA_DIR={tmp_path / 'one.png'} is a file")
    assert "--data-dir" not in message and "\n" not in message


def test_a_data_dir_variable_may_start_with_a_tilde(monkeypatch, tmp_path):
    from tfguide import datasets

    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TFGUIDE_DATA_DIR", "~/data")  # quoted, so the shell left it
    assert datasets.data_folder(None) == tmp_path / "data"


def test_quick_and_full_defaults_come_from_the_registry():
    chapter = registry.get("gradient_descent")
    full, quick = cli.parse(chapter.name, []), cli.parse(chapter.name, ["--quick"])
    assert (full.epochs, quick.epochs) == (chapter.epochs, chapter.quick_epochs)
    assert full.data == chapter.data[0] and quick.data == chapter.quick_data
    assert cli.parse(chapter.name, ["--epochs", "7", "--quick"]).epochs == 7


def test_every_chapter_parses_its_own_defaults():
    for chapter in registry.CHAPTERS:
        for flags in ([], ["--quick"]):
            cfg = cli.parse(chapter.name, flags)
            assert cfg.data in chapter.data
            assert set(cfg.options) == {o.dest for o in chapter.options}


def test_listing_does_not_import_tensorflow():
    result = run_cmd("-X", "importtime", "-m", "tfguide")
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("tensorflow", "keras")}
    names = [c.name for c in registry.CHAPTERS]
    positions = [result.stdout.index(f" {n} ") for n in names]
    assert positions == sorted(positions), "chapters are listed in reading order"
    assert result.stdout.strip() == list_chapters().strip()


@pytest.mark.parametrize("args,needle", [
    (["run", "gradient_descent", "--epochs", "0"], "--epochs must be a positive integer"),
    (["run", "gradient_descent", "--precision", "half"], "Received: --precision=half"),
    (["run", "nosuch"], "Unknown chapter 'nosuch'"),
    (["run"], "a chapter name is needed"),
    (["frobnicate"], "unknown command"),
])
def test_bad_command_lines_exit_2_with_one_line_before_tensorflow(args, needle):
    result = run_cmd("-X", "importtime", "-m", "tfguide", *args)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("import time:")]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("tfguide: error:")
    assert "tensorflow" not in result.stderr, "the typo is answered before TensorFlow loads"


@pytest.mark.parametrize("entry", [["-m", "tfguide.chapters.cnn"], ["-m", "tfguide", "run", "cnn"],
                                   ["-X", "importtime", "-m", "tfguide.chapters.cnn"]])
def test_both_entry_points_reject_a_bad_flag_before_tensorflow(entry):
    result = run_cmd("-X", "importtime", *entry, "--batch-size", "-4")
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("import time:")]
    assert lines == [
        "tfguide: error: --batch-size must be a positive integer. Received: --batch-size=-4"]
    imported = {ln.split("|")[-1].strip().split(".")[0] for ln in result.stderr.splitlines()
                if ln.startswith("import time:")}
    assert not imported & {"tensorflow", "keras"}, "the typo is answered before TensorFlow loads"


def test_chapter_module_help_and_text_need_no_tensorflow():
    for flag, needle in (("--help", "--batch-size N"), ("--text", "## The idea")):
        result = run_cmd("-X", "importtime", "-m", "tfguide.chapters.cnn", flag)
        assert result.returncode == 0 and needle in result.stdout
        assert "tensorflow" not in result.stderr


@pytest.mark.parametrize("orig_argv,name", [
    (["python", "-m", "tfguide.chapters.cnn", "--quick"], "cnn"),
    (["python", "-X", "importtime", "-u", "-mtfguide.chapters.rnn"], "rnn"),
    (["python", "-m", "tfguide", "run", "cnn"], None),
    (["python", "-m", "tfguide.chapters.nosuch"], None),
    (["python", "script.py", "-m", "tfguide.chapters.cnn"], None),
    (["python", "-c", "pass", "-m", "tfguide.chapters.cnn"], None),
])
def test_module_command_is_recognised_only_for_a_chapter_module(orig_argv, name):
    assert cli.module_command(orig_argv) == name


def test_text_command_prints_the_chapter():
    result = run_cmd("-m", "tfguide", "text", "gradient_descent")
    assert result.returncode == 0 and "## What changed from the original" in result.stdout


def test_gpu_request_without_gpu_fails_with_one_line(tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    result = run_cmd("-m", "tfguide", "run", "gradient_descent", "--quick", "--device", "gpu",
                     "--out", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "sees no GPU" in lines[0] and ".[gpu]" in lines[0]


def test_keyboard_interrupt_stops_cleanly(tmp_path, capsys):
    def interrupted_run(cfg):
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        (cfg.run_dir / "partial.txt").write_text("kept")
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        cli.main("tfguide.chapters.gradient_descent", interrupted_run,
                 ["--quick", "--out", str(tmp_path)])
    assert stop.value.code == 130
    err = capsys.readouterr().err
    assert "Interrupted" in err and "Traceback" not in err
    assert len(list(tmp_path.rglob("partial.txt"))) == 1


# --- Hardening: every entry point answers in one line (issue classes 1, 2, 5, 7) ---------------
def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tfguide: error:"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("make_out,needle", [
    (lambda tmp: tmp / "afile" / "runs", "is a file, not a folder"),
    (lambda tmp: tmp / "afile", "is a file, not a folder"),
    (lambda tmp: tmp / ("x" * 300), "longer than"),
])
@pytest.mark.parametrize("command", [["-m", "tfguide.chapters.backprop"],
                                     ["-m", "tfguide", "run", "backprop"],
                                     ["-m", "tfguide", "bench"],
                                     ["-m", "tfguide", "book"],
                                     ["-m", "tfguide", "notebook", "cnn"]])
def test_impossible_out_is_one_line_before_tensorflow(tmp_path, make_out, needle, command):
    (tmp_path / "afile").write_text("not a folder")
    result = run_cmd("-X", "importtime", *command, "--out", str(make_out(tmp_path)))
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("import time:")]
    assert len(lines) == 1 and "--out" in lines[0] and needle in lines[0], result.stderr[-500:]
    assert "tensorflow" not in result.stderr


def test_unwritable_out_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a non-root user would see
    with pytest.raises(console.UsageError, match="is not writable"):
        cli.parse("backprop", ["--out", str(tmp_path / "runs")])


def test_out_where_no_folder_can_be_made_is_one_line(tmp_path):
    result = run_cmd("-m", "tfguide", "run", "backprop", "--quick", "--out", "/proc/tfguide-runs")
    assert result.returncode == 2 and "--out" in one_error_line(result)


def test_batch_larger_than_the_training_set_is_a_usage_error(tmp_path):
    result = run_cmd("-m", "tfguide.chapters.gradient_descent", "--quick", "--batch-size",
                     "100000", "--out", str(tmp_path))
    assert result.returncode == 2
    line = one_error_line(result)
    assert "--batch-size must be at most" in line and "Received: --batch-size=100000" in line
    (record,) = tmp_path.rglob("results.json")
    assert json.loads(record.read_text())["status"] == "failed", "the run folder says so"


@pytest.mark.parametrize("entry", [["-m", "tfguide.chapters.cnn"], ["-m", "tfguide", "run", "cnn"],
                                   ["-m", "tfguide", "bench"]])
def test_another_keras_backend_is_one_line_with_the_fix(entry):
    result = run_cmd(*entry, env_extra={"KERAS_BACKEND": "jax"})
    assert result.returncode == 1
    assert "unset KERAS_BACKEND" in one_error_line(result)


@pytest.mark.parametrize("tf_config,needle", [
    ('{"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}',
     "list of"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}',
     "not a task of the cluster"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     "host:port"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
     "share one host:port"),
    ('[1, 2]', '"cluster" object'),
])
def test_tf_config_that_tensorflow_would_reject_is_refused_first(monkeypatch, tf_config, needle):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(console.UsageError, match="TF_CONFIG is not a valid cluster") as err:
        cli.parse("mlp", ["--strategy", "multiworker"])
    assert needle in str(err.value)


def multiworker_env(port: int, peer_port: int, timeout: str = "3"):
    return {"TF_CONFIG": json.dumps({"cluster": {"worker": [f"localhost:{port}",
                                                            f"localhost:{peer_port}"]},
                                     "task": {"type": "worker", "index": 0}}),
            "TFGUIDE_CONNECT_TIMEOUT": timeout}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_a_worker_whose_peer_never_starts_says_so_and_times_out(tmp_path):
    result = run_cmd("-m", "tfguide.chapters.mlp", "--quick", "--strategy", "multiworker",
                     "--out", str(tmp_path), env_extra=multiworker_env(free_port(), free_port()))
    assert result.returncode == 1
    assert "Waiting for 1 other worker(s) to connect" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tfguide: error:") and "did not connect within 3 s" in last
    assert "Traceback" not in result.stderr


def test_a_worker_waiting_for_its_peer_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tfguide.chapters.mlp", "--quick",
                             "--strategy", "multiworker", "--out", str(tmp_path)],
                            env={**os.environ, **multiworker_env(free_port(), free_port(), "60")},
                            stderr=subprocess.PIPE, text=True)
    err = ""
    for line in proc.stderr:  # wait until it says what it waits for
        err += line
        if "Waiting for" in line:
            break
    proc.send_signal(signal.SIGINT)
    err += proc.communicate(timeout=30)[1]
    assert proc.returncode == 130 and "Interrupted" in err and "Traceback" not in err
    (record,) = tmp_path.rglob("results.json")
    assert json.loads(record.read_text())["status"] == "interrupted"


def test_a_busy_port_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cmd("-m", "tfguide.chapters.mlp", "--quick", "--strategy", "multiworker",
                         "--out", str(tmp_path), env_extra=multiworker_env(port, free_port()))
    assert result.returncode == 1
    assert f"port {port}" in result.stderr.strip().splitlines()[-1]


def test_sigterm_keeps_a_described_run_folder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tfguide.chapters.mlp", "--quick",
                             "--strategy", "multiworker", "--out", str(tmp_path)],
                            env={**os.environ, **multiworker_env(free_port(), free_port(), "60")},
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "Waiting for" in line:
            break
    proc.terminate()
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 143 and "Terminated" in err and "Traceback" not in err
    (record,) = tmp_path.rglob("results.json")
    assert json.loads(record.read_text())["status"] == "terminated"


def test_ctrl_c_while_tensorflow_loads_is_one_line():
    proc = subprocess.Popen([sys.executable, "-m", "tfguide.chapters.cnn", "--quick"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the flags are checked; TensorFlow is loading
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "Interrupted" in err


@pytest.mark.parametrize("command", [["text", "cnn"], ["list"], ["help"]])
def test_output_into_a_closed_pipe_ends_quietly(command):
    reader = subprocess.Popen([sys.executable, "-m", "tfguide", *command],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # like `| head -0`: nobody reads
    _, err = reader.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err and reader.returncode == 0


def test_bench_on_a_missing_gpu_is_one_line(tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    result = run_cmd("-m", "tfguide", "bench", "--device", "gpu", "--out", str(tmp_path))
    assert result.returncode == 2 and "sees no GPU" in one_error_line(result)


def test_an_error_line_escapes_control_characters(capsys):
    with pytest.raises(SystemExit):
        console.fail("no such file: evil\nname\x1b[31m", 2)
    err = capsys.readouterr().err
    assert err == "tfguide: error: no such file: evil\\nname\\x1b[31m\n"


def test_a_chapter_may_take_data_the_learner_brings(tmp_path):
    brings = next(c for c in registry.CHAPTERS if c.brought_data)
    fixed = next(c for c in registry.CHAPTERS if not c.brought_data and c.data[0] == "mnist")
    assert cli.parse(brings.name, ["--data", "sonnets", "--data-dir", str(tmp_path)]).data == \
        "sonnets"
    for argv in (["--data", "sonnets"], ["--data", "../up", "--data-dir", str(tmp_path)]):
        with pytest.raises(console.UsageError,
                           match=r"with --data-dir DIR \(or TFGUIDE_DATA_DIR=DIR\) holding"):
            cli.parse(brings.name, argv)
    with pytest.raises(console.UsageError, match="--data must be one of mnist"):
        cli.parse(fixed.name, ["--data", "sonnets", "--data-dir", str(tmp_path)])


# --- A full disk: one line, exit 1, whoever wrote (issue 23, class 4) -------------------------
def no_space(filename=None):
    return OSError(errno.ENOSPC, "No space left on device", filename)


def tf_no_space():
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, "/x/variables/variables_temp/part-0.data"
                                            "; No space left on device [Op:SaveV2]")


def chained_no_space():  # Pillow and Matplotlib raise while handling the OSError
    try:
        raise no_space()
    except OSError:
        try:
            raise ValueError("the figure could not be saved")
        except ValueError as err:
            return err


@pytest.mark.parametrize("make_error,named", [
    (lambda run_dir: no_space(str(run_dir / "history.csv")), "history.csv"),
    (lambda run_dir: tf_no_space(), "could not write in "),
    (lambda run_dir: chained_no_space(), "could not write in "),
    (lambda run_dir: OSError(errno.EDQUOT, "Disk quota exceeded"), "the disk quota is used up"),
])
def test_a_full_disk_is_one_line_and_exit_1(tmp_path, capsys, make_error, named):
    def full(cfg):
        raise make_error(cfg.run_dir)

    with pytest.raises(SystemExit) as stop:
        cli.main("tfguide.chapters.gradient_descent", full, ["--quick", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("tfguide: error: could not write") and named in err
    assert "free some space" in err and "bytes free there" in err


def test_a_run_folder_that_cannot_be_made_on_a_full_disk_exits_1(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.parent.name == "gradient_descent":
            raise no_space(str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(SystemExit) as stop:
        cli.main("tfguide.chapters.gradient_descent", lambda cfg: {}, ["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "cannot create a run folder" in err and "disk is full" in err


def test_other_errors_are_not_taken_for_a_full_disk(tmp_path):
    def broken(cfg):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        cli.main("tfguide.chapters.gradient_descent", broken, ["--out", str(tmp_path)])


def test_the_readme_says_how_to_run_tfguide_safe_from_the_current_folder():
    readme = (registry.__file__.rsplit("/tfguide/", 1)[0] + "/README.md")
    start = open(readme, encoding="utf-8").read().split("## Start here", 1)[1].split("\n## ")[0]
    assert "python -P -m" in start and "`tfguide run" in start, "see issue 23, defect 27"
