"""Capacity: the largest number of associations N a memory of a given size stores.

``find_capacity`` searches N for any monotone success test; ``linear_memory_capacity`` applies it to a trained
(or constructed) linear memory with f*(x) = x, drawing the embeddings once at the largest N and slicing,
so that the test is monotone in N for a fixed seed.
"""
from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import linprog
from scipy.special import lambertw

from ._validate import ArgumentTypeError, _shown, check_choice, check_float, check_function, check_int
from .embeddings import memory_embeddings
from .memory import TrainConfig, hebbian_accuracy_prediction, hebbian_memory, recall_accuracy, train_linear_memory


def predicted_capacity(params: float, c: float) -> float:
    """The N solving ``params = c N ln N`` (params = d^2 for a linear memory, m d for an MLP).

    With x = params / c, N ln N = x gives N = x / W0(x), W0 the principal branch of Lambert's W (N > 1).
    """
    params = check_float("params", params, 0.0, low_open=True)
    c = check_float("c", c, 0.0, low_open=True)
    x = params / c
    return float(x / lambertw(x).real)


def fitted_constant(params: Sequence[float], N: Sequence[float]) -> np.ndarray:
    """Per-point constant c = params / (N ln N), the quantity the guide lines of Figure 1 hold fixed."""
    values = {}
    for name, value in (("params", params), ("N", N)):
        try:
            values[name] = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ArgumentTypeError(f"{name} must be a sequence of numbers, got {_shown(value)}") from None
        if values[name].ndim != 1 or isinstance(value, (str, bytes)) or any(isinstance(v, bool) for v in value):
            raise ArgumentTypeError(f"{name} must be a 1-D sequence of numbers, got {_shown(value)}")
        if not np.isfinite(values[name]).all():
            raise ValueError(f"{name} must hold finite numbers, got {_shown(value)}")
    params, N = values["params"], values["N"]
    if params.shape != N.shape or not params.size:
        raise ValueError(f"params and N must have the same length, at least 1; got {params.size} and {N.size}")
    if np.any(N < 2):
        raise ValueError(f"N must be >= 2 (N ln N > 0); got {N.min():g}")
    if np.any(params <= 0):
        raise ValueError(f"params must be > 0; got {params.min():g}")
    return params / (N * np.log(N))


def find_capacity(succeeds: Callable[[int], bool], low: int, high: int, guess: int | None = None,
                  growth: float = 1.15, rtol: float = 0.0) -> tuple[int, dict[int, bool]]:
    """Largest n in [low, high] with ``succeeds(n)``, assuming success is monotone (true, then false).

    Starts at ``guess`` (a prediction), walks geometrically by ``growth`` until the outcome flips, then bisects
    until the first failure is within a factor 1 + rtol of the last success (rtol = 0: exact).
    Returns (capacity, tried) where tried maps every n tested to its outcome; capacity is low - 1 if even
    ``low`` fails and ``high`` if ``high`` succeeds.
    """
    check_function("succeeds", succeeds, "a function n -> bool")
    low, high = check_int("low", low, 1), check_int("high", high, low)
    guess = low if guess is None else min(max(int(guess), low), high)
    check_float("growth", growth, 1.0, low_open=True)
    rtol = check_float("rtol", rtol, 0.0, 1.0)
    tried: dict[int, bool] = {}

    def test(n: int) -> bool:
        if n not in tried:
            tried[n] = bool(succeeds(n))
        return tried[n]

    if test(guess):
        good, bad = guess, None
        while bad is None:
            if good == high:
                return high, tried
            n = min(high, max(good + 1, int(good * growth)))
            good, bad = (n, None) if test(n) else (good, n)
    else:
        good, bad = None, guess
        while good is None:
            if bad == low:
                return low - 1, tried
            n = max(low, min(bad - 1, int(bad / growth)))
            good, bad = (n, bad) if test(n) else (None, n)
    while bad - good > max(1.0, rtol * good):
        mid = (good + bad) // 2
        good, bad = (mid, bad) if test(mid) else (good, mid)
    return good, tried


