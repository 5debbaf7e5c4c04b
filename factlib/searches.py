"""Capacity searches of chapter 5: the task families of Figs. 4 and 7-9, the largest table a model size stores
(``capacity_sweep``, many searches trained together by ``factlib.trainer``), and fits of facts against parameters.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import check_choice, check_float, check_int
from .capacity import CapacitySearch
from .models import ModelConfig, parameter_count
from .task import TaskConfig, information_bits
from .trainer import Protocol, Run, train_runs

def _square_root(n: int) -> int:
    return max(1, math.floor(math.sqrt(n) + 0.5))


#: task families, indexed by a scale n: (S, R) as functions of n, whether D = S (else the figure's D), and whether
#: each relation's answers are distinct (a bijection of the subjects onto A_r) or drawn independently with
#: replacement, as in the authors' release ("iid"). "S = R^2" takes S = n and R = sqrt(n) rounded, so that n moves in
#: steps of one subject (S = R^2 exactly when n is a square); with R = n and S = n^2 the number of facts would jump by
#: (1 + 1/n)^3, 95 % from n = 4 to 5.
VARIANTS = {
    "S=R": (lambda n: (n, n), False, False),
    "S=R^2": (lambda n: (n, _square_root(n)), False, False),
    "S=R,D=S": (lambda n: (n, n), True, True),
    "S=R^2,D=S": (lambda n: (n, _square_root(n)), True, True),
    "S=R,D=S,iid": (lambda n: (n, n), True, False),
    "S=R^2,D=S,iid": (lambda n: (n, _square_root(n)), True, False),
}


def variant_task(variant: str, n: int, D: int = 8, T: int = 32, n_noise: int | None = None) -> TaskConfig:
    """The task of family ``variant`` at scale n (S = R = n, or S = n and R = sqrt(n) rounded; D = S in the
    "D=S" families, with distinct answers unless "iid")."""
    sizes, d_is_s, distinct = VARIANTS[check_choice("variant", variant, VARIANTS)]
    S, R = sizes(check_int("n", n, 1))
    return TaskConfig(S=S, R=R, D=S if d_is_s else D, T=T, n_noise=n_noise, distinct_answers=distinct)


def facts_exponent(variant: str) -> float:
    """k with S R about n^k for the family (2 for S = R, 1.5 for S = R^2)."""
    return 1.5 if check_choice("variant", variant, VARIANTS).startswith("S=R^2") else 2.0


ROUNDINGS = ("floor", "half_up")


def head_sizes(d: int, alpha: float, beta: float, H: int = 8, rounding: str = "floor") -> tuple[int, int] | None:
    """(d_h, m) = (alpha d / H, beta d) of Fig. 4 (left), rounded down as in the authors' release (``rounding``
    "floor") or half up ("half_up"), or None if either is 0 (a model with no attention or no MLP)."""
    check_choice("rounding", rounding, ROUNDINGS)
    shift = 0.5 if rounding == "half_up" else 0.0
    d_h, m = math.floor(alpha * d / H + shift), math.floor(beta * d + shift)
    return None if d_h < 1 or m < 1 else (d_h, m)


@dataclass(frozen=True)
class SearchSpec:
    """One capacity search: a model size, a seed and a task family."""

    d: int
    H: int
    d_h: int
    m: int
    seed: int
    variant: str = "S=R"
    D: int = 8

    @property
    def params(self) -> int:
        return parameter_count(ModelConfig(vocab_size=2, num_answers=1, d=self.d, H=self.H, d_h=self.d_h,
                                           m=self.m))["total"]


def capacity_sweep(specs: list[SearchSpec], lrs=(1e-3, 3e-3, 1e-2), protocol: Protocol = Protocol(),
                   facts_per_param: float = 0.15, points: int = 3, growth: float = 1.25, rtol: float = 0.05,
                   device: torch.device | str = "cpu", max_runs: int = 256) -> list[dict]:
    """Largest scale n each spec's model trains to the threshold at (best over ``lrs``), all searches together.

    Each search is a ``CapacitySearch`` over n in [1, high] starting from the guess S R = facts_per_param x
    params; every round trains all active searches' candidates x learning rates with ``train_runs`` (grouped
    by shape) and records, for each candidate, whether some learning rate reached the threshold.
    Returns one row per spec: its sizes, the capacity (S, R, D, facts, bits), the learning rate and steps of
    the successful run at the capacity, the fraction of its facts answered right on every prompt of a check of
    all (s, r) pairs (``facts_exact``; None if the protocol does not check), and the number of rounds.
    """
    lrs = [check_float("lr", lr, 0.0, 10.0, low_open=True) for lr in lrs]
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    check_float("facts_per_param", facts_per_param, 0.0, 100.0, low_open=True)
    searches, winners = [], [dict() for _ in specs]
    for spec in specs:
        k = facts_exponent(spec.variant)
        guess = (facts_per_param * spec.params) ** (1 / k)
        high = max(2, math.ceil((8 * spec.params) ** (1 / k)))  # 8 facts per parameter: far above anything seen
        searches.append(CapacitySearch(1, high, guess, points=points, growth=growth, rtol=rtol))
    while True:
        jobs = [(si, n) for si, s in enumerate(searches) for n in s.candidates()]
        if not jobs:
            break
        runs = [Run(variant_task(specs[si].variant, n, specs[si].D), specs[si].d, specs[si].H, specs[si].d_h,
                    specs[si].m, lr, specs[si].seed) for si, n in jobs for lr in lrs]
        outcomes, _ = train_runs(runs, protocol, device, max_runs=max_runs)
        rounds: dict[int, dict[int, bool]] = defaultdict(dict)
        for j, (si, n) in enumerate(jobs):
            wins = [(o.steps, lr, o.facts_exact) for o, lr in zip(outcomes[j * len(lrs):(j + 1) * len(lrs)], lrs)
                    if o.reached]
            if wins:
                winners[si][n] = min(wins)  # the fastest learning rate that reached the threshold
            rounds[si][n] = bool(wins)
        for si, tried in rounds.items():
            searches[si].update(tried)
    rows = []
    for spec, search, wins in zip(specs, searches, winners):
        n = search.capacity
        row = {"d": spec.d, "H": spec.H, "d_h": spec.d_h, "m": spec.m, "seed": spec.seed, "variant": spec.variant,
               "params": spec.params, "n": n, "rounds": search.rounds, "tried": len(search.tried)}
        if n >= 1:
            task = variant_task(spec.variant, n, spec.D)
            steps, lr, exact = wins[n]
            row.update(S=task.S, R=task.R, D=task.D, facts=task.num_facts, bits=information_bits(task), lr=lr,
                       steps=steps, facts_exact=exact)
        else:
            row.update(S=0, R=0, D=spec.D, facts=0, bits=0.0, lr=None, steps=None, facts_exact=None)
        rows.append(row)
    return rows


RESPONSES = ("facts", "facts_log")


def fit_scaling(params, facts, groups=None, response: str = "facts") -> dict[str, float]:
    """Least-squares line log y = slope log params + b (eq. "facts vs params", chapter 5), and the median
    facts per parameter. ``response``: y = S R ("facts"), or y = S R ln(S R) ("facts_log"), the growth the
    constructions of chapter 4 and the memories of chapters 1-2 have. With ``groups`` (one label per point, e.g.
    the (alpha, beta) split), each group gets its own intercept and the slope is the common one: how facts grow
    with params at a fixed split."""
    check_choice("response", response, RESPONSES)
    params, facts = np.asarray(params, dtype=float), np.asarray(facts, dtype=float)
    ok = facts > (1 if response == "facts_log" else 0)  # ln(1) = 0: one fact has no log-scaled size
    if ok.sum() < 2 or params.shape != facts.shape:
        raise ValueError("fit_scaling needs params and facts of equal length with at least two facts > 0")
    x, y = np.log(params[ok]), np.log(facts[ok])
    if response == "facts_log":
        y = y + np.log(np.log(facts[ok]))
    if groups is None:
        slope, intercept = np.polyfit(x, y, 1)
    else:
        labels = [str(g) for g, keep in zip(groups, ok) if keep]
        names = sorted(set(labels))
        design = np.column_stack([x] + [[lab == name for lab in labels] for name in names]).astype(float)
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError("fit_scaling with groups needs two points of different params in some group")
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        slope, intercept = coef[0], float(np.mean(coef[1:]))
    return {"slope": float(slope), "intercept": float(intercept),
            "facts_per_param": float(np.median(facts[ok] / params[ok]))}


def _cluster_resamples(units, n_boot: int, seed: int):
    """``n_boot`` resamples of the points, whole ``units`` at a time (one label per point), as index arrays."""
    labels = [str(u) for u in units]
    names = sorted(set(labels))
    members = [np.flatnonzero([lab == name for lab in labels]) for name in names]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.concatenate([members[i] for i in rng.integers(len(names), size=len(names))])


def bootstrap_fit(params, facts, units, groups=None, response: str = "facts", n_boot: int = 2000,
                  level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``fit_scaling``'s slope with a percentile bootstrap interval: the points are resampled by ``units`` (one
    label per point, e.g. (alpha, beta, seed): a model family followed over its sizes), whole units at a time,
    ``n_boot`` times; resamples whose fit is undefined (fewer than two distinct params) are skipped.
    Returns {"slope", "low", "high", "units", "points", "resamples"}."""
    check_int("n_boot", n_boot, 10)
    check_float("level", level, 0.0, 0.999, low_open=True)
    params, facts = np.asarray(params, dtype=float), np.asarray(facts, dtype=float)
    names = sorted({str(u) for u in units})
    group_labels = None if groups is None else np.asarray([str(g) for g in groups], dtype=object)
    slope = fit_scaling(params, facts, None if groups is None else list(group_labels), response)["slope"]
    slopes = []
    for pick in _cluster_resamples(units, n_boot, seed):
        try:
            slopes.append(fit_scaling(params[pick], facts[pick],
                                      None if groups is None else list(group_labels[pick]), response)["slope"])
        except ValueError:
            continue
    if not slopes:
        raise ValueError("bootstrap_fit: no resample had a defined fit; need at least two units of different params")
    low, high = np.quantile(slopes, [(1 - level) / 2, (1 + level) / 2])
    return {"slope": slope, "low": float(low), "high": float(high), "units": len(names), "points": len(params),
            "resamples": len(slopes)}


def bootstrap_interval(statistic, units, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                       ) -> tuple[float, float]:
    """A percentile bootstrap interval of ``statistic(pick)``, a number computed from the points ``pick`` (an index
    array), the points resampled by ``units`` whole (as in ``bootstrap_fit``): (low, high)."""
    check_int("n_boot", n_boot, 10)
    check_float("level", level, 0.0, 0.999, low_open=True)
    if not len(units):
        raise ValueError("units must label at least one point")
    values = [statistic(pick) for pick in _cluster_resamples(units, n_boot, seed)]
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
