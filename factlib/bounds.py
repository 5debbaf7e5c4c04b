"""Information-theoretic lower bounds and bits-per-parameter accounting (chapter 7).

The bounds (our reconstruction of the paper's Theorems 7-8 and Corollary 1; its exact constants may differ):

- counting (Theorem 7): a model family that recalls every one of the D^(S R) fact tables exactly must take at
  least D^(S R) parameter values, so P parameters of p bits each need P p >= S R log2 D (``table_bits``);
- Corollary 1: P >= S R log2 D / p (``min_parameters``);
- Theorem 8: a model that only reaches accuracy 1 - eps, or cross-entropy L (nats), still holds
  I(table; parameters) >= H(table) - S R [h2(eps) + eps log2(D - 1)] (``fano_bits``), or H(table) - S R L / ln 2
  (``loss_bits``), bits.

Measured side: ``quantize`` rounds a tensor to p bits (uniform, symmetric, per-tensor scale, 2^p levels) and
``min_bits`` finds the fewest bits that keep a model's recall; the ``bounds`` figure of ``python -m factlib
reproduce`` trains a linear memory, an MLP memory and a one-layer transformer and measures both.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from ._validate import check_choice, check_float, check_function, check_int
from .constructions import predicted_max_head_load, predicted_min_d, predicted_min_width
from .embeddings import memory_embeddings
from .memory import TrainConfig, mlp_forward, recall_accuracy, train_linear_memory, train_mlp_memory
from .models import parameter_count
from .searches import variant_task
from .sweeps import Figure, RowSpec
from .task import TaskConfig, all_pairs, prompts_for_pairs
from .train import _first_layer, linear_problem, mlp_problem
from .trainer import Protocol, Run, run_table, train_runs

#: the largest precision ``quantize`` and ``min_bits`` accept
MAX_BITS = 24
#: bits of one per-tensor scale (a float32 number stored beside the p-bit codes)
SCALE_BITS = 32


def _number(name: str, value, low=None, high=None, low_open: bool = False) -> float:
    """``check_float`` that also rejects booleans (True is not a precision or an accuracy)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return check_float(name, value, low, high, low_open)


def _sizes(S, R, D) -> tuple[int, int, int]:
    return check_int("S", S, 1), check_int("R", R, 1), check_int("D", D, 2)


# ---- bits ---------------------------------------------------------------------------------------------------------

def binary_entropy(eps: float) -> float:
    """h2(eps) = -eps log2 eps - (1 - eps) log2(1 - eps), in bits, with h2(0) = h2(1) = 0."""
    eps = _number("eps", eps, 0.0, 1.0)
    return -sum(x * math.log2(x) for x in (eps, 1.0 - eps) if x > 0)


def table_bits(S: int, R: int, D: int, distinct: bool = False) -> float:
    """H(table) for a uniformly random table (chapter 7, eq. "counting"): S R log2 D bits, or R log2(S!) when
    each relation's answers are a bijection (distinct answers, D = S)."""
    S, R, D = _sizes(S, R, D)
    if not isinstance(distinct, bool):
        raise ValueError(f"distinct must be True or False, got {distinct!r}")
    if distinct:
        if D != S:
            raise ValueError(f"distinct answers need D == S; got D={D}, S={S}")
        return R * math.lgamma(S + 1) / math.log(2)
    return S * R * math.log2(D)


def fano_bits(S: int, R: int, D: int, accuracy: float, distinct: bool = False) -> float:
    """Theorem 8 (reconstructed), accuracy form: bits any model reaching ``accuracy`` (uniform pairs) must hold,
    H(table) - S R [h2(eps) + eps log2(D - 1)] with eps = 1 - accuracy; 0 once eps >= 1 - 1/D (chance level).
    At accuracy 1 it is the counting bound ``table_bits``."""
    accuracy = _number("accuracy", accuracy, 0.0, 1.0)
    S, R, D = _sizes(S, R, D)
    eps = 1.0 - accuracy
    if eps >= 1.0 - 1.0 / D:
        return 0.0
    loss = S * R * (binary_entropy(eps) + eps * math.log2(D - 1))
    return max(0.0, table_bits(S, R, D, distinct) - loss)


