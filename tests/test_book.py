"""The HTML book: every chapter page, "your run" from results.json, and a real browser.

The browser test drives headless Chromium (Debian's `chromium`) over the Chrome DevTools
protocol on a pipe (`--remote-debugging-pipe`), so it needs no Python package and no
network; it is skipped, saying why, when no Chromium is installed.
"""
import base64
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

import pytest

from tfguide import book, cli, registry, resources
from tfguide import runs as run_folders
from tests.conftest import exit_status

pytest.importorskip("markdown_it", reason='the book needs the "book" extra')
pytest.importorskip("pygments", reason='the book needs the "book" extra')

NAMES = [c.name for c in registry.CHAPTERS]
FIRST = NAMES[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A real --quick run of the first chapter (the others have none: they show a command)."""
    import importlib

    root = tmp_path_factory.mktemp("runs")
    module = importlib.import_module(registry.get(FIRST).module)
    module.run(cli.parse(FIRST, ["--quick", "--out", str(root)]))
    return root


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "book"
    index = book.build(out, runs)
    return out, index


# --- The pages ------------------------------------------------------------------------
def test_index_lists_every_chapter_in_order(site):
    out, index = site
    html = index.read_text()
    positions = [html.index(f'href="{n}.html"', html.index("<table")) for n in NAMES]
    assert positions == sorted(positions)
    pages = {slug for slug, _ in book.PAGES.values()}
    assert {p.stem for p in out.glob("*.html")} == {"index", *NAMES, *pages}


@pytest.mark.parametrize("name", NAMES)
def test_chapter_page_has_text_code_and_navigation(site, name):
    out, _ = site
    html = (out / f"{name}.html").read_text()
    for heading in ("Run it", "The idea", "From scratch", "Results"):
        assert f">{heading}</h2>" in html
    assert '<pre class="highlight"><code>' in html and '<span class="k">def</span>' in html
    assert "<!-- include:" not in html, "include markers become captions"
    i = NAMES.index(name)
    prev_href = f"{NAMES[i - 1]}.html" if i else "index.html"
    next_href = f"{NAMES[i + 1]}.html" if i + 1 < len(NAMES) else "index.html"
    assert f'rel="prev" href="{prev_href}"' in html and f'rel="next" href="{next_href}"' in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "nothing is fetched from the web"


def test_your_run_shows_the_latest_run_figures_and_metrics(site, runs):
    out, _ = site
    html = (out / f"{FIRST}.html").read_text()
    (run_dir,) = (runs / FIRST).iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert "Your run" in html and results["created"].replace("T", " ") in html
    assert results["runtime"]["device"] in html and results["data"]["source"] in html
    for metric in results["metrics"]:
        assert f"<code>{metric}</code>" in html
    figures = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
    assert figures, "the quick run saved figures"
    for name in figures:
        copied = out / "figures" / FIRST / run_dir.name / name
        assert copied.read_bytes() == (run_dir / "figures" / name).read_bytes()
        assert f'src="figures/{FIRST}/{run_dir.name}/{name}"' in html


def test_a_chapter_without_a_run_shows_the_command(tmp_path):
    book.build(tmp_path / "book", tmp_path / "no-runs")
    html = (tmp_path / "book" / f"{FIRST}.html").read_text()
    assert "No run of this chapter yet" in html
    assert f"python -m tfguide.chapters.{FIRST} --quick" in html
    shown = tmp_path / "book" / "figures" / FIRST  # the text's recorded figures only
    assert not [p for p in shown.rglob("*") if p.is_dir()], "no run's figures without a run"


def test_latest_finished_run_wins_and_damaged_ones_are_skipped(runs, tmp_path):
    (src,) = (runs / FIRST).iterdir()
    base = json.loads((src / "results.json").read_text())

    def fake(stamp, created, status="ok", marker=0.0):
        folder = tmp_path / FIRST / stamp
        shutil.copytree(src, folder)
        data = dict(base, created=created, status=status, metrics={"marker": marker})
        (folder / "results.json").write_text(json.dumps(data))
        return folder

    fake("20200101-000000", "2020-01-01T00:00:00+00:00", marker=1.0)
    newest = fake("20200301-000000", "2020-03-01T00:00:00+00:00", marker=3.0)
    fake("20200401-000000", "2020-04-01T00:00:00+00:00", status="failed", marker=4.0)
    damaged = tmp_path / FIRST / "20200501-000000"
    damaged.mkdir()
    (damaged / "results.json").write_text('{"status": "ok", "metr')
    run = run_folders.latest_run(tmp_path, FIRST)
    assert run.dir == newest and run.results["metrics"] == {"marker": 3.0}
    assert run_folders.latest_run(tmp_path, "no_such_chapter") is None


def test_run_command_repeats_the_run():
    chapter = registry.get(FIRST)
    assert book.run_command(chapter, {"quick": True, "epochs": chapter.quick_epochs}) == \
        f"python -m {chapter.module} --quick"
    assert book.run_command(chapter, {"quick": False, "seed": 7, "learning_rate": 0.05}) == \
        f"python -m {chapter.module} --learning-rate 0.05 --seed 7"


def test_formulas_links_and_includes_are_rendered():
    md, _ = book._markdown()
    text = ("# T\n\nThe loss\n\n  J(θ) = (1/n)·‖Xθ − y‖².\n\n"
            "See [the next one](cnn.md#the-idea)"
            f", [{FIRST}]({FIRST}.md), [data](../data/README.md) and [web](https://keras.io).\n\n"
            "<!-- include: tfguide/chapters/x.py:a -->\n```python\ndef f():\n    pass\n```\n")
    title, html, toc = book.render_text(md, FIRST, text)
    assert title == "T" and toc == []
    assert '<p class="formula">J(θ) = (1/n)·‖Xθ − y‖².</p>' in html
    assert f'<a href="{FIRST}.html">' in html, "links to chapter texts go to their pages"
    assert '<span class="file-ref" title="../data/README.md">data</span>' in html
    assert '<a href="https://keras.io">web</a>' in html
    assert '<p class="src">tfguide/chapters/x.py</p>' in html
    if "cnn" not in registry.BY_NAME:
        assert 'title="cnn.md#the-idea"' in html, "no link to a page the book lacks"


def test_refuses_to_write_into_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(book.Conflict, match="a folder with other files in it"):
        book.build(tmp_path, tmp_path / "runs")
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_book_command_writes_the_site(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tfguide", "book", "--out",
                             str(tmp_path / "site"), "--runs", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and (tmp_path / "site" / "index.html").is_file()
    assert "tensorflow" not in result.stderr


# --- Hostile and damaged input -------------------------------------------------------
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(24)  # enough of a PNG for the book's check


@pytest.fixture
def one_chapter(monkeypatch):
    """A book of the first chapter only: a fifth of the time of the whole book."""
    monkeypatch.setattr(registry, "CHAPTERS", (registry.get(FIRST),))


@pytest.fixture(scope="module")
def base(runs):
    (src,) = (runs / FIRST).iterdir()
    return json.loads((src / "results.json").read_text())


def make_run(root, stamp, base, figures=("loss.png",), created="2020-01-01T00:00:00+00:00",
             **changes):
    """A finished run of the first chapter in `root`, with tiny PNG figures it lists."""
    folder = root / FIRST / stamp
    (folder / "figures").mkdir(parents=True)
    for name in figures:
        (folder / "figures" / name).write_bytes(PNG_BYTES + os.fsencode(name))
    results = dict(base, created=created, files=[f"figures/{n}" for n in figures], **changes)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


class Tags(HTMLParser):
    """The start tags of a page with their attributes (entities decoded, as a browser reads)."""

    def __init__(self, text):
        super().__init__()
        self.tags = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def is_text_figure(src: str) -> bool:
    """A chapter text's recorded figure, figures/NAME/x.png, copied from chapters/figures/."""
    parts = src.split("/")
    return len(parts) == 3 and parts[0] == "figures" and \
        (resources.texts_dir() / src).is_file()


@pytest.mark.parametrize("name", ['q" onerror="alert(1)', "a'b <i>&amp;", "100% #?x=1",
                                  "new\nline", "not utf-8 \udcff", "\x1b[31mred"])
def test_names_from_runs_are_escaped_where_they_land(name, tmp_path, base, one_chapter):
    run = make_run(tmp_path / "runs", name, base, figures=(f"{name}.png",))
    notes = []
    book.build(tmp_path / "book", tmp_path / "runs", note=notes.append)
    html = (tmp_path / "book" / f"{FIRST}.html").read_text(encoding="utf-8")
    tags = Tags(html).tags
    assert not [(t, a) for t, a in tags if t == "script" or any(k.startswith("on") for k in a)]
    assert "<i>" not in html and 'onerror="' not in html
    # the run's figure: figures/NAME/RUN/x.png (the text's own are figures/NAME/x.png)
    (img,) = [a for t, a in tags if t == "img" and a["src"].count("/") == 3]
    assert set(img) == {"src", "alt"}
    url = urlsplit(img["src"])  # as a browser reads it: a `#` or `?` would cut the path short
    assert not (url.scheme or url.netloc or url.query or url.fragment), img["src"]
    copied = tmp_path / "book" / os.fsdecode(unquote_to_bytes(url.path))
    assert copied.read_bytes() == (run / "figures" / f"{name}.png").read_bytes()
    assert [a["href"] for t, a in tags if t == "a" and a.get("href") == img["src"]]
    assert not notes


def test_values_from_results_are_escaped_where_they_land(tmp_path, base, one_chapter):
    markup = '<img src=x onerror="alert(1)">'
    make_run(tmp_path / "runs", "20200101-000000", base, figures=(),
             created="2020-01-01T00:00:00+00:00" + markup, metrics={markup: markup},
             runtime={**base["runtime"], "device": markup, "replicas": markup},
             data={**base["data"], "name": markup, "source": markup},
             config={**base["config"], "data": markup, "options": {"units": markup}})
    book.build(tmp_path / "book", tmp_path / "runs", note=pytest.fail)
    html = (tmp_path / "book" / f"{FIRST}.html").read_text()
    assert html.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 8
    for page in (f"{FIRST}.html", "index.html"):
        html = (tmp_path / "book" / page).read_text()
        assert markup not in html
        assert not [t for t, a in Tags(html).tags if (t == "img" and not is_text_figure(a.get("src", ""))) or "onerror" in a], page


def test_raw_html_in_a_text_reaches_the_page_as_text_except_the_folds():
    """A results file's markup, copied into a text, is shown, never run (#2)."""
    md, _ = book._markdown()
    text = ("# T\n\nOn <!-- result: machine -->x<script>alert(1)</script><!-- /result --> it"
            " ran.\n\n<!-- result: date -->2026 <img src=x onerror=alert(2)><!-- /result --> "
            "was the day.\n\n<p onclick=\"alert(3)\">raw</p>\n\n| metric | value |\n"
            "| --- | --- |\n| `loss` | <!-- result: loss | .4f -->0.2500<!-- /result --> |\n\n"
            "<details>\n<summary>Answer</summary>\n\nThe *answer*.\n\n</details>\n")
    _, page, _ = book.render_text(md, FIRST, text)
    tags = Tags(page).tags
    assert not [t for t, a in tags if t in ("script", "img") or any(k.startswith("on") for k in a)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "onerror=alert(2)&gt;" in page
    assert "<td>0.2500</td>" in page, "a marker's `|` does not split its table cell"
    assert "<details>" in page and "<summary>Answer</summary>" in page
    assert "<em>answer</em>" in page and "<!--" not in page


def wrong(**changes):
    return lambda r: {**r, **changes}


def inside(section, **changes):
    return lambda r: {**r, section: {**r[section], **changes}}


WRONG_TYPES = {
    "not an object": lambda r: [r],
    "metrics a list": wrong(metrics=[1, 2]),
    "a metric an object": wrong(metrics={"loss": {"value": 1}}),
    "runtime a string": wrong(runtime="cpu"),
    "data a number": wrong(data=5),
    "config a string": wrong(config="quick"),
    "device a list": inside("runtime", device=["cpu"]),
    "train an object": inside("data", train={"n": 1}),
    "epochs a list": inside("config", epochs=[1, 2]),
    "options a list": inside("config", options=[1]),
    "an option an object": inside("config", options={"units": {"n": 1}}),
    "wall_s a string": wrong(wall_s="fast"),
    "wall_s a bool": wrong(wall_s=True),
    "created a number": wrong(created=20200101),
    "chapter a list": wrong(chapter=[FIRST]),
    "files a string": wrong(files="figures/loss.png"),
    "files holds numbers": wrong(files=[1]),
}
DAMAGED = {
    "cut short": b'{"status": "ok", "metr',
    "nested too deep": b'{"status": "ok", "metrics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a 5000-digit number": b'{"status": "ok", "wall_s": 1' + b"0" * 5000 + b"}",
    "not UTF-8": b'{"status": "ok", "chapter": "\xff"}',
}


def broken_runs(root, base):
    """An older good run, then one newer broken run per case; return (good run, broken files)."""
    good = make_run(root, "20190101-000000", base, metrics={"marker": 7.0})
    broken = []
    for i, change in enumerate(WRONG_TYPES.values()):
        folder = make_run(root, f"2020{i + 1:02d}01-000000", base,
                          created=f"2020-{i + 1:02d}-01T00:00:00+00:00")
        (folder / "results.json").write_text(json.dumps(change(dict(
            base, created=f"2020-{i + 1:02d}-01T00:00:00+00:00"))))
        broken.append(folder / "results.json")
    for i, raw in enumerate(DAMAGED.values()):
        folder = make_run(root, f"2021{i + 1:02d}01-000000", base)
        (folder / "results.json").write_bytes(raw)
        broken.append(folder / "results.json")
    return good, broken


@pytest.mark.parametrize("case", [*WRONG_TYPES, *DAMAGED])
def test_a_results_file_of_the_wrong_shape_is_skipped_with_a_note(case, tmp_path, base):
    good = make_run(tmp_path, "20190101-000000", base)
    bad = make_run(tmp_path, "20200101-000000", base, created="2020-01-01T00:00:00+00:00")
    if case in WRONG_TYPES:
        (bad / "results.json").write_text(json.dumps(WRONG_TYPES[case](
            json.loads((bad / "results.json").read_text()))))
    else:
        (bad / "results.json").write_bytes(DAMAGED[case])
    notes = []
    assert run_folders.latest_run(tmp_path, FIRST, notes.append).dir == good
    (note,) = notes
    assert note.startswith(f"skipped {bad / 'results.json'}: ")


def test_wrong_shapes_do_not_stop_the_build(tmp_path, base, one_chapter, capsys):
    good, broken = broken_runs(tmp_path / "runs", base)
    status = run_main("--out", str(tmp_path / "book"), "--runs", str(tmp_path / "runs"))
    assert status == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(broken) and all(ln.startswith("tfguide: note: skipped ") for ln in err)
    html = (tmp_path / "book" / f"{FIRST}.html").read_text()
    assert "<code>marker</code>" in html and good.name in html, "the latest good run is shown"


def test_non_finite_metrics_are_shown(tmp_path, base, one_chapter):
    make_run(tmp_path / "runs", "20200101-000000", base, metrics={"a": "nan"})
    (path,) = (tmp_path / "runs").glob("*/*/results.json")
    path.write_text(path.read_text().replace('"nan"', "NaN"))  # Python's json writes these
    book.build(tmp_path / "book", tmp_path / "runs")
    assert '<td class="num">nan</td>' in (tmp_path / "book" / f"{FIRST}.html").read_text()


def test_the_shown_command_quotes_values_for_the_shell():
    chapter = registry.get(FIRST)
    command = book.run_command(chapter, {"data": "x; rm -rf ~", "seed": "$(id)"})
    assert command.endswith("--seed '$(id)' --data 'x; rm -rf ~'")


def test_notes_show_control_characters_escaped(capsys):
    book._stderr_note("skipped runs/\x1b[31mred\n/results.json")
    assert capsys.readouterr().err == "tfguide: note: skipped runs/\\x1b[31mred\\n/results.json\n"


def test_unreadable_files_are_skipped_with_a_note(tmp_path, base, one_chapter, monkeypatch):
    """As a non-root user sees files without read permission (simulated: tests run as root)."""
    good = make_run(tmp_path / "runs", "20190101-000000", base, figures=("a.png", "b.png"))
    newer = make_run(tmp_path / "runs", "20200101-000000", base,
                     created="2020-01-01T00:00:00+00:00")
    real_open, real_read = os.open, Path.read_text

    def deny(path):
        if str(path) in (str(newer / "results.json"), str(good / "figures" / "b.png")):
            raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", lambda path, *a, **k: deny(path) or real_open(path, *a, **k))
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: deny(self) or real_read(
        self, *a, **k))
    notes = []
    book.build(tmp_path / "book", tmp_path / "runs", note=notes.append)
    assert notes == [f"skipped {newer / 'results.json'}: cannot be read (Permission denied)",
                     f"skipped {good / 'figures' / 'b.png'}: cannot be read (Permission denied)"]
    assert [p.name for p in (tmp_path / "book" / "figures" / FIRST / good.name).iterdir()] == [
        "a.png"]


def test_a_full_disk_is_one_line_and_the_next_build_goes_on(tmp_path, one_chapter, capsys,
                                                           monkeypatch):
    out, runs = tmp_path / "book", tmp_path / "runs"
    real = book.replace_file

    def full_at_index(path, data):
        if path.name == "index.html":
            raise OSError(28, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(book, "replace_file", full_at_index)
    capsys.readouterr()
    assert run_main("--out", str(out), "--runs", str(runs)) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"tfguide: error: could not write the book in {out}: No space left on device "
        f"({out / 'index.html'})"]
    assert (out / f"{FIRST}.html").is_file() and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(book, "replace_file", real)
    assert run_main("--out", str(out), "--runs", str(runs)) == 0, "what it wrote is its own"
    assert (out / "index.html").is_file()


# --- Links and special files ----------------------------------------------------------
SECRET = PNG_BYTES + b"SECRET"


def secret_in(folder):
    return [p for p in folder.rglob("*") if p.is_file() and b"SECRET" in p.read_bytes()]


def test_only_regular_figures_the_run_listed_are_copied(tmp_path, base, one_chapter):
    (tmp_path / "secret.png").write_bytes(SECRET)
    run = make_run(tmp_path / "runs", "20200101-000000", base,
                   figures=("ok.png", "link.png", "fifo.png", "text.png", "folder.png"))
    figures = run / "figures"
    (figures / "link.png").unlink()
    (figures / "link.png").symlink_to(tmp_path / "secret.png")
    (figures / "fifo.png").unlink()
    os.mkfifo(figures / "fifo.png")  # copying it would wait forever
    (figures / "text.png").write_bytes(b"SECRET, not an image")
    (figures / "folder.png").unlink()
    (figures / "folder.png").mkdir()
    (figures / "unlisted.png").write_bytes(SECRET)
    notes = []
    book.build(tmp_path / "book", tmp_path / "runs", note=notes.append)
    copied = tmp_path / "book" / "figures" / FIRST / run.name
    assert [p.name for p in copied.iterdir()] == ["ok.png"]
    assert not secret_in(tmp_path / "book")
    skipped = sorted(re.search(r"figures/(\S+\.png)", n)[1] for n in notes)
    assert skipped == ["fifo.png", "folder.png", "link.png", "text.png", "unlisted.png"]


@pytest.mark.parametrize("link", ["run folder", "results.json", "figures folder",
                                  "chapter folder"])
def test_linked_runs_are_not_copied(link, tmp_path, base, one_chapter):
    """A link under --runs never brings its target into the book (tfguide makes no links)."""
    elsewhere = make_run(tmp_path / "elsewhere", "20300101-000000", base,
                         created="2030-01-01T00:00:00+00:00", figures=("stolen.png",))
    (elsewhere / "figures" / "stolen.png").write_bytes(SECRET)
    runs = tmp_path / "runs"
    if link == "chapter folder":
        runs.mkdir()
        (runs / FIRST).symlink_to(elsewhere.parent)
    else:
        make_run(runs, "20190101-000000", base)
        target = runs / FIRST / "20300101-000000"
        if link == "run folder":
            target.symlink_to(elsewhere)
        else:
            shutil.copytree(elsewhere, target)
            inner = target / ("results.json" if link == "results.json" else "figures")
            shutil.rmtree(inner) if inner.is_dir() else inner.unlink()
            inner.symlink_to(elsewhere / inner.name)
    notes = []
    book.build(tmp_path / "book", runs, note=notes.append)
    assert not secret_in(tmp_path / "book")
    (note,) = notes
    assert "a link" in note


# --- Rebuilding: only the book's own files --------------------------------------------
def test_a_rebuild_removes_only_what_the_book_wrote(tmp_path, base, one_chapter):
    runs, out = tmp_path / "runs", tmp_path / "book"
    old = make_run(runs, "20200101-000000", base, figures=("a.png", "b.png"))
    notes = []
    book.build(out, runs, note=notes.append)
    old_copy = out / "figures" / FIRST / old.name
    assert (old_copy / "a.png").read_bytes() == (old / "figures" / "a.png").read_bytes()
    mine = {out / "notes.html": "mine", out / "figures" / "mine.png": "mine",
            out / "figures" / FIRST / "mine.txt": "mine", old_copy / "mine.png": "mine"}
    for path, text in mine.items():
        path.write_text(text)
    (old_copy / "b.png").write_bytes(b"changed")

    new = make_run(runs, "20200201-000000", base, created="2020-02-01T00:00:00+00:00",
                   figures=("c.png",))
    book.build(out, runs, note=notes.append)
    assert {path: path.read_text() for path in mine} == mine, "your files are all kept"
    assert not (old_copy / "a.png").exists(), "the book's own figure of the old run is gone"
    assert (old_copy / "b.png").read_bytes() == b"changed"
    assert notes == [f"kept {old_copy / 'b.png'}: has changed since the book wrote it"]
    assert (out / "figures" / FIRST / new.name / "c.png").is_file()

    make_run(runs, "20200301-000000", base, created="2020-03-01T00:00:00+00:00")
    book.build(out, runs)
    assert not (out / "figures" / FIRST / new.name).exists(), "an emptied run folder goes too"


def run_main(*args):
    return exit_status(book.main, *args)


def test_a_page_you_changed_is_kept_unless_forced(tmp_path, one_chapter, capsys):
    out, runs = tmp_path / "book", tmp_path / "runs"
    book.build(out, runs)
    page, index = out / f"{FIRST}.html", (out / "index.html").read_bytes()
    page.write_text("my edits")
    capsys.readouterr()
    assert run_main("--out", str(out), "--runs", str(runs)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"tfguide: error: {page} has changed since the book wrote it; "
                    "move it away, or add --force to replace it")
    assert page.read_text() == "my edits" and (out / "index.html").read_bytes() == index
    assert run_main("--out", str(out), "--runs", str(runs), "--force") == 0
    assert "my edits" not in page.read_text()
    assert run_main("--out", str(out), "--runs", str(runs)) == 0, "the book's own again"


def test_links_in_the_book_folder_are_never_written_through(tmp_path, base, one_chapter):
    out, runs, yours = tmp_path / "book", tmp_path / "runs", tmp_path / "yours"
    make_run(runs, "20200101-000000", base)
    book.build(out, runs)
    yours.mkdir()
    (yours / "page.html").write_text("yours")
    page = out / f"{FIRST}.html"
    page.unlink()
    page.symlink_to(yours / "page.html")
    with pytest.raises(book.Conflict, match="is a link"):
        book.build(out, runs)
    book.build(out, runs, force=True)
    assert (yours / "page.html").read_text() == "yours" and not page.is_symlink()

    shutil.rmtree(out / "figures")
    (out / "figures").symlink_to(yours)
    for force in (False, True):
        with pytest.raises(book.Conflict, match="is in the way"):
            book.build(out, runs, force=force)
    assert [p.name for p in yours.iterdir()] == ["page.html"]


def test_a_forged_record_removes_nothing_outside_the_book(tmp_path, one_chapter):
    out, victim = tmp_path / "book", tmp_path / "victim.png"
    victim.write_bytes(PNG_BYTES)
    book.build(out, tmp_path / "runs")
    digest = hashlib.sha256(PNG_BYTES).hexdigest()
    (out / "figures").mkdir(exist_ok=True)  # the texts' recorded figures may be there
    (out / "figures" / "x").symlink_to(tmp_path)  # figures/x/.. reaches the victim
    record = json.loads((out / ".tfguide-book").read_text())
    record["files"].update({"../victim.png": digest, str(victim): digest,
                            "figures/x/../victim.png": digest, "figures/x/y/../../victim.png":
                            digest, f"figures/x/{tmp_path.name}/victim.png": digest})
    (out / ".tfguide-book").write_text(json.dumps(record))
    book.build(out, tmp_path / "runs")
    assert victim.read_bytes() == PNG_BYTES


def test_a_book_from_an_older_tfguide_is_rebuilt_keeping_other_files(tmp_path, one_chapter):
    out = tmp_path / "book"
    (out / "figures" / FIRST / "old").mkdir(parents=True)
    (out / ".tfguide-book").write_text("written by `python -m tfguide book`\n")
    (out / "index.html").write_text("old page")
    (out / "figures" / FIRST / "old" / "x.png").write_bytes(PNG_BYTES)
    book.build(out, tmp_path / "runs")
    assert (out / "index.html").read_text() != "old page"
    assert (out / "figures" / FIRST / "old" / "x.png").read_bytes() == PNG_BYTES
    assert "index.html" in json.loads((out / ".tfguide-book").read_text())["files"]


@pytest.mark.parametrize("args", [
    ["--out", "{tmp}/file/sub"], ["--out", "{tmp}/file"], ["--out", "/proc/tfguide-book"],
    ["--out", "{tmp}/" + "x" * 300], ["--out", ""], ["--out", "{tmp}/locked"],
    ["--runs", ""], ["--runs", "{tmp}/file"], ["--runs", "{tmp}/" + "x" * 300],
], ids=["under a file", "a file", "in /proc", "too long", "empty", "read-only",
        "runs empty", "runs a file", "runs too long"])
def test_an_impossible_folder_is_one_line_exit_2(args, unwritable, capsys):
    tmp_path = unwritable
    args = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "book")]
    capsys.readouterr()
    assert run_main(*args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"tfguide: error: {args[0]} must be a folder"), line
    assert f"Received: {args[0]}=" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "locked"]


