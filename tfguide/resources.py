"""Find the files that ship with tfguide: chapter texts and small data.

In a checkout (or an editable install) they live beside the package, in
`chapters/` and `data/`; a built wheel carries them inside the package as
`tfguide/_texts/` and `tfguide/_data/`.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[-1]


def texts_dir() -> Path:
    """Return the folder that holds the chapter texts (`<name>.md`)."""
    return _first_existing(_PACKAGE / "_texts", _PACKAGE.parent / "chapters")


def data_dir() -> Path:
    """Return the folder that holds the shipped data files."""
    return _first_existing(_PACKAGE / "_data", _PACKAGE.parent / "data")


def chapter_text(name: str) -> str:
    """Return the Markdown text of chapter `name`."""
    path = texts_dir() / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"No text for chapter {name!r}: expected {path}.")
    return path.read_text(encoding="utf-8")
