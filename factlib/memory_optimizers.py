"""What each optimiser stores: the weights q(z) that training writes into a linear memory, and its margins (chapter 8).

The memory W (d, d) is trained on the cross-entropy of the scores u_y^T W e_z with tokens z drawn from p (or from
a sample of them). Every gradient is a sum of outer products u_y e_z^T, so a trained W is again a memory
sum_{z, y} B[z, y] u_y e_z^T; with orthonormal embeddings B is read off exactly, and the learned weight of token z
is its right score minus the mean of its wrong ones (``learned_weights``).

- ``fit_memory``: one large-batch gradient step, SGD with batch one, full-batch gradient descent or Adam;
- ``orthogonal_margins``: the exact margin recursion of gradient descent with orthonormal embeddings
  (Proposition "logarithmic margins" of chapter 8);
- ``two_token_margins``, ``recall_curve``: margins and accuracy over training with correlated embeddings.
"""
from __future__ import annotations

import math

import torch

from ._validate import check_choice, check_float, check_int, check_tensor
from .config import generator
from .embeddings import memory_embeddings, orthogonal_embeddings
from .heavy_tails import zipf_probabilities
from .memory import gradient_step_memory, margins, scores

METHODS = ("one-step", "sgd", "gd", "adam")


def learned_weights(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """q_hat(z) = u_{f(z)}^T W e_z - mean_{y != f(z)} u_y^T W e_z, (N,): the weight W gives association z
    (chapter 8, eq. "learned weight"); exactly B[z, f(z)] - mean_y B[z, y] for orthonormal embeddings."""
    check_tensor("targets", targets, shape=(E.shape[0],))
    if U.shape[0] < 2:
        raise ValueError("learned weights need at least two outputs (M >= 2)")
    gamma = scores(W, E, U)  # (N, M)
    right = gamma.gather(1, targets[:, None]).squeeze(1)  # (N,)
    return right - (gamma.sum(dim=1) - right) / (U.shape[0] - 1)


def weighted_gradient(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Gradient of sum_z weights[z] CE(f(z), U W e_z) in W, (d, d): sum_z w_z U^T (softmax - onehot) e_z^T."""
    G = torch.softmax(scores(W, E, U), dim=1)  # (N, M)
    G[torch.arange(len(targets)), targets] -= 1
    return U.T @ (weights[:, None] * G).T @ E  # (d, M) @ (M, N) @ (N, d)


def fit_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, sample: torch.Tensor, method: str,
               lr: float, steps: int = 1) -> torch.Tensor:
    """Train W from zero on the cross-entropy of a sample of tokens (chapter 8, Section "what optimisers store").

    ``sample`` (n,) lists the sampled tokens (with repeats). ``method``: "one-step", one gradient step of size
    ``lr`` on the mean loss of the whole sample (the centred Hebbian memory of chapter 1, q proportional to the
    counts); "sgd", one step of size ``lr`` per sampled token, in order (batch one, n steps); "gd", ``steps``
    full-batch gradient steps; "adam", ``steps`` full-batch Adam steps (torch's defaults, step size ``lr``).
    Returns W (d, d) in E's dtype."""
    check_choice("method", method, METHODS)
    lr = check_float("lr", lr, 0.0, 1e6, low_open=True)
    steps = check_int("steps", steps, 1, 2**20)
    check_tensor("sample", sample, ndim=1)
    if sample.numel() == 0 or sample.is_floating_point() or bool((sample < 0).any()) \
            or bool((sample >= E.shape[0]).any()):
        raise ValueError(f"sample must be a non-empty integer tensor of tokens in [0, {E.shape[0] - 1}]")
    if method == "one-step":
        return gradient_step_memory(E[sample], U, targets[sample], lr)
    d = E.shape[1]
    W = torch.zeros(d, d, dtype=E.dtype)
    if method == "sgd":
        one = torch.ones(1, dtype=E.dtype)
        for z in sample.tolist():
            W -= lr * weighted_gradient(W, E[z:z + 1], U, targets[z:z + 1], one)
        return W
    # the full-batch loss of the sample is sum_z phat(z) CE_z over the distinct tokens, phat = counts / n
    share = torch.bincount(sample, minlength=E.shape[0]).to(E.dtype) / len(sample)  # (N,)
    if method == "gd":
        for _ in range(steps):
            W -= lr * weighted_gradient(W, E, U, targets, share)
        return W
    W.requires_grad_(True)
    opt = torch.optim.Adam([W], lr=lr)
    for _ in range(steps):
        W.grad = weighted_gradient(W.detach(), E, U, targets, share)
        opt.step()
    return W.detach()


def orthogonal_margins(p: torch.Tensor, lr: float, steps: int, M: int) -> torch.Tensor:
    """Margins m_z(t), t = 0 .. steps, of gradient descent on sum_z p(z) CE with orthonormal embeddings and M
    outputs, from W = 0 (chapter 8, Proposition "logarithmic margins"): the exact recursion
    m <- m + lr p(z) M / (e^m + M - 1). float64 (steps + 1, N)."""
    check_tensor("p", p, ndim=1, floating=True, finite=True)
    lr = check_float("lr", lr, 0.0, 1e6, low_open=True)
    steps, M = check_int("steps", steps, 0, 2**24), check_int("M", M, 2)
    m = torch.zeros_like(p, dtype=torch.float64)  # (N,)
    out = [m.clone()]
    for _ in range(steps):
        m = m + lr * p.double() * M / (torch.exp(m) + M - 1)
        out.append(m.clone())
    return torch.stack(out)


def two_token_embeddings(rho: float) -> torch.Tensor:
    """e_1 = (1, 0), e_2 = (rho, sqrt(1 - rho^2)): two unit inputs with overlap rho, (2, 2) float64."""
    rho = check_float("rho", rho, -1.0, 1.0)
    if abs(rho) == 1.0:
        raise ValueError("rho must lie strictly between -1 and 1 (equal inputs cannot have different answers)")
    return torch.tensor([[1.0, 0.0], [rho, math.sqrt(1 - rho * rho)]], dtype=torch.float64)


def two_token_margins(rho: float, p1: float, lr: float, steps: int) -> torch.Tensor:
    """Margins (steps + 1, 2) of gradient descent on p1 CE_1 + (1 - p1) CE_2: two tokens with overlap ``rho``,
    answers 0 and 1 with orthonormal output embeddings (chapter 8, Figure "margins"); the margin of token z is
    its right score minus the other one."""
    p1 = check_float("p1", p1, 0.0, 1.0, low_open=True)
    if p1 >= 1.0:
        raise ValueError(f"p1 must lie in (0, 1); got {p1}")
    lr = check_float("lr", lr, 0.0, 1e6, low_open=True)
    steps = check_int("steps", steps, 0, 2**24)
    E, U = two_token_embeddings(rho), orthogonal_embeddings(2, dtype=torch.float64)  # (2, 2), (2, 2)
    targets, p = torch.tensor([0, 1]), torch.tensor([p1, 1 - p1], dtype=torch.float64)
    W = torch.zeros(2, 2, dtype=torch.float64)
    out = []
    for _ in range(steps + 1):
        gamma = scores(W, E, U)  # (2, 2)
        out.append(gamma.gather(1, targets[:, None]).squeeze(1) - gamma.gather(1, (1 - targets)[:, None]).squeeze(1))
        W -= lr * weighted_gradient(W, E, U, targets, p)
    return torch.stack(out)


def recall_curve(N: int, M: int, d: int, alpha: float, seed: int, lr: float, steps: int) -> torch.Tensor:
    """Recall accuracy (weighted by p) after every step t = 0 .. steps of full-batch gradient descent on the
    population loss sum_z p(z) CE: Zipf(alpha) tokens, f*(z) uniform in [M], unit Gaussian embeddings in R^d
    (correlated when N > d). float64 (steps + 1,)."""
    N, M, d = check_int("N", N, 2, 4096), check_int("M", M, 2, N), check_int("d", d, 2, 1024)
    lr = check_float("lr", lr, 0.0, 1e6, low_open=True)
    steps = check_int("steps", steps, 0, 2**20)
    p = zipf_probabilities(N, alpha)  # (N,)
    E, U = memory_embeddings(N, M, d, seed, dtype=torch.float64)  # (N, d), (M, d)
    targets = torch.randint(M, (N,), generator=generator(seed + 2**31))  # (N,)
    W = torch.zeros(d, d, dtype=torch.float64)
    out = []
    for _ in range(steps + 1):
        out.append(float((p * (margins(W, E, U, targets) > 0).double()).sum()))  # a tie is an error
        W -= lr * weighted_gradient(W, E, U, targets, p)
    return torch.tensor(out, dtype=torch.float64)


def first_full_recall(curve: torch.Tensor) -> int | None:
    """The first step at which every token is recalled (accuracy 1 up to rounding), or None."""
    hit = (curve >= 1 - 1e-12).nonzero()
    return int(hit[0]) if hit.numel() else None



# ---- jobs of ``reproduce optimizer-weights`` and ``reproduce margins`` --------------------------------------------

def weights_jobs(config: dict) -> list[dict]:
    """One job per (embeddings, seed): every method trained on the same sample."""
    if isinstance(config["d"], list):
        raise ValueError("optimizer-weights takes one d")
    keys = ("N", "M", "d", "alpha", "n", "methods")
    return [{k: config[k] for k in keys} | {"embeddings": kind, "seed": seed}
            for kind in config["embeddings"] for seed in config["seeds"]]


def weights_job(job: dict, device: torch.device) -> list[dict]:
    """The learned weight of every token under each method (chapter 8, Figure "learned weights"): rows
    {method, token, p, count, q, recalled} and one row per method with its loss (token None)."""
    torch.set_num_threads(1)
    N, M, d, seed = job["N"], job["M"], job["d"], job["seed"]
    p = zipf_probabilities(N, job["alpha"])  # (N,)
    if job["embeddings"] == "orthonormal":
        E = orthogonal_embeddings(N, N + M, dtype=torch.float64)  # (N, N + M): the first N basis vectors
        U = torch.eye(N + M, dtype=torch.float64)[N:]  # (M, N + M): the next M ones
    else:
        E, U = memory_embeddings(N, M, d, seed, dtype=torch.float64)  # (N, d), (M, d)
    targets = torch.randint(M, (N,), generator=generator(seed + 2**31))  # (N,)
    sample = torch.multinomial(p, job["n"], replacement=True, generator=generator(seed + 2**30))  # (n,)
    counts = torch.bincount(sample, minlength=N)  # (N,)
    rows = []
    for method, spec in job["methods"].items():
        W = fit_memory(E, U, targets, sample, spec["method"], spec["lr"], spec.get("steps", 1))
        q = learned_weights(W, E, U, targets)  # (N,)
        hit = margins(W, E, U, targets) > 0  # (N,)
        rows += [{"embeddings": job["embeddings"], "seed": seed, "method": method, "token": z, "p": float(p[z]),
                  "count": int(counts[z]), "q": float(q[z]), "recalled": bool(hit[z])} for z in range(N)]
        rows.append({"embeddings": job["embeddings"], "seed": seed, "method": method, "token": None,
                     "loss": float((p * (~hit).double()).sum())})
    return rows


def margins_jobs(config: dict) -> list[dict]:
    """Three kinds of job: a two-token trajectory per (rho, lr), a recall curve per (problem, lr, seed)."""
    if "d" in config or "seeds" in config:
        raise ValueError("d and seeds do not apply to margins: each of its problems has its own")
    jobs = [{"kind": "two-token", "rho": rho, "p1": config["two_token"]["p1"], "lr": lr,
             "steps": config["two_token"]["steps"]}
            for rho in config["two_token"]["rho"] for lr in config["two_token"]["lr"]]
    for kind in ("separable", "under"):
        spec = config[kind]
        jobs += [{"kind": kind, **{k: spec[k] for k in ("N", "M", "d", "alpha", "steps")}, "lr": lr, "seed": seed}
                 for lr in spec["lr"] for seed in spec["seeds"]]
    return jobs


def margins_job(job: dict, device: torch.device) -> dict:
    """A two-token job returns its margins every step; a recall job its accuracy curve, thinned to about 200
    points (every step kept up to the first full recall), and the first step with every token recalled."""
    torch.set_num_threads(1)
    if job["kind"] == "two-token":
        m = two_token_margins(job["rho"], job["p1"], job["lr"], job["steps"])  # (steps + 1, 2)
        return {**job, "margins": m.tolist()}
    curve = recall_curve(job["N"], job["M"], job["d"], job["alpha"], job["seed"], job["lr"], job["steps"])
    stride = max(1, len(curve) // 200)
    keep = sorted(set(range(0, len(curve), stride)) | {len(curve) - 1, int(curve.argmax())})
    return {**job, "first_full": first_full_recall(curve), "best": float(curve.max()), "best_step": int(curve.argmax()),
            "final": float(curve[-1]), "curve": [[t, float(curve[t])] for t in keep]}
