"""Trained one-layer transformers: how many facts they store (chapter 5, Figs. 4 and 7-9)."""
from __future__ import annotations

SCALING_FIGURES: dict = {}
