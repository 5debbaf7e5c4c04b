"""Chapter 8's figures as reproducible sweeps: scaling laws under Zipf data, what optimisers store, margins over
training, the sharp capacity constant and Zipf facts in the factual recall task.

Registered in ``factlib.figures.FIGURES``; ``python -m factlib reproduce scaling-laws`` runs one. Each job function
lives in the module of its idea, so a figure's stored jobs are recomputed only when code they run changes. Each figure
states here the rows its jobs must produce (``Figure.rows``), so that a stored result that does not fit its job is
recomputed; being outside the job modules, the checks are not part of a chapter 8 job's code hash.
"""
from __future__ import annotations

import math
from dataclasses import replace

from .heavy_tails import scaling_job, scaling_jobs
from .memory_optimizers import margins_job, margins_jobs, weights_job, weights_jobs
from .models import parameter_count
from .sharp_capacity import sharp_job, sharp_jobs
from .sweeps import Figure, RowParts, RowSpec
from .task import TaskConfig
from .trainer import Run
from .zipf_recall import model_sizes, recall_job, recall_jobs

ALPHAS = [1.5, 2.0, 3.0]

#: N tokens, M answers, the threshold scheme keeps d / 4 tokens; the n sweep at a large d, the d sweep at a large n
SCALING_QUICK = {"N": 4096, "M": 4, "keep_per_d": 0.25, "alpha": ALPHAS, "seeds": [0, 1, 2],
                 "n_sweep": {"d": 1024, "n": [64, 256, 1024, 4096, 16384]},
                 "d_sweep": {"n": 16384, "d": [16, 32, 64, 128, 256, 512, 1024]}}
SCALING_FULL = {**SCALING_QUICK, "N": 8192, "seeds": list(range(8)),
                "n_sweep": {"d": 2048, "n": [64, 256, 1024, 4096, 16384, 65536]},
                "d_sweep": {"n": 65536, "d": [16, 32, 64, 128, 256, 512, 1024, 2048]}}

#: what each optimiser writes: one large-batch step, SGD with batch one and a large step, full-batch Adam with a
#: small step, full-batch gradient descent; orthonormal embeddings (the d >> N limit) and random ones with d > N
OPTIMIZERS = {"one step": {"method": "one-step", "lr": 1.0},
              "SGD, batch one": {"method": "sgd", "lr": 20.0},
              "Adam": {"method": "adam", "lr": 1e-2, "steps": 200},
              "gradient descent": {"method": "gd", "lr": 10.0, "steps": 200}}
WEIGHTS_QUICK = {"N": 128, "M": 4, "d": 256, "alpha": 1.5, "n": 1024, "methods": OPTIMIZERS,
                 "embeddings": ["orthonormal", "random"], "seeds": [0, 1, 2]}
WEIGHTS_FULL = {**WEIGHTS_QUICK, "seeds": list(range(10))}

#: two tokens with overlap rho and frequencies (0.9, 0.1); Zipf problems with correlated embeddings (N > d)
#: that can be stored ("separable", N < 2 d) and that cannot ("under")
MARGINS_QUICK = {"two_token": {"rho": [0.0, 0.5, 0.9, 0.99], "p1": 0.9, "lr": [3.0, 30.0], "steps": 400},
                 "separable": {"N": 12, "M": 3, "d": 8, "alpha": 1.5, "steps": 3000, "lr": [1.0, 3.0, 10.0, 30.0, 100.0],
                               "seeds": [0, 1, 2]},
                 "under": {"N": 64, "M": 4, "d": 8, "alpha": 1.5, "steps": 3000, "lr": [1.0, 10.0, 100.0],
                           "seeds": [0, 1, 2]}}
MARGINS_FULL = {**MARGINS_QUICK,
                "separable": {**MARGINS_QUICK["separable"], "steps": 10000, "seeds": list(range(10))},
                "under": {**MARGINS_QUICK["under"], "steps": 10000, "seeds": list(range(10))}}

#: capacity under argmax (kappa 0) and a margin kappa = 1; gradient descent: step 1 on the summed loss, 1000 steps
SHARP_GD = {"lr": 1.0, "steps": 1000}
SHARP_QUICK = {"seeds": [0, 1, 2], "gd": SHARP_GD, "series": [
    {"learner": "hebbian", "kappas": [0.0, 1.0], "d": [8, 11, 16, 22, 32, 45, 64, 90, 128]},
    {"learner": "gd", "kappas": [0.0, 1.0], "d": [8, 16, 32]},
    {"learner": "optimal", "kappas": [1.0], "d": [8, 16, 22]},
    {"learner": "optimal", "kappas": [0.0], "d": [8]}]}
SHARP_FULL = {"seeds": [0, 1, 2, 3, 4], "gd": SHARP_GD, "series": [
    {"learner": "hebbian", "kappas": [0.0, 1.0], "d": [8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256]},
    {"learner": "gd", "kappas": [0.0, 1.0], "d": [8, 11, 16, 22, 32, 45, 64]},
    {"learner": "optimal", "kappas": [1.0], "d": [8, 11, 16, 22, 32, 45]},
    {"learner": "optimal", "kappas": [0.0], "d": [8, 11, 16]}]}

#: S = 64 subjects with Zipf exponent 1 (or uniform), R = 4, D = 8, prompts of T = 16; models with H = 8 heads,
#: d_h = d / 8 and m = d (alpha = beta = 1 of chapter 5), Adam at 1e-2, batch 256
RECALL_TASK = {"S": 64, "R": 4, "D": 8, "T": 16, "zipf_exponent": 1.0}
RECALL_QUICK = {"task": RECALL_TASK, "H": 8, "alpha_beta": [1, 1], "d": [8, 16, 22], "seeds": [0], "lr": 1e-2,
                "steps": 1200, "batch_size": 256, "repeats": 8}
