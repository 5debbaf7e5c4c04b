"""The chapters' plumbing: stored results and tables (factlib.book), figures with a phone version and their checks
(factlib.plots.show), and what the HTML build does with them (tools/book_html.py)."""
import base64
import io
import json
import sys
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

matplotlib.use("Agg")

from factlib import book, plots  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import book_html  # noqa: E402


# ---------------------------------------------------------------- factlib.book

def test_table_prints_html_and_aligned_text():
    table = book.Table(["name", "P", "share"], [["a", 12, 0.5], ["total", 1234, None]],
                       formats={"share": ".0%"}, caption="two rows")
    html = table._repr_html_()
    assert "<caption>two rows</caption>" in html and '<td class="fx-num">50%</td>' in html
    assert '<td class="fx-text">total</td>' in html and '<td class="fx-num">-</td>' in html
    assert repr(table).splitlines() == ["two rows", "name      P  share", "a        12    50%", "total  1234      -"]


@pytest.mark.parametrize("kwargs, message", [
    ({"formats": {"nope": ".2f"}}, "formats: \\['nope'\\] are not columns"),
    ({"rows": [[1]]}, "rows: each row needs 2 cells"),
])
def test_table_refuses_bad_input(kwargs, message):
    args = {"columns": ["a", "b"], "rows": [[1, 2]]} | kwargs
    with pytest.raises(ValueError, match=message):
        book.Table(**args)


def test_stored_results(tmp_path):
    (tmp_path / "fig-quick.json").write_text(json.dumps({"rows": [1]}))
    assert book.load("fig", tmp_path) == {"quick": {"rows": [1]}}
    assert book.stored("fig-quick", tmp_path) == {"rows": [1]} and book.stored("fig-full", tmp_path) is None
    with pytest.raises(ValueError, match="name: no stored result"):
        book.load("other", tmp_path)
    with pytest.raises(ValueError, match="filename: no stored result"):
        book.load_result("other.json", tmp_path)


def test_glue_rounds_and_records_for_the_text(monkeypatch):
    shown = []
    monkeypatch.setattr("myst_nb.ext.glue.ipy_display", lambda data, raw, metadata: shown.append((data, metadata)))
    import numpy as np
    import torch

    book.glue("c_fit", np.float64(0.3412345678), 3)
    book.glue("runs", torch.tensor(22.0), 0)
    book.glue("label", "relu-deg4")
    data = [d["application/papermill.record/text/plain"] for d, _ in shown]
    assert data == ["0.341", "22", "'relu-deg4'"]
    assert [m["scrapbook"]["name"] for _, m in shown] == ["c_fit", "runs", "label"]


@pytest.mark.parametrize("args, message", [
    (("bad name", 1.0), "name must be a word"),
    (("x", float("nan")), "finite number or a string"),
    (("x", True), "finite number or a string"),
    (("x", [1.0]), "finite number or a string"),
    (("x", 1.0, -1), "digits must be None or an integer"),
    (("x", 1.0, 2.5), "digits must be None or an integer"),
])
def test_glue_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        book.glue(*args)


def test_model_name_reads_the_protocol():
    def result(protocol):
        return {"provenance": {"config": {"protocol": protocol}}}

    assert book.model_name(result({"init": "release", "eos_residual": False})) == "release init, no EOS residual"
    assert book.model_name(result({})) == "ours init, with EOS residual"


def test_stopping_table_compares_each_rule_with_the_full_budget():
    rows = [{"d": 8, "d_h": 1, "m": 8, "n": n, "full_budget_reached": ok, "rule_reached[full]": ok,
             "rule_reached[forecast (foresight 2, quick)]": ok and n < 6} for n, ok in [(5, True), (6, True), (7, False)]]
    stopping = {"runs": 3, "rows": rows, "rules": {
        "full": {"agree": 3, "agreement": 1.0, "stopped_learners": 0, "mean_steps": 100},
        "forecast (foresight 2, quick)": {"agree": 2, "agreement": 2 / 3, "stopped_learners": 1, "mean_steps": 50}}}
    assert book.rule_capacities(stopping, "full_budget_reached") == {(8, 1, 8): 6}
    text = repr(book.stopping_table(stopping))
    assert "patience (the protocol's rule)  3 of 3" in text and "forecast (foresight 2)" in text
    assert text.splitlines()[1].endswith("1 of 1") and text.splitlines()[2].endswith("0 of 1")


