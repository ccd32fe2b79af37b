"""Concept diagrams: the picture of each chapter's idea, drawn by code from its own functions.

A chapter module may define `concept_figures() -> dict[str, Figure]`, keyed
`concept_<what>` (a sliding window with its padding drawn with `same_padding`,
a mask drawn with `causal_mask`, …). They need no training, so they are drawn
the same on every machine; `record` saves them beside the chapter's recorded
figures, as `chapters/figures/NAME/concept_*.png`, and the text embeds them:

    python -m tfguide.concepts NAME|all     # draw them again after editing a diagram
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Sequence

from tfguide import console, registry, resources


def figures(name: str) -> dict:
    """Return chapter `name`'s concept figures by file stem (empty if it draws none)."""
    module = importlib.import_module(registry.get(name).module)
    drawn = getattr(module, "concept_figures", lambda: {})()
    for key in drawn:
        if not key.startswith("concept_") or not key.replace("_", "").isalnum():
            raise ValueError(f"{name}.concept_figures() must key each figure concept_<what> "
                             f"(letters, digits, _). Received: {key!r}")
    return drawn


def draw(name: str, folder: Path | None = None) -> list[Path]:
    """Save chapter `name`'s concept figures as PNG files in `folder` (default: its figures)."""
    folder = Path(folder or resources.texts_dir() / "figures" / name)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, fig in figures(name).items():
        path = folder / f"{key}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tfguide.concepts NAME|all`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    known = list(registry.BY_NAME)
    if len(argv) != 1 or (argv[0] != "all" and argv[0] not in known):
        console.fail("give one chapter name or all. Known chapters: " + ", ".join(known), 2)
    for name in known if argv[0] == "all" else argv:
        for path in draw(name):
            console.say(f"wrote {path}")


if __name__ == "__main__":
    main()
