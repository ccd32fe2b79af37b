"""Render the chapter texts as a small static HTML book that shows your own runs.

`python -m tfguide book [--out DIR] [--runs DIR] [--open]` writes `DIR/index.html` (the
chapter table), one page per registered chapter and one each for the glossary, how tfguide
runs a chapter and performance, with highlighted code, formulas typeset as MathML (which
browsers draw themselves), each bold term linked to its glossary entry, and links to the
previous and next chapter. Beside each
text, "Your run" shows the latest finished run under `runs/<chapter>/*/results.json`: its
date, device, data source, metrics and figures (copied into the book, so the folder can be
moved or zipped). A chapter with no run shows the command that makes one.

Everything a page needs is in the output folder: no web fonts, scripts or CDN. Markdown is
rendered with markdown-it-py, its `$…$` and `$$…$$` formulas found by mdit-py-plugins and
turned into MathML by latex2mathml when the book is built, and code highlighted with
Pygments (the `book` extra). Nothing here imports TensorFlow. A text's numbers come
from results files, so its raw HTML is not trusted either: only `<details>`/`<summary>`
folds and the include captions become HTML; any other tag is shown as text.

The book is meant to be copied and shared, so it trusts no name or value from `runs/`:
everything that reaches a page is escaped for where it lands (text, attribute, URL); a
results.json with a value of the wrong type, a run folder or figure that is a link, and a
figure its run did not list are skipped with a one-line note. The book folder's own record
(`.tfguide-book`: each file the book wrote, with its hash) lets a rebuild replace and
remove only those files, unchanged; it never touches yours (`--force` replaces a page or
figure you changed).
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shlex
import stat
import sys
import webbrowser
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence
from urllib.parse import quote

from tfguide import config, console, registry, resources
from tfguide.config import format_metric
from tfguide.paths import replace_file
from tfguide.runs import CONFIG_FLAGS, Run, latest_run

EXTRA_HINT = ('the book needs the "book" extra: pip install -e ".[book]" (in a checkout) '
              'or pip install "tfguide[book]"')
ASSETS = Path(__file__).resolve().parent / "book_assets"
MARKER = ".tfguide-book"  # the book's record of the files it wrote (path: SHA-256)
PNG = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE = 64 << 20  # bytes; no figure a chapter saves comes near it
INCLUDE = re.compile(r"^<!-- include: (?P<path>[\w/.\-]+):(?P<name>[\w\-]+) -->$", re.M)
# Raw HTML in a text reaches a page only as these folds; a number's result marker is dropped
# and its value stays as text (record writes values escaped; this holds if one is not).
RESULT = re.compile(r"<!-- /?result(?:: [^<>]*?)? -->")
FOLDS = re.compile(r"<details(?: open)?>|</details>|</?summary>", re.I)
TAG = re.compile(r"<!--.*?-->|<[^<>]*>?", re.S)


class MissingExtra(ImportError):
    """An optional dependency of this command is not installed."""


class Conflict(Exception):
    """The book would replace or write through something tfguide did not write."""


def _stderr_note(message: str) -> None:
    """Print one note line; control characters in file names are shown escaped, not obeyed."""
    print(f"tfguide: note: {console.printable(message)}", file=sys.stderr)


def _quiet(message: str) -> None:
    pass


def _text(value: Any) -> str:
    """Return `value` as HTML text: escaped, characters that cannot be shown as �."""
    return html.escape(str(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


def _url(*parts: str) -> str:
    """Return a relative URL to a file in the book, for an attribute: each part %-encoded."""
    return html.escape("/".join(quote(os.fsencode(part), safe="") for part in parts))


def _math(latex: str, display: bool) -> str:
    """Return a formula as MathML; one latex2mathml cannot read is shown as its source."""
    from latex2mathml.converter import convert

    try:
        return convert(latex, display="block" if display else "inline")
    except Exception:  # an unknown command: the reader still sees the formula as written
        return f'<code class="math-source">{html.escape(latex)}</code>'


def _markdown():
    try:
        from latex2mathml.converter import convert  # noqa: F401  (the extra is installed)
        from markdown_it import MarkdownIt
        from mdit_py_plugins.dollarmath import dollarmath_plugin
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import TextLexer, get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:
        raise MissingExtra(EXTRA_HINT) from None

    def code_block(code: str, lang: str, attrs: str) -> str:
        try:
            lexer = get_lexer_by_name(lang or "text")
        except ClassNotFound:
            lexer = TextLexer()
        body = highlight(code, lexer, HtmlFormatter(nowrap=True))
        return f'<pre class="highlight"><code>{body}</code></pre>\n'

    md = MarkdownIt("commonmark", {"html": True, "highlight": code_block}).enable("table")
    md.use(dollarmath_plugin, allow_space=True, double_inline=True,
           renderer=lambda latex, options: _math(latex, options.get("display_mode", False)))
    return md, HtmlFormatter(style="friendly").get_style_defs(".highlight")


def run_command(chapter: registry.Chapter, config: dict) -> str:
    """Return the command line that repeats a run with this config (defaults left out).

    Each value is quoted for the shell, so a pasted command runs tfguide and nothing else.
    """
    quick = bool(config.get("quick"))
    parts = [f"python -m {chapter.module}"] + (["--quick"] if quick else [])
    defaults = {
        "epochs": chapter.quick_epochs if quick else chapter.epochs,
        "batch_size": chapter.batch_size, "learning_rate": chapter.learning_rate, "seed": 42,
        "data": chapter.quick_data if quick else chapter.data[0], "device": "auto",
        "precision": "float32", "jit": "auto", "strategy": "auto",
    }
    for key in CONFIG_FLAGS:
        if key in config and config[key] != defaults[key]:
            value = config[key]
            text = f"{value:g}" if isinstance(value, float) else str(value)
            parts.append(f"--{key.replace('_', '-')} {shlex.quote(text)}")
    for key, value in (config.get("options") or {}).items():
        option = next((o for o in chapter.options if o.dest == key), None)
        if option is not None and value not in (option.default, option.quick_default):
            parts.append(f"{option.flag} {shlex.quote(str(value))}")
    return " ".join(parts)


# --- Pages ----------------------------------------------------------------------------
def _slug(text: str, seen: set[str]) -> str:
    base = re.sub(r"[^\w]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 1
    while slug in seen:
        n += 1
        slug = f"{base}-{n}"
    seen.add(slug)
    return slug


def _safe_html(raw: str) -> str:
    """Return a text's raw HTML as a page may show it: the folds kept, any other tag shown
    as text, comments dropped, the rest escaped (character references kept)."""
    out, pos = [], 0
    for m in TAG.finditer(raw):
        out.append(re.sub(r"&(?!#?\w+;)", "&amp;", raw[pos:m.start()])
                   .replace("<", "&lt;").replace(">", "&gt;"))
        tag = m.group()
        if FOLDS.fullmatch(tag):
            out.append(tag)
        elif not tag.startswith("<!--"):
            out.append(html.escape(tag))
        pos = m.end()
    out.append(re.sub(r"&(?!#?\w+;)", "&amp;", raw[pos:]).replace(">", "&gt;"))
    return "".join(out)


def render_text(md, name: str, text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Render a chapter text; return (title, HTML, [(section id, heading)]).

    The text's own raw HTML is not trusted (its numbers come from results files): only the
    `<details>`/`<summary>` folds and the include captions become HTML; see `_safe_html`.
    """
    text = RESULT.sub("", text)
    lines = text.splitlines()
    tokens = md.parse(text)
    title, toc, seen = name, [], set()
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            heading = "".join(c.content for c in tokens[i + 1].children or []
                              if c.type in ("text", "code_inline")) or tokens[i + 1].content
            tok.attrSet("id", _slug(heading, seen))
            if tok.tag == "h1":
                title = heading
            elif tok.tag == "h2":
                toc.append((tok.attrGet("id"), heading))
        elif tok.type == "paragraph_open" and tok.level == 0 and tok.map:
            # A paragraph set off by two spaces in the text is a displayed formula.
            first = lines[tok.map[0]]
            if first.startswith("  ") and not first.startswith("    "):
                tok.attrSet("class", "formula")
        elif tok.type == "html_block":
            include = INCLUDE.fullmatch(tok.content.strip())
            tok.content = (f'<p class="src">{html.escape(include["path"])}</p>\n' if include
                           else _safe_html(tok.content))
        elif tok.type == "inline":
            opened = []
            for child in tok.children or []:
                if child.type == "html_inline":
                    child.content = _safe_html(child.content)
                elif child.type == "link_open":
                    _retarget(child)
                    opened.append(child)
                elif child.type == "link_close" and opened:
                    child.tag = opened.pop().tag  # "a", or "span" for a file outside the book
    return title, md.renderer.render(tokens, md.options, {}), toc


