"""Stage detection on loss curves: plateaus and the steps at which training escapes them (chapter 6).

A loss curve of sequential learning is a staircase: flat stretches (plateaus) joined by fast drops. The
detector only looks at the curve, so it applies to measured curves (exact-gradient or minibatch runs, any
model) and to predicted ones alike:

1. the *slope* at each point is the central difference |L_{i+1} - L_{i-1}| / (t_{i+1} - t_{i-1});
2. a point is *flat* when its slope is below ``flat_tol`` times the largest slope on the curve (the
   steepest drop), which makes the test free of units, of the step count and of the learning rate;
3. a *plateau* is a run of flat points lasting at least ``min_length`` of the curve, whose level (the
   median loss on it) is above ``converged`` times the largest loss; runs with levels closer than
   ``merge_tol`` of the loss range are merged;
4. the *escape* from a plateau is the first step after it where the loss crosses halfway between the
   plateau's level and the next level (the next plateau's; after the last plateau, ``floor``, by default the
   last loss of the curve), found by linear interpolation. Halfway is also where the theory of chapter 6
   puts it (with ``floor=0``), so the two can be compared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_float


@dataclass(frozen=True)
class Plateau:
    start: float  # first step of the flat run
    end: float    # last step of the flat run
    level: float  # median loss on the run


@dataclass(frozen=True)
class Stages:
    """What ``find_stages`` found: plateaus in order, and for each the escape step (None if never left)."""

    plateaus: tuple[Plateau, ...]
    escapes: tuple[float | None, ...]
    first_step: float
    final_loss: float

    def intermediate(self) -> tuple[Plateau, ...]:
        """Plateaus that do not start the curve: the stages reached after a first learning event."""
        return tuple(p for p in self.plateaus if p.start > self.first_step)


def find_stages(steps, loss, flat_tol: float = 0.1, min_length: float = 0.05, converged: float = 0.05,
                merge_tol: float = 0.05, floor: float | None = None) -> Stages:
    """Plateaus and escape steps of a loss curve ``loss`` sampled at increasing ``steps`` (see module doc)."""
    steps = np.asarray(steps, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if steps.ndim != 1 or steps.shape != loss.shape or steps.size < 3:
        raise ValueError(f"steps and loss must be 1-D of equal length >= 3; got shapes {steps.shape}, {loss.shape}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    if not np.all(np.isfinite(loss)):
        raise ValueError("loss must be finite everywhere")
    flat_tol = check_float("flat_tol", flat_tol, 0.0, low_open=True)
    min_length = check_float("min_length", min_length, 0.0, 1.0)
    converged = check_float("converged", converged, 0.0, 1.0)
    merge_tol = check_float("merge_tol", merge_tol, 0.0, 1.0)

    span, height = steps[-1] - steps[0], loss.max() - loss.min()
    if height == 0:
        return Stages((Plateau(steps[0], steps[-1], float(loss[0])),), (None,), float(steps[0]), float(loss[-1]))
    slope = np.abs(np.gradient(loss, steps))  # (n,) central differences inside, one-sided at the ends
    flat = slope <= flat_tol * slope.max()  # (n,)

    runs = []  # (first index, last index) of maximal flat runs
    i = 0
    while i < len(flat):
        if flat[i]:
            j = i
            while j + 1 < len(flat) and flat[j + 1]:
                j += 1
            runs.append([i, j])
            i = j + 1
        else:
            i += 1
    runs = [r for r in runs if steps[r[1]] - steps[r[0]] >= min_length * span
            and np.median(loss[r[0]:r[1] + 1]) > converged * loss.max()]
    merged = []
    for r in runs:
        if merged and abs(np.median(loss[merged[-1][0]:merged[-1][1] + 1]) - np.median(loss[r[0]:r[1] + 1])) \
                <= merge_tol * height:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    plateaus = tuple(Plateau(float(steps[a]), float(steps[b]), float(np.median(loss[a:b + 1]))) for a, b in merged)

    escapes = []
    for n, (p, (a, b)) in enumerate(zip(plateaus, merged)):
        if b == len(loss) - 1:
            escapes.append(None)
            continue
        nxt = plateaus[n + 1].level if n + 1 < len(plateaus) else float(loss[-1]) if floor is None else floor
        escapes.append(_crossing(steps[b:], loss[b:], (p.level + nxt) / 2))
    return Stages(plateaus, tuple(escapes), float(steps[0]), float(loss[-1]))


def _crossing(steps: np.ndarray, loss: np.ndarray, level: float) -> float | None:
    """First step where ``loss`` falls to ``level`` or below, interpolated linearly; None if it never does."""
    below = np.nonzero(loss <= level)[0]
    if below.size == 0:
        return None
    i = below[0]
    if i == 0:
        return float(steps[0])
    frac = (loss[i - 1] - level) / (loss[i - 1] - loss[i])
    return float(steps[i - 1] + frac * (steps[i] - steps[i - 1]))


def name_level(level: float, R: int, D: int, rtol: float = 0.1) -> str:
    """Name a plateau level of the factual recall task (within ``rtol``): "log(RD), uniform" over all answers,
    "log D, hallucination" (relation known, subject not), "log R, subject first" (index known, relation not),
    or "other"."""
    for name, ref in (("log(RD), uniform", math.log(R * D)), ("log D, hallucination", math.log(D)),
                      ("log R, subject first", math.log(R))):
        if ref > 0 and abs(level - ref) <= rtol * ref:
            return name
    return "other"


def describe(stages: Stages, R: int, D: int) -> str:
    """One line per plateau (level, name, span, escape step) and a verdict on the hallucination stage."""
    lines = []
    for p, e in zip(stages.plateaus, stages.escapes):
        left = f"left at {e:.0f}" if e is not None else "never left"
        lines.append(f"plateau {p.level:.3f} ({name_level(p.level, R, D)}): steps {p.start:.0f}-{p.end:.0f}, {left}")
    hallucination = [p for p in stages.intermediate() if "hallucination" in name_level(p.level, R, D)]
    if hallucination:
        lines.append(f"hallucination stage: present, loss {hallucination[0].level:.3f}, log D = {math.log(D):.3f}")
    else:
        lines.append("hallucination stage: absent")
    return "\n".join(lines)
