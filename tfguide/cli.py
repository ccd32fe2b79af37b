"""Running a chapter from its command line: parse, validate, run, report.

`parse` turns arguments into a `Config` and rejects bad values before any
TensorFlow is imported; `run_chapter` is the one recipe for running a chapter
(parse, run folder, `run(cfg)`), used by the command line, the notebooks and
the tests; `main` adds the closing summary and one-line errors. A usage error
exits with status 2 and one line on stderr that names the flag, the value
received and what is allowed.

`python -m tfguide.chapters.NAME` checks its flags through
`check_module_command_line` while the `tfguide.chapters` package loads, before
the chapter module imports TensorFlow, so a typo is answered at once. The
errors and the one-line output are `tfguide.console`'s; the value checks are
`tfguide.config`'s.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import re
import signal
import sys
import types
from pathlib import Path
from typing import Callable, Sequence

from tfguide import config, paths, registry, runs
from tfguide.config import (Config, check, check_environment, cluster_addresses,
                            existing_folder, output_folder)
from tfguide.console import (Parser, SetupError, Terminated, UsageError, bad_value, choice,
                             fail, say)


def build_parser(chapter: registry.Chapter, prog: str | None = None) -> Parser:
    """Return the argument parser for `chapter`: the shared flags plus its own."""
    p = Parser(prog or f"python -m {chapter.module}", f"{chapter.title}: {chapter.summary}.")
    add = p.add_argument
    add("--quick", action="store_true", help="a small, fast run (seconds on a laptop CPU)")
    add("--epochs", metavar="N", help=f"training epochs (default {chapter.epochs}, "
        f"--quick {chapter.quick_epochs})")
    add("--batch-size", metavar="N", help=f"batch size (default {chapter.batch_size})")
    add("--learning-rate", metavar="X", help=f"learning rate (default {chapter.learning_rate:g})")
    add("--seed", metavar="N", default="42", help="random seed (default 42)")
    add("--data", metavar="NAME", help="data set: " + ", ".join(chapter.data)
        + (f", or your own NAME with --data-dir DIR holding {chapter.brought_data}"
           if chapter.brought_data else "")
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
    for option in chapter.options:  # a default of None: the help says what happens
        default = option.default
        default = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = "" if default is None else f" (default {default})"
        add(option.flag, metavar="VALUE", help=option.help + shown)
    return p


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    hint = ('set TF_CONFIG to JSON like {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}} (see README, "Several machines")')
    if not raw:
        raise UsageError(f"--strategy multiworker needs the TF_CONFIG environment variable: {hint}")
    try:
        cluster_addresses(raw)
    except ValueError as err:
        raise UsageError(f"TF_CONFIG is not a valid cluster description ({err}): {hint}. "
                         f"Received: TF_CONFIG={raw}") from None


def _data_dir(args: argparse.Namespace) -> Path | None:
    """The --data-dir folder; $TFGUIDE_DATA_DIR is the loaders' (`datasets.data_folder`) to read.

    The variable is checked, and named, only by a run that reads data from a
    folder, so a stale one does not stop a chapter whose data are shipped.
    """
    if args.data_dir is not None:
        return existing_folder("--data-dir", args.data_dir)
    return None


def _data_name(chapter: registry.Chapter, args: argparse.Namespace) -> str:
    """Return the data set to use: a known one, or one the learner brings in --data-dir."""
    if args.data is None:
        return chapter.quick_data if args.quick else chapter.data[0]
    if args.data in chapter.data or not chapter.brought_data:
        return choice("--data", args.data, chapter.data)
    folder = args.data_dir is not None or os.environ.get(config.DATA_DIR_VARIABLE)
    if not folder or not re.fullmatch(r"\w[\w.-]*", args.data):
        raise bad_value("--data", args.data, f"one of {', '.join(chapter.data)}, or a name NAME "
                        f"(letters, digits, . _ -) with --data-dir DIR (or "
                        f"{config.DATA_DIR_VARIABLE}=DIR) holding {chapter.brought_data}")
    return args.data


def parse(name: str, argv: Sequence[str] | None = None) -> Config:
    """Parse and validate a chapter's command line into a `Config`.

    Raises:
        UsageError: one line naming the bad flag, the value and what is allowed.
    """
    try:
        chapter = registry.get(name)
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    args = build_parser(chapter).parse_args(list(sys.argv[1:] if argv is None else argv))
    quick = args.quick

    def pick(text, check_fn, flag, default):
        return default if text is None else check(flag, text, check_fn)

    epochs = pick(args.epochs, config.positive_int, "--epochs",
                  chapter.quick_epochs if quick else chapter.epochs)
    batch_size = pick(args.batch_size, config.positive_int, "--batch-size",
                      chapter.quick_batch_size if quick and chapter.quick_batch_size
                      else chapter.batch_size)
    learning_rate = pick(args.learning_rate, config.positive_float, "--learning-rate",
                         chapter.learning_rate)
    seed = check("--seed", args.seed, config.seed)
    data = _data_name(chapter, args)
    for flag, value, why in chapter.refuses:
        if getattr(args, flag.lstrip("-").replace("-", "_")) == value:
            raise UsageError(f"{why}. Received: {flag}={value}")
    strategy = choice("--strategy", args.strategy, config.STRATEGIES)
    if strategy == "multiworker":
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
            value = check(option.flag, text, option.type)
        options[option.dest] = value
    return Config(
        chapter=name, quick=quick, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, data=data, data_dir=_data_dir(args),
        offline=args.offline, out=output_folder("--out", args.out),
        device=choice("--device", args.device, config.DEVICES),
        precision=choice("--precision", args.precision, config.PRECISIONS),
        jit=choice("--jit", args.jit, config.JIT_MODES), strategy=strategy,
        deterministic=args.deterministic, tensorboard=args.tensorboard, show=args.show,
        verbose=args.verbose, options=types.MappingProxyType(options),
    )


def prepare(cfg: Config) -> Config:
    """Check the environment and make the run's folder: `cfg` ready to run.

    Raises:
        UsageError: an `--out` where no run folder can be made.
        SetupError: an environment tfguide cannot run in.
    """
    check_environment()
    try:
        run_dir = paths.make_run_dir(cfg.out, cfg.chapter)
    except paths.PathError as err:
        raise UsageError(f"--out cannot be used: {err}. Received: --out={cfg.out}") from None
    return dataclasses.replace(cfg, run_dir=run_dir)


def run_chapter(name: str, argv: Sequence[str] = (), run: Callable[[Config], dict] | None = None
                ) -> tuple[dict, Path]:
    """Run chapter `name` as its command line `argv` asks; return (metrics, run folder).

    The one recipe for running a chapter: parse and validate `argv`, `prepare`
    (environment, a new run folder under `--out`), call the chapter module's
    `run(cfg)` (or `run`).

    Raises:
        UsageError: a bad argument, or an `--out` where no run folder can be made.
        SetupError: an environment tfguide cannot run in.
    """
    cfg = prepare(parse(name, argv))
    return _run(cfg, run), cfg.run_dir


def _run(cfg: Config, run: Callable[[Config], dict] | None) -> dict:
    if run is None:
        run = importlib.import_module(registry.get(cfg.chapter).module).run
    return run(cfg)


def _print_text(name: str) -> None:
    from tfguide import resources

    try:
        say(resources.chapter_text(name))
    except FileNotFoundError as err:
        fail(str(err), 1)


def _terminate(signum, frame):
    raise Terminated()


def main(module_name: str, run: Callable[[Config], dict] | None = None,
         argv: Sequence[str] | None = None) -> None:
    """Run a chapter from the command line: parse, run, print the summary.

    Every failure the user can fix ends in one `tfguide: error:` line: exit 2
    for a bad argument, 1 for bad data or environment; Ctrl-C and SIGTERM end
    with 130 and 143, and the run folder's results.json says so.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)  # see check_module_command_line
    name = _chapter_name(module_name)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse(name, argv)
        if "--text" in argv:
            _print_text(name)
            return
        cfg = prepare(cfg)
    except UsageError as err:
        fail(str(err), 2)
    except (SetupError, paths.WriteError) as err:
        fail(str(err), 1)
    run_dir = cfg.run_dir
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from tfguide import datasets, distributed, runtime  # imports TensorFlow

        _run(cfg, run)
    except (runtime.DeviceError, UsageError) as err:
        fail(str(err), 2)
    except (datasets.DataError, SetupError, distributed.WorkerError, paths.WriteError) as err:
        fail(str(err), 1)
    except KeyboardInterrupt as stop:
        what = "Terminated" if isinstance(stop, Terminated) else "Interrupted"
        print(f"\n{what}. What was written so far is in {run_dir}", file=sys.stderr)
        raise SystemExit(143 if isinstance(stop, Terminated) else 130) from None
    except Exception as err:  # a full disk, from wherever it was written (TensorFlow, Pillow…)
        message = paths.full_disk_message(err, run_dir)
        if message is None:
            raise
        fail(message, 1)
    say(runs.summary(run_dir))
    if cfg.show:
        runs.show_figures(run_dir)


