"""Training many associative memories at once: the engine behind every capacity figure (chapters 1-2).

A capacity search trains hundreds of small, independent memories: one per (seed, learning rate, candidate N).
Each alone is too small to keep a processor busy, so ``train_memories`` trains R of them as one batched
computation: a leading run dimension on every tensor, inputs and outputs padded to the largest run and masked,
gradients written out by hand (two or three batched matrix products per step, no autograd graph), and Adam
applied to all runs at once with a per-run learning rate. Every ``check_every`` steps the accuracy of each run is
read off the forward pass; runs that reached the threshold, or can no longer reach it, leave the batch, and the
padding shrinks with them. ``memory_capacities`` runs many capacity searches (``capacity.CapacitySearch``)
round by round, training every candidate of every search of a round in one batch per shape.

Memories (x in [N], outputs in [M], E (N, d), U (M, d), logits u_y . F(e_x)):
- linear: F(e) = W e, W (d, d) from zero (chapter 1);
- MLP: F(e) = W2 relu(W1 e + b1), W1 (m, d) with N(0, 1/d) entries (rows of norm about 1), b1 = 0, W2 = 0
  (chapter 2). The first step moves W2 only; W1 starts moving from the second.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from ._validate import check_allocation, check_choice, check_float, check_int
from .capacity import CapacitySearch, predicted_capacity
from .config import generator
from .embeddings import memory_embeddings
from .memory import TrainConfig, mlp_init, train_linear_memory, train_mlp_memory

KINDS = ("linear", "mlp")
#: logits are computed in blocks of rows of about this many entries (2^19 floats: 2 MB, cache-resident)
CHUNK_ELEMS = 1 << 19


def many_to_one_targets(N: int, M: int) -> torch.Tensor:
    """f*(x) = floor(x M / N): N inputs onto M outputs in equal blocks (Fig. 6); M = N gives f*(x) = x. (N,)"""
    N, M = check_int("N", N, 1), check_int("M", M, 1)
    check_allocation({"N": N}, N, torch.int64, "the targets (N,)")
    return torch.arange(N) * M // N


#: Adam's moment decays and epsilon (torch.optim.Adam's defaults)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def adam_update_(param: torch.Tensor, grad: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor],
                 lr: torch.Tensor | float, step: int) -> None:
    """One Adam step on a batch of runs, in place: ``moments`` = (first, second) are updated, then ``param``.

    ``lr`` broadcasts against ``param`` (a per-run learning rate of shape (R, 1, ...)); ``step`` counts from 1
    (bias correction). The arithmetic of ``torch.optim.Adam``, shared by the memory and transformer trainers.
    """
    beta1, beta2 = ADAM_BETAS
    m1, m2 = moments
    m1.mul_(beta1).add_(grad, alpha=1 - beta1)
    m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (m2 / (1 - beta2**step)).sqrt_().add_(ADAM_EPS)
    param.sub_(lr * (m1 / (1 - beta1**step)) / denom)


@dataclass
class BatchResult:
    reached: torch.Tensor   # (R,) bool: accuracy >= threshold (or a run of the same group did)
    accuracy: torch.Tensor  # (R,) best recall accuracy seen
    steps: torch.Tensor     # (R,) steps taken
    flops: float            # floating-point operations of the matrix products executed, padding included


def train_memories(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, n_inputs: torch.Tensor,
                   n_outputs: torch.Tensor, lrs: torch.Tensor, config: TrainConfig = TrainConfig(), *,
                   m: int = 0, W1: torch.Tensor | None = None, group: torch.Tensor | None = None) -> BatchResult:
    """Train R memories at once by full-batch cross-entropy; each stops at the threshold or when hopeless.

    E (R, N, d) and U (R, M, d) hold each run's embeddings, padded to the largest run; run r uses its first
    ``n_inputs[r]`` inputs and ``n_outputs[r]`` outputs, and ``targets`` (R, N) its f*. ``lrs`` (R,) are the
    step sizes of ``config.optimizer``. ``m = 0`` trains linear memories; ``m > 0`` MLPs of width m whose
    first layers start at ``W1`` (R, m, d). Runs sharing a ``group`` id (R,) stop together as soon as one
    of them reaches the threshold (a learning-rate sweep for one N: one success is enough).
    The step-by-step rule (check every ``check_every`` steps, keep the best accuracy, give up as
    ``memory.train_linear_memory`` does) matches the one-configuration trainer of chapter 1.
    """
    if E.ndim != 3 or U.ndim != 3 or E.shape[0] != U.shape[0] or E.shape[2] != U.shape[2]:
        raise ValueError(f"E and U must be (R, N, d) and (R, M, d); got {tuple(E.shape)} and {tuple(U.shape)}")
    R, N, d = E.shape
    M = U.shape[1]
    dev, dtype = E.device, E.dtype
    if targets.shape != (R, N):
        raise ValueError(f"targets must have shape (R, N) = ({R}, {N}); got {tuple(targets.shape)}")
    n_inputs = torch.as_tensor(n_inputs, device=dev).long()
    n_outputs = torch.as_tensor(n_outputs, device=dev).long()
    if n_inputs.shape != (R,) or n_inputs.min() < 1 or n_inputs.max() > N:
        raise ValueError(f"n_inputs must be R = {R} integers in [1, {N}]")
    if n_outputs.shape != (R,) or n_outputs.min() < 1 or n_outputs.max() > M:
        raise ValueError(f"n_outputs must be R = {R} integers in [1, {M}]")
    lrs = torch.as_tensor(lrs, device=dev, dtype=dtype)
    if lrs.shape != (R,) or not bool((lrs > 0).all()):
        raise ValueError(f"lrs must be R = {R} positive numbers")
    m = check_int("m", m, 0)
    if m and (W1 is None or W1.shape != (R, m, d)):
        raise ValueError(f"an MLP (m = {m}) needs W1 of shape (R, m, d) = ({R}, {m}, {d})")
    group = torch.arange(R, device=dev) if group is None else torch.as_tensor(group, device=dev).long()

    # per-run state, compacted whenever runs leave; `idx` maps the active rows back to the caller's runs
    idx = torch.arange(R, device=dev)
    rows = torch.arange(N, device=dev)[None, :] < n_inputs[:, None]  # (R, N) real inputs
    valid_targets = targets.to(dev).masked_fill(~rows, 0)
    if bool((valid_targets >= n_outputs[:, None]).any()) or bool((valid_targets < 0).any()):
        raise ValueError("targets of the real inputs must lie in [0, n_outputs - 1]")
    state = {
        "E": E, "Ut": U.transpose(1, 2).contiguous(),  # (R, N, d), (R, d, M)
        "t": valid_targets,  # (R, N)
        "w": rows.to(dtype) / n_inputs[:, None].to(dtype),  # (R, N): 1/N_r on real inputs, 0 on padding
        "rows": rows,
        "out_bias": torch.zeros(R, 1, M, device=dev, dtype=dtype).masked_fill(
            (torch.arange(M, device=dev)[None, :] >= n_outputs[:, None])[:, None, :], float("-inf")),  # (R, 1, M)
        "n_in": n_inputs, "n_out": n_outputs, "lr": lrs[:, None, None], "group": group, "idx": idx,
        "minus_one": torch.full((R, N, 1), -1.0, device=dev, dtype=dtype),
        "best": torch.full((R,), -1.0, device=dev, dtype=dtype), "best_step": torch.zeros(R, device=dev, dtype=torch.long),
    }
    if m:
        params = {"W1": W1.to(device=dev, dtype=dtype).clone(), "b1": torch.zeros(R, 1, m, device=dev, dtype=dtype),
                  "W2": torch.zeros(R, d, m, device=dev, dtype=dtype)}
    else:
        params = {"W": torch.zeros(R, d, d, device=dev, dtype=dtype)}
    adam = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()} if config.optimizer == "adam" else {}
    history: list[torch.Tensor] = []  # best accuracy at the last patience // check_every + 1 checks
    window = None if config.patience is None else max(1, math.ceil(config.patience / config.check_every))

    out_reached = torch.zeros(R, dtype=torch.bool, device=dev)
    out_acc = torch.zeros(R, dtype=dtype, device=dev)
    out_steps = torch.zeros(R, dtype=torch.long, device=dev)
    flops = 0.0

    chunk_elems = CHUNK_ELEMS  # logits are built in row blocks of about this many entries (see CHUNK_ELEMS)
    for step in range(config.steps + 1):
        Ecur, Ut = state["E"], state["Ut"]
        r, n, _ = Ecur.shape
        k = Ut.shape[2]
        check = step % config.check_every == 0 or step == config.steps
        # forward to F(e_x) for every input
        if m:
            Z = torch.baddbmm(params["b1"], Ecur, params["W1"].transpose(1, 2))  # (r, n, m)
            A = torch.relu(Z)  # (r, n, m)
            Fx = torch.bmm(A, params["W2"].transpose(1, 2))  # (r, n, d)
            flops += 4.0 * r * n * m * d
        else:
            Fx = torch.bmm(Ecur, params["W"].transpose(1, 2))  # (r, n, d)
            flops += 2.0 * r * n * d * d
        # logits, softmax and dL/dF one block of rows at a time: the (r, n, k) logits never exist whole,
        # each block stays in cache between the product that makes it and the product that consumes it
        dF = torch.empty_like(Fx)  # (r, n, d)
        correct = torch.zeros(r, device=dev, dtype=torch.long) if check else None
        rows_per_block = max(1, chunk_elems // max(1, r * k))
        Ut_T = Ut.transpose(1, 2)  # (r, k, d)
        for s0 in range(0, n, rows_per_block):
            sl = slice(s0, min(n, s0 + rows_per_block))
            G = torch.baddbmm(state["out_bias"], Fx[:, sl], Ut)  # (r, b, k) logits, -inf on padded outputs
            t_blk = state["t"][:, sl]  # (r, b)
            if check:
                correct += ((G.argmax(dim=2) == t_blk) & state["rows"][:, sl]).sum(dim=1)
            torch.ops.aten._softmax.out(G, 2, False, out=G)  # in place
            G.scatter_add_(2, t_blk[:, :, None], state["minus_one"][:, : t_blk.shape[1]])  # softmax - onehot
            # dL/dF = w_x (softmax - onehot) U: the weight 1/N_r (0 on padding) is applied after the product,
            # on the (r, b, d) result, which is k / d times smaller than the logits block
            dF[:, sl] = torch.bmm(G, Ut_T).mul_(state["w"][:, sl, None])  # (r, b, d)
        flops += 4.0 * r * n * d * k
        if m:
            grads = {"W2": torch.bmm(dF.transpose(1, 2), A)}  # (r, d, m)
            dZ = torch.bmm(dF, params["W2"]).mul_(Z > 0)  # (r, n, m)
            grads["W1"] = torch.bmm(dZ.transpose(1, 2), Ecur)  # (r, m, d)
            grads["b1"] = dZ.sum(dim=1, keepdim=True)  # (r, 1, m)
            flops += 6.0 * r * n * m * d
        else:
            grads = {"W": torch.bmm(dF.transpose(1, 2), Ecur)}  # (r, d, d)
            flops += 2.0 * r * n * d * d

        if check:
            acc = correct.to(dtype) / state["n_in"].to(dtype)  # (r,) accuracy before this step's update
            better = acc > state["best"]
            state["best"] = torch.where(better, acc, state["best"])
            state["best_step"] = torch.where(better, torch.full_like(state["best_step"], step), state["best_step"])
            success = state["best"] >= config.threshold
            # a group succeeds as a whole: its other learning rates stop too
            won = torch.zeros(R, dtype=torch.bool, device=dev)
            won[state["group"][success]] = True
            finished = won[state["group"]] | (step == config.steps)
            history.append(state["best"].clone())
            if window is not None:
                history = history[-(window + 1):]
                finished |= step - state["best_step"] >= config.patience
                if len(history) == window + 1:
                    rate = (state["best"] - history[0]) / config.patience
                    finished |= state["best"] + rate * (config.steps - step) < config.threshold
            if bool(finished.any()):
                done = state["idx"][finished]
                out_reached[done] = won[state["group"][finished]]
                out_acc[done] = state["best"][finished]
                out_steps[done] = step
                keep = (~finished).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                n_keep = int(state["n_in"][keep].max())
                k_keep = int(state["n_out"][keep].max())
                for key, value in state.items():
                    value = value[keep]
                    if key in ("E", "t", "w", "rows", "minus_one"):
                        value = value[:, :n_keep]
                    elif key in ("Ut", "out_bias"):
                        value = value[:, :, :k_keep]
                    state[key] = value.contiguous()
                history = [h[keep] for h in history]
                for key in params:
                    params[key] = params[key][keep].contiguous()
                    grads[key] = grads[key][keep]
                    if adam:
                        adam[key] = (adam[key][0][keep].contiguous(), adam[key][1][keep].contiguous())

        lr = state["lr"]
        for key, g in grads.items():
            if adam:
                adam_update_(params[key], g, adam[key], lr, step + 1)
            else:
                params[key].sub_(lr * g)
    # a run whose group succeeded counts as reached, even if it had stopped before that
    group_won = torch.zeros(R, dtype=torch.bool, device=dev)
    group_won[group[out_reached]] = True
    out_reached = group_won[group]
    return BatchResult(reached=out_reached.cpu(), accuracy=out_acc.cpu(), steps=out_steps.cpu(), flops=flops)


def _first_layer(p: "CapacityProblem") -> torch.Tensor | None:
    """The MLP's initial W1 (m, d) for a problem: its own stream, so it does not shift the embeddings' draw."""
    return mlp_init(p.m, p.d, p.seed + 1_000_003).float() if p.kind == "mlp" else None


@dataclass(frozen=True)
class CapacityProblem:
    """One capacity search: the largest N a memory stores with embeddings drawn from ``seed``.

    ``kind`` "linear" (d x d) or "mlp" (width m); outputs: M = N with f*(x) = x if ``M`` is None, else a
    fixed vocabulary of M outputs with f*(x) = floor(x M / N). N is searched in [low, high] from ``guess``.
    """

    kind: str
    d: int
    seed: int
    low: int
    high: int
    guess: int
    m: int = 0
    M: int | None = None
    tag: dict = field(default_factory=dict, compare=False)  # carried to the result row (e.g. alpha)

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_int("d", self.d, 2)
        check_int("seed", self.seed, 0)
        check_int("low", self.low, 1)
        check_int("high", self.high, self.low)
        check_int("m", self.m, 1 if self.kind == "mlp" else 0, None if self.kind == "mlp" else 0)
        if self.M is not None:
            check_int("M", self.M, 2)
        outputs = self.high if self.M is None else self.M
        check_allocation({"d": self.d}, (self.high + outputs) * self.d, torch.float64,
                         f"the embeddings of its capacity search (E and U: {self.high} + {outputs} vectors of "
                         "dimension d, drawn in float64)")


def memory_capacities(problems: Sequence[CapacityProblem], lrs: Sequence[float], config: TrainConfig = TrainConfig(),
                      device: torch.device | str = "cpu", points: int | None = None, rtol: float = 0.02,
                      max_batch: int = 96, stats: dict | None = None) -> list[int]:
    """Capacities of many memories at once: all searches advance round by round, each round's candidates
    (``points`` per search; default 1 on a CPU, 3 on a GPU) trained together. N counts as stored if one of
    ``lrs``, tried in order, reaches ``config.threshold``.

    Runs of one (kind, d, m) share a batch (at most ``max_batch`` runs each). ``stats``, if given, receives the
    number of rounds, runs and matrix-product FLOPs. Returns the capacity of each problem, in order.
    """
    dev = torch.device(device)
    # candidates per search and round: on a CPU every training costs its FLOPs, so one candidate per round
    # (the searches of a batch still train together) needs the fewest; a GPU has room for more at once
    points = (1 if dev.type == "cpu" else 3) if points is None else check_int("points", points, 1, 64)
    check_float("rtol", rtol, 0.0, 1.0)
    check_int("max_batch", max_batch, 1)
    lrs = [check_float("lrs", lr, 0.0, low_open=True) for lr in lrs]
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    searches = [CapacitySearch(p.low, p.high, p.guess, points=points, rtol=rtol) for p in problems]
    pools: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}

    def pool(i: int):
        """Embeddings of problem i, drawn once at its largest N and sliced (nested in N for a fixed seed)."""
        if i not in pools:
            p = problems[i]
            E, U = memory_embeddings(p.high, p.high if p.M is None else p.M, p.d, p.seed)  # (high, d), (M, d)
            W1 = _first_layer(p)  # (m, d) or None
            pools[i] = (E.to(dev), U.to(dev), None if W1 is None else W1.to(dev))
        return pools[i]

    total = {"rounds": 0, "runs": 0, "flops": 0.0}
    while True:
        candidates = [(i, n) for i, s in enumerate(searches) for n in s.candidates()]
        if not candidates:
            break
        # learning rates in turn, as fallbacks: each pass trains (in batches) only the candidates no earlier
        # learning rate stored, so a learning rate that works costs nothing extra
        outcome = {(i, n): False for i, n in candidates}
        for lr in lrs:
            todo = [(i, n) for i, n in candidates if not outcome[(i, n)]]
            shapes: dict[tuple, list] = {}
            for i, n in todo:
                p = problems[i]
                shapes.setdefault((p.kind, p.d, p.m), []).append((i, n))
            for (kind, d, m), group_runs in shapes.items():
                group_runs.sort(key=lambda run: run[1])  # similar N together: less padding
                for start in range(0, len(group_runs), max_batch):
                    chunk = group_runs[start:start + max_batch]
                    ns = [n for _, n in chunk]
                    outs = [n if problems[i].M is None else problems[i].M for i, n in chunk]
                    Nmax, Mmax = max(ns), max(outs)
                    check_allocation({"d": d, "runs": len(chunk)}, len(chunk) * (Nmax + 2 * Mmax) * d, torch.float32,
                                     f"a batch of memories trained together (E and U of up to {Nmax} inputs and "
                                     f"{Mmax} outputs per run)")
                    E = torch.stack([F.pad(pool(i)[0][:n], (0, 0, 0, Nmax - n)) for i, n in chunk])  # (r, N, d)
                    U = torch.stack([F.pad(pool(i)[1][:o], (0, 0, 0, Mmax - o))
                                     for (i, _), o in zip(chunk, outs)])  # (r, M, d)
                    T = torch.stack([F.pad(many_to_one_targets(n, o), (0, Nmax - n))
                                     for n, o in zip(ns, outs)]).to(dev)  # (r, N)
                    W1 = torch.stack([pool(i)[2] for i, _ in chunk]) if kind == "mlp" else None  # (r, m, d)
                    res = train_memories(E, U, T, torch.tensor(ns), torch.tensor(outs),
                                         torch.full((len(chunk),), lr), config, m=m, W1=W1)
                    total["flops"] += res.flops
                    total["runs"] += len(chunk)
                    for run, ok in zip(chunk, res.reached.tolist()):
                        outcome[run] = ok
        for i, s in enumerate(searches):
            mine = {n: ok for (j, n), ok in outcome.items() if j == i}
            if mine:
                s.update(mine)
        total["rounds"] += 1
    if stats is not None:
        stats.update(total)
    return [s.capacity for s in searches]


def linear_problem(d: int, seed: int, guess_c: float = 1.0, **tag) -> CapacityProblem:
    """Fig. 1 (left): d x d linear memory, f*(x) = x, N in [d, d^2 / 2], guess from d^2 = guess_c N ln N."""
    high = max(d, d * d // 2)
    return CapacityProblem("linear", d, seed, low=d, high=high, guess=round(predicted_capacity(d * d, guess_c)), tag=tag)


def mlp_problem(d: int, m: int, seed: int, M: int | None = None, guess_c: float = 0.35, **tag) -> CapacityProblem:
    """Fig. 1 (right) and Fig. 6: MLP of width m, N in [d, m d] as the paper (alpha d^2 with m = alpha d),
    guess from m d = guess_c N ln N (larger by a factor ln N / ln M-ish when M is fixed: the guess only starts
    the search)."""
    high = max(d, m * d)
    guess = predicted_capacity(m * d, guess_c)
    if M is not None:
        guess *= 2.0
    return CapacityProblem("mlp", d, seed, low=d, high=high, guess=min(round(guess), high), m=m, M=M, tag=tag)


def plain_capacity(problem: CapacityProblem, lrs: Sequence[float], config: TrainConfig = TrainConfig(),
                   rtol: float = 0.02, stats: dict | None = None) -> int:
    """The same capacity by the plain loop: ``capacity.find_capacity`` (one N at a time), one learning rate at a
    time, each configuration trained alone by ``memory.train_linear_memory`` / ``train_mlp_memory`` (autograd,
    ``torch.optim``). The reference the batched engine is tested against, and the "before" of the benchmark.
    ``stats``, if given, counts the trainings in ``stats["runs"]``."""
    from .capacity import find_capacity

    E_all, U_all = memory_embeddings(problem.high, problem.high if problem.M is None else problem.M,
                                     problem.d, problem.seed)
    W1 = _first_layer(problem)

    def succeeds(n: int) -> bool:
        o = n if problem.M is None else problem.M
        E, U, targets = E_all[:n], U_all[:o], many_to_one_targets(n, o)  # (n, d), (o, d), (n,)
        for lr in lrs:  # in order, stopping at the first that stores all n
            cfg = replace(config, lr=lr)
            if stats is not None:
                stats["runs"] = stats.get("runs", 0) + 1
            res = (train_linear_memory(E, U, targets, cfg) if problem.kind == "linear"
                   else train_mlp_memory(E, U, targets, W1, cfg))
            if res.reached:
                return True
        return False

    return find_capacity(succeeds, problem.low, problem.high, problem.guess, rtol=rtol)[0]


__all__ = ["ADAM_BETAS", "ADAM_EPS", "BatchResult", "adam_update_", "CapacityProblem", "KINDS", "linear_problem", "many_to_one_targets", "memory_capacities",
           "mlp_init", "mlp_problem", "plain_capacity", "train_memories"]
