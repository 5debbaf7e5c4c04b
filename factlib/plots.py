"""One figure style for the whole book: white background (readable in dark mode), light grid, labelled axes."""
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
    "axes.titlesize": 11,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
}


def use_style() -> None:
    """Make the book's style matplotlib's default (line widths and the like are read when drawing)."""
    mpl.rcParams.update(STYLE)


def figure(ncols: int = 1, width: float = 4.2, height: float = 3.2, **kwargs):
    """A styled figure with ``ncols`` side-by-side axes; returns (fig, axes) (one axes if ncols == 1)."""
    use_style()
    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True,
                        constrained_layout=True, **kwargs)
