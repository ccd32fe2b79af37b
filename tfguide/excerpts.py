"""Keep the code shown in a chapter text identical to the module's source.

A module marks an excerpt with comment lines::

    # [start:rules]
    def gd(lr): ...
    # [end:rules]

and the chapter text shows it under an include comment, followed by a fenced
Python block::

    <!-- include: tfguide/chapters/gradient_descent.py:rules -->
    ```python
    def gd(lr): ...
    ```

`python -m tfguide.excerpts chapters/NAME.md` rewrites the fenced blocks from
the source; `--check` only reports the ones that drifted (tests run it).
`python -m tfguide.excerpts --readme` rewrites the README's chapter table from
the registry in `tfguide/chapters/__init__.py`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(
    r"(<!-- include: (?P<path>[\w/.\-]+):(?P<name>[\w\-]+) -->\n```python\n)(?P<code>.*?)(```)",
    re.S,
)


def excerpt(source: str, name: str) -> str:
    """Return the lines between `# [start:name]` and `# [end:name]`, dedented."""
    match = re.search(rf"^([ \t]*)# \[start:{re.escape(name)}\]\n(.*?)^[ \t]*# \[end:"
                      rf"{re.escape(name)}\]", source, re.S | re.M)
    if match is None:
        raise KeyError(f"No excerpt markers '# [start:{name}]' ... '# [end:{name}]'.")
    indent = match.group(1)
    lines = match.group(2).splitlines(keepends=True)
    return "".join(line[len(indent):] if line.startswith(indent) else line for line in lines)


def includes(text: str) -> list[tuple[str, str, str]]:
    """Return (path, name, code shown) for every include in a chapter text."""
    return [(m["path"], m["name"], m["code"]) for m in INCLUDE.finditer(text)]


def sync(text: str, root: Path = ROOT) -> str:
    """Return `text` with every included block replaced by the current source."""
    def replace(m: re.Match) -> str:
        code = excerpt((root / m["path"]).read_text(encoding="utf-8"), m["name"])
        return m.group(1) + code + m.group(5)

    return INCLUDE.sub(replace, text)


def sync_readme(readme: Path = ROOT / "README.md") -> bool:
    """Rewrite the README's chapter table from the registry; return whether it changed."""
    from tfguide import registry

    text = readme.read_text(encoding="utf-8")
    synced = re.sub(r"(<!-- chapters:start -->\n).*?(\n<!-- chapters:end -->)",
                    lambda m: m.group(1) + registry.markdown_table() + m.group(2), text,
                    flags=re.S)
    readme.write_text(synced, encoding="utf-8")
    return synced != text


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--readme" in args:
        print("README.md: chapter table " + ("updated" if sync_readme() else "already current"))
        return 0
    check = "--check" in args
    stale = []
    for path in (Path(a) for a in args if a != "--check"):
        text = path.read_text(encoding="utf-8")
        synced = sync(text)
        if synced != text:
            stale.append(path)
            if not check:
                path.write_text(synced, encoding="utf-8")
    verb = "out of date" if check else "updated"
    for path in stale:
        print(f"{path}: excerpts {verb}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
