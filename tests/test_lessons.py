"""The texts teach: the idea first, a diagram of it, every term defined before use, no machinery."""
import re

import pytest

from tfguide import registry, resources

NAMES = [c.name for c in registry.CHAPTERS]
MACHINERY = re.compile(r"run folder|results\.json|Runtime\.build|tf\.distribute|strategy|"
                       r"multi-worker|multiworker|XLA|--jit|\bbench\b|the tests|"
                       r"steps_per_execution", re.I)


def sections(text: str) -> dict[str, str]:
    """The text of each `## ` section by heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2])}


def prose(markdown: str) -> str:
    """Words a reader reads as prose: no code blocks, inline code, markup or link targets."""
    text = re.sub(r"^```.*?^```", " ", markdown, flags=re.M | re.S)
    text = re.sub(r"<!-- result: [^>]*-->(.*?)<!-- /result -->", r"\1", text)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"</?[a-z][^>]*>", " ", text)


def words(markdown: str) -> int:
    return len(re.findall(r"[A-Za-z0-9][\w'’-]*", prose(markdown)))


def paragraphs(markdown: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", prose(markdown)) if p.strip()]


def glossary() -> list[tuple[str, str]]:
    """(term, chapter that teaches it) for every row of the glossary's term table."""
    text = (resources.texts_dir() / "GLOSSARY.md").read_text(encoding="utf-8")
    table = sections(text)["Terms"]
    rows = re.findall(r"^\| ([^|]+?) \| .+? \| \[(\w+)\]\(\w+\.md\) \|$", table, re.M)
    return [(term.strip(), chapter) for term, chapter in rows]


def uses(text: str, term: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(term)}(?:s|es)?(?![\w-])", text, re.I) is not None


@pytest.mark.parametrize("name", NAMES)
def test_the_idea_is_the_longest_part(name):
    parts = sections(resources.chapter_text(name))
    assert words(parts["The idea"]) > words(parts["Results"]), \
        f"{name}: 'The idea' has {words(parts['The idea'])} words, 'Results' {words(parts['Results'])}"


@pytest.mark.parametrize("name", NAMES)
def test_the_text_draws_its_idea(name):
    text = resources.chapter_text(name)
    shown = re.findall(rf"!\[[^\]]*\]\((figures/{name}/concept_\w+\.png)\)", text)
    assert shown, f"chapters/{name}.md embeds no concept diagram (concept_*.png)"
    for link in shown:
        assert (resources.texts_dir() / link).is_file(), f"{link} does not exist"


@pytest.mark.parametrize("name", NAMES)
def test_the_machinery_stays_out_of_the_lesson(name):
    text = resources.chapter_text(name)
    total = sum(len(p.split()) for p in paragraphs(text))
    machinery = sum(len(p.split()) for p in paragraphs(text) if MACHINERY.search(p))
    assert machinery < 0.05 * total, \
        f"{name}: {machinery} of {total} prose words are about tfguide's own machinery"


@pytest.mark.parametrize("name", NAMES)
def test_a_chapter_ends_with_its_summary(name):
    text = resources.chapter_text(name)
    assert re.findall(r"^## (.+)$", text, re.M)[-1] == "Summary"
    bullets = re.findall(r"^[-*] \S", sections(text)["Summary"], re.M)
    assert len(bullets) == 5, f"{name}: the summary has {len(bullets)} points, not five"


@pytest.mark.parametrize("name", NAMES)
def test_the_original_is_a_short_note(name):
    note = sections(resources.chapter_text(name))["What changed from the original"]
    assert words(note) <= 120, f"{name}: {words(note)} words on the original (at most 120)"


@pytest.mark.parametrize("name", NAMES)
def test_formulas_are_typeset_and_answers_folded(name):
    parts = sections(resources.chapter_text(name))
    assert "$$" in parts["The idea"], f"{name}: 'The idea' has no displayed formula ($$ … $$)"
    if "Exercises" in parts:
        assert "<details>" in parts["Exercises"], f"{name}: exercise answers are not folded"


def test_the_glossary_defines_the_course():
    terms = glossary()
    assert len(terms) >= 40
    assert len({t.lower() for t, _ in terms}) == len(terms), "a term is listed twice"
    text = (resources.texts_dir() / "GLOSSARY.md").read_text(encoding="utf-8")
    assert "Notation" in sections(text)
    for page in ("RUNNING", "PERFORMANCE"):
        assert (resources.texts_dir() / f"{page}.md").is_file(), f"chapters/{page}.md is missing"


@pytest.mark.parametrize("term,teacher", glossary())
def test_a_term_is_explained_where_it_is_first_used(term, teacher):
    """Walk the reading order: the first chapter to use a term teaches it, in bold."""
    if teacher not in registry.BY_NAME:  # a term of tfguide itself (RUNNING.md)
        text = (resources.texts_dir() / f"{teacher}.md").read_text(encoding="utf-8")
        assert re.search(rf"\*\*{re.escape(term)}(?:s|es)?\*\*", text, re.I), \
            f"{teacher}.md does not explain **{term}**"
        return
    for name in NAMES:
        parts = sections(resources.chapter_text(name))
        lesson = prose("\n".join(body for heading, body in parts.items()
                                 if heading != "Going further"))
        if name == teacher:
            text = resources.chapter_text(name)
            assert re.search(rf"\*\*{re.escape(term)}(?:s|es)?\*\*", text, re.I), \
                f"chapters/{name}.md never explains **{term}** (in bold)"
            return
        assert not uses(lesson, term), \
            f"chapters/{name}.md uses '{term}' before {teacher}, which teaches it"