# ---------------------------------------------------------------- factlib.plots

def _panels(titles, width=3.6):
    fig, axes = plots.figure(ncols=len(titles), width=width, height=3.0)
    for ax, title in zip(fig.axes, titles):
        ax.plot([1, 2], [1, 2])
        ax.set_title(title, fontsize=10)
    return fig


def test_labels_that_run_into_each_other_are_found():
    fig = _panels(["a title far too long to fit its narrow panel"] * 3)
    assert plots.overlapping_labels(fig)
    with pytest.raises(ValueError, match="labels that run into each other"):
        plots.check_figure(fig)
    assert plots.overlapping_labels(_panels(["left", "middle", "right"])) == []


def test_small_text_is_refused():
    fig = _panels(["a", "b"])
    fig.axes[0].set_xlabel("tiny", fontsize=6)
    with pytest.raises(ValueError, match="text of 6 pt"):
        plots.check_figure(fig)


def test_phone_version_stacks_the_panels():
    fig = _panels(["left", "middle", "right"])
    plots.stack_for_phone(fig)
    tops = [ax.get_position().y0 for ax in fig.axes]
    assert fig.get_figwidth() == plots.PHONE_WIDTH and tops == sorted(tops, reverse=True)
    assert len({round(ax.get_position().x0, 3) for ax in fig.axes}) == 1  # one column


def test_show_stores_the_phone_version_and_the_smallest_font(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw, metadata: shown.append((data, metadata)))
    plots.show(_panels(["left", "right"]))
    plots.show(_panels(["alone"], width=4.0))
    (wide, wide_meta), (narrow, narrow_meta) = shown
    assert wide_meta["factlib"]["min_font_pt"] == 9  # the tick labels
    phone = wide_meta["factlib"]["phone"]
    image = Image.open(io.BytesIO(base64.b64decode(phone["image/png"])))
    assert abs(image.width - 2 * phone["width"]) <= 1 and phone["width"] < wide_meta["image/png"]["width"]
    assert phone["height"] > wide_meta["image/png"]["height"]  # stacked
    assert "phone" not in narrow_meta["factlib"] and narrow["text/plain"].startswith("<Figure size")


def test_show_with_a_palette_stores_a_smaller_png_of_the_same_size(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw, metadata: shown.append((data, metadata)))
    for palette in (False, True):
        plots.show(_panels(["left", "right"]), palette=palette)
    (full, full_meta), (small, small_meta) = shown
    images = [Image.open(io.BytesIO(base64.b64decode(d["image/png"]))) for d in (full, small)]
    assert images[0].mode == "RGBA" and images[1].mode == "P" and len(images[1].getcolors(256)) <= 256
    assert images[0].size == images[1].size and full_meta["image/png"] == small_meta["image/png"]
    assert len(small["image/png"]) < len(full["image/png"])
    phone = Image.open(io.BytesIO(base64.b64decode(small_meta["factlib"]["phone"]["image/png"])))
    assert phone.mode == "P"
    with pytest.raises(TypeError, match="palette"):
        plots.show(_panels(["alone"]), palette=1)


# ---------------------------------------------------------------- tools/book_html.py

def test_grading_markers_and_hidden_tests_leave_the_book_only():
    source = ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n\n"
              "check(f)\n### BEGIN HIDDEN TESTS\nassert f() == 1\n### END HIDDEN TESTS\n")
    assert book_html.strip_grading(source) == "def f():\n    return 1\n\ncheck(f)"
    assert book_html.strip_grading("x = 1\n") == "x = 1\n"


def test_explorer_summaries_get_equation_numbers():
    page = ('<div class="math" id="equation-eq-mlp-condition">\n<span class="eqno">(29)<a>#</a></span></div>'
            '<div class="fx-explorer"><pre class="fx-summary">threshold (eq-mlp-condition) m = 4</pre>'
            '<script>x</script></div><pre>outside (eq-mlp-condition)</pre>')
    numbers = book_html.equation_numbers([page])
    assert numbers == {"eq-mlp-condition": "(29)"}
    numbered = book_html.number_equations(page, numbers)
    assert "threshold (29) m = 4" in numbered and "outside (eq-mlp-condition)" in numbered


