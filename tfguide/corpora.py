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
from tfguide.config import DATA_DIR_VARIABLE
from tfguide.datasets import DataError, data_folder, sha256
from tfguide.registry import MAX_TEXT_MB

SHIPPED = "tinyshakespeare.txt.gz"
SHIPPED_SHA256 = "13125fe8f49092165d7d489e3944db52d1ba546e64a60080cc9523bcd0c5e46a"
PROVENANCE = ("Tiny Shakespeare (char-rnn's data/tinyshakespeare/input.txt, as used by "
              "nanoGPT; public domain), shipped in data/tinyshakespeare.txt.gz")

MAX_VOCABULARY = 1 << 16  # distinct characters; their ids fit in 16 bits


def read_corpus(name: str, data_dir: Path | None) -> tuple[str, str, str]:
    """Return (text, source, provenance): the shipped corpus, or DIR/NAME.txt a learner brings.

    DIR is `data_dir` (--data-dir), else $TFGUIDE_DATA_DIR. A text larger than
    MAX_TEXT_MB is refused before it is read: the run holds the text and its ids in
    memory. Measured peak RSS of a --quick run: 1.0 GB on Tiny Shakespeare, 1.6 GB
    on a 64 MiB text (about 9 bytes per character more); under 2 GB for any text
    accepted (a 4-byte character makes Python store each character in 4 bytes).
    """
    folder = data_folder(data_dir)  # checked here; a wrong $TFGUIDE_DATA_DIR is named as such
    path = folder / f"{name}.txt" if folder is not None else None
    if path is None or not path.is_file():
        if name != "shakespeare":
            where = ("NAME.txt in the folder given by --data-dir" if path is None else
                     f"{path}" if data_dir is not None else f"{path} (in {DATA_DIR_VARIABLE})")
            raise DataError(f"No text for --data {name}: expected {where}; put a UTF-8 "
                            f"text file there and pass its folder with --data-dir.")
        return shipped_text(), "offline-standin", PROVENANCE
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_MB << 20:
            raise DataError(f"{path} is {size / 2**20:,.0f} MiB, larger than the {MAX_TEXT_MB} "
                            f"MiB the language model reads (it keeps the whole text in "
                            f"memory): give a shorter text.")
        text = path.read_bytes().decode("utf-8")  # decoded once; the bytes are freed
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror or err}): make it a readable "
                        f"UTF-8 text file.") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start} cannot be "
                        f"decoded): save it as UTF-8 plain text.") from None
    if not text or text.isspace():  # no stripped copy of a large text
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


def check_vocabulary(chars: Sequence[str], name: str) -> None:
    """Refuse a text whose characters give no choice to learn (one), or too many to number."""
    if len(chars) < 2:
        raise DataError(f"The text for --data {name} has one distinct character, "
                        f"{''.join(chars)!r}: a model learns to choose the next character "
                        f"among at least 2; give a text with more than one.")
    if len(chars) > MAX_VOCABULARY:
        raise DataError(f"The text for --data {name} has {len(chars):,} distinct characters, "
                        f"more than the {MAX_VOCABULARY:,} a vocabulary here holds: give a "
                        f"text with fewer.")


DEFAULT_PROMPT = "ROMEO:"  # a speaker's name and a colon, as the plays are laid out


def _missing(prompt: str, chars: Sequence[str]) -> str:
    """The prompt's characters that are not in `chars`, once each, in the prompt's order."""
    known = set(chars)
    return "".join(dict.fromkeys(c for c in prompt if c not in known))


def choose_prompt(text: str, chars: Sequence[str], prompt: str | None) -> str:
    """Return the prompt samples continue; refuse a --prompt with characters the text lacks.

    With no --prompt (None), a speaker of Shakespeare's, or, when a learner's text lacks
    its characters, the text's own first line.
    """
    if prompt is None:
        prompt = DEFAULT_PROMPT
        missing = _missing(prompt, chars)
        if missing:
            prompt = text[:16].split("\n")[0] or text[:1]
            print(f"The text has no {missing!r}: the samples continue its first "
                  f"characters, {prompt!r}, instead of {DEFAULT_PROMPT!r}")
    unknown = _missing(prompt, chars)
    if unknown:
        raise UsageError(f"--prompt has characters that are not in the text's vocabulary: "
                         f"{clipped(unknown)!r}. Received: --prompt={clipped(prompt)!r}")
    return prompt


def clipped(text: str, keep: int = 40) -> str:
    """Return `text`, or "…" and its last `keep` characters when it is longer (for display)."""
    return text if len(text) <= keep else "…" + text[-keep:]


def verse_line(text: str, last: int, context: int) -> str:
    """A line of verse from the `last` characters of `text`, 30 to `context` characters long."""
    lines = text[len(text) - last:][:1 << 20].split("\n")  # the first MiB is plenty to look in
    return next((ln for ln in lines if 30 <= len(ln) <= context and ln[0].isupper()),
                text[-context:])
