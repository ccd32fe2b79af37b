"""The command line every chapter shares: parse, validate, run, report.

`parse` turns arguments into a `Config` and rejects bad values before any
TensorFlow is imported; `main` runs a chapter's `run(cfg)` and prints the
summary. A usage error exits with status 2 and one line on stderr that names
the flag, the value received and what is allowed.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Callable, Sequence

from tfguide import chapters, config
from tfguide.config import Config


class UsageError(Exception):
    """A value on the command line (or in its environment) that cannot be used."""


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a `UsageError`, not usage text and exit."""

    def error(self, message: str):
        raise UsageError(message)


def _bad(flag: str, value: object, allowed: str) -> UsageError:
    return UsageError(f"{flag} must be {allowed}. Received: {flag}={value}")


def _check(flag: str, text: str, check: Callable[[str], object]):
    try:
        return check(text)
    except (TypeError, ValueError) as err:
        allowed = config.describe(check)
        if allowed == "a valid value" and err.args:
            allowed = str(err.args[0])
        raise _bad(flag, text, allowed) from None


def _choice(flag: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise _bad(flag, value, "one of " + ", ".join(allowed))
    return value


def build_parser(chapter: chapters.Chapter, prog: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser for `chapter`: the shared flags plus its own."""
    p = _OneLineParser(
        prog=prog or f"python -m {chapter.module}",
        description=f"{chapter.title}: {chapter.summary}.",
        allow_abbrev=False,
    )
    add = p.add_argument
    add("--quick", action="store_true", help="a small, fast run (seconds on a laptop CPU)")
    add("--epochs", metavar="N", help=f"training epochs (default {chapter.epochs}, "
        f"--quick {chapter.quick_epochs})")
    add("--batch-size", metavar="N", help=f"batch size (default {chapter.batch_size})")
    add("--learning-rate", metavar="X", help=f"learning rate (default {chapter.learning_rate:g})")
    add("--seed", metavar="N", default="42", help="random seed (default 42)")
    add("--data", metavar="NAME", help="data set: " + ", ".join(chapter.data)
        + f" (default {chapter.data[0]}, --quick {chapter.quick_data})")
    add("--data-dir", metavar="DIR", help="folder with data files (.npz or MNIST-style IDX .gz); "
        "default $TFGUIDE_DATA_DIR")
    add("--offline", action="store_true", help="never download; use local files or the stand-in")
    add("--out", metavar="DIR", default="runs", help="where runs are written (default runs/)")
    add("--device", default="auto", metavar="|".join(config.DEVICES), help="where to compute")
    add("--precision", default="float32", metavar="|".join(config.PRECISIONS),
        help="float32, or mixed (float16 compute, float32 weights and outputs)")
    add("--jit", default="auto", metavar="|".join(config.JIT_MODES),
        help="XLA compilation (auto: on for GPU, off for CPU)")
    add("--strategy", default="auto", metavar="|".join(config.STRATEGIES),
        help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    add("--deterministic", action="store_true", help="make TensorFlow ops deterministic")
    add("--tensorboard", action="store_true", help="write TensorBoard logs into the run folder")
    add("--show", action="store_true", help="open the figures in windows at the end")
    add("--text", action="store_true", help="print the chapter text and exit")
    add("-v", "--verbose", action="store_true", help="let TensorFlow's own logs through")
    for option in chapter.options:
        add(option.flag, metavar="VALUE", help=f"{option.help} (default {option.default})")
    return p


def _existing_dir(flag: str, text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise UsageError(f"{flag} must be an existing folder. Received: {flag}={text}")
    return path


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    hint = ('set TF_CONFIG to JSON like {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}} (see README, "Several machines")')
    if not raw:
        raise UsageError(f"--strategy multiworker needs the TF_CONFIG environment variable: {hint}")
    try:
        spec = json.loads(raw)
        workers = spec["cluster"]["worker"]
        index = int(spec["task"]["index"])
        assert spec["task"]["type"] in ("worker", "chief") and 0 <= index < len(workers)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UsageError(f"TF_CONFIG is not a valid cluster description: {hint}. "
                         f"Received: TF_CONFIG={raw}") from None


def parse(name: str, argv: Sequence[str] | None = None) -> Config:
    """Parse and validate a chapter's command line into a `Config`.

    Raises:
        UsageError: one line naming the bad flag, the value and what is allowed.
    """
    try:
        chapter = chapters.get(name)
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    args = build_parser(chapter).parse_args(list(sys.argv[1:] if argv is None else argv))
    quick = args.quick

    def pick(text, check, flag, default):
        return default if text is None else _check(flag, text, check)

    epochs = pick(args.epochs, config.positive_int, "--epochs",
                  chapter.quick_epochs if quick else chapter.epochs)
    batch_size = pick(args.batch_size, config.positive_int, "--batch-size", chapter.batch_size)
    learning_rate = pick(args.learning_rate, config.positive_float, "--learning-rate",
                         chapter.learning_rate)
    seed = _check("--seed", args.seed, config.non_negative_int)
    data = _choice("--data", args.data or (chapter.quick_data if quick else chapter.data[0]),
                   chapter.data)
    data_dir = None
    if args.data_dir is not None:
        data_dir = _existing_dir("--data-dir", args.data_dir)
    elif os.environ.get("TFGUIDE_DATA_DIR"):
        data_dir = _existing_dir("TFGUIDE_DATA_DIR", os.environ["TFGUIDE_DATA_DIR"])
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a folder (it is created if missing), not a file. "
                         f"Received: --out={args.out}")
    device = _choice("--device", args.device, config.DEVICES)
    precision = _choice("--precision", args.precision, config.PRECISIONS)
    jit = _choice("--jit", args.jit, config.JIT_MODES)
    strategy = _choice("--strategy", args.strategy, config.STRATEGIES)
    if strategy == "multiworker":
        if not chapter.multiworker:
            able = ", ".join(c.name for c in chapters.CHAPTERS if c.multiworker) or "none yet"
            raise UsageError(f"--strategy multiworker is not supported by {name}, which does not "
                             f"train through Experiment.fit (chapters that do: {able}). "
                             f"Received: --strategy=multiworker")
        _check_tf_config()
    if args.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard needs the tensorboard package: "
                         "pip install -e \".[tensorboard]\" (or pip install tensorboard)")
    options = {}
    for option in chapter.options:
        text = getattr(args, option.dest)
        if text is None:
            value = option.quick_default if quick and option.quick_default is not None \
                else option.default
        else:
            value = _check(option.flag, text, option.type)
        options[option.dest] = value
    return Config(
        chapter=name, quick=quick, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, data=data, data_dir=data_dir,
        offline=args.offline, out=out, device=device, precision=precision, jit=jit,
        strategy=strategy, deterministic=args.deterministic, tensorboard=args.tensorboard,
        show=args.show, verbose=args.verbose, options=types.MappingProxyType(options),
    )


def _chapter_name(module_name: str) -> str:
    if module_name == "__main__":  # `python -m tfguide.chapters.<name>`
        module_name = sys.modules["__main__"].__spec__.name
    return module_name.rsplit(".", 1)[-1]


def fail(message: str, status: int) -> None:
    """Print one `tfguide: error:` line on stderr and exit with `status`."""
    print(f"tfguide: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def main(module_name: str, run: Callable[[Config], dict], argv: Sequence[str] | None = None):
    """Run a chapter from the command line: parse, run, print the summary."""
    from tfguide import resources

    name = _chapter_name(module_name)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse(name, argv)
    except UsageError as err:
        fail(str(err), 2)
    if "--text" in argv:
        try:
            print(resources.chapter_text(name))
        except FileNotFoundError as err:
            fail(str(err), 1)
        return

    from tfguide import datasets, results, runtime  # imports TensorFlow

    cfg = dataclasses.replace(cfg, run_dir=results.new_run_dir(cfg.out, name))
    try:
        run(cfg)
    except (runtime.DeviceError, UsageError) as err:
        fail(str(err), 2)
    except datasets.DataError as err:
        fail(str(err), 1)
    except KeyboardInterrupt:
        print(f"\nInterrupted. What was written so far is in {cfg.run_dir}", file=sys.stderr)
        raise SystemExit(130) from None
    print(results.summary(cfg.run_dir))
    if cfg.show:
        results.show_figures(cfg.run_dir)
