"""Trained one-layer transformers: how many facts they store (chapter 5, Figs. 4 and 7-9 of the paper).

One name for the three modules chapter 5 calls, so that ``from factlib import scaling`` reads as the chapter does:

- ``factlib.trainer``: the batched trainer (``Run``, ``Protocol``, ``RunGroup``, ``train_runs``, ...);
- ``factlib.searches``: capacity searches and fits (``variant_task``, ``capacity_sweep``, ``fit_scaling``, ...);
- ``factlib.scaling_figures``: the figures' profiles and jobs (``SCALING_FIGURES``).
"""
from __future__ import annotations

from .scaling_figures import (ALPHA_BETA_FULL, FIG4_DIMS, FULL_SCALING, PAPER_LRS, PAPER_PROTOCOL,  # noqa: F401
                              QUICK_PROTOCOL, QUICK_SCALING, SCALING_FIGURES)
from .searches import (VARIANTS, SearchSpec, capacity_sweep, facts_exponent, fit_scaling,  # noqa: F401
                       head_sizes, variant_task)
from .trainer import (WEIGHTS, Outcome, Protocol, Run, RunGroup, evaluate_group, init_weights,  # noqa: F401
                      mix64, run_key, run_table, tradeoff_grid, train_group, train_runs, uniform_ints)
