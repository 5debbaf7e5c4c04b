"""Chapter 8's explorer: which tokens a memory of size d stores and recalls, for a Zipf law, a sample size and a
scheme q(z). Live in JupyterLab; in the HTML book a grid of precomputed states (``factlib.explorer``)."""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import torch

from .explorer import Explorer
from .heavy_tails import (SCHEMES, HeavyTailProblem, memory_weights, predicted_exponents, recalled,
                          sample_counts)
from .plots import COLORS, figure


def scaling_explorer(alpha: float = 1.5, d: int = 512, n: int = 4096, scheme: str = "threshold", N: int = 512,
                     M: int = 4, keep_per_d: float = 0.25, seed: int = 0) -> Explorer:
    """Chapter 8: one draw of N Zipf(alpha) tokens with M answers, a sample of n, a d x d memory of scheme q(z)
    (the threshold scheme keeps d / 4 tokens); every token by rank and probability, marked stored and recalled (the
    marks are named in the summary, which keeps the stored images small)."""
    controls = {
        "alpha": w.SelectionSlider(options=[1.25, 1.5, 2.0, 2.5, 3.0], value=alpha, description="alpha",
                                   continuous_update=False),
        "d": w.SelectionSlider(options=[8, 16, 32, 64, 128, 256, 512, 1024], value=d, description="d",
                               continuous_update=False),
        "n": w.SelectionSlider(options=[2**k for k in range(4, 16)], value=n, description="n",
                               continuous_update=False),
        "scheme": w.Dropdown(options=list(SCHEMES), value=scheme, description="scheme q(z)"),
    }

    def draw(v: dict):
        problem = HeavyTailProblem(N, M, v["d"], v["alpha"], seed)
        p = problem.probabilities  # (N,)
        counts = sample_counts(p, v["n"], seed + 2**30)  # (N,)
        keep = max(1, int(keep_per_d * v["d"]))
        q = memory_weights(counts, v["scheme"], keep)  # (N,)
        hit = recalled(problem, q)  # (N,)
        stored = q > 0
        rank = np.arange(1, N + 1)
        loss = float((p * (~hit).double()).sum())
        fig, ax = figure(width=4.8, height=2.6)
        groups = [(~stored & ~hit, "not stored, wrong (light grey)", "#DDDDDD", "."),
                  (~stored & hit, "not stored, right by chance (grey)", "#888888", "."),
                  (stored & ~hit, "stored, not recalled (orange x)", COLORS[1], "x"),
                  (stored & hit, "stored, recalled (blue)", COLORS[0], "o")]
        for mask, _, color, marker in groups:  # drawn in this order: the stored tokens on top
            ax.scatter(rank[mask.numpy()], p[mask].numpy(), s=12, color=color, marker=marker)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("token rank $z$")
        ax.set_ylabel("probability $p(z)$")
        ax.set_title(f"{v['scheme']}: loss $L$ = {loss:.4f}")
        rates = predicted_exponents(v["alpha"])
        summary = (f"alpha = {v['alpha']}, d = {v['d']}, n = {v['n']}, N = {N} tokens, M = {M} answers\n"
                   f"loss {loss:.4f}; mass never seen {float((p * (counts == 0).double()).sum()):.4f}; "
                   f"{int(stored.sum())} tokens stored of {int((counts > 0).sum())} seen\n"
                   + "; ".join(f"{label}: {int(mask.sum())}" for mask, label, _, _ in reversed(groups)) + "\n"
                   f"predicted: n^-{rates['n']:.3f} for every scheme with d large enough; "
                   f"d^-{rates['counts_d']:.3f} (counts), d^-{rates['threshold_d']:.3f} (threshold)")
        return [fig], summary

    return Explorer(controls, draw, rows=[["alpha", "scheme"], ["d", "n"]],
                    grid={"alpha": (1.5, 3.0), "d": (32, 512), "scheme": SCHEMES})