def _chapter_name(module_name: str) -> str:
    if module_name == "__main__":  # `python -m tfguide.chapters.<name>`
        module_name = sys.modules["__main__"].__spec__.name
    return module_name.rsplit(".", 1)[-1]


def module_command(orig_argv: Sequence[str]) -> str | None:
    """Return NAME if `orig_argv` is `python [opts] -m tfguide.chapters.NAME ...`."""
    argv, i = list(orig_argv), 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-m"):
            module = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            prefix = "tfguide.chapters."
            name = module[len(prefix):] if module.startswith(prefix) else None
            return name if name in registry.BY_NAME else None
        if not arg.startswith("-") or arg.startswith("-c"):  # a script or a command
            return None
        i += 2 if arg in ("-X", "-W") else 1  # interpreter options that take a value
    return None


def check_module_command_line() -> None:
    """Answer a bad flag (and `--help`, `--text`) of `python -m tfguide.chapters.NAME` at once.

    Called while the `tfguide` package loads, so before the chapter module
    imports TensorFlow; a valid command line passes through untouched.
    """
    name = module_command(getattr(sys, "orig_argv", ()))
    if name is None:
        return
    argv = sys.argv[1:]
    try:
        parse(name, argv)
        if "--text" not in argv:
            check_environment()
    except UsageError as err:
        fail(str(err), 2)
    except SetupError as err:
        fail(str(err), 1)
    if "--text" in argv:
        _print_text(name)
        raise SystemExit(0)
    # Ctrl-C while the module imports TensorFlow: one line, no traceback (`main` restores it).
    signal.signal(signal.SIGINT, _interrupted_while_starting)


def _interrupted_while_starting(signum, frame):
    from tfguide import _quiet  # stderr may be silenced while TensorFlow loads

    os.write(_quiet.real_stderr, b"\nInterrupted while starting.\n")
    os._exit(130)
