"""Chapters speak of their subject: no issue numbers, no history of the project's versions, no notes about the
machines the book was made on, in any chapter's text, code or printed output. Engineering facts (how the trainer is
fast, how long a figure takes on which machine) belong in the README.

Each pattern names a kind of sentence that has no place in a chapter; the allow-list below names the exceptions,
each with its reason.
"""
import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))

ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+|(?<![\w\"'&/])#\d{1,4}\b", re.I)
HISTORY = re.compile(
    r"\b(?:earlier|previous|first|older|old|new|last) version\b|\bversion (?:before|after) (?:it|this)\b"
    r"|\bthe version before\b|\b(?:is|are|was) now (?:off|on)\b|\bbefore issue\b|\bafter issue\b"
    r"|\bwe (?:changed|replaced|switched|removed)\b|\bused before\b|\bpreviously\b",
    re.I,
)
MACHINE = re.compile(
    r"\bH100\b|\bA100\b|\bEPYC\b|shared with other work|\bin our last run\b|\bthis book's (?:\(shared\) )?CPU\b"
    r"|\bthis machine\b|\bsteps per second\b|\btimes faster\b|\bcores? shared\b",
    re.I,
)
PATTERNS = {"issue number": ISSUE_NUMBER, "version history": HISTORY, "machine note": MACHINE}

#: (chapter, exact phrase) pairs that match a pattern but speak of the subject
ALLOWED: set[tuple[str, str]] = set()


def chapter_texts(path: Path):
    """(where, text) for every Markdown cell, code cell, figure caption and text output of a chapter notebook."""
    nb = json.loads(path.read_text(encoding="utf8"))
    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        yield f"cell {i} ({cell['cell_type']})", source
        caption = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption")
        if caption:
            yield f"cell {i} (figure caption)", caption
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [output.get("data", {}).get(k, "")
                                                  for k in ("text/plain", "text/html", "text/markdown")]
            for text in texts:
                text = "".join(text) if isinstance(text, list) else text
                if text:
                    yield f"cell {i} (output)", text


def findings(path: Path) -> list[str]:
    """Every match of a pattern in the chapter, as "where: kind: phrase", less the allowed ones."""
    found = []
    for where, text in chapter_texts(path):
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(text):
                if (path.stem, match[0]) not in ALLOWED:
                    found.append(f"{where}: {kind}: {text[max(0, match.start() - 40):match.end() + 40]!r}")
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_speaks_of_its_subject(path):
    found = findings(path)
    assert not found, f"{path.name}: project history or machine notes in the chapter:\n" + "\n".join(found)


@pytest.mark.parametrize("text, kind", [
    ("the quick rule before issue 14", "issue number"),
    ("fixed in #12", "issue number"),
    ("the version before it made about 270", "version history"),
    ("An earlier version also stopped runs", "version history"),
    ("The first version of this chapter trained another model", "version history"),
    ("computed on an H100", "machine note"),
    ("two CPU cores shared with other work", "machine note"),
])
def test_patterns_catch_the_kinds_of_sentence(text, kind):
    assert PATTERNS[kind].search(text)


@pytest.mark.parametrize("text", [
    "The earlier chapters asked what a transformer can store.",
    'color="#888888"',
    "## Summary",
    "the decoupling is no longer exact",
    "Figure 4 (left) alone has 10 x 25 sizes",
])
def test_patterns_leave_subject_text_alone(text):
    assert not any(pattern.search(text) for pattern in PATTERNS.values())