class CapacitySearch:
    """A search for the largest n in [low, high] passing a monotone test, run in rounds of several candidates.

    Where ``find_capacity`` tests one n at a time, each round here proposes up to ``points`` candidates that
    are trained together (in one batch, by the caller), so a search takes a few rounds instead of a dozen
    sequential trainings. Round one tries ``points`` values around the prediction ``guess`` (spaced by factors of
    ``growth``); while no bracket is known it walks outward, by ``growth^points`` and then by steps that double
    each round; inside a bracket it places the candidates
    evenly, shrinking it ``points + 1`` times per round, until the first failure is within a factor
    1 + rtol of the last success. Outcomes are reconciled as monotone: ``bad`` is the smallest failure and
    ``good`` the largest success below it. Use: ``while not s.done: s.update(test_all(s.candidates()))``.
    """

    def __init__(self, low: int, high: int, guess: int | None = None, points: int = 3,
                 growth: float = 1.15, rtol: float = 0.02):
        self.low, self.high = check_int("low", low, 1), check_int("high", high, low)
        self.guess = low if guess is None else min(max(int(round(guess)), low), high)
        self.points = check_int("points", points, 1, 64)
        self.growth = check_float("growth", growth, 1.0, low_open=True)
        self.rtol = check_float("rtol", rtol, 0.0, 1.0)
        self.tried: dict[int, bool] = {}
        self.rounds = 0
        self._walk = 0  # rounds spent walking without a bracket (the walk's step doubles with each)

    @property
    def bad(self) -> int | None:
        fails = [n for n, ok in self.tried.items() if not ok]
        return min(fails) if fails else None

    @property
    def good(self) -> int | None:
        bad = self.bad
        wins = [n for n, ok in self.tried.items() if ok and (bad is None or n < bad)]
        return max(wins) if wins else None

    @property
    def done(self) -> bool:
        good, bad = self.good, self.bad
        if good is not None and (good == self.high or bad is not None and bad - good <= max(1.0, self.rtol * good)):
            return True
        return bad is not None and bad == self.low

    @property
    def capacity(self) -> int:
        """The answer so far: the largest success below the first failure (low - 1 if ``low`` failed)."""
        good = self.good
        return self.low - 1 if good is None else good

    def candidates(self) -> list[int]:
        """The n to test this round (none once ``done``)."""
        if self.done:
            return []
        good, bad, p = self.good, self.bad, self.points
        if good is None and bad is None:
            raw = [self.guess * self.growth ** k for k in range(-(p // 2), p - p // 2)]
        elif bad is None:   # everything passed so far: walk up, in steps that double each round
            raw = [good * self.growth ** (k * p * 2 ** min(self._walk - 1, 16)) for k in range(1, p + 1)]
        elif good is None:  # everything failed so far: walk down, likewise
            raw = [bad / self.growth ** (k * p * 2 ** min(self._walk - 1, 16)) for k in range(1, p + 1)]
        else:
            raw = [good + (bad - good) * k / (p + 1) for k in range(1, p + 1)]
        lo = self.low if good is None else good + 1
        hi = self.high if bad is None else bad - 1
        out = sorted({min(max(int(round(n)), lo), hi) for n in raw} - set(self.tried))
        if not out:  # rounding collided with tried points: take the midpoint of what is left
            out = [(lo + hi) // 2]
        return out

    def update(self, outcomes: dict[int, bool]) -> None:
        """Record this round's outcomes {n: passed}."""
        self.tried.update({int(n): bool(ok) for n, ok in outcomes.items()})
        self.rounds += 1
        bracketed = self.good is not None and self.bad is not None
        self._walk = 0 if bracketed else self._walk + 1


def predicted_hebbian_capacity(d: int, accuracy: float = 0.99) -> int:
    """Largest N (f*(x) = x, M = N) at which the predicted Hebbian accuracy is still >= ``accuracy``."""
    d = check_int("d", d, 2)
    accuracy = check_float("accuracy", accuracy, 0.0, 1.0, low_open=True)
    return find_capacity(lambda N: hebbian_accuracy_prediction(N, d) >= accuracy, 2, 4 * d * d,
                         guess=d * d // 8)[0]


def linearly_separable(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> bool:
    """Whether some W (d, d) recalls every association: a linear feasibility problem solved exactly (HiGHS).

    The constraints (U[f(x)] - U[y])^T W E[x] >= 1 for all x and y != f(x) are linear in W; by scaling,
    they are feasible iff some W has all margins positive. N (M - 1) constraints in d^2 unknowns, so keep
    it to small d (the chapter uses d <= 11).
    """
    E64, U64 = E.double().cpu().numpy(), U.double().cpu().numpy()
    t = targets.cpu().numpy()
    M, d = U64.shape
    rows = []
    for x in range(E64.shape[0]):
        others = np.delete(np.arange(M), t[x])
        diff = U64[t[x]][None, :] - U64[others]  # (M-1, d)
        rows.append(np.einsum("ki,j->kij", diff, E64[x]).reshape(len(others), d * d))
    A = np.concatenate(rows)
    res = linprog(np.zeros(d * d), A_ub=-A, b_ub=-np.ones(len(A)), bounds=(None, None), method="highs")
    return res.status == 0


METHODS = ("train", "hebbian", "separable")


def linear_memory_capacity(d: int, seed: int, method: str = "train",
                           config: TrainConfig | Sequence[TrainConfig] = TrainConfig(),
                           threshold: float = 0.99, device: torch.device | str = "cpu",
                           guess_c: float = 1.0, rtol: float = 0.02) -> int:
    """Largest N with f*(x) = x (M = N) that a d x d linear memory stores at >= ``threshold`` accuracy.

    ``method``: "train" (cross-entropy training with ``config``; given several configs, e.g. a learning-rate
    sweep, N counts as stored if any of them reaches the threshold, tried in order), "hebbian" (the outer-product memory) or
    "separable" (exact: does any W recall all N? ignores ``threshold``). Searches N in [d, d^2 / 2] as the
    paper does (from 2 for the Hebbian memory, which stores fewer than d at small d), starting from the
    prediction d^2 = guess_c N ln N, to a relative resolution ``rtol`` (the answer is a lower bound within it).
    """
    d = check_int("d", d, 2)
    check_choice("method", method, METHODS)
    threshold = check_float("threshold", threshold, 0.0, 1.0, low_open=True)
    configs = [config] if isinstance(config, TrainConfig) else list(config)
    low, high = (2 if method == "hebbian" else d), max(d, d * d // 2)
    E_all, U_all = memory_embeddings(high, high, d, seed, device=device)  # (high, d) each

    def succeeds(N: int) -> bool:
        E, U = E_all[:N], U_all[:N]  # (N, d)
        targets = torch.arange(N, device=E.device)
        if method == "separable":
            return linearly_separable(E, U, targets)
        if method == "hebbian":
            return recall_accuracy(hebbian_memory(E, U, targets), E, U, targets) >= threshold
        return any(train_linear_memory(E, U, targets, replace(cfg, threshold=threshold)).reached
                   for cfg in configs)

    guess = round(predicted_capacity(d * d, guess_c))
    return find_capacity(succeeds, low, high, guess, rtol=rtol)[0]
