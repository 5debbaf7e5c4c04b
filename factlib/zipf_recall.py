"""Zipf-distributed facts in the factual recall task: which facts a fixed-size trained transformer keeps (chapter 8).

The subjects of the task of chapter 3 are drawn from p(s) proportional to (s + 1)^(-exponent)
(``TaskConfig(subjects="zipf")``), so the fact (s, r) has probability p(s) / R. A one-layer transformer
(``models.OneLayerTransformer``, chapter 4) is trained by Adam on fresh samples of the task, one model at a time
(``train_transformer``: the batched trainer of chapter 5 takes uniform subjects only), then judged on every
pair: the probability mass of the facts it answers, sum_{s,r} p(s, r) acc(s, r), beside the fraction of the
facts it answers, and the mass of the same number of most frequent facts (``top_mass``).
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from ._validate import check_float, check_int
from .config import generator
from .models import OneLayerTransformer, parameter_count
from .searches import head_sizes
from .task import TaskConfig, evaluate_population, fact_table, pair_probabilities, sample_batch
from .batched import init_weights
from .trainer import Run


def train_transformer(task: TaskConfig, d: int, H: int, d_h: int, m: int, lr: float, steps: int,
                      batch_size: int, seed: int) -> tuple[OneLayerTransformer, torch.Tensor]:
    """A one-layer transformer trained by Adam for ``steps`` steps on fresh batches of ``task`` (any subject
    distribution). Embeddings, fact table and initial weights are those of chapter 5's ``trainer.Run`` with the
    same sizes and seed (the initialisation depends on the shapes and the seed only); the batches come from
    ``task.sample_batch`` with the generator of seed 2^33 + seed. Returns (model, fact table (S, R))."""
    steps = check_int("steps", steps, 1, 2**20)
    batch_size = check_int("batch_size", batch_size, 1, 2**16)
    run = Run(replace(task, subjects="uniform"), d, H, d_h, m, lr, seed)  # validates the sizes and lr
    model = OneLayerTransformer(run.model_config())
    with torch.no_grad():
        for name, value in init_weights(run).items():
            getattr(model, name).copy_(value.float())
    table = fact_table(task, 2**31 + seed)  # (S, R): the table chapter 5's trainer uses for this seed
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = generator(2**33 + seed)
    for _ in range(steps):
        tokens, answers, _, _ = sample_batch(task, table, batch_size, gen)  # (B, T), (B,)
        loss = F.cross_entropy(model(tokens), answers)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, table


def top_mass(task: TaskConfig, count: float) -> float:
    """Probability mass of the ``count`` most frequent facts (linear in a fractional last fact): what a model
    that answers that many facts could cover at most."""
    count = check_float("count", count, 0.0, float(task.num_facts))
    probs = torch.sort(pair_probabilities(task).reshape(-1), descending=True).values  # (S R,)
    whole = int(count)
    mass = float(probs[:whole].sum())
    return mass + (float(probs[whole]) * (count - whole) if whole < len(probs) else 0.0)


def recall_mass(model, task: TaskConfig, table: torch.Tensor, repeats: int = 8, seed: int = 0) -> dict:
    """{"mass", "fraction", "top_mass"}: the probability mass of the answered facts (``evaluate_population``'s
    accuracy, every pair weighted by p(s, r)), the fraction of the S R facts answered (each pair weighted
    equally) and the mass of that many most frequent facts."""
    result = evaluate_population(model, task, table, repeats=check_int("repeats", repeats, 1, 1024), seed=seed)
    fraction = float(result.pair_accuracy.mean())
    return {"mass": result.accuracy, "fraction": fraction, "top_mass": top_mass(task, fraction * task.num_facts)}


# ---- jobs of ``reproduce zipf-recall`` -----------------------------------------------------------------------------

def recall_jobs(config: dict) -> list[dict]:
    """One job per (subject distribution, d, seed)."""
    return [{"task": config["task"] | {"subjects": subjects}, "d": d, "H": config["H"], "alpha_beta": config["alpha_beta"],
             "lr": config["lr"], "steps": config["steps"], "batch_size": config["batch_size"],
             "repeats": config["repeats"], "seed": seed}
            for subjects in ("zipf", "uniform") for d in config["d"] for seed in config["seeds"]]


def recall_job(job: dict, device: torch.device) -> dict:
    """Train one model and measure the mass and the fraction of the facts it answers."""
    torch.set_num_threads(1)  # small models: one thread is as fast, and the numbers do not depend on the machine
    task = TaskConfig(**job["task"])
    d_h, m = head_sizes(job["d"], *job["alpha_beta"], job["H"])
    model, table = train_transformer(task, job["d"], job["H"], d_h, m, job["lr"], job["steps"], job["batch_size"],
                                     job["seed"])
    params = parameter_count(model.cfg)["total"]
    return {"subjects": task.subjects, "exponent": task.zipf_exponent, "d": job["d"], "H": job["H"], "d_h": d_h,
            "m": m, "seed": job["seed"], "params": params, "facts": task.num_facts,
            **recall_mass(model, task, table, job["repeats"], seed=2**20 + job["seed"])}
