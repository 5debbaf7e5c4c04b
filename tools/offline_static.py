"""Local Sphinx extension: what the built HTML loads, and what it ships.

* No widget JavaScript: the explorers' HTML output carries its own few lines (factlib/explorer.py); the widget
  snapshot a chapter stores for JupyterLab is left out of its page (``drop_widget_state``), and MyST-NB is given no
  ipywidgets bundle to add (``nb_ipywidgets_js: {}`` in _config.yml).
* Author-year bibliography labels (``bib_author_year``).
* After the build (``build-finished``):

  - the theme's icons come from a stylesheet naming only the icons the pages use (``fa-icons.css``,
    generated from the theme's own icon table and drawn with its web fonts), not from ``fontawesome.js``
    (1.5 MB of JavaScript that turns every icon of Font Awesome into inline SVG): see ``icon_css``;
  - files that no page loads are deleted (see ``prune``): source maps, the MathJax builds other than the
    one the pages load, the theme's ``fontawesome.js``, message catalogs and template macros. What a loaded
    script or stylesheet may fetch later (MathJax components and fonts, anything named in a loaded file) is
    kept, and so are MathJax's components: its menu loads the accessibility tools (``a11y``, ``sre``) and the SVG
    output when a reader turns them on;
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

SEARCH_NOTE_JS = "search-file-note.js"
ICON_CSS = "fa-icons.css"


def _filename(entry):
    return entry if isinstance(entry, str) else entry[0]


def drop_page_specific_assets(app, config):
    """jupyter-book adds every script under _static to every page: the search note belongs to search.html."""
    config.html_js_files = [entry for entry in config.html_js_files if _filename(entry) != SEARCH_NOTE_JS]


def add_search_note(app, pagename, templatename, context, doctree):
    if pagename == "search":
        app.add_js_file(SEARCH_NOTE_JS)


WIDGET_STATE_TYPE = "application/vnd.jupyter.widget-state+json"


def drop_widget_state(app, pagename, templatename, context, doctree):
    """The widget snapshot a chapter stores for JupyterLab: no page loads the JavaScript that would read it (the
    explorers carry their own states), so it would only weigh on the page."""
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [s for s in scripts if getattr(s, "attributes", {}).get("type") != WIDGET_STATE_TYPE]


# ---------------------------------------------------------------- after the build

_SOURCE_MAP = re.compile(r"\n?(?://# sourceMappingURL=[^\n]*|/\*# sourceMappingURL=[^\n]*?\*/)[ \t]*$", re.M)
_LINKED = re.compile(r"""\b(?:src|href|data|data-jupyter-widgets-cdn)\s*=\s*["']([^"'#?]+)""")


def prune_candidates(outdir):
    """Files that nothing loads unless a page or a loaded file names them."""
    static = outdir / "_static"
    yield from static.rglob("*.map")
    yield from (static / "mathjax").glob("*.js")  # combined builds; their components (subfolders) stay
    yield from (static / "scripts").glob("fontawesome.js*")  # replaced by ICON_CSS
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


# Icons: <i class="fa-solid fa-bars"> in the theme's templates and scripts. Modifier classes are not icons.
_ICON_CLASS = re.compile(r"\bfa-([a-z0-9]+(?:-[a-z0-9]+)*)")
_MODIFIERS = {"solid", "regular", "brands", "lg", "sm", "xs", "fw", "xl", "2x", "3x", "spin", "pulse", "border"}
_FONTAWESOME_SCRIPT = re.compile(r'[ \t]*<script defer src="([^"]*?)scripts/fontawesome\.js[^"]*"></script>\n?')


def icon_table(fontawesome_js):
    """Icon name (and alias) -> code point, read from the theme's fontawesome.js, whose packs list each icon as
    ``name:[width,height,[aliases],"codepoint",path]`` (the name quoted where it has a hyphen)."""
    table = {}
    for name, aliases, code in re.findall(r'[{,]"?([a-z0-9-]+)"?:\[\d+,\d+,\[([^\]]*)\],"([0-9a-f]{4,5})"',
                                          fontawesome_js):
        table.setdefault(name, code)
        for alias in re.findall(r'"([a-z0-9-]+)"', aliases):
            table.setdefault(alias, code)
    return table


def icon_css(names, table):
    """A stylesheet drawing each icon in ``names`` with the Font Awesome web fonts the theme's CSS declares."""
    missing = sorted(n for n in names if n not in table)
    if missing:
        raise ValueError(f"icons not in the theme's Font Awesome table: {missing}")
    rules = [
        ".fa-solid,.fas,.fa-regular,.far,.fa-brands,.fab{display:inline-block;font-style:normal;font-variant:normal;"
        "line-height:1;text-rendering:auto;-webkit-font-smoothing:antialiased}",
        '.fa-solid,.fas{font-family:"Font Awesome 6 Free";font-weight:900}',
        '.fa-regular,.far{font-family:"Font Awesome 6 Free";font-weight:400}',
        '.fa-brands,.fab{font-family:"Font Awesome 6 Brands";font-weight:400}',
        ".fa-lg{font-size:1.25em;line-height:.05em;vertical-align:-.075em}",
        ".fa-fw{text-align:center;width:1.25em}",
    ]
    rules += [f'.fa-{name}::before{{content:"\\{table[name]}"}}' for name in sorted(names)]
    return "\n".join(rules) + "\n"


def replace_fontawesome(outdir):
    """Write ICON_CSS for the icons that the pages and the kept scripts use, and link it instead of
    fontawesome.js in every page. Returns the number of icons."""
    static = outdir / "_static"
    script = static / "scripts" / "fontawesome.js"
    if not script.is_file():
        return 0
    pages = {p: p.read_text(encoding="utf8") for p in outdir.rglob("*.html")}
    sources = list(pages.values())
    sources += [p.read_text(encoding="utf8", errors="replace") for p in static.rglob("*.js") if p != script]
    table = icon_table(script.read_text(encoding="utf8"))
    # modifiers (fa-solid, fa-lg, ...) and class-like words in scripts that name no icon are left out
    icons = ({n for text in sources for n in _ICON_CLASS.findall(text)} - _MODIFIERS) & table.keys()
    (static / ICON_CSS).write_text(icon_css(icons, table), encoding="utf8")
    for page, text in pages.items():  # each page read once, above
        new = _FONTAWESOME_SCRIPT.sub(lambda m: f'  <link rel="stylesheet" href="{m[1]}{ICON_CSS}" />\n', text)
        if new != text:
            page.write_text(new, encoding="utf8")
    return len(icons)


def write_index(app, outdir):
    root = app.config.root_doc
    target = app.builder.get_target_uri(root)
    title = html.escape(app.config.html_title or app.config.project)
    favicon = app.config.html_favicon
    icon = f'\n  <link rel="icon" href="_static/{html.escape(Path(favicon).name)}">' if favicon else ""
    (outdir / "index.html").write_text(
        f"""<!DOCTYPE html>
<html lang="{html.escape(app.config.language or 'en')}">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta http-equiv="refresh" content="0; url={target}">
  <link rel="canonical" href="{target}">{icon}
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
    icons = replace_fontawesome(outdir)
    logger.info(f"[offline_static] {icons} icons in {ICON_CSS} instead of fontawesome.js")
    removed, size = prune(outdir)
    logger.info(f"[offline_static] removed {removed} unreferenced files ({size / 1e6:.1f} MB)")


def setup(app):
    bib_author_year.register()
    # Before Sphinx normalises html_js_files (priority 800).
    app.connect("config-inited", drop_page_specific_assets, priority=400)
    app.connect("html-page-context", add_search_note)
    app.connect("html-page-context", drop_widget_state)
    # After sphinx-external-toc writes its redirect (priority 500) and the theme copies its assets.
    app.connect("build-finished", finish, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
