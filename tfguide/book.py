"""Render the chapter texts as a small static HTML book that shows your own runs.

`python -m tfguide book [--out DIR] [--runs DIR] [--open]` writes `DIR/index.html` (the
chapter table) and one page per registered chapter, with highlighted code, the Unicode
formulas of the texts set apart, and links to the previous and next chapter. Beside each
text, "Your run" shows the latest finished run under `runs/<chapter>/*/results.json`: its
date, device, data source, metrics and figures (copied into the book, so the folder can be
moved or zipped). A chapter with no run shows the command that makes one.

Everything a page needs is in the output folder: no web fonts, scripts or CDN. Markdown is
rendered with markdown-it-py and code highlighted with Pygments (the `book` extra; both
also come with Keras, through rich). Nothing here imports TensorFlow.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import html
import json
import re
import shutil
import sys
import webbrowser
from pathlib import Path
from typing import Any, Sequence

from tfguide import chapters, cli, resources
from tfguide.config import format_metric

EXTRA_HINT = ('the book needs the "book" extra: pip install -e ".[book]" (in a checkout) '
              'or pip install "tfguide[book]"')
ASSETS = Path(__file__).resolve().parent / "book_assets"
MARKER = ".tfguide-book"  # marks a folder this command wrote, so it may clean its own files
INCLUDE = re.compile(r"^<!-- include: (?P<path>[\w/.\-]+):(?P<name>[\w\-]+) -->$", re.M)


class MissingExtra(ImportError):
    """An optional dependency of this command is not installed."""


def _markdown():
    try:
        from markdown_it import MarkdownIt
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
    return md, HtmlFormatter(style="friendly").get_style_defs(".highlight")


# --- Runs -----------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """The latest finished run of a chapter, as read from its results.json."""

    dir: Path
    results: dict[str, Any]

    @property
    def figures(self) -> list[Path]:
        return sorted((self.dir / "figures").glob("*.png"))


def _created(results: dict, folder: Path) -> tuple:
    try:
        when = dt.datetime.fromisoformat(results["created"])
        if when.tzinfo is None:
            when = when.astimezone()
        return (when.timestamp(), folder.name)
    except (KeyError, TypeError, ValueError):
        return (0.0, folder.name)


def latest_run(runs: Path, name: str) -> Run | None:
    """Return the newest run of chapter `name` that finished ("status": "ok"), or None.

    Unreadable or damaged results.json files, and failed or interrupted runs, are skipped.
    """
    found = []
    for path in Path(runs).glob(f"{name}/*/results.json"):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(results, dict) or results.get("status") != "ok":
            continue
        if results.get("chapter", name) != name:
            continue
        found.append((_created(results, path.parent), Run(path.parent, results)))
    return max(found, key=lambda item: item[0])[1] if found else None


def run_command(chapter: chapters.Chapter, config: dict) -> str:
    """Return the command line that repeats a run with this config (defaults left out)."""
    quick = bool(config.get("quick"))
    parts = [f"python -m {chapter.module}"] + (["--quick"] if quick else [])
    defaults = {
        "epochs": chapter.quick_epochs if quick else chapter.epochs,
        "batch_size": chapter.batch_size, "learning_rate": chapter.learning_rate, "seed": 42,
        "data": chapter.quick_data if quick else chapter.data[0], "device": "auto",
        "precision": "float32", "jit": "auto", "strategy": "auto",
    }
    for key, default in defaults.items():
        if key in config and config[key] != default:
            parts.append(f"--{key.replace('_', '-')} {config[key]:g}"
                         if isinstance(config[key], float) else
                         f"--{key.replace('_', '-')} {config[key]}")
    for key, value in (config.get("options") or {}).items():
        option = next((o for o in chapter.options if o.dest == key), None)
        if option is not None and value not in (option.default, option.quick_default):
            parts.append(f"{option.flag} {value}")
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


def render_text(md, name: str, text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Render a chapter text; return (title, HTML, [(section id, heading)])."""
    text = INCLUDE.sub(lambda m: f'<p class="src">{html.escape(m["path"])}</p>\n', text)
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
        elif tok.type == "inline":
            opened = []
            for child in tok.children or []:
                if child.type == "link_open":
                    _retarget(child)
                    opened.append(child)
                elif child.type == "link_close" and opened:
                    child.tag = opened.pop().tag  # "a", or "span" for a file outside the book
    return title, md.renderer.render(tokens, md.options, {}), toc


