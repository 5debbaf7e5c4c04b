"""The chapters' MyST markdown as the plain Markdown that JupyterLab renders, for the course edition.

The book's markdown cells use MyST: directives (```` ```{exercise} ````, ```` ```{prf:theorem} ````, ``:::{note}``),
labels (``(sec-x)=``, ``$$ ... $$ (eq-x)``) and roles (``{eq}``, ``{prf:ref}``, ``{ref}``, ``{numref}``, ``{doc}``,
``{cite:t}``, ``{cite:p}``). Sphinx renders them in the HTML book; JupyterLab shows them as raw text and code fences.
:func:`convert_chapters` rewrites them into Markdown with the book's own numbers, counted as Sphinx counts them
(each kind of theorem-like block, exercises, labelled equations and figures numbered through the book in the order of
its chapters), so that "Exercise 14" or equation (12) in a student's notebook is the one in the HTML book:

- a theorem-like block or an exercise becomes a quotation headed **Theorem 3 (title).**; a proof, *Proof.* ... ∎;
  a note, a quotation headed **Note.**; solution markers, a **Solution** heading;
- a labelled display equation gets its number as ``\\tag{n}``; label lines disappear;
- a display equation with alignment points (``&``) or line breaks (``\\\\``) outside any environment is wrapped in
  ``aligned`` (Sphinx wraps it in ``split``; MathJax rejects a bare ``&``);
- inside a quotation, every equation is written on one line, so that the quotation's ``>`` markers never land inside
  the math (JupyterLab and nbconvert take the math out before they parse the Markdown);
- ``{eq}`` becomes (n), ``{prf:ref}`` and ``{numref}`` "Theorem n" or "Figure n", ``{ref}`` the section's title,
  ``{doc}`` the chapter's title, citations author-year from references.bib;
- in code comments, an equation named by its label (``eq. (prompt probability)``, ``(eq-selection)``) becomes
  ``eq. (n)``;
- a value glued into the text (``{glue:text}`name:.3f```, ``{glue}`name``, ``{glue:md}`name``, MyST-NB) becomes
  the value the chapter's stored outputs hold for ``name``, formatted as the role says.

A reference to a label that no chapter defines, or to a glued value that the chapter does not store, raises
ValueError.
"""
from __future__ import annotations

import ast
import copy
import io
import re
import tokenize
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: directive kinds numbered in the book, and the word the number follows
NUMBERED = {"exercise": "Exercise", "prf:theorem": "Theorem", "prf:lemma": "Lemma", "prf:definition": "Definition",
            "prf:proposition": "Proposition", "prf:corollary": "Corollary"}

_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<kind>[\w:-]+)\}[ \t]*(?P<title>[^\n]*)$", re.M)
_OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
_LABEL_LINE = re.compile(r"^\((?P<label>[\w-]+)\)=[ \t]*\n(?:[ \t]*\n)*(?P<heading>#+[ \t]+(?P<title>[^\n]*))?", re.M)
_LABELLED_MATH = re.compile(r"\$\$(?P<body>(?:(?!\$\$).)+?)\$\$[ \t]*\((?P<label>[\w-]+)\)", re.S)
_ROLE = re.compile(r"\{(?P<role>eq|prf:ref|ref|numref|doc|cite:t|cite:p)\}`(?P<target>[^`]+)`")
# A display equation, with the label MyST puts after it if any.
_DISPLAY_MATH = re.compile(r"\$\$(?P<body>(?:(?!\$\$).)+?)\$\$(?:[ \t]*\((?P<label>[\w-]+)\))?", re.S)
# Code (left alone) or math: display, or inline (which never spans a blank line).
_CODE_OR_MATH = re.compile(r"(?P<fence>^(?P<ticks>`{3,}).*?^(?P=ticks)[ \t]*$)|(?P<code>`[^`\n]+`)"
                           r"|(?P<math>\$\$(?:(?!\$\$).)+?\$\$"
                           r"|\$(?:[^$\n]|\n(?![ \t]*(?:>[ \t]*)?\n))+?\$)", re.M | re.S)
# An equation named in a code comment by its label: "eq. (prompt probability)", "eq-selection".
_COMMENT_EQUATION = re.compile(r"eq\. \((?P<words>[A-Za-z][\w -]*)\)|\b(?P<label>eq-[\w-]+)")
# A value glued into the text: {glue}`name`, {glue:text}`name:format`, {glue:md}`name` (MyST-NB).
_GLUE = re.compile(r"\{glue(?::(?P<kind>text|md|any))?\}`(?P<key>[^`:]+)(?::(?P<spec>[^`]+))?`")
#: the type a glued value is stored under (``application/papermill.record/`` and the type)
_GLUE_PREFIX = "application/papermill.record/"
_ENVIRONMENT = re.compile(r"\\begin\{(?P<name>[\w*]+)\}.*?\\end\{(?P=name)\}", re.S)
# Everything numbered, in document order: a directive's opening line or a labelled display equation.
_NUMBERED_ITEM = re.compile(_OPEN.pattern + "|" + _LABELLED_MATH.pattern, re.M | re.S)


