"""Every measured number a chapter's prose states is one its execution carries: no number typed by hand can drift
from the outputs it reports.

A chapter reports measurements through its outputs; its Markdown (text cells, exercise and solution text, figure
captions) may quote a measured number only as a glued value (``{glue:text}`name:.2f```: MyST-NB renders it from the
execution) or, failing that, as a number some output of the same chapter prints. This test reads every chapter
notebook in ``book/`` and fails on a number of its Markdown that nothing of the chapter carries.

What counts as a number of the prose (the rules)
------------------------------------------------
Removed first, because they are not prose: code spans and fenced code, MyST roles (``{eq}`...```, ``{cite:t}`...```,
``{glue:text}`...``` and the like), labels ``(sec-x)=``, directive options (``:label: x``), link targets, HTML tags,
and references by number: "Figure 1", "Figs. 7-9", "Theorem 2", "Corollary 1", "Lemma", "Proposition",
"Definition", "chapter 5", "Section", "Step 3", "Steps 1 to 4", "eq. (4)", "Exercise", "Table", "arXiv 2412.06538",
"Physics of LMs 3.3", a year in a citation (1900-2099 beside a name or in parentheses) and an exercise's time
estimate ("10 minutes").
Then these are numbers to check:

1. every decimal (``0.438``, ``$1.19$``), in running text and in math, display math included: a decimal in a
   formula is a measured or derived constant (``1.47 N/(md)``) and must be carried like any other;
2. every percentage (``99 %``, ``$12\\,\\%$``, ``$30\\,\\%$``), compared as the percentage and as the fraction;
3. every factor: a number, in digits or in words, before "times" or "-fold", or after "factor of";
4. every integer of running text other than 0 and 1 (which state arithmetic: unit norms, probabilities): bare
   (``300 pairs``), a math span that is a number alone (``$25$``,
   ``$200\\,000$``), or the right side of a math span ``$<symbol> = <integer>$`` (``$N = 192$``), and numbers written
   as ``X \\cdot 10^k``. Integers inside a formula (``$d^2 \\ge 128 N L L'$``, exponents, subscripts, ``\\frac``) are
   structure, not values, and are not checked.

A number is carried when one of these rounds to it at the precision it is written with (``0.08`` is carried by
``0.0812``, ``6`` by ``5.7``, ``4 %`` by ``0.04`` but not by ``0.029``):

- a number printed by a code cell (streams, ``text/plain``, ``text/html``, ``text/markdown``) or glued by one
  (MyST-NB's ``application/papermill.record`` outputs). A decimal, a percentage or a factor must be carried by a
  code cell of its own section (the cells between two headings of level 1 or 2; a figure caption belongs to its
  cell's section): a chapter prints hundreds of short decimals, and one of them elsewhere rounds to almost any
  typed ``0.08`` or ``4.7`` by chance (``4.7`` bits typed beside a table that prints ``4.62``). An integer may be
  carried by any cell of the chapter, since a chosen size is printed where the code uses it, not where the text
  names it;
- a decimal of a stored result the chapter reads (``book/data/<name>.json`` named in its code), digit for digit.
  Integers of stored results do not count: sizes, seeds and step counts fill every stored table and would carry
  almost any small integer by chance (144 facts is a capacity of one split and not of another).

What the test allows without an output: the constants of ``prose_numbers_allowed.toml``, beside this file, each
with its reason (a chosen size, a seed, the 99 % threshold, a batch size, an exact value of a formula the text
derives), for every chapter or for one chapter. Every ``{glue:...}`` role must name a value the chapter glues.

``python tests/test_prose_numbers.py [CHAPTER...]`` prints each chapter's unmatched numbers in context.
"""
from __future__ import annotations

import json
import math
import re
import sys
import tomllib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
DATA = BOOK / "data"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
ALLOWED_FILE = Path(__file__).with_name("prose_numbers_allowed.toml")

#: chapters not yet held to the rule, each with its reason (temporary: the list is to be emptied)
NOT_YET_CONVERTED: dict[str, str] = {}

GLUE_PREFIX = "application/papermill.record/"
WIDGET = "application/vnd.jupyter.widget-view+json"
TEXT_TYPES = ("text/plain", "text/html", "text/markdown")

# ---- reading a notebook ------------------------------------------------------------------------------------------


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


