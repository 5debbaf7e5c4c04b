"""One figure style for the whole book: white background (readable in dark mode), light grid, labelled axes.

Sizes: at ``figure.dpi`` 100 a figure inch is 100 CSS px in the HTML book, whose text column is 784 px wide at a
1400 px window; :func:`figure` keeps figures within :data:`COLUMN_WIDTH`, so they display at their drawn size and
a font size in points is the size the reader sees (none below :data:`MIN_FONT_PT`). Figures are PNGs at twice that
resolution, shown at their 1x size: :func:`show` displays a chapter's figure, the explorers' Image widgets use
:func:`png`.

On a phone the text column is about 358 px wide and a figure wider than that is shrunk with its text. :func:`show`
therefore also draws a phone version of a figure wider than :data:`PHONE_MAX_WIDTH`: its panels stacked in one
column :data:`PHONE_WIDTH` wide, so that 8 pt text stays at least 8 px tall as displayed. The HTML book shows
it at a phone width (tools/book_html.py); JupyterLab shows the first version.
"""
from __future__ import annotations

import base64
import io
import itertools
import math
import warnings

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
#: no text in a figure is smaller than this, in points (CSS px at 1x: points * 100 / 72)
MIN_FONT_PT = 8
#: figures up to this width (inches) keep 8 pt text at least 8 px tall in a 328 px phone column (a 360 px screen)
PHONE_MAX_WIDTH = 4.5
#: width of a figure's phone version, in inches
PHONE_WIDTH = 4.0


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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=RESOLUTION * fig.dpi)
    width = round(fig.get_figwidth() * fig.dpi)
    if close:
        plt.close(fig)
    return buffer.getvalue(), width


def _texts(fig, drawn: bool = False) -> list:
    """The texts a reader sees in ``fig``: visible, non-empty, inside the figure (``drawn``: as last drawn)."""
    if not drawn:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = []
    for text in fig.findobj(mpl.text.Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0 and box.overlaps(fig.bbox):
            shown.append((text, box))
    return shown


def min_font_pt(fig, drawn: bool = False) -> float:
    """The smallest font size (points) among the texts shown in ``fig`` (``drawn``: as last drawn)."""
    return min((text.get_fontsize() for text, _ in _texts(fig, drawn)), default=float(MIN_FONT_PT))


def _labels(fig) -> list:
    """Titles, axis labels and legends of ``fig``'s axes, with the axes each belongs to."""
    labels = []
    for ax in fig.axes:
        for text in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label):
            labels.append((ax, text))
        legend = ax.get_legend()
        if legend is not None:
            labels.append((ax, legend))
    return labels


#: the least gap (CSS px at 1x) between labels of different panels: closer, they read as one
LABEL_GAP = 6


def overlapping_labels(fig, tight: bool = False, drawn: bool = False) -> list[tuple[str, str]]:
    """Titles, axis labels or legends of one panel that come within :data:`LABEL_GAP` of those of another, or run
    into another panel's axes area or (unless the figure is saved with a ``tight`` bounding box, which grows to
    hold them) past the figure's edge, named by their text (``drawn``: as last drawn)."""
    if not drawn:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax, artist in _labels(fig):
        if not artist.get_visible() or (isinstance(artist, mpl.text.Text) and not artist.get_text().strip()):
            continue
        name = artist.get_text() if isinstance(artist, mpl.text.Text) else "legend"
        boxes.append((ax, name, artist.get_window_extent(renderer)))
    pad = LABEL_GAP / 2 * fig.dpi / 100
    found = [(a, b) for (ax1, a, box1), (ax2, b, box2) in itertools.combinations(boxes, 2)
             if ax1 is not ax2 and box1.padded(pad).overlaps(box2.padded(pad))]
    areas = [(ax, ax.get_window_extent(renderer)) for ax in fig.axes if ax.get_visible() and ax.axison]
    found += [(name, "another panel") for ax1, name, box in boxes for ax2, area in areas
              if ax2 is not ax1 and box.overlaps(area)]
    edge = fig.bbox.padded(1)
    found += [(name, "the figure's edge") for _, name, box in boxes if not tight
              and (box.x0 < edge.x0 or box.x1 > edge.x1 or box.y0 < edge.y0 or box.y1 > edge.y1)]
    return found


def check_figure(fig, tight: bool = False, drawn: bool = False) -> float:
    """Raise ``ValueError`` if ``fig`` has text below :data:`MIN_FONT_PT` or labels that run into each other
    (:func:`overlapping_labels`); return its smallest font size (points). ``drawn``: the figure was just drawn
    or saved, so its layout is done (one drawing fewer)."""
    if not drawn:
        fig.canvas.draw()
    smallest = min_font_pt(fig, drawn=True)
    if smallest < MIN_FONT_PT:
        raise ValueError(f"fig: text of {smallest:g} pt, below the book's {MIN_FONT_PT} pt")
    overlaps = overlapping_labels(fig, tight, drawn=True)
    if overlaps:
        raise ValueError(f"fig: labels that run into each other, another panel or the edge: {overlaps}")
    return smallest