def _plain(title: str) -> str:
    """A heading's text without markdown emphasis or code marks."""
    return re.sub(r"[*_`]", "", title).strip()


def _directive_options(body: list[str]) -> tuple[dict, list[str]]:
    options = {}
    while body and _OPTION.match(body[0]):
        m = _OPTION.match(body[0])
        options[m["key"]] = m["value"]
        body = body[1:]
    while body and not body[0].strip():
        body = body[1:]
    return options, body


def _needs_alignment(body: str) -> bool:
    """Whether display math has ``&`` or ``\\\\`` outside an environment (then it needs one, such as aligned)."""
    outside = _ENVIRONMENT.sub("", body)
    return "\\\\" in outside or bool(re.search(r"(?<!\\)&", outside))


def math_on_one_line(text: str) -> str:
    """``text`` with the line breaks inside its math spans turned into spaces (TeX reads both alike)."""
    return _CODE_OR_MATH.sub(lambda m: re.sub(r"[ \t]*\n[ \t]*", " ", m[0]) if m["math"] else m[0], text)


def _find_close(lines: list[str], start: int, fence: str) -> int:
    for i in range(start, len(lines)):
        if lines[i].strip() == fence:
            return i
    raise ValueError(f"directive opened with {fence} is never closed: {lines[start - 1]!r}")


class Numbering:
    """Counters of the numbered things, advanced in the order Sphinx meets them."""

    def __init__(self):
        self.counts = Counter()

    def next(self, kind: str) -> int:
        self.counts[kind] += 1
        return self.counts[kind]


def _chapter_title(cells: list[dict]) -> str:
    for cell in cells:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^#[ \t]+(.+)$", "".join(cell["source"]), re.M)
            if m:
                return _plain(m[1])
    raise ValueError("chapter without a title")


def book_labels(chapters: dict[str, list[dict]]) -> dict[str, str]:
    """Label -> the text a reference to it shows, over chapters (docname -> cells) in book order."""
    labels, numbering = {"bibliography": "References"}, Numbering()
    for doc, cells in chapters.items():
        labels[doc] = _chapter_title(cells)
        for cell in cells:
            if cell["cell_type"] == "code":
                name = cell["metadata"].get("mystnb", {}).get("figure", {}).get("name")
                if name:
                    labels[name] = f"Figure {numbering.next('figure')}"
                continue
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            for m in _LABEL_LINE.finditer(text):
                if m["title"]:
                    labels[m["label"]] = _plain(m["title"])
            lines = text.split("\n")
            for m in _NUMBERED_ITEM.finditer(text):
                if m["label"]:  # a labelled equation
                    labels[m["label"]] = f"({numbering.next('equation')})"
                elif m["kind"] in NUMBERED:
                    n = numbering.next(m["kind"])
                    first = text[:m.start()].count("\n") + 1
                    options, _ = _directive_options(lines[first:_find_close(lines, first, m["fence"])])
                    if "label" in options:
                        labels[options["label"]] = f"{NUMBERED[m['kind']]} {n}"
    return labels


def _citations(bib: Path) -> dict[str, tuple[str, str]]:
    import sys

    from pybtex.database import parse_file

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bib_author_year import author_part

    return {key: (author_part(entry), entry.fields.get("year", "n.d."))
            for key, entry in parse_file(str(bib)).entries.items()}


def glued_values(cells: list[dict]) -> dict[str, dict[str, str]]:
    """The values a chapter glues for its text, as its stored outputs hold them: name -> {type: text}."""
    values = {}
    for cell in cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                values[name] = {mime[len(_GLUE_PREFIX):]: "".join(v) if isinstance(v, list) else v
                                for mime, v in out.get("data", {}).items() if mime.startswith(_GLUE_PREFIX)}
    return values


def _glued_text(value: dict[str, str], kind: str | None, spec: str | None) -> str:
    """A glued value as the book's text shows it: markdown for {glue:md}, else the plain text, formatted with
    ``spec`` when the value is a number."""
    if kind == "md" and "text/markdown" in value:
        return value["text/markdown"]
    text = value.get("text/plain", "")
    if spec:
        try:
            number = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return format(number, spec)
    return text.strip("'\"") if kind == "text" else text


