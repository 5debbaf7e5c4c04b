"""Associative memories under heavy-tailed data: Zipf tokens, the estimators q(z) and their errors (chapter 8).

Tokens z in [N] are drawn from the Zipf law p(z) proportional to z^(-alpha) (token 0 is the most frequent: rank
z + 1); each has a fixed answer f*(z) in [M], and a sample of n tokens is summarised by the counts n_z. A memory
stores the seen associations with weights q(z),

    W = sum_z q(z) u_{f*(z)} e_z^T,        f_hat(z) = argmax_y u_y^T W e_z,

with random unit embeddings E (N, d), U (M, d) (chapter 1), and is judged by the population 0/1 loss
L = sum_z p(z) 1{z not recalled}; a token is recalled when its right score is strictly the largest (a tie is an
error, as in chapter 1's margins). The three schemes of the chapter (``SCHEMES``):

- "counts": q(z) = n_z / n, what one large-batch gradient step writes (eq. "one step" of chapter 8);
- "seen": q(z) = 1{n_z >= 1};
- "threshold": q(z) = 1{n_z >= s}, with s the smallest count that keeps at most ``keep`` tokens.

``reproduce scaling-laws`` sweeps n and d for each scheme and alpha (``SCALING_LAWS_FIGURE`` in
``factlib.heavy_tail_figures``); ``fit_exponents`` fits the log-log slopes per seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import check_choice, check_float, check_int, check_tensor
from .config import generator
from .embeddings import memory_embeddings

SCHEMES = ("counts", "seen", "threshold")
#: the largest vocabulary the functions here allocate for (a (N, d) embedding table and (N, |seen|) overlaps)
MAX_TOKENS = 2**20


def _alpha(alpha) -> float:
    return check_float("alpha", alpha, 1.0, 16.0, low_open=True)


def zipf_probabilities(N: int, alpha: float) -> torch.Tensor:
    """p(z) = (z + 1)^(-alpha) / H_{N, alpha} for z in [N] (chapter 8, eq. "Zipf"), float64 (N,)."""
    N = check_int("N", N, 1, MAX_TOKENS)
    alpha = check_float("alpha", alpha, 0.0, 16.0)
    w = torch.arange(1, N + 1, dtype=torch.float64) ** (-alpha)  # (N,)
    return w / w.sum()


def unseen_mass(p: torch.Tensor, n: int) -> float:
    """Expected probability mass of the tokens a sample of n never shows: sum_z p(z) (1 - p(z))^n.

    It is the expected loss of the infinite memory, which answers every seen token right and every other one
    wrong (chapter 8, eq. "infinite memory"; Hutter's model)."""
    p = _probabilities(p)
    n = check_int("n", n, 0)
    return float((p * (1 - p) ** n).sum())


def _probabilities(p) -> torch.Tensor:
    check_tensor("p", p, ndim=1, floating=True, finite=True)
    if p.numel() == 0 or bool((p < 0).any()) or abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError("p must be a non-empty probability vector (entries >= 0 summing to 1)")
    return p.double()


def tail_mass(p: torch.Tensor, K: int) -> float:
    """T_K = sum_{z >= K} p(z): the mass beyond the K most frequent tokens (p sorted decreasingly)."""
    p = _probabilities(p)
    K = check_int("K", K, 0, p.numel())
    return float(p[K:].sum())


# ---- the predicted exponents and the bounds of the chapter's theorems --------------------------------------------

def predicted_exponents(alpha: float) -> dict[str, float]:
    """The power laws of chapter 8 for Zipf exponent alpha: loss ~ n^(-a) or d^(-b).

    "n": (alpha - 1) / alpha, Hutter's rate, for every scheme once d is large enough; "counts_d":
    (alpha - 1) / (2 alpha) (Theorem "counts"); "threshold_d": alpha - 1 (Proposition "a set of tokens" and the
    lower bound of Theorem "approximation"), up to logarithms."""
    alpha = _alpha(alpha)
    return {"n": (alpha - 1) / alpha, "counts_d": (alpha - 1) / (2 * alpha), "threshold_d": alpha - 1}


def infinite_memory_bounds(alpha: float, n: int, N: int) -> tuple[float, float]:
    """Theorem "infinite memory" (chapter 8): c_alpha n^(-a) <= sum_z p(z) (1 - p(z))^n <= (1/e + alpha/(alpha-1))
    n^(-a), a = (alpha - 1) / alpha, for Zipf(alpha) over N tokens and n >= 2. The lower bound, with
    c_alpha = 2^(-alpha-2) H^(-1/alpha) / (alpha - 1) and H = sum_z z^(-alpha), needs the vocabulary to reach past
    the tokens a sample sees, N + 1 >= 2^(1/(alpha-1)) ceil(z_n) with z_n = (n / H)^(1/alpha) >= 1; 0 otherwise."""
    alpha = _alpha(alpha)
    n, N = check_int("n", n, 2), check_int("N", N, 1, MAX_TOKENS)
    rate = (alpha - 1) / alpha
    upper = (1 / math.e + alpha / (alpha - 1)) * n ** (-rate)
    H = float((torch.arange(1, N + 1, dtype=torch.float64) ** (-alpha)).sum())
    z_n = (n / H) ** (1 / alpha)
    if z_n < 1 or N + 1 < 2 ** (1 / (alpha - 1)) * math.ceil(z_n):
        return 0.0, upper
    return 2 ** (-alpha - 2) * H ** (-1 / alpha) / (alpha - 1) * n ** (-rate), upper


def counts_constant(alpha: float) -> float:
    """C_alpha = 8 / e + alpha / (alpha - 1), the sample term of Theorem "counts" (chapter 8)."""
    alpha = _alpha(alpha)
    return 8 / math.e + alpha / (alpha - 1)


def counts_bound(alpha: float, n: int, d: int, M: int) -> float:
    """The right-hand side of Theorem "counts" (chapter 8): the expected loss of q(z) = n_z / n is at most
    C_alpha n^(-(alpha-1)/alpha) + alpha/(alpha-1) (72 ln((M-1) d) / d)^((alpha-1)/(2 alpha)) + 1/d + M^2 e^(-d/8)."""
    alpha = _alpha(alpha)
    n, d, M = check_int("n", n, 1), check_int("d", d, 2), check_int("M", M, 2)
    rate = (alpha - 1) / alpha
    tau = 72 * math.log((M - 1) * d) / d
    return (counts_constant(alpha) * n ** (-rate) + alpha / (alpha - 1) * min(1.0, tau) ** (rate / 2) + 1 / d
            + M * M * math.exp(-d / 8))


def arrangement_regions(m: int, D: int) -> float:
    """log of C(m, D) = 2 sum_{i < D} binom(m - 1, i), the most regions m hyperplanes through the origin of R^D
    cut it into (chapter 8, Lemma "regions"; Cover 1965). Returned as a natural log (it overflows a float)."""
    m, D = check_int("m", m, 1), check_int("D", D, 1)
    terms = [math.lgamma(m) - math.lgamma(i + 1) - math.lgamma(m - i) for i in range(min(D, m))]
    top = max(terms)
    return math.log(2) + top + math.log(sum(math.exp(t - top) for t in terms))


def approximation_lower_bound(p: torch.Tensor, M: int, d: int, delta: float = 0.01) -> tuple[int, float]:
    """Theorem "approximation" (chapter 8) evaluated: the smallest K for which, with probability >= 1 - delta over
    a uniformly random f*: [N] -> [M], *every* d x d memory has loss >= (1 - 1/M) T_K / 2, and that bound.

    The failure probability is C(m, M d) exp(-(1 - 1/M)^2 T_K^2 / (2 Q_K)) with m = N M (M - 1) / 2,
    T_K = sum_{z >= K} p(z), Q_K = sum_{z >= K} p(z)^2. Returns (K, bound); (N, 0.0) if no K works."""
    p = _probabilities(p)
    M, d = check_int("M", M, 2), check_int("d", d, 1)
    delta = check_float("delta", delta, 0.0, 1.0, low_open=True)
    N = p.numel()
    log_regions = arrangement_regions(N * M * (M - 1) // 2, M * d)
    T = torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])  # (N,) T[K] = sum_{z >= K} p(z)
    Q = torch.flip(torch.cumsum(torch.flip(p * p, [0]), 0), [0])  # (N,)
    c = (1 - 1 / M) ** 2
    for K in range(N):
        if log_regions - c * float(T[K]) ** 2 / (2 * float(Q[K])) <= math.log(delta):
            return K, (1 - 1 / M) * float(T[K]) / 2
    return N, 0.0