RECALL_FULL = {**RECALL_QUICK, "d": [8, 11, 16, 22], "seeds": [0, 1, 2], "steps": 3000}


# ---- the rows each job must produce (``factlib.sweeps.RowSpec``) --------------------------------------------------

#: a probability mass summed in float64 (a loss, an accuracy weighted by p): the p(z) themselves sum to 1 only up to
#: rounding (1 + 7e-16 for Zipf(3) over 2998 tokens), so a mass may pass 1 by a few ulps
MASS = ("number", 0.0, 1.0 + 1e-9)
UNIT = ("number", 0.0, 1.0)


def _scaling_rows(job: dict) -> RowSpec:
    """One row per seed, repeating the job's point and the tokens it keeps; the losses are masses."""
    keep = max(1, int(job["keep_per_d"] * job["d"]))
    fixed = [{"alpha": job["alpha"], "sweep": job["sweep"], "n": job["n"], "d": job["d"], "seed": seed, "keep": keep}
             for seed in job["seeds"]]
    return RowSpec(fixed, {"seen_tokens": ("int", 0, min(job["N"], job["n"])), "unseen": MASS, "counts": MASS,
                           "seen": MASS, "threshold": MASS})


def _weights_rows(job: dict) -> RowParts:
    """Per method, in order: one row per token (its p, count, learned weight, recalled or not), then its loss."""
    run = {"embeddings": job["embeddings"], "seed": job["seed"]}
    parts = []
    for method in job["methods"]:
        parts.append(RowSpec([{**run, "method": method, "token": z} for z in range(job["N"])],
                             {"p": UNIT, "count": ("int", 0, job["n"]), "q": "number", "recalled": "bool"}))
        parts.append(RowSpec([{**run, "method": method, "token": None}], {"loss": MASS}))
    return RowParts(tuple(parts))


def _margins_rows(job: dict) -> RowParts:
    """One row repeating the job: a two-token job's margins at every step, or a recall job's accuracy curve (pairs
    (step, accuracy), thinned) with its best, final and first full recall."""
    steps = job["steps"]
    if job["kind"] == "two-token":
        return RowParts((RowSpec([dict(job)], {}),), {"margins": (steps + 1, ["number", "number"])}, single=True)
    step = ("int", 0, steps)
    return RowParts((RowSpec([dict(job)], {"first_full": ("int?", 0, steps), "best": MASS, "best_step": step,
                                              "final": MASS}),),
                       {"curve": (None, [step, MASS])}, single=True)


def _sharp_rows(job: dict) -> RowSpec:
    """One row per kappa: N searched in [2, d^2 / 2] (1 when even 2 fails, as ``learner_capacity`` searches), and
    N ln N / d^2 (0 below 2)."""
    d = job["d"]
    high = max(2, d * d // 2)
    fixed = [{"learner": job["learner"], "d": d, "seed": job["seed"], "kappa": kappa} for kappa in job["kappas"]]
    return RowSpec(fixed, {"N": ("int", 1, high), "constant": ("number", 0.0, high * math.log(high) / d ** 2)})


def _recall_rows(job: dict) -> RowParts:
    """One row repeating the job's task and model sizes (its parameter count included); masses and a fraction."""
    task = TaskConfig(**job["task"])
    d_h, m = model_sizes(job)
    run = Run(replace(task, subjects="uniform"), job["d"], job["H"], d_h, m, job["lr"], job["seed"])
    fixed = {"subjects": task.subjects, "exponent": task.zipf_exponent, "d": job["d"], "H": job["H"], "d_h": d_h,
             "m": m, "seed": job["seed"], "params": parameter_count(run.model_config())["total"],
             "facts": task.num_facts}
    return RowParts((RowSpec([fixed], {"mass": MASS, "fraction": UNIT, "top_mass": MASS}),), single=True)


HEAVY_TAIL_FIGURES: dict[str, Figure] = {fig.name: fig for fig in [
    Figure(name="scaling-laws",
           description="Chapter 8: loss of the memory schemes against n and d under Zipf data, alpha in {1.5, 2, 3}",
           configs={"quick": SCALING_QUICK, "full": SCALING_FULL}, jobs=scaling_jobs, run_job=scaling_job,
           rows=_scaling_rows),
    Figure(name="optimizer-weights",
           description="Chapter 8: the weights q(z) one step, SGD with batch one, Adam and GD write, against p(z)",
           configs={"quick": WEIGHTS_QUICK, "full": WEIGHTS_FULL}, jobs=weights_jobs, run_job=weights_job,
           dtype="float64", rows=_weights_rows),
    Figure(name="margins",
           description="Chapter 8: margins over training (orthogonal / correlated, imbalanced) and recall vs step size",
           configs={"quick": MARGINS_QUICK, "full": MARGINS_FULL}, jobs=margins_jobs, run_job=margins_job,
           dtype="float64", rows=_margins_rows),
    Figure(name="sharp-capacity",
           description="Chapter 8: capacity N ln N / d^2 of optimal, trained and Hebbian memories, argmax and margin",
           configs={"quick": SHARP_QUICK, "full": SHARP_FULL}, jobs=sharp_jobs, run_job=sharp_job, dtype="float64",
           rows=_sharp_rows),
    Figure(name="zipf-recall",
           description="Chapter 8: mass of Zipf-distributed facts a trained one-layer transformer answers, vs uniform",
           configs={"quick": RECALL_QUICK, "full": RECALL_FULL}, jobs=recall_jobs, run_job=recall_job,
           rows=_recall_rows),
]}
