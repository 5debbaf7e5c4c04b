"""One explorer, two lives: live ipywidgets in a kernel, precomputed states in the HTML book.

An :class:`Explorer` is a set of controls and a ``draw(values) -> (figures, summary)`` function. In a kernel
(JupyterLab) it is an ipywidgets ``VBox``: every control change calls ``draw`` and shows the new figures. The
static HTML book has no kernel, so when the chapters are executed for the book (``tools/execute_notebooks.py``
sets :data:`SNAPSHOT_ENV`), the explorer also draws every state of a coarse grid of control values and stores
them, with a few lines of JavaScript that show the state the reader's controls select, as the output's
``text/html``. The book's build renders that ``text/html`` instead of the widget (``_config.yml``), and
JupyterLab renders the widget.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence

import ipywidgets as w
import matplotlib.pyplot as plt

from .plots import check_figure, png

#: set to 1 to store the precomputed HTML states with the widget (done when executing the chapters for the book)
SNAPSHOT_ENV = "FACTLIB_EXPLORER_SNAPSHOT"
#: the most states one explorer may precompute for the HTML (page weight: about 20 kB per figure)
MAX_STATES = 64

Draw = Callable[[dict], "tuple[list, str | None]"]
Unused = Callable[[dict], "set[str]"]

_STYLE = """<style>
.fx-explorer{max-width:100%;margin:.5rem 0}
.fx-controls{display:flex;flex-wrap:wrap;gap:.35rem 1.4rem;align-items:center;margin-bottom:.4rem}
.fx-control{display:flex;align-items:center;gap:.45rem;flex:0 1 17rem;margin:0;white-space:nowrap}
.fx-control input[type=range]{flex:1 1 6rem;min-width:6rem;width:auto}
.fx-control output{min-width:3.5em;font-variant-numeric:tabular-nums}
.fx-control select{max-width:14rem}
.fx-fixed{flex-basis:100%;font-size:.9em;opacity:.8;white-space:normal}
.fx-control:has(:disabled){opacity:.55}
.fx-frames{display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:flex-start;margin:.3rem 0}
.fx-frame{display:block;max-width:100%;height:auto}
.fx-summary{white-space:pre-wrap;font-size:.85em}
.fx-about{font-size:.9em;font-style:italic}
</style>"""

# Shows the stored state that the page's controls select; runs once where the output is inserted.
_SCRIPT = """<script>(function (root) {
  var data = JSON.parse(root.querySelector("script.fx-data").textContent);
  var inputs = Array.prototype.slice.call(root.querySelectorAll("[data-fx-control]"));
  var frames = root.querySelectorAll("img.fx-frame");
  var summary = root.querySelector(".fx-summary");
  function show() {
    var key = inputs.map(function (el) { return el.value; }).join(",");
    var state = data.states[key];
    var unused = data.unused[key] || [];
    inputs.forEach(function (el, i) {
      var out = el.parentNode.querySelector("output");
      if (out) { out.textContent = data.labels[i][+el.value]; }
      el.disabled = unused.indexOf(i) >= 0;
    });
    state[0].forEach(function (k, i) {
      frames[i].src = "data:image/webp;base64," + data.images[k];
      frames[i].width = data.widths[k];
      frames[i].setAttribute("data-min-font-pt", data.fonts[k]);
    });
    if (summary) { summary.textContent = state[1]; }
  }
  inputs.forEach(function (el) { el.addEventListener("input", show); el.addEventListener("change", show); });
  show();
})(document.currentScript.parentNode);</script>"""


def _label(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _webp(fig) -> tuple[str, int, float]:
    """``fig`` (then closed) as a lossless WebP at the book's resolution, base64, its 1x width in px and its
    smallest font size (checked by :func:`~factlib.plots.check_figure`)."""
    from PIL import Image

    data, width = png(fig, close=False)
    font = check_figure(fig, drawn=True)
    plt.close(fig)
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="WEBP", lossless=True, method=4)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), width, font


class Explorer(w.VBox):
    """Controls, figures and an optional text summary; see the module docstring.

    ``controls`` maps a name to an ipywidgets control (its value is the default); ``draw(values)`` gets a dict
    name -> value and returns (list of matplotlib figures, summary text or None), always the same number of
    figures; ``rows`` lists the control names of each row; ``grid`` maps some control names to the values the
    HTML book offers (the default is added if missing), the other controls staying at their defaults there.
    ``unused(values)``, if given, names the controls that change nothing at ``values`` (a width the chosen model
    does not have): they are disabled there, live and in the book, and ``draw`` should say why.

    Figures sit side by side where the column has room and stack where it has not (a phone): draw several
    narrow figures rather than one with several panels, each at most :data:`~factlib.plots.PHONE_MAX_WIDTH`
    inches wide so that its text stays legible on a phone.
    """

    def __init__(self, controls: dict[str, w.ValueWidget], draw: Draw, rows: Sequence[Sequence[str]],
                 grid: dict[str, Sequence], unused: Unused | None = None):
        unknown = set(grid) - set(controls)
        if unknown:
            raise ValueError(f"grid: {sorted(unknown)} are not controls (controls: {list(controls)})")
        if sorted(n for row in rows for n in row) != sorted(controls):
            raise ValueError(f"rows: must list every control once, got {list(rows)} for {list(controls)}")
        for control in controls.values():
            control.style.description_width = "initial"  # whole labels, never "constructi..."
        self.controls, self._draw = controls, draw
        self._unused = unused or (lambda values: set())
        self.grid = {name: self._with_default(name, values) for name, values in grid.items()}
        states = math.prod(len(values) for values in self.grid.values())
        if states > MAX_STATES:
            raise ValueError(f"grid: {states} states, more than MAX_STATES = {MAX_STATES}")
        figures, summary = draw(self.values())
        self.images = [w.Image(format="png") for _ in figures]
        self.summary = w.HTML() if summary is not None else None
        self._show(figures, summary)
        self._disable_unused()
        for control in controls.values():
            control.observe(lambda _: self._redraw(), names="value")
        children = [w.HBox([controls[n] for n in row]) for row in rows]
        children.append(w.HBox(self.images, layout=w.Layout(flex_flow="row wrap")))
        super().__init__(children + ([self.summary] if self.summary is not None else []))

    def _redraw(self) -> None:
        self._disable_unused()
        self._show(*self._draw(self.values()))

    def _disable_unused(self) -> None:
        unused = self._unused(self.values())
        for name, control in self.controls.items():
            control.disabled = name in unused

    def _with_default(self, name: str, values: Sequence) -> list:
        default = self.controls[name].value
        values = list(values)
        if default not in values:
            values.append(default)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                values.sort()
        return values

    def values(self) -> dict:
        """The controls' current values, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _show(self, figures: list, summary: str | None) -> None:
        for image, fig in zip(self.images, figures):
            image.value, width = png(fig)
            image.width = str(width)
        for fig in figures[len(self.images):]:
            plt.close(fig)
        if self.summary is not None:
            self.summary.value = f"<pre>{html.escape(summary or '')}</pre>"

    # ---- the HTML book -------------------------------------------------------------------------------------

    def snapshot_html(self) -> str:
        """Every state of the grid drawn, and the controls that select among them, as one HTML fragment."""
        names = list(self.grid)
        defaults = self.values()
        images, widths, fonts, index, states, unused = [], [], [], {}, {}, {}  # index: image data -> its place
        drawn = {}  # a state's values where its unused controls are at their defaults -> its key
        for combo in itertools.product(*(range(len(self.grid[n])) for n in names)):
            key = ",".join(map(str, combo))
            values = defaults | {n: self.grid[n][i] for n, i in zip(names, combo)}
            idle = self._unused(values)
            if idle & set(names):
                unused[key] = [i for i, n in enumerate(names) if n in idle]
            same = tuple(sorted((n, defaults[n] if n in idle else v) for n, v in values.items()))
            if same in drawn:  # differs from a state drawn already only in controls that do nothing here
                states[key] = states[drawn[same]]
                continue
            drawn[same] = key
            figures, summary = self._draw(values)
            refs = []
            for fig in figures:
                data, width, font = _webp(fig)
                if data not in index:  # the same figure in several states is stored once
                    index[data] = len(images)
                    images.append(data)
                    widths.append(width)
                    fonts.append(font)
                refs.append(index[data])
            states[key] = [refs, summary or ""]
        start = ",".join(str(self.grid[n].index(defaults[n])) for n in names)
        first_refs, first_summary = states[start]
        parts = [_STYLE, '<div class="fx-explorer">', '<div class="fx-controls">']
        for n in names:
            control, values = self.controls[n], self.grid[n]
            label = html.escape(control.description or n)
            i = values.index(defaults[n])
            if isinstance(control, w.Dropdown):
                options = "".join(f'<option value="{j}"{" selected" if j == i else ""}>{html.escape(_label(v))}'
                                  f"</option>" for j, v in enumerate(values))
                parts.append(f'<label class="fx-control"><span>{label}</span>'
                             f'<select data-fx-control="{html.escape(n)}">{options}</select></label>')
            else:
                parts.append(f'<label class="fx-control"><span>{label}</span><input type="range" min="0" '
                             f'max="{len(values) - 1}" step="1" value="{i}" data-fx-control="{html.escape(n)}" '
                             f'aria-label="{label}"><output>{html.escape(_label(values[i]))}</output></label>')
        fixed = [n for n in self.controls if n not in self.grid]
        if fixed:
            held = ", ".join(f"{html.escape(self.controls[n].description or n)} = {html.escape(_label(defaults[n]))}"
                             for n in fixed)
            parts.append(f'<span class="fx-fixed">Held fixed on this page: {held}.</span>')
        parts.append("</div>")
        parts.append('<div class="fx-frames">')
        for k, ref in enumerate(first_refs):
            parts.append(f'<img class="fx-frame" width="{widths[ref]}" alt="explorer figure {k + 1}" '
                         f'data-min-font-pt="{fonts[ref]:g}" src="data:image/webp;base64,{images[ref]}">')
        parts.append("</div>")
        if self.summary is not None:
            parts.append(f'<pre class="fx-summary">{html.escape(first_summary)}</pre>')
        offered = "; ".join(f"{html.escape(self.controls[n].description or n)} in "
                            f"{{{', '.join(html.escape(_label(v)) for v in self.grid[n])}}}" for n in names)
        parts.append(f'<p class="fx-about">This page stores {len(drawn)} precomputed states ({offered}). '
                     "Run the chapter in JupyterLab to set every control freely.</p>")
        data = {"labels": [[_label(v) for v in self.grid[n]] for n in names], "images": images, "widths": widths,
                "fonts": fonts, "states": states, "unused": unused}
        parts.append('<script type="application/json" class="fx-data">'
                     + json.dumps(data, separators=(",", ":")).replace("</", "<\\/") + "</script>")
        parts.append(_SCRIPT)
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if os.environ.get(SNAPSHOT_ENV) == "1" and bundle is not None:
            bundle["text/html"] = self.snapshot_html()
        return bundle
