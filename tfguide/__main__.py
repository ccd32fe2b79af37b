"""`python -m tfguide` (or `tfguide`): list, run, text and the other commands of USAGE.

Listing and argument checks import no TensorFlow, so they answer at once.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from tfguide import cli, config, console, registry

USAGE = """usage: python -m tfguide [COMMAND]

  list          the chapters, in reading order (the default)
  run NAME      run a chapter; flags as for `python -m tfguide.chapters.NAME --help`
  text NAME     print a chapter's text
  notebook NAME [--out DIR] [--force]
                write the chapter as a Jupyter notebook, DIR/NAME.ipynb (default DIR:
                notebooks/; NAME `all`: every chapter). Needs the notebook extra:
                pip install -e ".[notebook]"
  book [--out DIR] [--runs DIR] [--open] [--force]
                write the chapters as a local HTML book (default book/), showing the figures
                and metrics of your latest run of each chapter under runs/
  bench         measure training speed beside plain Keras (`bench --help`)
  exercise NAME [--out DIR] [--force]
                write the chapter's from-scratch functions to fill in (exercises/NAME.py)
  check NAME [FILE] [--timeout SECONDS]
                prove your functions the way the chapter proves its own (PASS/FAIL/TODO);
                each function runs in a worker process, stopped after SECONDS of CPU
  record NAME|all [--full] [--seeds N] [--race] [--sync]
                run a chapter's reference run and refresh the numbers and figures of its
                text from it (chapters/results/, chapters/figures/)
  predict RUN_DIR IMAGE [IMAGE ...]
                print a trained model's top-3 classes for your own image files
                (RUN_DIR: a cnn or mlp run folder; `predict --help` says how an
                image is converted)
"""


# The other commands: (module, function taking the rest of the command line). Each module
# checks its own arguments before it imports TensorFlow.
COMMANDS = {
    "notebook": ("tfguide.notebook", "main"),
    "book": ("tfguide.book", "main"),
    "bench": ("tfguide.bench", "main"),
    "exercise": ("tfguide.exercises", "exercise_main"),
    "check": ("tfguide.exercises", "check_main"),
    "record": ("tfguide.record", "main"),
    "predict": ("tfguide.predict", "main"),
}


def list_chapters() -> str:
    """Return the chapter table: name, what it teaches, source sections."""
    width = max(len(c.name) for c in registry.CHAPTERS)
    lines = ["tfguide chapters (run one with `tfguide run NAME --quick`):", ""]
    for i, c in enumerate(registry.CHAPTERS, 1):
        lines.append(f"  {i}. {c.name:<{width}}  {c.title}: {c.summary}.")
    return "\n".join(lines)


def _chapter(name: str | None) -> registry.Chapter:
    if name is None:
        console.fail("a chapter name is needed. Known chapters: "
                 + ", ".join(registry.BY_NAME), 2)
    try:
        return registry.get(name)
    except KeyError as err:
        console.fail(err.args[0], 2)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = (argv[0], argv[1:]) if argv else ("list", [])
    if command in ("list", "ls"):
        console.say(list_chapters())
    elif command in ("-h", "--help", "help"):
        console.say(USAGE)
    elif command == "text":
        from tfguide import resources

        try:
            console.say(resources.chapter_text(_chapter(rest[0] if rest else None).name))
        except FileNotFoundError as err:
            console.fail(str(err), 1)
    elif command == "run":
        chapter = _chapter(rest[0] if rest else None)
        flags = rest[1:]
        if not {"-h", "--help"} & set(flags):
            try:
                cli.parse(chapter.name, flags)  # answer a typo before TensorFlow loads
                if "--text" not in flags:
                    config.check_environment()
            except console.UsageError as err:
                console.fail(str(err), 2)
            except console.SetupError as err:
                console.fail(str(err), 1)
        try:
            module = importlib.import_module(chapter.module)  # imports TensorFlow
        except KeyboardInterrupt:
            console.fail("interrupted while starting", 130)
        module.main(flags)
    elif command in COMMANDS:
        module_name, function = COMMANDS[command]
        getattr(importlib.import_module(module_name), function)(rest)
    else:
        console.fail(f"unknown command {command!r}. Use one of: list, run NAME, text NAME, "
                 + ", ".join(COMMANDS) + ".", 2)


if __name__ == "__main__":
    main()