class _Untag(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)

    def handle_starttag(self, tag, attrs):
        self.parts.append(" ")

    def handle_endtag(self, tag):
        self.parts.append(" ")


def _untag(html: str) -> str:
    parser = _Untag()
    parser.feed(html)
    return "".join(parser.parts)


@dataclass
class Chapter:
    name: str
    markdown: list[tuple[str, str, int]]  # (where, text, section)
    outputs: list[tuple[str, int]]  # (text, section) of code-cell outputs, glue records included
    glued: set[str]  # names of glued values
    glue_roles: list[tuple[str, str]]  # (where, name) of every {glue:...} role
    stored: list[str]  # names of book/data results its code names


def read_chapter(path: Path) -> Chapter:
    nb = json.loads(path.read_text(encoding="utf8"))
    markdown, outputs, glued, roles, code = [], [], set(), [], []
    section = 0
    for i, cell in enumerate(nb["cells"]):
        source = _text(cell["source"])
        if cell["cell_type"] == "markdown":
            if HEADING.search(FENCE.sub(" ", source)):
                section += 1
            markdown.append((f"cell {i}", source, section))
        elif cell["cell_type"] == "code":
            code.append(source)
            caption = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption")
            if caption:
                markdown.append((f"cell {i} (figure caption)", caption, section))
            for out in cell.get("outputs", []):
                if WIDGET in out.get("data", {}):
                    continue  # an explorer's precomputed states are not numbers the chapter reports
                if out.get("output_type") == "stream":
                    outputs.append((_text(out.get("text")), section))
                for mime, value in out.get("data", {}).items():
                    kind = mime[len(GLUE_PREFIX):] if mime.startswith(GLUE_PREFIX) else mime
                    if kind in TEXT_TYPES:
                        text = _text(value)
                        outputs.append((_untag(text) if kind == "text/html" else text, section))
                name = out.get("metadata", {}).get("scrapbook", {}).get("name")
                if name:
                    glued.add(name)
        for match in GLUE_ROLE.finditer(source):
            roles.append((f"cell {i}", match[1]))
    names = {p.stem for p in DATA.glob("*.json")}
    stored = sorted({n for n in names if any(re.search(rf"[\"'/]{re.escape(n)}(?:\.json)?[\"']", c) for c in code)})
    return Chapter(path.stem, markdown, outputs, glued, roles, stored)


# ---- numbers of the prose ----------------------------------------------------------------------------------------

HEADING = re.compile(r"^#{1,2}\s", re.M)
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")
ROLE = re.compile(r"\{[\w:.-]+\}`[^`]*`")
FENCE = re.compile(r"^(```+|~~~+)(?!\{)[^\n]*\n.*?^\1\s*$", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LABEL = re.compile(r"^\([\w:.-]+\)=\s*$", re.M)
DIRECTIVE_LINE = re.compile(r"^(?:```+|:::+)\{[^}]*\}.*$|^:[\w-]+:.*$", re.M)
LINK = re.compile(r"\]\([^)]*\)")
TAG = re.compile(r"<[^>\n]+>")
REFERENCE = re.compile(
    r"\b(?:Figures?|Figs?\.|Theorems?|Corollar(?:y|ies)|Lemmas?|Propositions?|Definitions?|[Cc]hapters?|Sections?"
    r"|[Ss]teps?|[Ee]qs?\.|[Ee]quations?|Exercises?|Tables?|arXiv:?|Physics of LMs)\s*\(?"
    r"\d+(?:\.\d+)?\)?(?:\s*(?:-|–|to|and|,|or)\s*\(?\d+(?:\.\d+)?\)?)*")
MINUTES = re.compile(r"\d+\s+minutes\b")
YEAR = re.compile(r"(?<=[\s(,])(?:19|20)\d\d[a-z]?(?=[),;])|(?<=\bet al\.\s)(?:19|20)\d\d\b")
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$([^$\n]+?)\$")

NUMBER = r"\d+(?:\.\d+)?"
WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
         "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
         "hundred": 100, "thousand": 1000}
