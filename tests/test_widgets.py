"""The explorers: live widgets, and the precomputed states they store for the HTML book (factlib/explorer.py).
What the stored page does in a browser is tested in tests/test_html.py."""
import base64
import io
import json
import re

import ipywidgets as w
import pytest
from PIL import Image

from factlib import widgets
from factlib.explorer import MAX_STATES, SNAPSHOT_ENV, Explorer
from factlib.plots import figure


def _toy(calls=None, **grid):
    """An explorer over two sliders and a dropdown whose figure title and summary name the values drawn."""
    controls = {
        "a": w.IntSlider(value=2, min=0, max=10, description="a"),
        "b": w.FloatSlider(value=0.5, min=0.0, max=1.0, description="b value"),
        "kind": w.Dropdown(options=["x", "y"], value="x", description="kind"),
    }

    def draw(v):
        if calls is not None:
            calls.append(dict(v))
        fig, ax = figure(width=2.0 + v["a"] / 10, height=1.5)
        ax.set_title(f"{v['a']} {v['b']} {v['kind']}")
        return [fig], f"a={v['a']} b={v['b']} kind={v['kind']}"

    return Explorer(controls, draw, rows=[["a", "b"], ["kind"]], grid=grid or {"a": (1, 2, 3), "kind": ("x", "y")})


def _data(html):
    return json.loads(re.search(r'<script type="application/json" class="fx-data">(.*?)</script>', html, re.S)[1]
                      .replace("<\\/", "</"))


def test_snapshot_stores_every_grid_state_drawn_with_its_values():
    calls = []
    explorer = _toy(calls)
    calls.clear()
    page = explorer.snapshot_html()
    data = _data(page)
    assert len(calls) == 6 and len(data["states"]) == 6
    assert data["labels"] == [["1", "2", "3"], ["x", "y"]]
    for key, (refs, summary) in data["states"].items():
        i, j = map(int, key.split(","))
        a, kind = (1, 2, 3)[i], ("x", "y")[j]
        assert summary == f"a={a} b=0.5 kind={kind}"  # b, not on the grid, stays at its default
        (ref,) = refs
        image = Image.open(io.BytesIO(base64.b64decode(data["images"][ref])))
        assert image.format == "WEBP"
        assert data["widths"][ref] == round(100 * (2.0 + a / 10)) and image.width == 2 * data["widths"][ref]
    assert len(set(map(tuple, (s[0] for s in data["states"].values())))) == 6  # six different figures
    # The page opens on the default state (a = 2, kind = x), and names what it holds fixed.
    first = data["states"]["1,0"]
    assert f'src="data:image/webp;base64,{data["images"][first[0][0]]}"' in page
    assert '<pre class="fx-summary">a=2 b=0.5 kind=x</pre>' in page
    assert "Held fixed on this page: b value = 0.5." in page
    assert 'value="1" data-fx-control="a"' in page and '<option value="0" selected>x</option>' in page


def test_grid_gets_the_default_value_in_order():
    explorer = _toy(a=(1, 5))
    assert explorer.grid == {"a": [1, 2, 5]}


def test_html_only_when_executed_for_the_book(monkeypatch):
    explorer = _toy(a=(1, 2))
    monkeypatch.delenv(SNAPSHOT_ENV, raising=False)
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "text/html" not in bundle
    monkeypatch.setenv(SNAPSHOT_ENV, "1")
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and 'class="fx-explorer"' in bundle["text/html"]


def test_live_widget_redraws_when_a_control_moves():
    calls = []
    explorer = _toy(calls)
    before = explorer.images[0].value
    explorer.controls["kind"].value = "y"
    assert calls[-1] == {"a": 2, "b": 0.5, "kind": "y"}
    assert explorer.images[0].value != before
    assert "kind=y" in explorer.summary.value
    assert all(c.style.description_width == "initial" for c in explorer.controls.values())


@pytest.mark.parametrize("grid, message", [
    ({"zz": (1, 2)}, "grid: \\['zz'\\] are not controls"),
    ({"a": tuple(range(MAX_STATES + 1))}, "more than MAX_STATES"),
])
def test_bad_grids_are_refused(grid, message):
    with pytest.raises(ValueError, match=message):
        _toy(**grid)


def test_rows_must_list_every_control():
    controls = {"a": w.IntSlider(value=1), "b": w.IntSlider(value=1)}
    with pytest.raises(ValueError, match="rows: must list every control once"):
        Explorer(controls, lambda v: ([], None), rows=[["a"]], grid={})


def _cells():
    return {(h, m): {"accuracy": 0.1 * h + 0.01 * m, "params": 100 * h + m, "curve": [(0, 0.0), (10, 0.1 * h)],
                     "blocks": {"attention": 0.5, "mlp": 0.01 * m}}
            for h in (1, 2) for m in (4, 8)}


@pytest.mark.parametrize("make", [
    widgets.memory_explorer, widgets.prompt_explorer, widgets.construction_explorer, widgets.bounds_explorer,
    lambda: widgets.tradeoff_explorer(_cells(), facts=16),
], ids=["memory", "prompt", "construction", "bounds", "tradeoff"])
def test_chapter_explorers_draw_their_default_state(make):
    explorer = make()
    assert explorer.images and all(image.value[:4] == b"\x89PNG" for image in explorer.images)


def test_tradeoff_snapshot_covers_the_whole_grid():
    data = _data(widgets.tradeoff_explorer(_cells(), facts=16).snapshot_html())
    assert len(data["states"]) == 4 and data["labels"] == [["1", "2"], ["4", "8"]]
    assert len({s[1] for s in data["states"].values()}) == 4


def test_controls_that_do_nothing_are_disabled_and_their_states_drawn_once():
    calls = []
    controls = {"kind": w.Dropdown(options=["x", "y"], value="x", description="kind"),
                "a": w.IntSlider(value=1, min=1, max=3, description="a")}

    def draw(v):
        calls.append(dict(v))
        fig, ax = figure(width=2.0, height=1.5)
        ax.set_title(f"{v['kind']} {v['a'] if v['kind'] == 'y' else ''}")
        return [fig], f"kind={v['kind']}"

    explorer = Explorer(controls, draw, rows=[["kind", "a"]], grid={"kind": ("x", "y"), "a": (1, 2, 3)},
                        unused=lambda v: {"a"} if v["kind"] == "x" else set())
    assert controls["a"].disabled  # live: a does nothing for kind x
    controls["kind"].value = "y"
    assert not controls["a"].disabled
    controls["kind"].value = "x"
    calls.clear()
    page = explorer.snapshot_html()
    data = _data(page)
    assert len(calls) == 4 and "stores 4 precomputed states" in page  # x once, y at each a
    assert data["unused"] == {"0,0": [1], "0,1": [1], "0,2": [1]}
    assert data["states"]["0,0"] == data["states"]["0,2"] and data["states"]["1,0"] != data["states"]["1,2"]
    assert all(font == 9 for font in data["fonts"]) and 'data-min-font-pt="9"' in page  # tick labels
