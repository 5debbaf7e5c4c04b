"""The paper's figures as reproducible sweeps: each has a config per profile, a list of jobs and a job function.

``python -m factlib reproduce <figure>`` runs one; chapters call the same functions.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .capacity import linear_memory_capacity
from .memory import TrainConfig

#: d values of Figure 1, powers of 2^(1/2) rounded as in the paper
FIG1_DIMS = (8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256)


@dataclass(frozen=True)
class Figure:
    name: str
    description: str
    configs: dict[str, dict]                       # profile -> config
    jobs: Callable[[dict], list[dict]]             # config -> jobs
    run_job: Callable[[dict, torch.device], dict]  # (job, device) -> row


def _fig1_left_jobs(config: dict) -> list[dict]:
    return [{"d": d, "seed": s, **config["train"]} for d in config["d"] for s in config["seeds"]]


def _fig1_left_job(job: dict, device: torch.device) -> dict:
    sweep = [TrainConfig(lr=lr, steps=job["steps"], patience=job["patience"]) for lr in job["lrs"]]
    N = linear_memory_capacity(job["d"], job["seed"], "train", sweep, device=device)
    return {"d": job["d"], "seed": job["seed"], "N": N}


#: our recipe for trained linear memories: full-batch Adam from W = 0, learning rates tried in this order
#: (N counts as stored if one reaches 99 %), early stop at the threshold or when progress stalls
LINEAR_RECIPE = {"lrs": [3.0, 1.0, 10.0], "steps": 1024, "patience": 128}

FIGURES: dict[str, Figure] = {
    "fig1-left": Figure(
        name="fig1-left",
        description="Figure 1 (left): capacity N of a trained d x d linear memory, f*(x) = x, 99 % accuracy",
        configs={
            "quick": {"d": list(FIG1_DIMS[:7]), "seeds": [0, 1, 2], "train": LINEAR_RECIPE},
            "full": {"d": list(FIG1_DIMS), "seeds": [0, 1, 2, 3, 4], "train": {**LINEAR_RECIPE, "steps": 4096}},
        },
        jobs=_fig1_left_jobs,
        run_job=_fig1_left_job,
    ),
}