WORD = "|".join(WORDS)
# math spacing and grouping that can sit inside a number: 200\,000, 6.6 \cdot 10^4
THIN = re.compile(r"(?<=\d)(?:\\,|\{,\}|~)(?=\d{3}\b)")
SCIENTIFIC = re.compile(rf"({NUMBER})\s*\\(?:cdot|times)\s*10\^\{{?(-?\d+)\}}?")
PERCENT = re.compile(rf"(?<![\w.^_]){NUMBER}(?=\s*(?:\\,|\\;|~|\s)?\s*\\?%)")
FACTOR = re.compile(rf"(?<![\w.^_])({NUMBER}|{WORD})(?:\s+to\s+({NUMBER}|{WORD}))?(?=(?:\s+|-)(?:times|fold)\b)"
                    rf"|\bfactors?\s+of\s+(?:about\s+|up\s+to\s+)?({NUMBER}|{WORD})(?:\s+to\s+({NUMBER}|{WORD}))?",
                    re.I)
DECIMAL = re.compile(r"(?<![\w.^_{])\d+\.\d+(?![\w.])")
INTEGER = re.compile(r"(?<![\w.^_{\\-])\d+(?![\w.]|\^|\\,?\d)")
SYMBOL_EQUALS = re.compile(rf"^[\s\w\\{{}}^'(),|]*?(?:=|\\approx)\s*({NUMBER})\s*$")


@dataclass(frozen=True)
class Number:
    text: str  # as written
    value: float
    decimals: int  # digits after the point as written
    kind: str  # decimal, percent, factor, integer
    where: str
    context: str

    def carried_by(self, value: float, percent: bool = False) -> bool:
        """Whether ``value`` (printed as a percentage if ``percent``) rounds to this number at its written
        precision. A percentage is carried by a printed percentage or fraction, never by a bare integer."""
        if self.kind == "percent":
            if percent:
                return _rounds_to(value, self.value, self.decimals)
            return not float(value).is_integer() and _rounds_to(value, self.value / 100, self.decimals + 2)
        return _rounds_to(value, self.value, self.decimals)


def _rounds_to(value: float, written: float, decimals: int) -> bool:
    return abs(value - written) <= 0.5 * 10.0 ** -decimals * (1 + 1e-9) + 1e-12


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _value(text: str) -> float:
    return float(WORDS.get(text.lower(), text))


def prose_of(markdown: str) -> str:
    """The Markdown with everything that is not prose removed (see the module's rules)."""
    text = FENCE.sub(" ", markdown)
    text = LABEL.sub(" ", text)
    text = DIRECTIVE_LINE.sub(" ", text)
    text = ROLE.sub(" ", text)
    text = CODE.sub(" ", text)
    text = LINK.sub("]", text)
    text = TAG.sub(" ", text)
    text = REFERENCE.sub(" ", text)
    text = MINUTES.sub(" ", text)
    return YEAR.sub(" ", text)


def numbers_of(markdown: str, where: str = "") -> list[Number]:
    """Every number of a Markdown text that the rules ask to be carried."""
    text = prose_of(markdown)
    found: list[Number] = []

    def add(raw: str, kind: str, start: int, end: int, source: str, value: float | None = None):
        context = source[max(0, start - 50):end + 30].replace("\n", " ")
        found.append(Number(raw, _value(raw) if value is None else value, _decimals(raw), kind, where, context))

    def scan(piece: str, offset_text: str, math: str | None):
        """Numbers of one piece: running text (math None), an inline math span or display math."""
        piece = THIN.sub("", piece)
        taken: list[tuple[int, int]] = []

        def free(m):
            return all(m.end() <= a or m.start() >= b for a, b in taken)

        for m in SCIENTIFIC.finditer(piece):
            add(m[0], "decimal" if "." in m[1] else "integer", m.start(), m.end(), piece,
                float(m[1]) * 10 ** int(m[2]))
            taken.append(m.span())
        for m in PERCENT.finditer(piece):
            if free(m):
                add(m[0], "percent", m.start(), m.end(), piece)
                taken.append(m.span())
        for m in FACTOR.finditer(piece):
            for g in (1, 2, 3, 4):
                if m[g] and free(m):
                    add(m[g], "factor", m.start(g), m.end(g), piece)
            taken.append(m.span())
        for m in DECIMAL.finditer(piece):
            if free(m):
                add(m[0], "decimal", m.start(), m.end(), piece)
                taken.append(m.span())
        if math is None:
            for m in INTEGER.finditer(piece):
                if free(m) and m[0] not in ("0", "1"):
                    add(m[0], "integer", m.start(), m.end(), piece)
        elif math == "inline":
            equals = SYMBOL_EQUALS.match(piece)
            if equals and "." not in equals[1] and equals[1] not in ("0", "1") and not taken:
                add(equals[1], "integer", equals.start(1), equals.end(1), piece)

    pieces = [(m[1], "display") for m in DISPLAY_MATH.finditer(text)]
    masked = DISPLAY_MATH.sub(" ", text)

    def inline(m):
        # a math span that is a number alone ($25$, $4\,\%$, $200\,000$) reads as running text
        body = THIN.sub("", m[1]).strip()
        alone = re.fullmatch(rf"({NUMBER})\s*(?:\\[,;]\s*)?(\\%)?", body)
        if alone:
            return alone[1] + (" %" if alone[2] else "")
        pieces.append((m[1], "inline"))
        return " "

    running = INLINE_MATH.sub(inline, masked)
    scan(running, running, None)
    for piece, kind in pieces:
        scan(piece, piece, kind)
    return found