def test_figure_becomes_a_picture_with_its_phone_version():
    name = "abc.png"
    page = f'<a><img alt="../_images/{name}" src="../_images/{name}" style="width: 740px; height: 400px;" /></a>'
    book_meta = {"min_font_pt": 8.0, "phone": {"width": 401, "height": 800}}
    match = book_html._img_pattern(name).search(page)
    html = book_html.picture(match, name, book_meta, "abc-phone.png")
    assert html.startswith('<picture><source media="(max-width: 640px)" srcset="../_images/abc-phone.png" '
                           'width="401" height="800" />')
    assert 'width="740" height="400" data-min-font-pt="8" />' in html and "style=" not in html
    assert "<picture>" not in book_html.picture(match, name, {"min_font_pt": 9.0}, None)


# ---------------------------------------------------------------- chapter 5's fits and model comparisons

def _row(d, facts, params, seed=0, alpha=1, beta=1, embeddings="gaussian", eval_set="fresh"):
    return {"d": d, "alpha": alpha, "beta": beta, "seed": seed, "params": params, "facts": facts,
            "embeddings": embeddings, "eval_set": eval_set}


def test_release_comparison_pairs_sizes_and_counts_ratios():
    default = {"rows": [_row(8, 10, 100), _row(11, 40, 200), _row(16, 90, 400)]}
    unit = {"rows": [_row(8, 20, 100, embeddings="unit"), _row(11, 40, 200, embeddings="unit")]}
    table, summary = book.release_comparison([default, unit], book.model_label(default["rows"][0]),
                                             {book.model_label(unit["rows"][0]): "unit-norm"})
    assert [row[:6] + row[6:] for row in table.rows] == [["8", "1", "1", "0", "100", "10", "20"],
                                                         ["11", "1", "1", "0", "200", "40", "40"]]
    assert summary["unit-norm"] == {"sizes": 2, "more": 1, "same": 1, "fewer": 0, "median_ratio": 1.5}


def test_slopes_and_the_law_they_admit():
    import math

    rows = [_row(d, round(0.1 * P), P, seed=s, alpha=a, beta=a) for s in range(3) for a in (1, 2)
            for d, P in ((8, 500 * a + 7 * s), (16, 2000 * a + 11 * s), (32, 8000 * a + 3 * s))]
    fits = book.slopes_with_intervals(rows)
    assert abs(fits["facts", "within"]["slope"] - 1) < 0.01
    assert book.law_verdict(fits).startswith("S R = c P")
    def solve(target):  # f with f ln f = target (Newton)
        f = target / math.log(target)
        for _ in range(50):
            f -= (f * math.log(f) - target) / (math.log(f) + 1)
        return f

    log_rows = [dict(r, facts=round(solve(0.5 * r["params"]))) for r in rows]
    assert book.law_verdict(book.slopes_with_intervals(log_rows)).startswith("S R ln(S R) = c P")
    assert book.slopes_with_intervals(rows[:2]) is None