# Texts that are not chapters, with their page and the title in the navigation.
PAGES = {"GLOSSARY": ("glossary", "Glossary"), "RUNNING": ("running", "How tfguide runs"),
         "PERFORMANCE": ("performance", "Performance")}


def _page_of(stem: str | None) -> str | None:
    """The book page of a text (a chapter or one of PAGES), or None if it has none."""
    if stem in registry.BY_NAME:
        return f"{stem}.html"
    return f"{PAGES[stem][0]}.html" if stem in PAGES else None


def _retarget(link) -> None:
    """Point links to texts at their pages; other local files are not in the book."""
    href = link.attrGet("href") or ""
    if re.match(r"^[a-z][a-z0-9+.-]*:", href) or href.startswith("#"):
        return  # a web address (not loaded at view time) or a place on this page
    path, _, fragment = href.partition("#")
    target = Path(path).name
    page = _page_of(target[:-3] if target.endswith(".md") else None)
    if page is not None:
        link.attrSet("href", page + (f"#{fragment}" if fragment else ""))
    else:  # e.g. ../README.md or a data file: name it, without a link that cannot resolve
        link.tag = "span"
        link.attrs = {"class": "file-ref", "title": href}


def glossary_terms() -> dict[str, str]:
    """Each glossary term (lower case) and its anchor on the glossary page."""
    try:
        text = (resources.texts_dir() / "GLOSSARY.md").read_text(encoding="utf-8")
    except OSError:
        return {}
    rows = re.findall(r"^\| ([^|]+?) \| .+? \| \[\w+\]\(\w+\.md\) \|$", text, re.M)
    return {term.strip().lower(): "term-" + re.sub(r"[^\w]+", "-", term.strip().lower()).strip("-")
            for term in rows}


