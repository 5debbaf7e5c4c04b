"""The tolerant notebook validation (tools/nbval_tolerance.py): what it accepts and what must still fail."""
from pathlib import Path

import nbformat
import pytest

from tools.nbval_tolerance import METADATA_KEY, Tolerance, compare_text

REPO = Path(__file__).resolve().parent.parent
CAPACITY = Tolerance(rtol=0.05, atol=0.0)
TABLE = """ d   N per seed          mean N    c
 8   [21, 21, 24]          22.0    0.947
16   [66, 66, 65]          65.7    0.932
"""


def test_identical_output_matches():
    assert compare_text(TABLE, TABLE, Tolerance(rtol=0.0)) is None


def test_a_capacity_one_apart_is_within_five_percent():
    assert compare_text(TABLE, TABLE.replace("[66, 66, 65]", "[65, 66, 65]"), CAPACITY) is None


def test_padding_shifted_by_a_wider_number_is_accepted():
    wider = TABLE.replace("[21, 21, 24]          22.0", "[21, 21, 24]         22.0")
    assert compare_text(TABLE, wider, CAPACITY) is None


def test_a_ten_percent_change_in_a_capacity_fails():
    problem = compare_text(TABLE, TABLE.replace("[66, 66, 65]", "[66, 73, 65]"), CAPACITY)
    assert problem is not None and "73" in problem and "66" in problem


def test_a_changed_table_layout_fails():
    swapped = TABLE.replace(" d   N per seed          mean N    c", " d   mean N    N per seed          c")
    assert "line 1" in compare_text(TABLE, swapped, CAPACITY)
    one_column_less = "\n".join(line.rsplit(maxsplit=1)[0] for line in TABLE.splitlines()) + "\n"
    assert compare_text(TABLE, one_column_less, CAPACITY) is not None


def test_a_missing_line_fails():
    assert compare_text(TABLE, TABLE.split("\n", 2)[0] + "\n" + TABLE.split("\n", 2)[2], CAPACITY) is not None


def test_an_extra_line_fails():
    assert compare_text(TABLE, TABLE + "16   [1]  1.0    0.1\n", CAPACITY) is not None


def test_absolute_tolerance_covers_numbers_near_zero():
    assert compare_text("std 0.008", "std 0.021", Tolerance(rtol=0.05, atol=0.02)) is None
    assert compare_text("std 0.008", "std 0.031", Tolerance(rtol=0.05, atol=0.02)) is not None


def test_numbers_inside_words_are_text():
    assert compare_text("fig1-left: 3", "fig2-left: 3", Tolerance(rtol=1.0)) is not None
    assert compare_text("acc 0.5.", "acc 0.52.", Tolerance(rtol=0.05)) is None


def test_signs_and_exponents_are_numbers():
    assert compare_text("mean -1.00e-03", "mean -1.01e-03", Tolerance(rtol=0.05)) is None
    assert compare_text("mean -1.00e-03", "mean +1.00e-03", Tolerance(rtol=0.05)) is not None


@pytest.mark.parametrize("spec", [None, {"atol": 0.1}, {"rtol": float("nan")}, {"rtol": True}, {"rtol": 2},
                                  {"rtol": 0.1, "tol": 1}])
def test_bad_metadata_is_a_clear_error(spec):
    with pytest.raises(ValueError, match=METADATA_KEY):
        Tolerance.from_metadata(spec)


def _notebook(path, printed_now: str, stored: str, tolerance: dict | None, glued: bool = False):
    if glued:  # the value glued for the text, as MyST-NB stores it
        cell = nbformat.v4.new_code_cell(f"from myst_nb import glue\nglue('capacity', {printed_now!r}, display=False)",
                                         execution_count=1)
        cell.outputs = [nbformat.v4.new_output("display_data", data={
            "application/papermill.record/text/plain": repr(stored)}, metadata={"scrapbook": {"name": "capacity",
                                                                                             "mime_prefix":
                                                                                             "application/papermill.record/"}})]
    else:
        cell = nbformat.v4.new_code_cell(f"print({printed_now!r})", execution_count=1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored + "\n")]
    if tolerance is not None:
        cell.metadata[METADATA_KEY] = tolerance
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.parametrize("printed_now, tolerance, passes", [
    ("capacity 66", {"rtol": 0.05}, True),     # one apart: the same within 5 %
    ("capacity 66", None, False),              # no tolerance stated: exact, as before
    ("capacity 72", {"rtol": 0.05}, False),    # a 10 % change
    ("capacity: 65", {"rtol": 0.05}, False),   # a changed layout
])
@pytest.mark.parametrize("glued", [False, True])
def test_nbval_applies_the_cell_tolerance(pytester, monkeypatch, printed_now, tolerance, passes, glued):
    """End to end: pytest --nbval on a one-cell notebook whose stored output is 'capacity 65', printed or glued
    for the text."""
    _notebook(pytester.path / "chapter.ipynb", printed_now, "capacity 65", tolerance, glued)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess("--nbval", "--nbval-current-env", "chapter.ipynb",
                                           "-p", "tools.nbval_tolerance", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1 if passes else 0, failed=0 if passes else 1)
