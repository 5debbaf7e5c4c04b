"""Sphinx extension: keep the widget JavaScript off pages that do not need it.

jupyter-book adds every ``*.js`` and ``*.css`` under ``_static`` to every page. The widget scripts
(``_static/vendor``: RequireJS and the ipywidgets html-manager bundles; ``_static/widgets-setup.js``)
must load only on pages with stored widget state, in order, which MyST-NB does
through ``nb_ipywidgets_js``. Loaded everywhere, RequireJS and the several html-manager bundles
clash with each other and with the theme's scripts.
"""

VENDOR_PREFIX = "vendor/"


def _filename(entry):
    return entry if isinstance(entry, str) else entry[0]


def drop_widget_assets(app, config):
    per_page = set(config.nb_ipywidgets_js)
    for name in ("html_js_files", "html_css_files"):
        kept = [
            entry
            for entry in getattr(config, name)
            if not (_filename(entry).startswith(VENDOR_PREFIX) or _filename(entry) in per_page)
        ]
        setattr(config, name, kept)


def setup(app):
    # Before Sphinx normalises html_js_files (priority 800).
    app.connect("config-inited", drop_widget_assets, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
