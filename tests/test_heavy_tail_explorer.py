"""Chapter 8's explorer: it draws its default state live, every control moves it, and its HTML grid fits."""
import math

from factlib.explorer import MAX_STATES
from factlib.heavy_tail_explorer import scaling_explorer


def test_scaling_explorer_draws_and_follows_its_controls():
    ex = scaling_explorer()
    assert math.prod(len(v) for v in ex.grid.values()) <= MAX_STATES
    assert set(ex.grid) == {"alpha", "d", "scheme"}  # n is held fixed in the HTML book (page weight)
    figures, summary = ex._draw(ex.values())
    assert len(figures) == 1 and "loss" in summary and "d = 512" in summary
    for name, value in (("scheme", "counts"), ("d", 32), ("n", 256), ("alpha", 3.0)):
        ex.controls[name].value = value
        assert ex.values()[name] == value
    figures, summary = ex._draw(ex.values())
    assert "alpha = 3.0, d = 32, n = 256" in summary and "0 tokens stored" not in summary
