"""ipywidgets explorers. Each calls the same factlib functions as the chapter text, so what the reader
sees live is what the book computes; in the HTML book the widget shows its default state."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from .embeddings import memory_embeddings
from .memory import hebbian_accuracy_prediction, hebbian_memory, low_rank_memory, margins
from .plots import COLORS, figure


def memory_explorer(d: int = 32, N: int = 200, rank: int = 32, seed: int = 0) -> w.VBox:
    """Chapter 1: recall accuracy and margin histogram of the Hebbian memory (full and rank-m) for f*(x) = x."""
    sliders = {
        "d": w.IntSlider(value=d, min=4, max=128, step=1, description="d", continuous_update=False),
        "N": w.IntSlider(value=N, min=2, max=2000, step=1, description="N", continuous_update=False),
        "rank": w.IntSlider(value=rank, min=1, max=128, step=1, description="rank m", continuous_update=False),
        "seed": w.IntSlider(value=seed, min=0, max=20, step=1, description="seed", continuous_update=False),
    }

    def show(d: int, N: int, rank: int, seed: int) -> None:
        rank = min(rank, d)
        E, U = memory_embeddings(N, N, d, seed)  # (N, d), (N, d)
        targets = torch.arange(N)
        W_full = hebbian_memory(E, U, targets)  # (d, d)
        W_low = low_rank_memory(E, U, targets, rank, seed + 1)  # (d, d), rank <= m
        fig, ax = figure(width=6.0, height=3.0)
        for label, W, color in [(f"full (rank {d})", W_full, COLORS[0]), (f"rank {rank}", W_low, COLORS[1])]:
            gap = margins(W, E, U, targets)  # (N,)
            acc = (gap > 0).float().mean().item()
            ax.hist(gap.numpy(), bins=40, alpha=0.55, color=color, label=f"{label}: accuracy {acc:.3f}")
        ax.axvline(0, color="black", lw=1)
        ax.set_xlabel("margin: right score minus best wrong score")
        ax.set_ylabel("number of inputs")
        ax.set_title(f"d={d}, N={N}: predicted accuracy (full) {hebbian_accuracy_prediction(N, d):.3f}")
        ax.legend(loc="upper left", fontsize=8)
        plt.show()

    out = w.interactive_output(show, sliders)
    return w.VBox([w.HBox(list(sliders.values())[:2]), w.HBox(list(sliders.values())[2:]), out])