def _retarget(link) -> None:
    """Point links to chapter texts at their pages; other local files are not in the book."""
    href = link.attrGet("href") or ""
    if re.match(r"^[a-z][a-z0-9+.-]*:", href) or href.startswith("#"):
        return  # a web address (not loaded at view time) or a place on this page
    path, _, fragment = href.partition("#")
    target = Path(path).name
    stem = target[:-3] if target.endswith(".md") else None
    if stem in chapters.BY_NAME:
        link.attrSet("href", f"{stem}.html" + (f"#{fragment}" if fragment else ""))
    else:  # e.g. ../README.md or a data file: name it, without a link that cannot resolve
        link.tag = "span"
        link.attrs = {"class": "file-ref", "title": href}


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
    for i, c in enumerate(chapters.CHAPTERS, 1):
        mark = ' aria-current="page"' if c.name == current else ""
        links.append(f'<a href="{c.name}.html"{mark}>{i}. {html.escape(c.title)}</a>')
    return "".join(links)


def your_run(chapter: chapters.Chapter, run: Run | None, figures: list[str]) -> str:
    """The "Your run" panel: the latest run's facts, metrics and figures, or how to make one."""
    if run is None:
        return (f'<section class="run none"><h2>Your run</h2><p>No run of this chapter yet. '
                f'Make one (a few seconds with <code>--quick</code>), then rebuild the book:</p>'
                f'<pre class="cmd"><code>python -m {chapter.module} --quick\n'
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
             ("time", f"{float(r.get('wall_s', 0)):.1f} s"), ("folder", str(run.dir))]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in facts)
    metrics = "".join(f"<tr><td><code>{html.escape(k)}</code></td>"
                      f"<td class=\"num\">{html.escape(format_metric(v))}</td></tr>"
                      for k, v in (r.get("metrics") or {}).items())
    figs = "".join(
        f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(Path(src).stem)}">'
        f'</a><figcaption>{html.escape(Path(src).name)}</figcaption></figure>'
        for src in figures)
    return (f'<section class="run"><h2>Your run</h2><table class="facts">{rows}</table>'
            f'<pre class="cmd"><code>{html.escape(run_command(chapter, config))}</code></pre>'
            f'<h3>Metrics</h3><table class="metrics">{metrics}</table>'
            f'<h3>Figures</h3>{figs or "<p>This run saved no figures.</p>"}</section>')


def _copy_figures(run: Run | None, out: Path, name: str) -> list[str]:
    folder = out / "figures" / name
    if folder.exists():
        shutil.rmtree(folder)
    if run is None:
        return []
    folder = folder / run.dir.name
    folder.mkdir(parents=True)
    srcs = []
    for png in run.figures:
        shutil.copy2(png, folder / png.name)
        srcs.append(f"figures/{name}/{run.dir.name}/{png.name}")
    return srcs