# ---- what a chapter carries --------------------------------------------------------------------------------------

OUTPUT_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])(\s*%)?")


def carried_values(chapter: Chapter) -> tuple[list[tuple[float, bool, int]], list[float]]:
    """(numbers printed or glued by the chapter, each with whether it was printed as a percentage and its section;
    decimals of the stored results it reads)."""
    printed = []
    for text, section in chapter.outputs:
        for m in OUTPUT_NUMBER.finditer(text.replace(",", "")):
            value = float(m[0].rstrip("% "))
            printed += [(value, bool(m[1]), section), (abs(value), bool(m[1]), section)]
    stored = []

    def leaves(node):
        if isinstance(node, dict):
            for v in node.values():
                leaves(v)
        elif isinstance(node, list):
            for v in node:
                leaves(v)
        elif isinstance(node, float) and not node.is_integer() and math.isfinite(node):
            stored.append(node)

    for name in chapter.stored:
        leaves(json.loads((DATA / f"{name}.json").read_text()))
    return printed, stored


def allowed_constants() -> dict[str, dict[str, str]]:
    """{"all" or chapter name: {number as written: reason}}."""
    return tomllib.loads(ALLOWED_FILE.read_text(encoding="utf8"))


def unmatched(chapter: Chapter, allowed: dict[str, dict[str, str]] | None = None) -> list[Number]:
    """The chapter's prose numbers that no output, glued value, stored decimal or allowed constant carries."""
    allowed = allowed_constants() if allowed is None else allowed
    ok = {**allowed.get("all", {}), **allowed.get(chapter.name, {})}
    ok_values = {(_value(k.rstrip(" %")), k.endswith("%")) for k in ok}
    printed, stored = carried_values(chapter)
    missing = []
    for where, text, section in chapter.markdown:
        for number in numbers_of(text, where):
            if (number.value, number.kind == "percent") in ok_values:
                continue
            local = number.kind != "integer"  # decimals, percentages, factors: carried within their section
            if any(number.carried_by(v, percent) for v, percent, at in printed if not local or at == section):
                continue
            if number.kind == "decimal" and any(_rounds_to(v, number.value, number.decimals)
                                                and _decimals(repr(v)) == number.decimals for v in stored):
                continue
            missing.append(number)
    return missing


# ---- the tests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_prose_numbers_are_carried_by_the_execution(path):
    if path.stem in NOT_YET_CONVERTED:
        pytest.skip(f"not yet converted: {NOT_YET_CONVERTED[path.stem]}")
    missing = unmatched(read_chapter(path))
    assert not missing, f"{path.name}: numbers of the prose that no output, glued value or stored result carries " \
                        "(glue them from the cell that computes them):\n" + "\n".join(
                            f"  {n.where}: {n.text!r} ({n.kind}) in ...{n.context}..." for n in missing)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_glue_roles_name_glued_values(path):
    chapter = read_chapter(path)
    missing = [f"{where}: {name}" for where, name in chapter.glue_roles if name not in chapter.glued]
    assert not missing, f"{path.name}: glue roles without a glued value:\n" + "\n".join(missing)