def link_terms(body: str, terms: dict[str, str]) -> str:
    """Link each bold glossary term of a rendered text (plurals too) to its entry."""
    def link(m: re.Match) -> str:
        word = html.unescape(m["term"]).lower()
        for key in (word, word[:-1] if word.endswith("s") else None,
                    word[:-2] if word.endswith("es") else None):
            if key in terms:
                return f'<a class="term" href="glossary.html#{terms[key]}">{m.group()}</a>'
        return m.group()

    return re.sub(r"<strong>(?P<term>[^<>]+)</strong>", link, body)


def anchor_terms(body: str, terms: dict[str, str]) -> str:
    """Give each row of the rendered glossary table the anchor its term is linked by."""
    def anchor(m: re.Match) -> str:
        key = terms.get(html.unescape(m["term"]).strip().lower())
        return f'<tr id="{key}">{m["cell"]}' if key else m.group()

    return re.sub(r"<tr>(?P<cell>\s*<td>(?P<term>[^<>]+)</td>)", anchor, body)


def page(title: str, body: str, nav: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · tfguide</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="style.css">
</head>
<body>
<header class="top"><a class="home" href="index.html">tfguide</a><nav>{nav}</nav></header>
{body}
<footer>Made by <code>python -m tfguide book</code>. Everything on this page is in its
folder: it reads offline.</footer>
</body>
</html>
"""


def _nav(current: str | None) -> str:
    links = []
    for i, c in enumerate(registry.CHAPTERS, 1):
        mark = ' aria-current="page"' if c.name == current else ""
        links.append(f'<a href="{c.name}.html"{mark}>{i}. {html.escape(c.title)}</a>')
    for slug, title in PAGES.values():
        mark = ' aria-current="page"' if slug == current else ""
        links.append(f'<a class="extra" href="{slug}.html"{mark}>{html.escape(title)}</a>')
    return "".join(links)


def your_run(chapter: registry.Chapter, run: Run | None, figures: list[str]) -> str:
    """The "Your run" panel: the latest run's facts, metrics and figures, or how to make one.

    Args:
        figures: where the run's figures are in the book ("figures/NAME/RUN/x.png").
    """
    if run is None:
        return (f'<section class="run none"><h2>Your run</h2><p>No run of this chapter yet. '
                f'Make one (a few seconds with <code>--quick</code>), then rebuild the book:</p>'
                f'<pre class="cmd"><code>python -m {_text(chapter.module)} --quick\n'
                f'python -m tfguide book</code></pre></section>')
    r = run.results
    rt, data, config = r.get("runtime") or {}, r.get("data") or {}, r.get("config") or {}
    when = str(r.get("created", "")).replace("T", " ")
    device = ", ".join(str(x) for x in (
        rt.get("device"), rt.get("precision"),
        f"strategy {rt.get('strategy')} ({rt.get('replicas')} replica"
        f"{'' if rt.get('replicas') == 1 else 's'})" if rt else None) if x)
    source = (f"{data.get('name')} ({data.get('source')}): {data.get('train')} train, "
              f"{data.get('test')} test") if data else "not recorded"
    facts = [("date", when), ("kind", "--quick run" if config.get("quick") else "full run"),
             ("device", device or "not recorded"), ("data", source),
             ("time", f"{r['wall_s']:.1f} s" if "wall_s" in r else "not recorded"),
             ("folder", run.dir)]
    rows = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in facts)
    metrics = "".join(f"<tr><td><code>{_text(k)}</code></td>"
                      f"<td class=\"num\">{_text(format_metric(v))}</td></tr>"
                      for k, v in (r.get("metrics") or {}).items())
    figs = []
    for where in figures:
        src, name = _url(*where.split("/")), where.rsplit("/", 1)[-1]
        figs.append(f'<figure><a href="{src}"><img src="{src}" alt="{_text(name[:-4])}">'
                    f'</a><figcaption>{_text(name)}</figcaption></figure>')
    return (f'<section class="run"><h2>Your run</h2><table class="facts">{rows}</table>'
            f'<pre class="cmd"><code>{_text(run_command(chapter, config))}</code></pre>'
            f'<h3>Metrics</h3><table class="metrics">{metrics}</table>'
            f'<h3>Figures</h3>{"".join(figs) or "<p>This run saved no figures.</p>"}</section>')


def run_figures(run: Run | None, name: str, note: Callable[[str], None]) -> dict[str, bytes]:
    """Return the run's figures as the book holds them: {"figures/NAME/RUN/x.png": PNG bytes}."""
    if run is None:
        return {}
    found = {}
    for png in run.figures(note):
        data, why = _figure_bytes(png)
        if data is None:
            note(f"skipped {png}: {why}")
        else:
            found[f"figures/{name}/{run.dir.name}/{png.name}"] = data
    return found


def _figure_bytes(png: Path) -> tuple[bytes | None, str]:
    """Read a figure without following a link or blocking on a pipe: (bytes, "") or (None, why)."""
    try:
        fd = os.open(png, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, "not a regular file"
            data = f.read(MAX_FIGURE + 1)
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    if len(data) > MAX_FIGURE:
        return None, f"larger than {MAX_FIGURE >> 20} MiB, far more than a figure"
    if not data.startswith(PNG):
        return None, "not a PNG image"
    return data, ""


def text_figures(name: str) -> dict[str, bytes]:
    """Return the recorded figures chapter `name`'s text shows: {"figures/NAME/x.png": PNG}."""
    folder = resources.texts_dir() / "figures" / name
    found = {}
    for png in sorted(folder.glob("*.png")) if folder.is_dir() else ():
        data, _ = _figure_bytes(png)
        if data is not None:
            found[f"figures/{name}/{png.name}"] = data
    return found


def exercise_list(name: str) -> str:
    """The functions a learner writes in chapter `name`, and the command that starts them."""
    from tfguide import exercises

    try:
        functions = [f for f, _ in exercises.declared_in_source(exercises.declarations_source(name))]
    except (OSError, SyntaxError):
        functions = []
    if not functions:
        return "none"
    names = ", ".join(f"<code>{_text(f)}</code>" for f in functions)
    return f"{names}<br><code>python -m tfguide exercise {_text(name)}</code>"


# --- The book folder ------------------------------------------------------------------
def _book_file(rel: str) -> bool:
    """Whether `rel` is a path the book writes: a page, style.css or figures/NAME/RUN/x.png."""
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return False
    if len(parts) == 1:
        return rel.endswith(".html") or rel == "style.css"
    # figures/NAME/x.png: a text's recorded figure; figures/NAME/RUN/x.png: your run's
    return len(parts) in (3, 4) and parts[0] == "figures" and rel.endswith(".png")


def _file_sha256(path: Path) -> str | None:
    """Return the SHA-256 of a regular file (never through a link), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()
    except OSError:
        return None


class BookFolder:
    """The book's output folder, and its record of the files the book wrote there.

    Only a file the record names, unchanged since, is replaced or removed; nothing is written
    through a link. A folder marked by an older tfguide (no record) trusts the files at the
    paths the book writes, and removes nothing.
    """

    LEGACY = "written by `python -m tfguide book`"

    def __init__(self, out: Path):
        self.out = Path(out)
        marker = self.out / MARKER
        self.marked = marker.is_file() and not marker.is_symlink()
        self.written: dict[str, str] = {}  # book path -> SHA-256, as the last build left it
        self.legacy = False
        if not self.marked:
            return
        try:
            text = marker.read_text(encoding="utf-8")
            self.legacy = text.startswith(self.LEGACY)
            if not self.legacy:
                self.written = {rel: digest for rel, digest in json.loads(text)["files"].items()
                                if _book_file(rel) and isinstance(digest, str)}
        except (OSError, ValueError, LookupError, TypeError, AttributeError, RecursionError):
            self.written = {}  # a damaged record: every file in the way is a conflict

    def in_the_way(self, rel: str) -> tuple[str | None, bool]:
        """Return (what stops the book writing `rel`, or None; whether --force may replace it)."""
        path = self.out
        for part in PurePosixPath(rel).parts[:-1]:
            path = path / part
            if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
                return f"{path} is in the way (the book keeps its own folder there)", False
        path = self.out / rel
        if not os.path.lexists(path):
            return None, True
        if path.is_symlink():
            return f"{path} is a link", True
        if path.is_dir():
            return f"{path} is a folder", False
        if rel in self.written:
            if _file_sha256(path) == self.written[rel]:
                return None, True
            return f"{path} has changed since the book wrote it", True
        return (None, True) if self.legacy else (f"{path} was not written by tfguide", True)

    def check(self, rels: Sequence[str], force: bool = False) -> None:
        """Raise `Conflict` if writing `rels` would replace what is not the book's own."""
        if not self.marked and any(self.out.iterdir()):
            raise Conflict(f"--out {self.out} is a folder with other files in it; give an empty "
                           "or new folder (or one an earlier `tfguide book` wrote).")
        for rel in rels:
            why, forceable = self.in_the_way(rel)
            if why and not (force and forceable):
                raise Conflict(why + ("; move it away, or add --force to replace it"
                                      if forceable else "; move it away"))

    def write(self, files: dict[str, bytes], note: Callable[[str], None] = _quiet) -> None:
        """Write `files` (book path: bytes); remove the last build's files this one lacks."""
        record = dict(self.written)
        try:
            for rel, data in files.items():
                path = self.out / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                replace_file(path, data)
                record[rel] = hashlib.sha256(data).hexdigest()
            for rel in sorted(set(self.written) - set(files)):
                del record[rel]
                self._remove(rel, note)
        finally:
            replace_file(self.out / MARKER, json.dumps(
                {"written by": "python -m tfguide book", "files": record},
                indent=1, sort_keys=True).encode() + b"\n")

    def _remove(self, rel: str, note: Callable[[str], None]) -> None:
        path = self.out / rel
        why, _ = self.in_the_way(rel)
        if why:
            note(f"kept {path}: {why.removeprefix(str(path) + ' ')}")
            return
        if not os.path.lexists(path):
            return
        path.unlink()
        folder = path.parent  # figures/NAME/RUN, then figures/NAME, while empty
        while folder not in (self.out, self.out / "figures"):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent


def build(out: Path, runs: Path = Path("runs"), force: bool = False,
          note: Callable[[str], None] = _stderr_note) -> Path:
    """Write the book into `out`; return the path of its index.html.

    Args:
        force: replace a page or figure of the book even if it changed since it was written.
        note: called with one line for each run or figure skipped, or file kept.

    Raises:
        Conflict: `out` holds files the book did not write where it would write (nothing is
            written then).
    """
    md, code_css = _markdown()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = BookFolder(out)
    css = (ASSETS / "style.css").read_text(encoding="utf-8")
    files = {"style.css": css + "\n/* code: Pygments, style friendly */\n" + code_css}
    figures: dict[str, bytes] = {}
    rows = []
    order = list(registry.CHAPTERS)
    terms = glossary_terms()
    for i, chapter in enumerate(order):
        run = latest_run(runs, chapter.name, note)
        copied = run_figures(run, chapter.name, note)
        figures.update(copied)
        figures.update(text_figures(chapter.name))
        try:
            title, body, toc = render_text(md, chapter.name, resources.chapter_text(chapter.name))
            body = link_terms(body, terms)
        except FileNotFoundError:
            title, body, toc = chapter.title, (f"<h1>{_text(chapter.title)}</h1><p>This "
                                               "chapter has no text yet.</p>"), []
        prev_link = (f'<a rel="prev" href="{order[i - 1].name}.html">← {i}. '
                     f'{_text(order[i - 1].title)}</a>' if i > 0 else
                     '<a rel="prev" href="index.html">← Contents</a>')
        next_link = (f'<a rel="next" href="{order[i + 1].name}.html">{i + 2}. '
                     f'{_text(order[i + 1].title)} →</a>' if i + 1 < len(order) else
                     '<a rel="next" href="index.html">Contents →</a>')
        contents = "".join(f'<li><a href="#{sid}">{_text(h)}</a></li>' for sid, h in toc)
        layout = (f'<div class="page"><main class="text"><p class="chapter-no">Chapter {i + 1} of '
                  f'{len(order)}</p>{body}<nav class="prevnext">{prev_link}{next_link}</nav></main>'
                  f'<aside>{your_run(chapter, run, list(copied))}'
                  f'<section class="toc"><h2>On this page</h2><ol>{contents}</ol></section>'
                  f'</aside></div>')
        files[f"{chapter.name}.html"] = page(title, layout, _nav(chapter.name))
        status = (f'{_text(str(run.results.get("created", ""))[:16].replace("T", " "))}'
                  f'{" (--quick)" if (run.results.get("config") or {}).get("quick") else ""}'
                  if run else f"<code>python -m {_text(chapter.module)} --quick</code>")
        rows.append(f'<tr><td>{i + 1}</td><td><a href="{chapter.name}.html">'
                    f'{_text(chapter.title)}</a></td><td>{_text(chapter.summary)}</td>'
                    f'<td>{_text(chapter.ports)}</td><td>{exercise_list(chapter.name)}</td>'
                    f'<td>{status}</td></tr>')
    for stem, (slug, _) in PAGES.items():
        path = resources.texts_dir() / f"{stem}.md"
        if not path.is_file():
            continue
        title, body, _ = render_text(md, slug, path.read_text(encoding="utf-8"))
        body = anchor_terms(body, terms) if stem == "GLOSSARY" else link_terms(body, terms)
        files[f"{slug}.html"] = page(title, f'<div class="page"><main class="text">{body}'
                                            f'</main></div>', _nav(slug))
    files["index.html"] = page("Contents", _index_body(rows), _nav(None))
    written = {rel: text.encode("utf-8") for rel, text in files.items()} | figures
    folder.check(list(written), force)
    folder.write(written, note)
    return out / "index.html"


def _index_body(rows: list[str]) -> str:
    return f"""<div class="page index"><main class="text">
<h1>tfguide</h1>
<p>A runnable, verified course in deep learning with TensorFlow 2 and Keras 3. Each chapter
builds one idea from scratch, proves it equal to TensorFlow's own, then trains it the Keras
way. Beside each chapter, <em>Your run</em> shows the figures and numbers of your latest run
of it (from <code>runs/</code>); rebuild the book after a run with
<code>python -m tfguide book</code>.</p>
<table class="chapters">
<thead><tr><th>#</th><th>chapter</th><th>what it teaches</th><th>ports</th><th>exercises</th>
<th>your run</th>
</tr></thead>
<tbody>{"".join(rows)}</tbody>
</table>
<p>Beside the chapters: the <a href="glossary.html">glossary</a> of every term and the
notation, <a href="running.html">how tfguide runs a chapter</a>, and
<a href="performance.html">performance</a>.</p>
<p>Other ways to read: <code>python -m tfguide text NAME</code> in a terminal, and
<code>python -m tfguide notebook NAME</code> for a Jupyter notebook that runs the chapter
cell by cell.</p>
</main></div>"""


def _runs_folder(text: str) -> Path:
    """Return `--runs` as a path: a folder, or a name not there yet (then there are no runs)."""
    path = Path(text).expanduser()
    try:
        if text and (not path.exists() or path.is_dir()):
            return path
        why = "a folder (your runs; default runs/)"
    except OSError as err:
        why = f"a folder (your runs; default runs/): {err.strerror}"
    raise console.bad_value("--runs", repr(text) if not text else text, why)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tfguide book [--out DIR] [--runs DIR] [--open] [--force]`."""
    parser = console.Parser("python -m tfguide book", "Write the chapters as a local HTML book.")
    parser.add_argument("--out", metavar="DIR", default="book",
                        help="folder for the book (default book/)")
    parser.add_argument("--runs", metavar="DIR", default="runs",
                        help="where your runs are (default runs/, as for --out of a chapter)")
    parser.add_argument("--open", action="store_true", help="open the book in a web browser")
    parser.add_argument("--force", action="store_true",
                        help="replace the book's pages and figures even where you changed them")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        runs = _runs_folder(args.runs)
        _markdown()
        out = config.writable_folder("--out", args.out)
        index = build(out, runs, args.force)
    except (console.UsageError, Conflict) as err:
        console.fail(str(err), 2)
    except MissingExtra as err:
        console.fail(str(err), 1)
    except OSError as err:  # a disk that is full, a folder removed meanwhile
        where = f" ({err.filename})" if err.filename else ""
        console.fail(f"could not write the book in {args.out}: {err.strerror or err}{where}", 1)
    with_runs = sum(latest_run(runs, c.name) is not None for c in registry.CHAPTERS)
    print(f"wrote {index} ({len(registry.CHAPTERS)} chapters, {with_runs} with your run)")
    if args.open and not webbrowser.open(index.resolve().as_uri()):
        print(f"no web browser found here; open {index.resolve().as_uri()} in one")
