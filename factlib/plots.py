"""One figure style for the whole book: white background (readable in dark mode), light grid, labelled axes.

Sizes: at ``figure.dpi`` 100 a figure inch is 100 CSS px in the HTML book, whose text column is 784 px wide at a
1400 px window; :func:`figure` keeps figures within :data:`COLUMN_WIDTH`, so they display at their drawn size and
a font size in points is the size the reader sees (none below 8 pt). Inline figures are PNGs at twice that
resolution (the inline backend's "retina" format, which records the 1x size for the page to show them at);
the explorers' Image widgets do the same with :func:`png`.
"""
from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt

#: colours used across chapters (colour-blind safe, Okabe-Ito)
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=COLORS),
    "font.size": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "axes.titlesize": 11,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
}


#: widest figure, in inches (100 CSS px each): a figure box in the HTML text column at a 1400 px window is 768 px,
#: less a margin for what the inline backend's tight bounding box adds (legends beside or below the axes)
COLUMN_WIDTH = 7.4
#: inline PNGs and explorer images are drawn at this multiple of ``figure.dpi`` and shown at 1x size
RESOLUTION = 2


def use_style() -> None:
    """Make the book's style matplotlib's default (line widths and the like are read when drawing), and, in a
    notebook, show inline figures at twice the resolution at their 1x size."""
    mpl.rcParams.update(STYLE)
    _inline_retina()


def _inline_retina() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")  # PNG at 2 x figure.dpi, with its 1x width and height as display metadata


def png(fig, close: bool = True) -> tuple[bytes, int]:
    """``fig`` as PNG bytes at :data:`RESOLUTION` times its dpi, and the width in px to show it at (1x)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=RESOLUTION * fig.dpi)
    width = round(fig.get_figwidth() * fig.dpi)
    if close:
        plt.close(fig)
    return buffer.getvalue(), width


def figure(ncols: int = 1, width: float = 4.2, height: float = 3.2, **kwargs):
    """A styled figure with ``ncols`` side-by-side axes; returns (fig, axes) (one axes if ncols == 1).

    A figure wider than the text column (``width * ncols > COLUMN_WIDTH``) is narrowed to it, so that it is not
    scaled down on the page (and its text with it)."""
    use_style()
    width = min(width, COLUMN_WIDTH / ncols)
    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True,
                        constrained_layout=True, **kwargs)
