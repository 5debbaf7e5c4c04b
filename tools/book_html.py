"""Local Sphinx extension: what the chapters' cells look like in the HTML book.

* Solutions show the solution only. A code exercise's reference solution carries the course edition's grading
  markers (``### BEGIN SOLUTION`` / ``### END SOLUTION``) and some checker cells carry hidden tests between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` (tools/assignments.py generates the course edition from
  them, so they stay in the notebooks). When a chapter is read for the book (``source-read``), the marker lines and
  the hidden tests are left out of its code cells; the notebook on disk is untouched.
* Figures have a phone version. ``factlib.plots.show`` stores, in a figure output's metadata, the smallest font
  size it was drawn with and, for a wide figure, a second PNG with its panels stacked for a phone. After the build,
  each such figure's ``<img>`` becomes a ``<picture>`` whose phone source the browser takes at a phone width
  (:data:`PHONE_MEDIA`), and carries ``data-min-font-pt`` (tests/test_html.py computes the text's height as
  displayed from it). The browser fetches only the version it shows.
* An explorer's summary names an equation by its label in parentheses, ``(eq-mlp-condition)``, which is all a
  kernel knows; the book prints the equation's number there, ``(29)``, as the text around it does.
"""

import base64
import hashlib
import html
import json
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: the widths at which a figure's phone version is shown
PHONE_MEDIA = "(max-width: 640px)"

_MARKER = re.compile(r"^[ \t]*### (?:BEGIN|END) SOLUTION[ \t]*\n?", re.M)
_HIDDEN_TESTS = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*(?:\n|$)", re.M | re.S)


def strip_grading(source: str) -> str:
    """A code cell's source without the grading markers and hidden tests (the course edition's, not the reader's)."""
    stripped = _MARKER.sub("", _HIDDEN_TESTS.sub("", source))
    return stripped.rstrip("\n") if stripped != source else source


def _is_notebook(app, docname) -> bool:
    return str(app.env.doc2path(docname)).endswith(".ipynb")


def hide_grading(app, docname, source):
    if not _is_notebook(app, docname):
        return
    nb = json.loads(source[0])
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new = strip_grading(text)
        if new != text:
            cell["source"], changed = new, True
    if changed:
        source[0] = json.dumps(nb)


# ---------------------------------------------------------------- figures

def figure_versions(notebook: Path):
    """(file name MyST-NB gives the figure, its factlib metadata) for each figure output ``plots.show`` made."""
    nb = json.loads(notebook.read_text(encoding="utf8"))
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            book = output.get("metadata", {}).get("factlib")
            if book and "image/png" in output.get("data", {}):
                data = base64.b64decode(output["data"]["image/png"])
                yield f"{hashlib.sha256(data).hexdigest()}.png", book


def _img_pattern(name):
    return re.compile(r'<img alt="([^"]*)" src="([^"]*?)' + re.escape(name)
                      + r'" style="width: (\d+)px; height: (\d+)px;" />')


def picture(match, name, book, phone_name) -> str:
    alt, prefix, width, height = match.groups()
    font = f' data-min-font-pt="{book["min_font_pt"]:g}"'
    img = (f'<img alt="{alt}" src="{prefix}{name}" width="{width}" height="{height}"{font} />')
    if phone_name is None:
        return img
    phone = book["phone"]
    return (f'<picture><source media="{html.escape(PHONE_MEDIA)}" srcset="{prefix}{phone_name}" '
            f'width="{phone["width"]}" height="{phone["height"]}" />{img}</picture>')


_EQUATION = re.compile(r'id="equation-(eq-[\w-]+)">\s*<span class="eqno">(\([^<]*\))')
_EXPLORER = re.compile(r'<div class="fx-explorer">.*?</script></div>', re.S)


def equation_numbers(pages) -> dict:
    """label -> "(number)" of every numbered display equation in the pages' HTML."""
    return {label: number for text in pages for label, number in _EQUATION.findall(text)}


def number_equations(text: str, numbers: dict) -> str:
    """Explorers' "(eq-label)" replaced by the equation's number."""
    def explorer(match):
        return re.sub(r"\((eq-[\w-]+)\)", lambda m: numbers.get(m[1], m[0]), match[0])

    return _EXPLORER.sub(explorer, text)


def finish(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    images = outdir / "_images"
    count = 0
    pages = {outdir / f"{docname}.html": docname for docname in sorted(app.env.found_docs)
             if _is_notebook(app, docname) and (outdir / f"{docname}.html").is_file()}
    texts = {page: page.read_text(encoding="utf8") for page in pages}
    numbers = equation_numbers(texts.values())
    for page, docname in pages.items():
        text = number_equations(texts[page], numbers)
        for name, book in figure_versions(Path(app.env.doc2path(docname))):
            phone_name = None
            if "phone" in book:
                phone_name = name.replace(".png", "-phone.png")
                (images / phone_name).write_bytes(base64.b64decode(book["phone"]["image/png"]))
            text, n = _img_pattern(name).subn(lambda m: picture(m, name, book, phone_name), text)
            count += n
        page.write_text(text, encoding="utf8")
    logger.info(f"[book_html] {count} figures with their smallest font size, phone versions where drawn; "
                f"{len(numbers)} equation numbers for the explorers")


def setup(app):
    app.connect("source-read", hide_grading)
    # before tools/offline_static.py prunes (priority 900)
    app.connect("build-finished", finish, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