class Converter:
    def __init__(self, labels: dict[str, str], citations: dict[str, tuple[str, str]]):
        self.labels, self.citations, self.numbering = labels, citations, Numbering()
        self.glued: dict[str, dict[str, str]] = {}  # the values of the chapter being converted

    def _glue(self, m: re.Match) -> str:
        if m["key"] not in self.glued:
            raise ValueError(f"glued value {m['key']!r} is not among the chapter's stored outputs")
        return _glued_text(self.glued[m["key"]], m["kind"], m["spec"])

    def _label(self, target: str) -> str:
        if target not in self.labels:
            raise ValueError(f"reference to {target!r}, which no chapter defines")
        return self.labels[target]

    def _role(self, m: re.Match) -> str:
        role, target = m["role"], m["target"]
        explicit = re.fullmatch(r"(?P<text>.+?)\s*<(?P<label>[^<>]+)>", target, re.S)
        if role in ("cite:t", "cite:p"):
            keys = [k.strip() for k in target.split(",")]
            missing = [k for k in keys if k not in self.citations]
            if missing:
                raise ValueError(f"citation of {missing}, not in references.bib")
            if role == "cite:t":
                return "; ".join(f"{self.citations[k][0]} ({self.citations[k][1]})" for k in keys)
            return "(" + "; ".join(f"{self.citations[k][0]}, {self.citations[k][1]}" for k in keys) + ")"
        if explicit:
            self._label(explicit["label"])
            return explicit["text"]
        return self._label(target)

    def _display_math(self, m: re.Match) -> str:
        body = m["body"].rstrip()
        if _needs_alignment(body):
            start = len(body) - len(body.lstrip())
            body = f"{body[:start]}\\begin{{aligned}}{body[start:]}\\end{{aligned}}"
        tag = f" \\tag{{{self._label(m['label']).strip('()')}}}" if m["label"] else ""
        return f"$${body}{tag}$$"

    def _directive(self, kind: str, title: str, options: dict, body: list[str]) -> list[str]:
        quoted = [f"> {line}" if line.strip() else ">" for line in math_on_one_line("\n".join(body)).split("\n")]
        if kind in NUMBERED:
            n = self.numbering.next(kind)
            head = f"**{NUMBERED[kind]} {n}" + (f" ({title})" if title else "") + ".**"
            return [f"> {head}", ">"] + quoted
        if kind == "prf:proof":
            return ["*Proof.*", ""] + body + ["", "∎"]
        if kind in ("note", "important", "tip", "warning", "admonition"):
            return [f"> **{title or kind.capitalize()}.**", ">"] + quoted
        if kind in ("solution", "solution-start"):
            return ["**Solution.**", ""] + body
        if kind == "solution-end":
            return body
        raise ValueError(f"no plain-Markdown form for the directive {{{kind}}}")

    def markdown(self, text: str) -> str:
        # Directives, outermost first; their bodies go through the same loop.
        lines = text.split("\n")
        i, out = 0, []
        while i < len(lines):
            m = _OPEN.match(lines[i])
            if not m:
                out.append(lines[i])
                i += 1
                continue
            close = _find_close(lines, i + 1, m["fence"])
            options, body = _directive_options(lines[i + 1:close])
            while body and not body[-1].strip():
                body = body[:-1]
            body = self.markdown("\n".join(body)).split("\n") if body else []
            out += self._directive(m["kind"], m["title"].strip(), options, body)
            i = close + 1
        text = "\n".join(out)
        text = _DISPLAY_MATH.sub(self._display_math, text)
        text = _LABEL_LINE.sub(lambda m: m["heading"] or "", text)
        text = _GLUE.sub(self._glue, text)
        return _ROLE.sub(self._role, text)


    def code(self, source: str) -> str:
        """A code cell's source with the equation labels in its comments replaced by their numbers."""
        try:
            comments = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
        except (tokenize.TokenError, SyntaxError):  # not Python (a cell magic): left alone
            return source
        lines = source.split("\n")
        for token in reversed(comments):
            row, col = token.start
            line = lines[row - 1]
            comment = _COMMENT_EQUATION.sub(
                lambda m: "eq. " + self._label(m["label"] or "eq-" + m["words"].replace(" ", "-")), token.string)
            lines[row - 1] = line[:col] + comment + line[col + len(token.string):]
        return "\n".join(lines)


def convert_chapters(notebooks: dict[str, dict], bib: Path = ROOT / "references.bib") -> dict[str, dict]:
    """docname -> notebook (nbformat dict), in book order -> the same notebooks with plain-Markdown cells."""
    labels = book_labels({doc: nb["cells"] for doc, nb in notebooks.items()})
    converter = Converter(labels, _citations(bib))
    out = {}
    for doc, nb in notebooks.items():
        nb = copy.deepcopy(nb)
        converter.glued = glued_values(nb["cells"])
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                cell["source"] = converter.markdown("".join(cell["source"]))
            elif cell["cell_type"] == "code":
                cell["source"] = converter.code("".join(cell["source"]))
        out[doc] = nb
    return out
