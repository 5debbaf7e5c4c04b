"""The course edition's Markdown (tools/myst_markdown.py): MyST turned into what JupyterLab renders, with the
numbers the HTML book shows."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from myst_markdown import book_labels, convert_chapters  # noqa: E402

HTML = ROOT / "_build" / "html" / "book"
MYST_LEFT = re.compile(r"^(?:`{3,}|:{3,})\{|\{(?:eq|prf:ref|ref|numref|doc|cite:[tp]|glue(?::\w+)?)\}`"
                       r"|^\([\w-]+\)=\s*$", re.M)


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def nb(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


TOY = {
    "01_one": nb(md("# One\n\n(sec-a)=\n## Part *A*\n\n```{prf:lemma} Small\n:label: lem-a\n\nIt holds:\n\n$$\nx = 1\n"
                    "$$ (eq-a)\n```\n\n```{prf:proof}\nObvious.\n```\n"),
                 {"cell_type": "code", "metadata": {"mystnb": {"figure": {"name": "fig-a"}}}, "source": "plot()",
                  "outputs": [], "execution_count": None}),
    "02_two": nb(md("# Two\n\n```{exercise} Try\n:label: ex-b\n\nUse {eq}`eq-a`, {prf:ref}`lem-a`, "
                    "{numref}`fig-a`, "
                    "{ref}`sec-a`, {ref}`that part <sec-a>` and {doc}`01_one`, after {cite:t}`nichani2025factual` "
                    "{cite:p}`nichani2025factual`.\n```\n\n$$y$$ (eq-b)\n\n:::{note}\nNoted.\n:::\n")),
}


def _glued(name, plain):
    return {"output_type": "display_data", "metadata": {"scrapbook": {"name": name, "mime_prefix":
                                                                      "application/papermill.record/"}},
            "data": {"application/papermill.record/text/plain": plain}}


def test_glued_values_become_the_stored_values():
    code = {"cell_type": "code", "metadata": {}, "source": "glue(...)", "execution_count": 1,
            "outputs": [_glued("slope", "0.87654"), _glued("runs", "189"), _glued("law", "'S R ln(S R)'")]}
    book = {"01_one": nb(md("# One\n\nSlope {glue:text}`slope:.2f` over {glue:text}`runs` runs; the law "
                            "{glue:text}`law`, {glue}`slope`."), code)}
    text = convert_chapters(book)["01_one"]["cells"][0]["source"]
    assert text.endswith("Slope 0.88 over 189 runs; the law S R ln(S R), 0.87654."), text
    book["01_one"]["cells"][0]["source"] += " And {glue:text}`missing`."
    with pytest.raises(ValueError, match="glued value 'missing'"):
        convert_chapters(book)


def test_directives_labels_and_roles_become_plain_markdown():
    out = convert_chapters(TOY)
    one, two = out["01_one"]["cells"][0]["source"], out["02_two"]["cells"][0]["source"]
    assert one == ("# One\n\n## Part *A*\n\n> **Lemma 1 (Small).**\n>\n> It holds:\n>\n> $$ x = 1 \\tag{1}$$\n\n"
                   "*Proof.*\n\nObvious.\n\n∎\n")
    assert two == ("# Two\n\n> **Exercise 1 (Try).**\n>\n> Use (1), Lemma 1, Figure 1, Part A, that part and One, "
                   "after Nichani et al. (2025) (Nichani et al., 2025).\n\n$$y \\tag{2}$$\n\n"
                   "> **Note.**\n>\n> Noted.\n")
    assert TOY["02_two"]["cells"][0]["source"].startswith("# Two\n\n```{exercise}")  # the input is not changed


@pytest.mark.parametrize("text, message", [
    ("# T\n\nSee {eq}`eq-none`.", "reference to 'eq-none'"),
    ("# T\n\n{cite:p}`nobody2099`", "citation of \\['nobody2099'\\]"),
    ("# T\n\n```{margin}\nx\n```\n", "no plain-Markdown form for the directive \\{margin\\}"),
    ("# T\n\n```{exercise}\nnever closed\n", "never closed"),
])
def test_what_cannot_be_converted_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        convert_chapters({"01_t": nb(md(text))})


# Math as JupyterLab and nbconvert take it out of Markdown before parsing it: display, then inline.
MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+?\$", re.S)


def _math(text):
    return MATH.findall(re.sub(r"`[^`\n]+`", "", text))


def test_math_in_a_quotation_holds_no_quote_marker():
    text = ("# T\n\n```{prf:theorem} Bound\n:label: thm-b\n\nFor $a +\nb$ and\n\n$$\n"
            "a \\le\nb + c\n$$ (eq-b)\n\nthe `$x\ny$` code stays.\n```\n")
    out = convert_chapters({"01_t": nb(md(text))})["01_t"]["cells"][0]["source"]
    assert "> For $a + b$ and\n>\n> $$ a \\le b + c \\tag{1}$$\n" in out
    assert [m for m in _math(out) if ">" in m] == []


@pytest.mark.parametrize("body, aligned", [
    ("\na &= b, \\\\\nc &= d\n", True),
    ("\na = b \\\\ c = d\n", True),
    ("\nf(x) = \\begin{cases} 1 & x > 0 \\\\ 0 & \\text{else} \\end{cases}\n", False),
    ("\n\\text{R\\&D} = 1\n", False),
    ("\na = b\n", False),
])
def test_aligned_equations_get_an_environment_mathjax_accepts(body, aligned):
    out = convert_chapters({"01_t": nb(md(f"# T\n\n$${body}$$ (eq-a)\n"))})["01_t"]["cells"][0]["source"]
    assert out.count("\\begin{aligned}") == out.count("\\end{aligned} \\tag{1}$$") == int(aligned), out


def test_equation_labels_in_code_comments_become_numbers():
    code = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": "x = f(1)  # eq. (a b), as (eq-a-b) says\ns = '# eq. (a b) in a string'\n%timeit x\n"}
    out = convert_chapters({"01_t": nb(md("# T\n\n$$x$$ (eq-a-b)\n"), code)})["01_t"]["cells"][1]["source"]
    assert out.startswith("x = f(1)  # eq. (1), as (eq. (1)) says\ns = '# eq. (a b) in a string'\n")


def _chapters():
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "book").glob("0[0-9]_*.ipynb"))}


def test_the_chapters_convert_with_no_myst_left():
    for doc, notebook in convert_chapters(_chapters()).items():
        left = [m.group(0) for c in notebook["cells"] if c["cell_type"] == "markdown"
                for m in MYST_LEFT.finditer(c["source"])]
        assert not left, f"{doc}: MyST left: {left[:5]}"


def test_the_chapters_code_comments_name_no_label():
    for doc, notebook in convert_chapters(_chapters()).items():
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert not re.search(r"#.*(eq\. \([A-Za-z]|\beq-\w)", cell["source"]), (doc, cell["source"][:200])


def test_the_chapters_math_has_no_quote_marker_and_no_bare_alignment():
    quoted = aligned = 0
    for doc, notebook in convert_chapters(_chapters()).items():
        for cell in notebook["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for math in _math(cell["source"]):
                assert not re.search(r"\n[ \t]*>", math), f"{doc}: a quote marker inside {math[:80]!r}"
                outside = re.sub(r"\\begin\{(\w+\*?)\}.*?\\end\{\1\}", "", math, flags=re.S)
                assert not re.search(r"(?<!\\)&|\\\\", outside), f"{doc}: alignment outside an environment: {math[:80]!r}"
                aligned += "\\begin{aligned}" in math
            quoted += sum(line.startswith(">") and "$" in line for line in cell["source"].split("\n"))
    assert aligned >= 9 and quoted > 30, (aligned, quoted)  # the book's aligned and quoted equations are there


@pytest.mark.skipif(not (HTML / "01_linear_memory.html").is_file(), reason="no _build/html: run `make book` first")
def test_numbers_are_the_html_books():
    labels = book_labels({doc: nb_["cells"] for doc, nb_ in _chapters().items()})
    pages = {p.stem: p.read_text(encoding="utf8") for p in HTML.glob("0[0-9]_*.html")}
    checked = 0
    for label, text in labels.items():
        kind = re.match(r"(Exercise|Theorem|Lemma|Definition|Proposition|Corollary|Figure) (\d+)$|\((\d+)\)$", text)
        if not kind:
            continue
        if kind[3]:
            anchor, shown = f'id="equation-{label}"', re.compile(r'class="eqno">\((\d+)\)')
            expected = kind[3]
        else:
            anchor, expected = f'id="{label}"', kind[2]
            word = "Fig\\." if kind[1] == "Figure" else kind[1]
            shown = re.compile(rf'caption-number">{word} (\d+)')
        page = next((p for p in pages.values() if anchor in p), None)
        assert page is not None, f"{label}: not in the HTML book"
        found = shown.search(page, page.index(anchor))
        assert found and found[1] == expected, f"{label}: {text} here, {found and found[0]} in the HTML book"
        checked += 1
    assert checked > 100, checked