# --- In a real browser ----------------------------------------------------------------
def find_chromium() -> str | None:
    for name in (os.environ.get("TFGUIDE_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Chromium:
    """Headless Chromium spoken to over the DevTools protocol on a pipe (fds 3 and 4)."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--remote-debugging-pipe"]

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds():  # in the child: the browser reads fd 3 and writes fd 4
            a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire_fds, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))

    def _next_message(self, deadline: float) -> dict:
        try:
            message = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("Chromium did not answer in time") from None
        if message is None:
            raise RuntimeError("Chromium closed the DevTools pipe")
        return message

    def send(self, method: str, params: dict | None = None, session: str | None = None):
        """Send one command and return its result; events meanwhile go to `self.events`."""
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._next_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            message = self._next_message(deadline)
            if message.get("method") == method and message.get("sessionId") == session:
                return message
            self.events.append(message)

    def close(self):
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._to_browser)


def page_errors(events: list[dict], session: str) -> list[str]:
    """The console errors, uncaught exceptions and failed loads among a page's events."""
    errors = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                 for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            errors.append(f"log: {entry['text']} {entry.get('url', '')}")
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {params.get('errorText')}")
    return errors


INSPECT = """(async () => {
  const images = await Promise.all(Array.from(document.images, img =>
      img.decode().then(() => [img.currentSrc, img.naturalWidth > 0],
                        () => [img.currentSrc, false])));
  return {
    images,
    links: Array.from(document.querySelectorAll("a[href]"), a => a.href),
    ids: Array.from(document.querySelectorAll("[id]"), e => e.id),
    resources: performance.getEntriesByType("resource").map(r => r.name),
    title: document.title,
    h1: (document.querySelector("h1") || {}).textContent,
    math: Array.from(document.querySelectorAll("math"), m => {
      const box = m.getBoundingClientRect();  // MathML laid out by the browser itself
      return [box.width, box.height];
    }),
  };
})()"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG file"
    return struct.unpack(">II", data[16:24])


def open_tab(browser) -> str:
    """Open a blank tab that reports page, script, log and network events; return its session."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget",
                           {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    return session


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (Debian: apt-get "
                    "install chromium; or set TFGUIDE_CHROMIUM to a Chrome/Chromium binary)")
def test_pages_load_in_headless_chromium(site, tmp_path):
    out, index = site
    browser = Chromium(find_chromium(), tmp_path / "profile")
    try:
        session = open_tab(browser)
        browser.send("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=session)

        seen: dict[Path, dict] = {}
        todo = [index.resolve()]
        while todo:
            path = todo.pop(0)
            if path in seen:
                continue
            browser.events.clear()
            browser.send("Page.navigate", {"url": path.as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired", session)
            report = browser.send("Runtime.evaluate", {
                "expression": INSPECT, "awaitPromise": True, "returnByValue": True},
                session=session)["result"]["value"]
            seen[path] = report
            assert not page_errors(browser.events, session), (path.name, page_errors(
                browser.events, session))
            broken = [src for src, ok in report["images"] if not ok]
            assert not broken, f"{path.name}: images that did not load: {broken}"
            outside = [r for r in report["resources"] if not r.startswith(("file:", "data:"))]
            assert not outside, f"{path.name} fetched from outside its folder: {outside}"
            for href in report["links"]:
                url = urlsplit(href)
                if url.scheme != "file":
                    continue
                linked = Path(unquote(url.path))
                assert linked.exists(), f"{path.name} links to a missing {linked}"
                assert out.resolve() in linked.parents, f"{path.name} links out of the book"
                if linked.suffix == ".html":
                    todo.append(linked)
            if path.stem == FIRST:
                shot = browser.send("Page.captureScreenshot", {"format": "png"},
                                    session=session)
                (tmp_path / f"{FIRST}.png").write_bytes(base64.b64decode(shot["data"]))
                height = browser.send("Page.getLayoutMetrics",
                                      session=session)["cssContentSize"]["height"]
                full = browser.send("Page.captureScreenshot", {
                    "format": "png", "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}},
                    session=session)
                (tmp_path / f"{FIRST}-full.png").write_bytes(base64.b64decode(full["data"]))

        # Every fragment link points at an element that exists on its page.
        for path, report in seen.items():
            for href in report["links"]:
                url = urlsplit(href)
                if url.scheme == "file" and url.fragment and url.path.endswith(".html"):
                    ids = seen[Path(unquote(url.path))]["ids"]
                    assert url.fragment in ids, f"{path.name}: no #{url.fragment} in {url.path}"
        assert set(seen) == {p.resolve() for p in out.glob("*.html")}, "every page is linked"
        for name in NAMES:
            report = seen[(out / f"{name}.html").resolve()]
            assert report["title"].endswith("· tfguide") and report["h1"]
        first = seen[(out / f"{FIRST}.html").resolve()]
        assert len(first["images"]) >= 1, "the first chapter's page shows its run's figures"
        formulas = [box for report in seen.values() for box in report["math"]]
        assert formulas, "the texts' formulas reach the pages as MathML"
        assert all(w > 0 and h > 0 for w, h in formulas), "every formula is drawn, offline"
    finally:
        browser.close()
    width, height = png_size((tmp_path / f"{FIRST}.png").read_bytes())
    assert (width, height) == (1280, 1000)
    print(f"screenshot: {tmp_path / (FIRST + '.png')}")


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (Debian: apt-get "
                    "install chromium; or set TFGUIDE_CHROMIUM to a Chrome/Chromium binary)")
def test_hostile_names_run_no_script_in_chromium(tmp_path, base, one_chapter):
    """A run folder and figure named to break out of their attributes stay names in a browser."""
    figure = "x\" onerror=\"document.title='pwned'.png"  # unescaped, a handler that runs
    make_run(tmp_path / "runs", "<b>100% #?x=1", base, figures=(figure,))
    run_png = next((tmp_path / "runs").glob("*/*/figures/*.png"))
    run_png.write_bytes(base64.b64decode(  # a 1x1 PNG, so the browser can decode it
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
        "AAAABJRU5ErkJggg=="))
    index = book.build(tmp_path / "book", tmp_path / "runs", note=pytest.fail)
    browser = Chromium(find_chromium(), tmp_path / "profile")
    try:
        session = open_tab(browser)
        page = (index.parent / f"{FIRST}.html").resolve()
        browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired", session)
        report = browser.send("Runtime.evaluate", {
            "expression": INSPECT, "awaitPromise": True, "returnByValue": True},
            session=session)["result"]["value"]
        assert report["title"].endswith("· tfguide"), "no script from a name ran"
        assert not page_errors(browser.events, session)
        assert report["images"] and all(loaded for _, loaded in report["images"]), report
        assert any("/figures/" in src and src.count("/") >= 3 for src, _ in report["images"])
    finally:
        browser.close()


def test_the_texts_recorded_figures_are_in_the_book(tmp_path):
    from tfguide import resources

    index = book.build(tmp_path / "book", tmp_path / "no-runs", note=lambda line: None)
    for chapter in registry.CHAPTERS:
        folder = resources.texts_dir() / "figures" / chapter.name
        for png in sorted(folder.glob("*.png")):
            copied = index.parent / "figures" / chapter.name / png.name
            assert copied.read_bytes() == png.read_bytes()
    page = (index.parent / "cnn.html").read_text()
    for src in re.findall(r'<img src="(figures/cnn/[^"]+)"', page):
        assert (index.parent / src).is_file()
    assert "python -m tfguide exercise cnn" in index.read_text()


def test_formulas_are_typeset_when_the_book_is_built(tmp_path, monkeypatch):
    text = ("# T\n\nInline $\\alpha < \\beta$, and shown:\n\n$$\nL = \\frac{1}{n}\\sum_i (y_i - "
            "x_i W)^2\n$$\n\nCode keeps its dollars: `$x$`.\n\n## Run it\n\nRun.\n")
    monkeypatch.setattr(resources, "chapter_text", lambda name: text)
    md, _ = book._markdown()
    _, body, _ = book.render_text(md, FIRST, text)
    assert body.count("<math") == 2 and 'display="block"' in body
    assert "<code>$x$</code>" in body and "$$" not in body
    assert "<mfrac>" in body, "a fraction is laid out, not written as text"
    assert "<script" not in body and "http" not in body.replace(
        "http://www.w3.org/1998/Math/MathML", ""), "nothing is fetched to draw a formula"


def test_a_formula_latex2mathml_cannot_read_is_shown_as_written():
    md, _ = book._markdown()
    body = md.render("$\\notacommand{x} <b>$\n")
    assert "<b>" not in body and ("math-source" in body or "<math" in body)


def test_bold_terms_link_to_the_glossary_page(tmp_path):
    out = tmp_path / "book"
    book.build(out, runs=tmp_path / "no-runs", note=lambda line: None)
    glossary = (out / "glossary.html").read_text()
    terms = book.glossary_terms()
    assert len(terms) >= 40
    for anchor in terms.values():
        assert f'id="{anchor}"' in glossary
    linked = re.findall(r'class="term" href="glossary.html#([\w-]+)"',
                        "".join(p.read_text() for p in out.glob("*.html")))
    assert linked and set(linked) <= set(terms.values())
    for page in ("running.html", "performance.html"):
        assert (out / page).is_file() and page in (out / "index.html").read_text()
