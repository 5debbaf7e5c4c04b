"""Chapter 8's figures as reproducible sweeps: scaling laws under Zipf data, what optimisers store, margins over
training, the sharp capacity constant and Zipf facts in the factual recall task.

Registered in ``factlib.figures.FIGURES``; ``python -m factlib reproduce scaling-laws`` runs one. Each job function
lives in the module of its idea, so a figure's stored jobs are recomputed only when code they run changes.
"""
from __future__ import annotations

from .heavy_tails import scaling_job, scaling_jobs
from .memory_optimizers import margins_job, margins_jobs, weights_job, weights_jobs
from .sharp_capacity import sharp_job, sharp_jobs
from .sweeps import Figure
from .zipf_recall import recall_job, recall_jobs

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

HEAVY_TAIL_FIGURES: dict[str, Figure] = {fig.name: fig for fig in [
    Figure(name="scaling-laws",
           description="Chapter 8: loss of the memory schemes against n and d under Zipf data, alpha in {1.5, 2, 3}",
           configs={"quick": SCALING_QUICK, "full": SCALING_FULL}, jobs=scaling_jobs, run_job=scaling_job),
    Figure(name="optimizer-weights",
           description="Chapter 8: the weights q(z) one step, SGD with batch one, Adam and GD write, against p(z)",
           configs={"quick": WEIGHTS_QUICK, "full": WEIGHTS_FULL}, jobs=weights_jobs, run_job=weights_job,
           dtype="float64"),
    Figure(name="margins",
           description="Chapter 8: margins over training (orthogonal / correlated, imbalanced) and recall vs step size",
           configs={"quick": MARGINS_QUICK, "full": MARGINS_FULL}, jobs=margins_jobs, run_job=margins_job,
           dtype="float64"),
    Figure(name="sharp-capacity",
           description="Chapter 8: capacity N ln N / d^2 of optimal, trained and Hebbian memories, argmax and margin",
           configs={"quick": SHARP_QUICK, "full": SHARP_FULL}, jobs=sharp_jobs, run_job=sharp_job, dtype="float64"),
    Figure(name="zipf-recall",
           description="Chapter 8: mass of Zipf-distributed facts a trained one-layer transformer answers, vs uniform",
           configs={"quick": RECALL_QUICK, "full": RECALL_FULL}, jobs=recall_jobs, run_job=recall_job),
]}