def test_allowed_constants_have_reasons_and_chapters():
    allowed = allowed_constants()
    names = {p.stem for p in CHAPTERS} | {"all"}
    assert set(allowed) <= names, f"unknown sections: {sorted(set(allowed) - names)}"
    for section, entries in allowed.items():
        for number, reason in entries.items():
            assert re.fullmatch(rf"(?:{NUMBER}|{WORD})( %)?", number), \
                f"[{section}] {number!r}: a number (in digits or a word), or a number and ' %'"
            assert len(reason.split()) >= 3, f"[{section}] {number}: give the reason it is not a measurement"


def test_not_yet_converted_names_chapters():
    assert set(NOT_YET_CONVERTED) <= {p.stem for p in CHAPTERS}


# Each rule on a sentence of its kind: what is a number and what is carried.
@pytest.mark.parametrize("markdown, expected", [
    ("the memory stores roughly $300$ and 500 pairs", ["300", "500"]),
    ("it uses about $4\\,\\%$ of its budget", ["4"]),
    ("$25$ to $40$ times above them", ["25", "40"]),
    ("about seven times more than", ["seven"]),
    ("a factor of $1.15$", ["1.15"]),
    ("at $S = 64$, $4.7$ bits", ["64", "4.7"]),
    ("$s^2 \\approx 1.47\\,\\frac{N}{md} + \\frac1d$", ["1.47"]),
    ("$$\nd^2 \\ge 128\\, N L L'\n$$", []),
    ("Theorem 2 of {cite:t}`x` and Figures 7-9, chapter 5, Steps 1 to 4, eq. (4)", []),
    ("`python -m factlib reproduce fig1-left --d 64` and {glue:text}`c_fit:.2f`", []),
    ("(Nichani et al., 2025) and $2^{12}$ steps and $e_1$, $W = 0$, norm 1", []),
    ("*(pen and paper, 15 minutes)*", []),
    ("$200\\,000$ samples and $6.6 \\cdot 10^4$ parameters", ["200000", "6.6 \\cdot 10^4"]),
])
def test_what_counts_as_a_number(markdown, expected):
    assert sorted(n.text.replace("\\,", "") for n in numbers_of(markdown)) == sorted(expected)


@pytest.mark.parametrize("written, value, carried", [
    ("0.08", 0.0812, True), ("0.08", 0.0865, False), ("6", 5.7, True), ("6", 8, False),
    ("4.7", 4.62, False), ("4.62", 4.62, True),
])
def test_carried_within_written_precision(written, value, carried):
    (number,) = numbers_of(f"${written}$")
    assert number.carried_by(value) is carried


def test_percent_is_carried_as_percent_or_fraction():
    (number,) = numbers_of("about $4\\,\\%$")
    assert number.carried_by(4.2, percent=True) and number.carried_by(0.04)
    assert not number.carried_by(0.029) and not number.carried_by(4)


def _notebook(tmp_path: Path, cells: list[tuple[str, str, str]]) -> Path:
    """A chapter of (cell type, source, printed output) cells, written as a notebook."""
    nb = {"cells": [
        {"cell_type": kind, "source": source, "metadata": {}}
        | ({"outputs": [{"output_type": "stream", "name": "stdout", "text": printed}], "execution_count": 1}
           if kind == "code" else {})
        for kind, source, printed in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "09_test.ipynb"
    path.write_text(json.dumps(nb), encoding="utf8")
    return path


def test_decimals_are_carried_within_their_section(tmp_path):
    # 4.7 typed beside a table that prints 4.62 is not carried by a 4.7 printed in another section; an integer is
    path = _notebook(tmp_path, [
        ("markdown", "## Counting\n\nat $S = 64$, $4.7$ bits and $12$ tables", ""),
        ("code", "print(bits)", "4.62 bits a fact, S = 64"),
        ("markdown", "## Measured\n\nabout $0.23$ bits", ""),
        ("code", "print(ratio)", "ratio 4.7, 0.23 bits, 12 tables"),
    ])
    missing = [(n.where, n.text) for n in unmatched(read_chapter(path), allowed={})]
    assert missing == [("cell 0", "4.7")]


def main(argv: list[str]) -> int:
    paths = [BOOK / f"{a}.ipynb" if not a.endswith(".ipynb") else Path(a) for a in argv] or CHAPTERS
    total = 0
    for path in paths:
        missing = unmatched(read_chapter(path))
        total += len(missing)
        print(f"== {path.stem}: {len(missing)} unmatched")
        for n in missing:
            print(f"  {n.where}: {n.text!r} ({n.kind}): ...{n.context}...")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
