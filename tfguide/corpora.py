"""Text corpora: the shipped Tiny Shakespeare, checked, and a text a learner brings.

No TensorFlow here. `read_corpus(name, data_dir)` returns the text with where
it came from; a missing, damaged, empty or binary file is a `DataError` that
names the file and the fix.
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Sequence

from tfguide import resources
from tfguide.console import UsageError
from tfguide.datasets import DataError, sha256

SHIPPED = "tinyshakespeare.txt.gz"
SHIPPED_SHA256 = "13125fe8f49092165d7d489e3944db52d1ba546e64a60080cc9523bcd0c5e46a"
PROVENANCE = ("Tiny Shakespeare (char-rnn's data/tinyshakespeare/input.txt, as used by "
              "nanoGPT; public domain), shipped in data/tinyshakespeare.txt.gz")

def read_corpus(name: str, data_dir: Path | None) -> tuple[str, str, str]:
    """Return (text, source, provenance): the shipped corpus, or DIR/NAME.txt a learner brings."""
    path = Path(data_dir) / f"{name}.txt" if data_dir is not None else None
    if path is None or not path.is_file():
        if name != "shakespeare":
            where = path or "NAME.txt in the folder given by --data-dir"
            raise DataError(f"No text for --data {name}: expected {where}; put a UTF-8 "
                                     f"text file there and pass its folder with --data-dir.")
        return shipped_text(), "offline-standin", PROVENANCE
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start} cannot be "
                                 f"decoded): save it as UTF-8 plain text.") from None
    if not text.strip():
        raise DataError(f"{path} is empty: give a text of at least a few thousand "
                                 f"characters.")
    if "\x00" in text:
        raise DataError(f"{path} holds NUL bytes, so it is binary, not text: "
                                 f"give a plain UTF-8 text file.")
    return text, "data-dir", f"{path} (brought by the user)"


def shipped_text() -> str:
    path = resources.data_dir() / SHIPPED
    fix = ("restore it with `git checkout data/` (or reinstall tfguide), "
           "or remake it with `python data/make_data.py`")
    if not path.is_file():
        raise DataError(f"{path} is missing: {fix}.")
    if sha256(path) != SHIPPED_SHA256:
        raise DataError(f"{path} is damaged (its SHA-256 checksum does not match): "
                                 f"{fix}.")
    return gzip.decompress(path.read_bytes()).decode("utf-8")


def check_length(text: str, name: str, window: int, val_fraction: float) -> None:
    """Refuse a text too short for one `window` of characters in its validation part."""
    need = math.ceil((window + 1) / val_fraction)
    if len(text) < need:
        raise DataError(f"The text for --data {name} has {len(text):,} characters, too short "
                        f"for one window of {window} in its last {val_fraction:.0%} "
                        f"(validation): give at least {need:,} characters.")


DEFAULT_PROMPT = "ROMEO:"  # a speaker's name and a colon, as the plays are laid out


def choose_prompt(text: str, chars: Sequence[str], prompt: str | None) -> str:
    """Return the prompt samples continue; refuse a --prompt with characters the text lacks.

    With no --prompt (None), a speaker of Shakespeare's, or, when a learner's text lacks
    its characters, the text's own first line.
    """
    if prompt is None:
        prompt = DEFAULT_PROMPT
        missing = sorted(set(prompt) - set(chars))
        if missing:
            prompt = text[:16].split("\n")[0] or text[:1]
            print(f"The text has no {''.join(missing)!r}: the samples continue its first "
                  f"characters, {prompt!r}, instead of {DEFAULT_PROMPT!r}")
    unknown = sorted(set(prompt) - set(chars))
    if unknown:
        raise UsageError(f"--prompt has characters that are not in the text's vocabulary: "
                         f"{''.join(unknown)!r}. Received: --prompt={prompt!r}")
    return prompt
