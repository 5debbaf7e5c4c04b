"""The sharp capacity constant of a d x d linear memory: N ln N / d^2 under argmax and under a margin (chapter 8).

Setting of chapter 1: f*(x) = x over N inputs (M = N), unit Gaussian embeddings, embeddings drawn once at the
largest N searched and sliced (nested in N). A memory W *separates* the associations with margin kappa when

    u_{f(x)}^T W e_x - u_y^T W e_x >= kappa ||W||_F / d     for every x and y != f(x),

||W||_F / d being the spread of a competing score u_y^T W e_x for embeddings independent of W; kappa = 0 is the
argmax criterion (strictly: every margin > 0). Three learners (``LEARNERS``):

- "optimal": the best W. For kappa = 0 an exact linear feasibility problem (``capacity.linearly_separable``); for
  kappa > 0 the max-margin memory, min ||W||_F subject to all margins >= 1, a quadratic programme solved by
  ``max_margin_memory`` with a certified bracket on the best normalised margin kappa*;
- "gd": full-batch gradient descent on the summed cross-entropy from W = 0 (``gd_memory``);
- "hebbian": W = sum_x u_{f(x)} e_x^T (``memory.hebbian_memory``).

``capacity_constants`` finds each learner's capacity under each criterion; ``extreme_value_constant`` is the
chapter's heuristic prediction of N ln N / d^2 at finite d.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._validate import check_choice, check_float, check_int, check_tensor
from .capacity import find_capacity, linearly_separable
from .embeddings import memory_embeddings
from .memory import hebbian_memory, margins
from .memory_optimizers import weighted_gradient

LEARNERS = ("optimal", "gd", "hebbian")
#: penalties of the squared-hinge continuation that approaches the hard-margin programme
PENALTIES = (1e2, 1e3, 1e4, 1e5)


def normalized_margin(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> float:
    """kappa(W) = min_x [u_{f(x)}^T W e_x - max_{y != f(x)} u_y^T W e_x] d / ||W||_F (chapter 8, eq.
    "normalised margin"); -inf for W = 0 (no association is separated)."""
    norm = float(W.norm())
    if norm == 0.0:
        return -math.inf
    return float(margins(W, E, U, targets).min()) * E.shape[1] / norm


def max_margin_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor,
                      penalties=PENALTIES) -> tuple[torch.Tensor, float, float]:
    """The max-margin memory: min ||W||_F^2 / 2 subject to u_{f(x)}^T W e_x - u_y^T W e_x >= 1 for all x and
    y != f(x) (chapter 8, Definition "optimal memory").

    Solved through the squared-hinge penalty ||W||^2 / 2 + (C / 2) sum max(0, 1 - margin)^2 for increasing C
    (``penalties``), each minimised by L-BFGS from the previous solution. Returns (W, low, high): the normalised
    margin of W, a lower bound on the best one kappa*, and the upper bound d / sqrt(2 D(a)) from the dual value
    D(a) = sum a - ||sum a (u_{f(x)} - u_y) e_x^T||^2 / 2 of the multipliers a = C max(0, 1 - margin) (weak
    duality: D(a) <= the programme's value ||W*||^2 / 2, and kappa* = d / ||W*||). float64."""
    from scipy.optimize import minimize

    check_tensor("E", E, ndim=2, floating=True, finite=True)
    check_tensor("U", U, shape=(None, E.shape[1]), floating=True, finite=True)
    check_tensor("targets", targets, shape=(E.shape[0],))
    Ed, Ud = E.double().cpu().numpy(), U.double().cpu().numpy()  # (N, d), (M, d)
    t = targets.cpu().numpy()
    N, d = Ed.shape
    rows = np.arange(N)
    competitor = np.ones((N, Ud.shape[0]))  # (N, M): 1 where y != f(x)
    competitor[rows, t] = 0.0

    def margin_matrix(W):  # (N, M): u_{f(x)}^T W e_x - u_y^T W e_x
        S = Ed @ W.T @ Ud.T
        return S[rows, t][:, None] - S

    def memory_of(a):  # sum_{x, y} a[x, y] (u_{f(x)} - u_y) e_x^T, (d, d)
        return (a.sum(1)[:, None] * Ud[t] - a @ Ud).T @ Ed

    w = np.zeros(d * d)
    for C in penalties:
        C = check_float("penalties", C, 0.0, low_open=True)

        def objective(x, C=C):
            W = x.reshape(d, d)
            slack = np.maximum(0.0, 1.0 - margin_matrix(W)) * competitor  # (N, M)
            return 0.5 * x @ x + 0.5 * C * (slack * slack).sum(), (W - memory_of(C * slack)).ravel()

        w = minimize(objective, w, jac=True, method="L-BFGS-B",
                     options={"maxiter": 20000, "maxcor": 30, "ftol": 1e-15, "gtol": 1e-10}).x
    W = w.reshape(d, d)
    m = margin_matrix(W)
    a = C * np.maximum(0.0, 1.0 - m) * competitor
    Wa = memory_of(a)
    dual = a.sum() - 0.5 * (Wa * Wa).sum()
    low = float(np.where(competitor > 0, m, np.inf).min() * d / max(np.linalg.norm(W), 1e-300))
    high = d / math.sqrt(2 * dual) if dual > 0 else math.inf
    return torch.from_numpy(W), low, high


def gd_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """W after ``steps`` steps of gradient descent of size ``lr`` on sum_x CE(f(x), U W e_x) from W = 0."""
    lr = check_float("lr", lr, 0.0, 1e6, low_open=True)
    steps = check_int("steps", steps, 1, 2**20)
    W = torch.zeros(E.shape[1], E.shape[1], dtype=E.dtype)
    ones = torch.ones(E.shape[0], dtype=E.dtype)
    for _ in range(steps):
        W -= lr * weighted_gradient(W, E, U, targets, ones)
    return W


def separated(E: torch.Tensor, U: torch.Tensor, learner: str, kappa: float, gd: dict | None = None) -> bool:
    """Whether ``learner`` separates f*(x) = x on the rows of E, U with margin ``kappa`` (0: argmax, all
    recalled). For "optimal" with kappa > 0 an undecided bracket counts as a failure (the capacity found is
    then a lower bound); ``gd`` holds the gradient-descent recipe {"lr", "steps"}."""
    check_choice("learner", learner, LEARNERS)
    kappa = check_float("kappa", kappa, 0.0)
    if learner == "gd" and (not isinstance(gd, dict) or {"lr", "steps"} - set(gd)):
        raise ValueError(f"the gd learner needs gd = {{'lr': ..., 'steps': ...}}; got {gd!r}")
    targets = torch.arange(E.shape[0])
    if learner == "optimal":
        if kappa == 0.0:
            return linearly_separable(E, U, targets)
        return max_margin_memory(E, U, targets)[1] >= kappa
    W = hebbian_memory(E, U, targets) if learner == "hebbian" else gd_memory(E, U, targets, gd["lr"], gd["steps"])
    value = normalized_margin(W, E, U, targets)
    return value > 0.0 if kappa == 0.0 else value >= kappa


def learner_capacity(d: int, seed: int, learner: str, kappa: float, gd: dict | None = None,
                     guess_c: float = 0.5) -> int:
    """Largest N (f*(x) = x, M = N) that ``learner`` separates with margin ``kappa`` (chapter 8): nested draws
    ``memory_embeddings(d^2 / 2, d^2 / 2, d, seed)`` in float64, N searched exactly in [2, d^2 / 2] from the guess
    N ln N = guess_c d^2 (``capacity.find_capacity``)."""
    d = check_int("d", d, 2, 512)
    high = max(2, d * d // 2)
    E_all, U_all = memory_embeddings(high, high, d, seed, dtype=torch.float64)  # (high, d) each
    guess = max(2, int(check_float("guess_c", guess_c, 0.0, low_open=True) * d * d / math.log(d * d)))
    return find_capacity(lambda N: separated(E_all[:N], U_all[:N], learner, kappa, gd), 2, high, guess)[0]


def expected_max_moments(k: int, shift: float = 0.0) -> tuple[float, float]:
    """E[M_k] and E[(M_k + shift)^2] for M_k the largest of k independent standard normals (quadrature)."""
    from scipy.stats import norm

    k = check_int("k", k, 1)
    x = np.linspace(-12.0, 12.0, 24001)
    density = k * norm.pdf(x) * np.exp((k - 1) * norm.logcdf(x))  # of M_k
    dx = x[1] - x[0]
    return float((x * density).sum() * dx), float(((x + shift) ** 2 * density).sum() * dx)


def extreme_value_constant(d: int, learner: str, kappa: float = 0.0) -> float:
    """The heuristic N ln N / d^2 at capacity (chapter 8, "extreme-value heuristic"; not a theorem).

    "optimal": the right scores just clear the largest of the N - 1 competing scores (spread sigma = ||W|| / d)
    plus kappa sigma, and the N right-score directions u_{f(x)} e_x^T are nearly orthonormal, so
    ||W||^2 >= sum_x sigma^2 (M_x + kappa)^2: d^2 = N E[(M_{N-1} + kappa)^2]. "hebbian": right score 1 plus
    cross-talk, every competitor cross-talk of spread sigma = sqrt(N) / d, all N inputs recalled:
    1 = sigma (E[M_{N-1}] + E[M_N] + kappa)."""
    d = check_int("d", d, 2, 4096)
    check_choice("learner", learner, ("optimal", "hebbian"))
    kappa = check_float("kappa", kappa, 0.0)

    def excess(N: int) -> float:  # > 0 while N still fits
        if learner == "optimal":
            return d * d - N * expected_max_moments(N - 1, kappa)[1]
        return 1.0 - math.sqrt(N) / d * (expected_max_moments(N - 1)[0] + expected_max_moments(N)[0] + kappa)

    N = find_capacity(lambda n: excess(n) > 0, 2, d * d, guess=max(2, d * d // 8))[0]
    return N * math.log(N) / (d * d) if N >= 2 else 0.0


# ---- jobs of ``reproduce sharp-capacity`` ----------------------------------------------------------------------------

def sharp_jobs(config: dict) -> list[dict]:
    """One job per (series, d, seed): a series is a learner, its margins kappa and its own range of d."""
    if "d" in config:
        raise ValueError("d does not apply to sharp-capacity: each series has its own range of d")
    return [{"learner": series["learner"], "d": d, "seed": seed, "kappas": list(series["kappas"]), "gd": config["gd"]}
            for series in config["series"] for d in series["d"] for seed in config["seeds"]]


def sharp_job(job: dict, device: torch.device) -> list[dict]:
    """Capacities of one learner at one d and seed under every margin kappa, with N ln N / d^2."""
    torch.set_num_threads(1)
    rows = []
    for kappa in job["kappas"]:
        N = learner_capacity(job["d"], job["seed"], job["learner"], kappa, job["gd"])
        rows.append({"learner": job["learner"], "d": job["d"], "seed": job["seed"], "kappa": kappa, "N": N,
                     "constant": N * math.log(N) / job["d"] ** 2 if N >= 2 else 0.0})
    return rows