def stack_for_phone(fig) -> None:
    """Re-lay ``fig`` for a phone: its panels (the axes of one grid) in one column, in reading order, each at its
    height, in a figure :data:`PHONE_WIDTH` wide; every panel labels its own y ticks, and a legend of several
    columns becomes one column (the figure grows by its extra rows)."""
    panels = [ax for ax in fig.axes if ax.get_subplotspec() is not None]
    height = fig.get_figheight()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend._ncols > 1:
            texts = legend.get_texts()
            extra = len(texts) - math.ceil(len(texts) / legend._ncols)
            size = texts[0].get_fontsize()
            anchor = legend._bbox_to_anchor  # None, or the box it was given, in axes coordinates
            anchor = None if anchor is None else getattr(anchor, "_bbox", anchor).bounds
            ax.legend(legend.legend_handles, [t.get_text() for t in texts], ncols=1, loc=legend._loc,
                      bbox_to_anchor=anchor, fontsize=size, frameon=legend.get_frame_on())
            height += extra * 1.5 * size / 72
    if panels:
        rows, cols = panels[0].get_subplotspec().get_gridspec().get_geometry()
        if cols > 1:
            order = sorted(panels, key=lambda ax: (ax.get_subplotspec().rowspan.start,
                                                   ax.get_subplotspec().colspan.start))
            grid = fig.add_gridspec(len(order), 1)
            for i, ax in enumerate(order):
                ax.set_subplotspec(grid[i, 0])
                ax.yaxis.set_tick_params(which="both", labelleft=True)
            height = height / rows * len(order)
    fig.set_size_inches(PHONE_WIDTH, height)


def _size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    width, height = Image.open(io.BytesIO(data)).size
    return width // RESOLUTION, height // RESOLUTION


def show(fig, palette: bool = False) -> None:
    """Display ``fig`` (then closed) as a PNG at :data:`RESOLUTION` times its dpi, shown at its 1x size, with its
    smallest font size and, for a figure wider than :data:`PHONE_MAX_WIDTH`, a phone version
    (:func:`stack_for_phone`) in the output's metadata, for the HTML book. Checked by :func:`check_figure`.
    ``palette``: a PNG of at most 256 colours (Pillow's octree quantizer), a third to a quarter of the bytes for
    line art, for a page that carries many panels."""
    from IPython.display import display

    if not isinstance(palette, bool):
        raise TypeError(f"palette must be True or False, got {palette!r}")

    def encode(fig):
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # a layout that collapsed is an error, not a figure
            warnings.filterwarnings("error", message="constrained_layout not applied")
            fig.savefig(buffer, format="png", dpi=RESOLUTION * fig.dpi, bbox_inches="tight", pad_inches=0.05)
        data = buffer.getvalue()
        if palette:
            from PIL import Image

            quantized = Image.open(io.BytesIO(data)).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
            buffer = io.BytesIO()
            quantized.save(buffer, format="PNG", optimize=True)
            data = buffer.getvalue()
        width, height = _size(data)
        return base64.b64encode(data).decode("ascii"), {"width": width, "height": height}

    # checked on a drawing of its own at the figure's dpi: the PNG's drawing (at twice the dpi, with a tight
    # bounding box) leaves text extents and axes areas on different scales, and neighbours seemed to overlap
    data, size = encode(fig)
    book = {"min_font_pt": check_figure(fig, tight=True)}
    if fig.get_figwidth() > PHONE_MAX_WIDTH:
        stack_for_phone(fig)
        phone, phone_size = encode(fig)
        book["phone"] = {"image/png": phone, **phone_size, "min_font_pt": check_figure(fig, tight=True)}
    text = f"<Figure size {size['width']}x{size['height']} with {len(fig.axes)} Axes>"
    plt.close(fig)
    display({"image/png": data, "text/plain": text}, raw=True, metadata={"image/png": size, "factlib": book})


def figure(ncols: int = 1, width: float = 4.2, height: float = 3.2, **kwargs):
    """A styled figure with ``ncols`` side-by-side axes; returns (fig, axes) (one axes if ncols == 1).

    A figure wider than the text column (``width * ncols > COLUMN_WIDTH``) is narrowed to it, so that it is not
    scaled down on the page (and its text with it)."""
    use_style()
    width = min(width, COLUMN_WIDTH / ncols)
    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True,
                        constrained_layout=True, **kwargs)