def loss_bits(S: int, R: int, D: int, loss: float, distinct: bool = False) -> float:
    """Theorem 8 (reconstructed), loss form: H(table) - S R L / ln 2 bits for a model whose expected cross-entropy
    per prompt is ``loss`` = L nats (uniform pairs); 0 when L is that large."""
    loss = _number("loss", loss, 0.0)
    S, R, D = _sizes(S, R, D)
    return max(0.0, table_bits(S, R, D, distinct) - S * R * loss / math.log(2))


def min_parameters(S: int, R: int, D: int, p: float, accuracy: float = 1.0, distinct: bool = False) -> float:
    """Corollary 1 (reconstructed): parameters of ``p`` bits each that any model reaching ``accuracy`` needs,
    ``fano_bits / p`` (= S R log2 D / p for exact recall)."""
    p = _number("p", p, 0.0, float(MAX_BITS * 4), low_open=True)
    return fano_bits(S, R, D, accuracy, distinct) / p


MAP_KINDS = ("any", "injective", "balanced")


def map_bits(N: int, M: int, kind: str = "any") -> float:
    """log2 of the number of maps [N] -> [M] of a class (chapters 1-2 memories, chapter 7): "any" N log2 M;
    "injective" log2(M! / (M - N)!) (f*(x) = x of Figure 1 is one of them, M = N); "balanced": the maps whose
    output counts are those of f*(x) = floor(x M / N) (Figure 6), log2(N! / prod_y c_y!)."""
    N, M = check_int("N", N, 1), check_int("M", M, 1)
    check_choice("kind", kind, MAP_KINDS)
    if kind == "any":
        return N * math.log2(M)
    if kind == "injective":
        if N > M:
            raise ValueError(f"an injective map needs N <= M; got N={N}, M={M}")
        return (math.lgamma(M + 1) - math.lgamma(M - N + 1)) / math.log(2)
    counts = torch.bincount(torch.arange(N) * M // N, minlength=M).tolist()  # outputs of floor(x M / N)
    return (math.lgamma(N + 1) - sum(math.lgamma(c + 1) for c in counts)) / math.log(2)


def variant_bounds(variant: str, n: int, p: float, accuracy: float = 1.0, D: int = 8) -> dict:
    """What the bounds become for a task family of chapter 5 (``scaling.VARIANTS``) at scale n: the task's
    sizes, its table bits, the Fano bits at ``accuracy`` and the parameters needed at ``p`` bits each."""

    task = variant_task(variant, n, D)
    distinct = task.distinct_answers
    bits = fano_bits(task.S, task.R, task.D, accuracy, distinct)
    return {"variant": variant, "S": task.S, "R": task.R, "D": task.D, "facts": task.num_facts,
            "table_bits": table_bits(task.S, task.R, task.D, distinct), "fano_bits": bits,
            "min_parameters": bits / _number("p", p, 0.0, float(MAX_BITS * 4), low_open=True)}


# ---- the constructions' parameter counts ----------------------------------------------------------------------------

CONSTRUCTION_NAMES = ("attention_only", "attention_mlp")


#: the most tokens (S + R) ``head_loads`` (and so ``construction_parameters``) takes: its cost grows as (S + R)^2,
#: about 6 s at 4096
MAX_HEAD_TOKENS = 4096


def head_loads(S: int, R: int) -> list[int]:
    """The largest head load of ``constructions.assign_heads`` for every H = 0 .. S + R (index H; entry 0 unused),
    by arithmetic instead of building the split: relations on H_r heads, subjects on H - H_r, H_r minimising the
    larger of ceil(R / H_r) and ceil(S / (H - H_r)); one head holds everything. S + R <= ``MAX_HEAD_TOKENS``."""
    S, R = check_int("S", S, 1), check_int("R", R, 1)
    if S + R > MAX_HEAD_TOKENS:
        raise ValueError(f"S + R must be <= {MAX_HEAD_TOKENS} (the head loads take (S + R)^2 steps); got {S} + {R}")
    loads = [S + R, S + R]
    for H in range(2, S + R + 1):
        loads.append(min(max(-(-R // h), -(-S // (H - h))) for h in range(1, H)))
    return loads


def _fewest_heads(task, d: int, loads: list[int]) -> int | None:
    """Fewest heads H >= 2 whose load meets the selection condition of chapter 4 at width d, or None."""

    for H in range(2, len(loads)):
        if loads[H] <= predicted_max_head_load(task, d, H):
            return H
    return None


def construction_parameters(S: int, R: int, D: int, construction: str, d_max: int = 4096) -> dict:
    """Predicted size of a chapter 4 construction for a table (S, R, D), at the width d (a grid of about 5 %
    steps up to ``d_max``) that makes its total parameter count smallest.

    Attention only: d at least ``predicted_min_d`` (output condition), the fewest heads meeting the selection
    condition, d_h = the head load, m = 0. Attention + MLP: the same heads, m = ``predicted_min_width`` (the
    multi-input memory's threshold estimate, (k + 2) neurons per feature).
    Counts are the paper's 4 H d_h d + 2 m d. Returns {"d", "H", "d_h", "m", "attention", "mlp", "params"};
    params is inf when no d up to ``d_max`` works.
    """

    S, R, D = _sizes(S, R, D)
    check_choice("construction", construction, CONSTRUCTION_NAMES)
    d_max = check_int("d_max", d_max, 8)
    task = TaskConfig(S=S, R=R, D=D)
    start = max(8, math.ceil(predicted_min_d(task))) if construction == "attention_only" else 8
    best = {"d": None, "H": None, "d_h": None, "m": None, "attention": math.inf, "mlp": math.inf,
            "params": math.inf}
    loads = head_loads(S, R)
    d = start
    while d <= d_max:
        H = _fewest_heads(task, d, loads)
        if H is not None:
            d_h = loads[H]
            m = predicted_min_width(task, d) if construction == "attention_mlp" else 0
            attention, mlp = 4 * H * d_h * d, 2 * m * d
            if math.isfinite(m) and attention + mlp < best["params"]:
                best = {"d": d, "H": H, "d_h": d_h, "m": m, "attention": attention, "mlp": mlp,
                        "params": attention + mlp}
        d = max(d + 1, round(d * 1.05))
    return best


# ---- quantisation --------------------------------------------------------------------------------------------------

def quantize(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """Round every entry to one of 2^bits levels: uniform, symmetric, one scale per tensor (chapter 7).

    With a = max |w| and step delta = 2 a / 2^bits, the levels are (k + 1/2) delta for the integers
    k in [-2^(bits-1), 2^(bits-1) - 1] (a "mid-rise" quantiser: 2^bits codes, no level at zero, the extreme
    levels a - delta/2 from the ends of [-a, a]); each entry goes to the level of its cell, so the error is at most
    delta / 2 = a / 2^bits. bits = 1 keeps only the signs, times a / 2. Returns a tensor of the input's dtype.
    """
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise ValueError(f"tensor must be a floating-point torch.Tensor, got {type(tensor).__name__}")
    bits = check_int("bits", bits, 1, MAX_BITS)
    w = tensor.detach().double()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("tensor must hold finite values only")
    amax = w.abs().max() if w.numel() else torch.tensor(0.0, dtype=torch.float64)
    if amax == 0:
        return torch.zeros_like(tensor)
    delta = 2 * amax / 2**bits
    half = 2 ** (bits - 1)
    k = torch.floor(w / delta).clamp(-half, half - 1)
    return ((k + 0.5) * delta).to(tensor.dtype)


def min_bits(accuracy_at: Callable[[int], float], threshold: float = 0.99, max_bits: int = 16
             ) -> tuple[int | None, list[float]]:
    """The fewest bits p in [1, max_bits] from which the quantised model's accuracy stays >= ``threshold``
    for every precision up to ``max_bits`` (accuracy need not be monotone in p: one lucky rounding at a low p
    does not count). ``accuracy_at(p)`` returns the accuracy at p bits. Returns (p_min or None, the accuracy
    at each p = 1 .. max_bits)."""
    check_function("accuracy_at", accuracy_at, "a function p -> accuracy")
    threshold = _number("threshold", threshold, 0.0, 1.0)
    max_bits = check_int("max_bits", max_bits, 1, MAX_BITS)
    curve = [float(accuracy_at(p)) for p in range(1, max_bits + 1)]
    p_min = None
    for p in range(max_bits, 0, -1):
        if curve[p - 1] < threshold:
            break
        p_min = p
    return p_min, curve


def budget_bits(params: int, p: int, tensors: int = 0) -> int:
    """Bits a quantised model occupies: ``params`` codes of ``p`` bits and one float32 scale per tensor."""
    return check_int("params", params, 1) * check_int("p", p, 1, MAX_BITS) + SCALE_BITS * check_int("tensors", tensors, 0)


# ---- measured bits per parameter: the jobs of ``reproduce bounds`` --------------------------------------------------

MEMORY_RECIPE = {"linear": {"lr": 3.0, "steps": 1024}, "mlp": {"lr": 3e-2, "steps": 4096}}


def _memory_job(job: dict) -> list[dict]:
    """Train a memory (the draws of the capacity searches of chapters 1-2) until it recalls every pair or its
    step budget ends, then quantise it; bits = log2 of the number of injective maps (f*(x) = x)."""

    kind, d, N, seed = job["kind"], job["d"], job["N"], job["seed"]
    problem = linear_problem(d, seed) if kind == "linear" else mlp_problem(d, job["m"], seed)
    E, U = memory_embeddings(problem.high, problem.high, d, problem.seed)  # (high, d) each, as the search
    E, U, targets = E[:N], U[:N], torch.arange(N)  # (N, d), (N, d), (N,)
    config = TrainConfig(lr=job["lr"], steps=job["steps"], threshold=1.0, patience=None)
    if kind == "linear":
        res = train_linear_memory(E, U, targets, config)
        weights = {"W": res.W}

        def accuracy(ws):
            return recall_accuracy(ws["W"], E, U, targets)
    else:
        res = train_mlp_memory(E, U, targets, _first_layer(problem), config)
        weights = {"W1": res.W1, "b1": res.b1, "W2": res.W2}

        def accuracy(ws):
            logits = mlp_forward(E, ws["W1"], ws["b1"], ws["W2"]) @ U.T  # (N, N)
            return (logits.argmax(dim=1) == targets).float().mean().item()

    params = sum(w.numel() for w in weights.values())
    p_min, curve = min_bits(lambda p: accuracy({k: quantize(w, p) for k, w in weights.items()}),
                            job["threshold"], job["max_bits"])
    bits = map_bits(N, N, "injective")
    row = {"model": kind, "d": d, "m": job.get("m", 0), "N": N, "seed": seed, "params": params,
           "tensors": len(weights), "bits": bits, "accuracy": res.accuracy, "steps": res.steps}
    return [_accounting(row, p_min, curve, job["threshold"])]


def _accounting(row: dict, p_min: int | None, curve: list[float], threshold: float) -> dict:
    """Add p_min, the accuracy curve, bits per parameter and the fraction of the p_min budget to a row."""
    row = {**row, "threshold": threshold, "p_min": p_min, "curve": curve,
           "bits_per_param": row["bits"] / row["params"]}
    row["budget_fraction"] = None if p_min is None else row["bits"] / budget_bits(row["params"], p_min, row["tensors"])
    return row


def transformer_recall(model, task, table: torch.Tensor, repeats: int = 16, seed: int = 0) -> tuple[float, float]:
    """(accuracy, cross-entropy in nats) of a one-layer transformer over every pair, ``repeats`` prompts each
    (the same prompts for every call with the same seed), pairs weighted uniformly."""

    s, r = all_pairs(task)  # (S R,), (S R,)
    s, r = s.repeat(repeats), r.repeat(repeats)  # (S R repeats,)
    tokens = prompts_for_pairs(task, s, r, seed)  # (B, T)
    answers = table.cpu()[s, r]  # (B,)
    with torch.no_grad():
        logits = model(tokens).double()  # (B, R D)
    accuracy = (logits.argmax(dim=1) == answers).double().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, answers).item()
    return accuracy, loss


TRANSFORMER_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "W1", "b1", "W2")


def quantize_model(model, bits: int):
    """A copy of a ``OneLayerTransformer`` with every trained tensor quantised to ``bits`` (frozen embeddings
    untouched: they are drawn from a seed, not learned)."""
    q = copy.deepcopy(model)
    with torch.no_grad():
        for name in TRANSFORMER_WEIGHTS:
            weight = getattr(q, name)
            if weight.numel():
                weight.copy_(quantize(weight, bits))
    return q


def _transformer_job(job: dict) -> list[dict]:
    """One transformer (chapter 5's trainer) trained on one table, stopped early at each target accuracy in turn
    (every run repeats the same trajectory and stops later); each stopped model is measured and quantised. p_min
    keeps the population accuracy within ``tolerance`` of the unquantised model's (and >= ``threshold`` for the
    rung whose target is that threshold)."""

    task = TaskConfig(S=job["S"], R=job["R"], D=job["D"])
    run = Run(task, job["d"], job["H"], job["d_h"], job["m"], job["lr"], job["seed"])
    table = run_table(run)  # (S, R)
    rows = []
    for target in job["targets"]:
        protocol = Protocol(**{**job["protocol"], "threshold": target})
        (outcome,), (model,) = train_runs([run], protocol, keep_models=True)
        accuracy, loss = transformer_recall(model, task, table, job["repeats"])
        need = accuracy - job["tolerance"] if target != job["threshold"] else job["threshold"]
        p_min, curve = min_bits(lambda p: transformer_recall(quantize_model(model, p), task, table,
                                                             job["repeats"])[0], need, job["max_bits"])
        counted = parameter_count(run.model_config())["total"]
        row = {"model": "transformer", "S": task.S, "R": task.R, "D": task.D, "d": run.d, "H": run.H,
               "d_h": run.d_h, "m": run.m, "seed": run.seed, "lr": run.lr, "target": target,
               "reached": outcome.reached, "steps": outcome.steps, "accuracy": accuracy, "loss": loss,
               "params": counted + run.m, "params_paper": counted, "tensors": len(TRANSFORMER_WEIGHTS),
               "bits": table_bits(task.S, task.R, task.D), "fano_bits": fano_bits(task.S, task.R, task.D, accuracy),
               "loss_bits": loss_bits(task.S, task.R, task.D, loss)}
        rows.append(_accounting(row, p_min, curve, need))
    return rows


def _bounds_jobs(config: dict) -> list[dict]:
    """One job per memory and one per transformer ladder."""
    common = {"threshold": config["threshold"], "max_bits": config["max_bits"]}
    jobs = [{"kind": "linear", **MEMORY_RECIPE["linear"], **common, **spec} for spec in config["linear"]]
    jobs += [{"kind": "mlp", **MEMORY_RECIPE["mlp"], **common, **spec} for spec in config["mlp"]]
    jobs += [{"kind": "transformer", "targets": config["targets"], "protocol": config["protocol"],
              "repeats": config["repeats"], "tolerance": config["tolerance"], **common, **spec}
             for spec in config["transformer"]]
    return jobs


def _bounds_job(job: dict, device: torch.device) -> list[dict]:
    # small models: the CPU is as fast, and the measured numbers then do not depend on the machine
    torch.set_num_threads(1)
    return _transformer_job(job) if job["kind"] == "transformer" else _memory_job(job)


def _bounds_rows(job: dict) -> RowSpec:
    """The rows of a ``bounds`` job: one for a memory, one per target accuracy for a transformer ladder, each
    repeating the job's sizes, seed and the bits its table holds."""
    unit = ("number", 0.0, 1.0)
    measured = {"params": ("int", 1, None), "tensors": ("int", 1, None), "accuracy": unit, "steps": ("int", 0, None),
                "p_min": ("int?", 1, job["max_bits"]), "curve": ("numbers", 0.0, 1.0),
                "bits_per_param": ("number", 0.0, None), "budget_fraction": ("number?", 0.0, None)}
    if job["kind"] != "transformer":
        fixed = {"model": job["kind"], "d": job["d"], "m": job.get("m", 0), "N": job["N"], "seed": job["seed"],
                 "threshold": job["threshold"], "bits": map_bits(job["N"], job["N"], "injective")}
        return RowSpec([fixed], measured)
    sizes = {k: job[k] for k in ("S", "R", "D", "d", "H", "d_h", "m", "seed", "lr")}
    bits = table_bits(job["S"], job["R"], job["D"])
    return RowSpec([{"model": "transformer", **sizes, "target": target, "bits": bits} for target in job["targets"]],
                   {**measured, "reached": "bool", "loss": ("number", 0.0, None), "params_paper": ("int", 1, None),
                    "fano_bits": ("number", 0.0, bits), "loss_bits": ("number", 0.0, bits), "threshold": unit})


#: transformer protocol of the ladder: chapter 5's quick protocol (batch 256, Adam), evaluated every 16 steps so
#: that a run stops close to its target, with no early failure rule (the targets are reachable), on unit-norm
#: embeddings (with N(0, 1/d) ones this model's capacity at d = 16 is about the ladder's 121 facts)
LADDER_PROTOCOL = {"steps": 4096, "batch_size": 256, "eval_every": 16, "eval_size": 1024, "patience": 4096,
                   "foresight": 0.0, "embeddings": "unit"}
BOUNDS_QUICK = {
    # N: the capacities of seed 0 in the stored full profiles (fig1-left d = 32; fig1-right d = 16, m = 32 less
    # 10 %: at its capacity the recipe stops short of 99 %)
    "linear": [{"d": 32, "N": 192, "seed": 0}],
    "mlp": [{"d": 16, "m": 32, "N": 256, "seed": 0}],
    # chapter 5's quick capacity size d = 16, alpha = beta = 1 (d_h = 2, m = 16), just below its 144 facts
    "transformer": [{"S": 11, "R": 11, "D": 8, "d": 16, "H": 8, "d_h": 2, "m": 16, "lr": 1e-2, "seed": 0}],
    "targets": [0.9, 0.95, 0.99, 1.0], "threshold": 0.99, "tolerance": 0.005, "max_bits": 16, "repeats": 16,
    "protocol": LADDER_PROTOCOL,
    "note": "quick: one linear memory, one MLP memory, one transformer ladder; CPU, one thread",
}
BOUNDS_FULL = {
    **BOUNDS_QUICK,
    "linear": [{"d": 32, "N": 192, "seed": 0}, {"d": 64, "N": 593, "seed": 0}],
    "mlp": [{"d": 16, "m": 32, "N": 256, "seed": 0}, {"d": 22, "m": 44, "N": 450, "seed": 0}],
    "transformer": BOUNDS_QUICK["transformer"] + [
        {"S": 16, "R": 16, "D": 8, "d": 32, "H": 8, "d_h": 4, "m": 32, "lr": 1e-2, "seed": 0}],
    "note": "full: two sizes of each model",
}

BOUNDS_FIGURE = Figure(
    name="bounds",
    description="Chapter 7: fewest bits per parameter that keep recall (memories, a transformer ladder)",
    configs={"quick": BOUNDS_QUICK, "full": BOUNDS_FULL},
    jobs=_bounds_jobs,
    run_job=_bounds_job,
    options=(),  # its sizes are listed in its config: neither --d nor --seeds applies
    rows=_bounds_rows,
)