def test_release_subset_text_reads_what_is_stored(tmp_path):
    name = "fig4-left-full-cpu"
    absent = book.release_subset_report(book.stored(name, tmp_path), name)[0]
    assert "not stored" in absent and not any(ch.isdigit() for ch in absent.replace(name, "").replace("N(0, 1/d)", ""))
    rows = [dict(_row(d, 0.15 * P * (1 + 0.02 * s), P, seed=s, alpha=a, beta=a), bits=0.45 * P * (1 + 0.02 * s),
                 embeddings="gaussian", rounding="floor")
            for s in range(3) for a in (0.5, 1, 2) for d, P in ((8, 300 * a), (11, 600 * a), (16, 1500 * a))]
    (tmp_path / f"{name}.json").write_text(json.dumps({"rows": [r for r in rows if r["d"] < 16]}))
    two = book.release_subset_report(book.stored(name, tmp_path), name)[0]
    assert "d = 8, 11," in two and "N(0, 1/d) embeddings" in two and "rounded down" in two
    assert "seeds 0, 1, 2" in two and "not fitted before the sweep covers 3 values of d (2 so far)" in two
    from statistics import median

    per_seed = sorted(median(r["facts"] / r["params"] for r in rows if r["seed"] == s and r["d"] < 16)
                      for s in range(3))
    assert f"{per_seed[1]:.3f} (seeds: {per_seed[0]:.3f} to {per_seed[2]:.3f}; 95\u00a0% bootstrap over 9" in two
    two_rows = [r for r in rows if r["d"] < 16]
    low, high = book.seed_median_interval(two_rows, lambda r: r["facts"] / r["params"])
    assert low < per_seed[1] < high and f"families: [{low:.3f}, {high:.3f}])" in two
    text, numbers = book.release_subset_report(book.stored(name, tmp_path), name)
    assert text == two and numbers["fits"] is None and numbers["facts"]["median"] == pytest.approx(per_seed[1])
    assert (numbers["facts"]["low"], numbers["facts"]["high"]) == (low, high) and numbers["facts"]["families"] == 9
    assert book.release_subset_report(None, name) == (absent, None)
    assert book.seed_median([r for r in rows if r["d"] < 16], lambda r: r["facts"] / r["params"]) == pytest.approx(
        (per_seed[1], per_seed[0], per_seed[2]))
    assert book.sweep_fits([r for r in rows if r["d"] < 16]) is None
    (tmp_path / f"{name}.json").write_text(json.dumps({"rows": rows}))
    three = book.release_subset_report(book.stored(name, tmp_path), name)[0]
    assert "d = 8, 11, 16," in three and "within splits: 1.0" in three and "9 (alpha, beta, seed) families" in three
    assert "the laws the intervals within splits admit: S R = c P" in three
    fits = book.sweep_fits(rows)
    assert book.release_subset_report(book.stored(name, tmp_path), name, fits)[0] == three  # the caller's fits, the same
    shifted = {key: dict(fit, slope=fit["slope"] + 0.5) for key, fit in fits.items()}
    assert "within splits: 1.5" in book.release_subset_report(book.stored(name, tmp_path), name, shifted)[0]
    by_d = {d: median(r["facts"] / r["params"] for r in rows if r["d"] == d) for d in (8, 11, 16)}
    assert book.facts_per_param_by_d(rows) == pytest.approx(by_d)
    assert f"by d, median over splits and seeds: 8: {by_d[8]:.3f}, 11: {by_d[11]:.3f}, 16: {by_d[16]:.3f}" in three
    with pytest.raises(ValueError, match="no rows"):
        book.release_subset_report({"rows": []}, name)
    larger = rows + [dict(r, d=32, params=4 * r["params"], facts=4 * r["facts"], bits=4 * r["bits"])
                     for r in rows if r["d"] == 16]
    grown, by_range = book.slopes_by_d_range(larger)
    assert [row[:2] for row in grown.rows] == [["8\u201316", "27"], ["8\u201332", "36"], ["11\u201332", "27"]]
    above = book.sweep_fits([r for r in larger if r["d"] >= 11])
    for row, fit in zip(grown.rows, (fits, book.sweep_fits(larger), above)):
        assert row[3] == f"{fit['facts', 'within']['slope']:.2f} [{fit['facts', 'within']['low']:.2f}, " \
                         f"{fit['facts', 'within']['high']:.2f}]"
    assert by_range[11, 32] == above and list(by_range) == [(8, 16), (8, 32), (11, 32)]
    assert book.slopes_by_d_range([r for r in rows if r["d"] < 16])[0].rows == []
    assert book.d_ranges(rows) == [(8, 16)]  # three values of d: no range without the smallest


def test_trend_names_the_direction_of_a_sequence():
    assert book.trend({8: 0.1, 11: 0.12, 16: 0.2}) == "rising with d"
    assert book.trend({8: 0.2, 11: 0.2, 16: 0.1}) == "falling with d"
    assert book.trend({8: 0.1, 11: 0.3, 16: 0.2}) == "not monotone in d"
    assert book.trend({8: 0.1, 11: 0.1}) == "the same at every d"
    assert book.trend({8: 0.1}) == "the same at every d"


def test_rounding_label_reads_the_row_or_the_code_of_its_time():
    assert book.rounding_label({"rounding": "floor"}) == "d_h and m rounded down"
    assert book.rounding_label({"rounding": "half_up", "embeddings": "gaussian"}) == "d_h and m rounded half up"
    # a protocol stored by a replay names its embeddings but not the rounding: the code then rounded down
    assert book.rounding_label({"embeddings": "gaussian", "steps": 4096}) == "d_h and m rounded down"
    assert book.rounding_label({"steps": 4096}) == "d_h and m rounded half up"  # before embeddings were named