def build(out: Path, runs: Path = Path("runs")) -> Path:
    """Write the book into `out`; return the path of its index.html."""
    md, code_css = _markdown()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"--out {out} is a folder with other files in it; give an empty "
                              "or new folder (or one an earlier `tfguide book` wrote).")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `python -m tfguide book`\n", encoding="utf-8")
    css = (ASSETS / "style.css").read_text(encoding="utf-8")
    (out / "style.css").write_text(css + "\n/* code: Pygments, style friendly */\n" + code_css,
                                   encoding="utf-8")
    rows = []
    order = list(chapters.CHAPTERS)
    for i, chapter in enumerate(order):
        run = latest_run(runs, chapter.name)
        figures = _copy_figures(run, out, chapter.name)
        try:
            title, body, toc = render_text(md, chapter.name, resources.chapter_text(chapter.name))
        except FileNotFoundError:
            title, body, toc = chapter.title, (f"<h1>{html.escape(chapter.title)}</h1><p>This "
                                               "chapter has no text yet.</p>"), []
        prev_link = (f'<a rel="prev" href="{order[i - 1].name}.html">← {i}. '
                     f'{html.escape(order[i - 1].title)}</a>' if i > 0 else
                     '<a rel="prev" href="index.html">← Contents</a>')
        next_link = (f'<a rel="next" href="{order[i + 1].name}.html">{i + 2}. '
                     f'{html.escape(order[i + 1].title)} →</a>' if i + 1 < len(order) else
                     '<a rel="next" href="index.html">Contents →</a>')
        contents = "".join(f'<li><a href="#{sid}">{html.escape(h)}</a></li>' for sid, h in toc)
        layout = (f'<div class="page"><main class="text"><p class="chapter-no">Chapter {i + 1} of '
                  f'{len(order)}</p>{body}<nav class="prevnext">{prev_link}{next_link}</nav></main>'
                  f'<aside>{your_run(chapter, run, figures)}'
                  f'<section class="toc"><h2>On this page</h2><ol>{contents}</ol></section>'
                  f'</aside></div>')
        (out / f"{chapter.name}.html").write_text(page(title, layout, _nav(chapter.name)),
                                                   encoding="utf-8")
        status = (f'{html.escape(str(run.results.get("created", ""))[:16].replace("T", " "))}'
                  f'{" (--quick)" if (run.results.get("config") or {}).get("quick") else ""}'
                  if run else f"<code>python -m {chapter.module} --quick</code>")
        rows.append(f'<tr><td>{i + 1}</td><td><a href="{chapter.name}.html">'
                    f'{html.escape(chapter.title)}</a></td><td>{html.escape(chapter.summary)}</td>'
                    f'<td>{html.escape(chapter.ports)}</td><td>{status}</td></tr>')
    index = out / "index.html"
    index.write_text(page("Contents", _index_body(rows), _nav(None)), encoding="utf-8")
    return index


def _index_body(rows: list[str]) -> str:
    return f"""<div class="page index"><main class="text">
<h1>tfguide</h1>
<p>A runnable, verified course in deep learning with TensorFlow 2 and Keras 3. Each chapter
builds one idea from scratch, proves it equal to TensorFlow's own, then trains it the Keras
way. Beside each chapter, <em>Your run</em> shows the figures and numbers of your latest run
of it (from <code>runs/</code>); rebuild the book after a run with
<code>python -m tfguide book</code>.</p>
<table class="chapters">
<thead><tr><th>#</th><th>chapter</th><th>what it teaches</th><th>ports</th><th>your run</th>
</tr></thead>
<tbody>{"".join(rows)}</tbody>
</table>
<p>Other ways to read: <code>python -m tfguide text NAME</code> in a terminal, and
<code>python -m tfguide notebook NAME</code> for a Jupyter notebook that runs the chapter
cell by cell.</p>
</main></div>"""


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tfguide book [--out DIR] [--runs DIR] [--open]`."""
    parser = cli.Parser("python -m tfguide book", "Write the chapters as a local HTML book.")
    parser.add_argument("--out", metavar="DIR", default="book",
                        help="folder for the book (default book/)")
    parser.add_argument("--runs", metavar="DIR", default="runs",
                        help="where your runs are (default runs/, as for --out of a chapter)")
    parser.add_argument("--open", action="store_true", help="open the book in a web browser")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        out = cli.output_folder("--out", args.out)
    except cli.UsageError as err:
        cli.fail(str(err), 2)
    try:
        index = build(out, Path(args.runs).expanduser())
    except MissingExtra as err:
        cli.fail(str(err), 1)
    except FileExistsError as err:
        cli.fail(str(err), 2)
    runs = Path(args.runs).expanduser()
    with_runs = sum(latest_run(runs, c.name) is not None for c in chapters.CHAPTERS)
    print(f"wrote {index} ({len(chapters.CHAPTERS)} chapters, {with_runs} with your run)")
    if args.open and not webbrowser.open(index.resolve().as_uri()):
        print(f"no web browser found here; open {index.resolve().as_uri()} in one")