# ---- the estimators and their loss --------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeavyTailProblem:
    """One draw of the chapter 8 setting: N tokens with Zipf(alpha) probabilities, answers f*(z) uniform in [M],
    unit Gaussian embeddings in R^d (``memory_embeddings``: E first, then U, from ``seed``)."""

    N: int
    M: int
    d: int
    alpha: float
    seed: int = 0

    def __post_init__(self):
        check_int("N", self.N, 2, MAX_TOKENS)
        check_int("M", self.M, 2, self.N)
        check_int("d", self.d, 2, 8192)
        if self.N * self.d > 2**27:
            raise ValueError(f"N d = {self.N * self.d} is too large: keep the embedding table under 2^27 numbers")
        _alpha(self.alpha)
        check_int("seed", self.seed, 0, 2**31 - 1)

    @property
    def probabilities(self) -> torch.Tensor:
        return zipf_probabilities(self.N, self.alpha)  # (N,)

    def answers(self) -> torch.Tensor:
        """f*(z), long (N,): uniform in [M], from its own stream (seed + 2^31), so it does not shift E and U."""
        return torch.randint(self.M, (self.N,), generator=generator(self.seed + 2**31))

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return memory_embeddings(self.N, self.M, self.d, self.seed)  # (N, d), (M, d)


