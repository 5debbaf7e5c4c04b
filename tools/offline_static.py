"""Local Sphinx extension: what the built HTML loads, and what it ships.

* Widget JavaScript only on the pages that need it. jupyter-book adds every ``*.js`` and ``*.css`` under
  ``_static`` to every page. The widget scripts (``_static/vendor``: RequireJS and the ipywidgets
  html-manager bundles; ``_static/widgets-setup.js``) must load only on pages with stored widget state,
  in order, which MyST-NB does through ``nb_ipywidgets_js``. Loaded everywhere, RequireJS and the several
  html-manager bundles clash with each other and with the theme's scripts.
* Author-year bibliography labels (``bib_author_year``).
* After the build (``build-finished``):

  - files that no page loads are deleted (see ``prune``): source maps, the MathJax builds other than the
    one the pages load, the html-manager bundles other than ``embed-amd.js``, the theme's message catalogs
    and template macros. What a loaded script or stylesheet may fetch later (MathJax components and fonts,
    the widget fonts, anything named in a loaded file) is kept, and so are MathJax's components: its menu
    loads the accessibility tools (``a11y``, ``sre``) and the SVG output when a reader turns them on;
  - ``index.html``, which sphinx-external-toc writes as a bare redirect, gets a title and a visible link;
  - the search page, opened from ``file://``, says that search needs the folder served over HTTP and does
    not try to fetch result summaries (browsers refuse ``fetch`` on ``file://``).
"""

import html
import re
from pathlib import Path

import bib_author_year
from sphinx.util import logging

logger = logging.getLogger(__name__)

VENDOR_PREFIX = "vendor/"
SEARCH_NOTE_JS = "search-file-note.js"


def _filename(entry):
    return entry if isinstance(entry, str) else entry[0]


def drop_widget_assets(app, config):
    per_page = set(config.nb_ipywidgets_js) | {SEARCH_NOTE_JS}
    for name in ("html_js_files", "html_css_files"):
        kept = [
            entry
            for entry in getattr(config, name)
            if not (_filename(entry).startswith(VENDOR_PREFIX) or _filename(entry) in per_page)
        ]
        setattr(config, name, kept)


def add_search_note(app, pagename, templatename, context, doctree):
    if pagename == "search":
        app.add_js_file(SEARCH_NOTE_JS)


# ---------------------------------------------------------------- after the build

_SOURCE_MAP = re.compile(r"\n?(?://# sourceMappingURL=[^\n]*|/\*# sourceMappingURL=[^\n]*?\*/)[ \t]*$", re.M)
_LINKED = re.compile(r"""\b(?:src|href|data|data-jupyter-widgets-cdn)\s*=\s*["']([^"'#?]+)""")


def prune_candidates(outdir):
    """Files that nothing loads unless a page or a loaded file names them."""
    static = outdir / "_static"
    yield from static.rglob("*.map")
    yield from (static / "mathjax").glob("*.js")  # combined builds; their components (subfolders) stay
    for bundle in (static / "vendor").glob("*.js"):
        yield bundle
        yield from (static / "vendor").glob(bundle.name + ".LICENSE.txt")
    if (static / "locales").is_dir():
        yield from (p for p in (static / "locales").rglob("*") if p.is_file())
    yield from static.glob("*macros.html")


def prune(outdir):
    """Delete the candidates that no page links and no kept text file names; return (files, bytes)."""
    candidates = {p.resolve() for p in prune_candidates(outdir) if p.is_file()}
    linked = set()
    for page in outdir.rglob("*.html"):
        if page.resolve() in candidates:
            continue
        for ref in _LINKED.findall(page.read_text(encoding="utf8")):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", ref, re.I):
                linked.add((page.parent / ref).resolve())
    keep = candidates & linked
    # Grow the kept set until stable: a kept (or never-candidate) script or stylesheet that names a
    # candidate's file name may load it (webpack chunks, fonts, MathJax components).
    texts = [p for p in outdir.rglob("*") if p.is_file() and p.suffix in {".js", ".css", ".html"}]
    while True:
        names = set()
        for path in texts:
            if path.resolve() in candidates and path.resolve() not in keep:
                continue
            text = path.read_text(encoding="utf8", errors="replace")
            if path.suffix in {".js", ".css"}:
                text = _SOURCE_MAP.sub("", text)
            names.update(c.name for c in candidates - keep if c.name in text and c != path.resolve())
        grown = keep | {c for c in candidates if c.name in names}
        if grown == keep:
            break
        keep = grown
    removed, size = 0, 0
    for path in sorted(candidates - keep):
        size += path.stat().st_size
        path.unlink()
        removed += 1
    # The source maps are gone: drop the comments that point at them.
    for path in list(outdir.rglob("*.js")) + list(outdir.rglob("*.css")):
        text = path.read_text(encoding="utf8", errors="surrogateescape")
        new = _SOURCE_MAP.sub("", text)
        if new != text:
            path.write_text(new, encoding="utf8", errors="surrogateescape")
    for folder in sorted((p for p in outdir.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed, size


def write_index(app, outdir):
    root = app.config.root_doc
    target = app.builder.get_target_uri(root)
    title = html.escape(app.config.html_title or app.config.project)
    (outdir / "index.html").write_text(
        f"""<!DOCTYPE html>
<html lang="{html.escape(app.config.language or 'en')}">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta http-equiv="refresh" content="0; url={target}">
  <link rel="canonical" href="{target}">
</head>
<body>
  <h1>{title}</h1>
  <p><a href="{target}">Start reading: the introduction</a></p>
</body>
</html>
""",
        encoding="utf8",
    )


def finish(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    write_index(app, outdir)
    removed, size = prune(outdir)
    logger.info(f"[offline_static] removed {removed} unreferenced files ({size / 1e6:.1f} MB)")


def setup(app):
    bib_author_year.register()
    # Before Sphinx normalises html_js_files (priority 800).
    app.connect("config-inited", drop_widget_assets, priority=400)
    app.connect("html-page-context", add_search_note)
    # After sphinx-external-toc writes its redirect (priority 500) and the theme copies its assets.
    app.connect("build-finished", finish, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
