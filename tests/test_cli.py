"""The shared command line: every bad value exits 2 with one clear line."""
import subprocess
import sys

import pytest

from tfguide import chapters, cli
from tfguide.__main__ import list_chapters


def run_cmd(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


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
    ("--seed", "-1", "integer >= 0"),
    ("--seed", "x", "integer >= 0"),
    ("--data", "imagenet", "one of"),
    ("--device", "tpu", "one of auto, cpu, gpu"),
    ("--precision", "half", "one of float32, mixed"),
    ("--jit", "maybe", "one of auto, on, off"),
    ("--strategy", "ring", "one of auto, one, mirrored, multiworker"),
    ("--data-dir", "/no/such/folder", "existing folder"),
]


@pytest.mark.parametrize("flag,value,allowed", BAD_VALUES)
def test_bad_value_names_flag_value_and_what_is_allowed(flag, value, allowed):
    with pytest.raises(cli.UsageError) as err:
        cli.parse("gradient_descent", [flag, value])
    message = str(err.value)
    assert flag in message and value in message and allowed in message
    assert "\n" not in message


def test_out_that_is_a_file_is_rejected(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(cli.UsageError, match="--out must be a folder"):
        cli.parse("gradient_descent", ["--out", str(target)])


@pytest.mark.parametrize("argv,needle", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--epochs"], "expected one argument"),
])
def test_unknown_or_incomplete_flags(argv, needle):
    with pytest.raises(cli.UsageError, match=needle):
        cli.parse("gradient_descent", argv)


@pytest.mark.parametrize("name", [c.name for c in chapters.CHAPTERS])
def test_every_chapter_accepts_multiworker_given_a_valid_tf_config(monkeypatch, name):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(cli.UsageError, match="needs the TF_CONFIG"):
        cli.parse(name, ["--strategy", "multiworker"])
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(cli.UsageError, match="not a valid cluster"):
        cli.parse(name, ["--strategy", "multiworker"])
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, '
                                    '"task": {"type": "worker", "index": 1}}')
    assert cli.parse(name, ["--strategy", "multiworker"]).strategy == "multiworker"


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path))
    assert cli.parse("gradient_descent", []).data_dir == tmp_path
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(cli.UsageError, match="TFGUIDE_DATA_DIR must be an existing folder"):
        cli.parse("gradient_descent", [])


def test_quick_and_full_defaults_come_from_the_registry():
    chapter = chapters.get("gradient_descent")
    full, quick = cli.parse(chapter.name, []), cli.parse(chapter.name, ["--quick"])
    assert (full.epochs, quick.epochs) == (chapter.epochs, chapter.quick_epochs)
    assert full.data == chapter.data[0] and quick.data == chapter.quick_data
    assert cli.parse(chapter.name, ["--epochs", "7", "--quick"]).epochs == 7


def test_every_chapter_parses_its_own_defaults():
    for chapter in chapters.CHAPTERS:
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
    names = [c.name for c in chapters.CHAPTERS]
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
        cfg.run_dir.mkdir(parents=True)
        (cfg.run_dir / "partial.txt").write_text("kept")
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        cli.main("tfguide.chapters.gradient_descent", interrupted_run,
                 ["--quick", "--out", str(tmp_path)])
    assert stop.value.code == 130
    err = capsys.readouterr().err
    assert "Interrupted" in err and "Traceback" not in err
    assert len(list(tmp_path.rglob("partial.txt"))) == 1