def sample_counts(p: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Counts n_z of a sample of n tokens drawn i.i.d. from p, long (N,)."""
    p = _probabilities(p)
    n = check_int("n", n, 0, 2**26)
    if n == 0:
        return torch.zeros(p.numel(), dtype=torch.long)
    z = torch.multinomial(p, n, replacement=True, generator=generator(seed))  # (n,)
    return torch.bincount(z, minlength=p.numel())


def keep_threshold(counts: torch.Tensor, keep: int) -> int:
    """The smallest s >= 1 such that at most ``keep`` tokens were seen at least s times."""
    check_tensor("counts", counts, ndim=1)
    keep = check_int("keep", keep, 0)
    if counts.numel() == 0 or counts.is_floating_point() or bool((counts < 0).any()):
        raise ValueError("counts must be a non-empty integer tensor of counts >= 0")
    if keep >= int((counts > 0).sum()):
        return 1
    ordered = torch.sort(counts, descending=True).values  # (N,)
    return int(ordered[keep]) + 1  # the (keep + 1)-th largest count is one too few


def memory_weights(counts: torch.Tensor, scheme: str, keep: int | None = None) -> torch.Tensor:
    """q(z) of a scheme (chapter 8, Definition "memory schemes"), float64 (N,): "counts" n_z / n, "seen"
    1{n_z >= 1}, "threshold" 1{n_z >= s} with s = ``keep_threshold(counts, keep)``."""
    check_choice("scheme", scheme, SCHEMES)
    check_tensor("counts", counts, ndim=1)
    if counts.is_floating_point() or bool((counts < 0).any()):
        raise ValueError("counts must be an integer tensor of counts >= 0")
    if scheme == "counts":
        return counts.double() / max(1, int(counts.sum()))
    if scheme == "seen":
        return (counts > 0).double()
    if keep is None:
        raise ValueError("the threshold scheme needs keep, the most tokens it may store")
    return (counts >= keep_threshold(counts, keep)).double()


def recalled(problem: HeavyTailProblem, q: torch.Tensor, E: torch.Tensor | None = None,
             U: torch.Tensor | None = None, f: torch.Tensor | None = None) -> torch.Tensor:
    """Which tokens the memory W = sum_z q(z) u_{f*(z)} e_z^T recalls: bool (N,), the right score strictly above
    every other (chapter 8, eq. "memory"). ``E``, ``U``, ``f`` may be passed to reuse a draw of ``problem``.

    W is never formed: the scores are (E E_S^T)(q_S u_{f*(S)} U^T) over the stored tokens S, N |S| (d + M)
    multiply-adds instead of N d^2."""
    check_tensor("q", q, shape=(problem.N,), floating=True, finite=True)
    if E is None or U is None:
        E, U = problem.embeddings()
    f = problem.answers() if f is None else f
    stored = (q != 0).nonzero().squeeze(1)  # (|S|,)
    if stored.numel() == 0:
        return torch.zeros(problem.N, dtype=torch.bool)
    values = (q[stored, None].to(U.dtype) * U[f[stored]]) @ U.T  # (|S|, M): q(z') u_{f(z')} . u_y
    gamma = (E @ E[stored].T) @ values  # (N, M) scores u_y^T W e_z
    right = gamma.gather(1, f[:, None]).squeeze(1)  # (N,)
    wrong = gamma.scatter(1, f[:, None], float("-inf")).amax(dim=1)  # (N,)
    return right > wrong


def memory_loss(problem: HeavyTailProblem, q: torch.Tensor, **draw) -> float:
    """L = sum_z p(z) 1{z not recalled}: the population 0/1 loss of the memory with weights q (chapter 8)."""
    return float((problem.probabilities * (~recalled(problem, q, **draw)).double()).sum())


# ---- the scaling-law sweeps: jobs of ``reproduce scaling-laws`` --------------------------------------------------

def scaling_jobs(config: dict) -> list[dict]:
    """One job per (alpha, sweep point): the n sweep at fixed d and the d sweep at fixed n; its seeds run together."""
    if "d" in config:
        raise ValueError("d does not apply to scaling-laws: its d values are those of n_sweep and d_sweep")
    base = {"N": config["N"], "M": config["M"], "keep_per_d": config["keep_per_d"], "seeds": list(config["seeds"])}
    jobs = [base | {"alpha": a, "sweep": "n", "n": n, "d": config["n_sweep"]["d"]}
            for a in config["alpha"] for n in config["n_sweep"]["n"]]
    jobs += [base | {"alpha": a, "sweep": "d", "n": config["d_sweep"]["n"], "d": d}
             for a in config["alpha"] for d in config["d_sweep"]["d"]]
    return jobs


def scaling_job(job: dict, device: torch.device) -> list[dict]:
    """The loss of every scheme for each seed of one (alpha, n, d): one draw of embeddings, answers and sample
    per seed, shared by the schemes; also the unseen mass of that sample (the infinite memory's loss)."""
    torch.set_num_threads(1)  # small products: one thread is as fast, and never fights over shared cores
    rows = []
    for seed in job["seeds"]:
        problem = HeavyTailProblem(job["N"], job["M"], job["d"], job["alpha"], seed)
        E, U = problem.embeddings()
        E, U = E.to(device), U.to(device)
        f = problem.answers().to(device)
        counts = sample_counts(problem.probabilities, job["n"], seed + 2**30)  # (N,)
        keep = max(1, int(job["keep_per_d"] * job["d"]))
        row = {"alpha": job["alpha"], "sweep": job["sweep"], "n": job["n"], "d": job["d"], "seed": seed,
               "seen_tokens": int((counts > 0).sum()), "keep": keep,
               "unseen": float((problem.probabilities * (counts == 0).double()).sum())}
        for scheme in SCHEMES:
            q = memory_weights(counts, scheme, keep).to(device)
            hit = recalled(problem, q, E=E, U=U, f=f).cpu()
            row[scheme] = float((problem.probabilities * (~hit).double()).sum())
        rows.append(row)
    return rows


def fit_exponents(rows: list[dict], sweep: str, scheme: str, alpha: float, where=None) -> dict:
    """Least-squares slope of log loss against log n (``sweep`` "n") or log d, one fit per seed over the sweep
    points of that seed that ``where(row)`` accepts (all by default); returns {"slopes", "mean", "low", "high",
    "points"}: the per-seed slopes, their mean and a 95 % Student interval over seeds (the spread of the fit
    across independent draws), and the most points a fit used."""
    from scipy.stats import t as student

    check_choice("sweep", sweep, ("n", "d"))
    check_choice("scheme", scheme, SCHEMES + ("unseen",))
    seeds = sorted({r["seed"] for r in rows})
    slopes, points = [], 0
    for seed in seeds:
        pts = sorted((r[sweep], r[scheme]) for r in rows if r["sweep"] == sweep and r["alpha"] == alpha
                     and r["seed"] == seed and r[scheme] > 0 and (where is None or where(r)))
        if len(pts) < 2:
            continue
        x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
        slopes.append(float(np.polyfit(x, y, 1)[0]))
        points = max(points, len(pts))
    if not slopes:
        raise ValueError(f"no seed has two positive losses for scheme {scheme!r}, alpha {alpha} in that range")
    mean = float(np.mean(slopes))
    half = float(student.ppf(0.975, len(slopes) - 1) * np.std(slopes, ddof=1) / math.sqrt(len(slopes))) \
        if len(slopes) > 1 else math.nan
    return {"slopes": slopes, "mean": mean, "low": mean - half, "high": mean + half, "points": points}
