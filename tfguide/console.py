"""The ground floor: the errors a command can end in, and its one-line console output.

Anything in tfguide may raise these errors or print through `say` and `fail`;
this module imports nothing of tfguide. A usage error exits with status 2 and
one line on stderr that names the flag, the value received and what is
allowed; a problem with the environment or the data exits with 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


class UsageError(Exception):
    """A value on the command line (or in its environment) that cannot be used."""


class SetupError(Exception):
    """The environment cannot run tfguide as asked (a variable, a busy port); says what to do."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM); handled like Ctrl-C, so results are kept."""


class Parser(argparse.ArgumentParser):
    """The parser of every tfguide command: an error is a `UsageError`, not usage text."""

    def __init__(self, prog: str, description: str):
        super().__init__(prog=prog, description=description, allow_abbrev=False)

    def error(self, message: str):
        raise UsageError(message)


def bad_value(flag: str, value: object, allowed: str) -> UsageError:
    """Return the error for `flag=value`, saying what is `allowed`."""
    return UsageError(f"{flag} must be {allowed}. Received: {flag}={value}")


def choice(flag: str, value: str, allowed: Sequence[str]) -> str:
    """Return `value` if it is one of `allowed`, else raise a `UsageError`."""
    if value not in allowed:
        raise bad_value(flag, value, "one of " + ", ".join(allowed))
    return value


def printable(text: object) -> str:
    """Return `text` with control characters (a newline in a file name, an escape) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def fail(message: str, status: int) -> None:
    """Print one `tfguide: error:` line on stderr and exit with `status`.

    Control characters from user input (a file name with a newline or a
    terminal escape) are shown escaped, so the message stays one honest line.
    """
    print(f"tfguide: error: {printable(message)}", file=sys.stderr)
    raise SystemExit(status)


def say(text: str) -> None:
    """Print to stdout; a reader that went away (`| head`) ends the command quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
