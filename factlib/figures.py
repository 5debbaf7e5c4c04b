"""The paper's figures as reproducible sweeps: each has a config per profile, a list of jobs and a job function.

``python -m factlib reproduce <figure>`` runs one; chapters call the same functions.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import platform
import time
from pathlib import Path

import torch

from . import __version__
from ._validate import check_choice, check_int
from .capacity import linear_memory_capacity
from .config import PROFILES, device as pick_device
from .dynamics import DynamicsConfig, train
from .memory import TrainConfig
from .sweeps import Figure, ResultStore, run_sweep

#: d values of Figure 1, powers of 2^(1/2) rounded as in the paper
FIG1_DIMS = (8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256)


def _fig1_left_jobs(config: dict) -> list[dict]:
    return [{"d": d, "seed": s, **config["train"]} for d in config["d"] for s in config["seeds"]]


def _fig1_left_job(job: dict, device: torch.device) -> dict:
    sweep = [TrainConfig(lr=lr, steps=job["steps"], patience=job["patience"]) for lr in job["lrs"]]
    N = linear_memory_capacity(job["d"], job["seed"], "train", sweep, device=device)
    return {"d": job["d"], "seed": job["seed"], "N": N}


#: our recipe for trained linear memories: full-batch Adam from W = 0, learning rates tried in this order
#: (N counts as stored if one reaches 99 %), early stop at the threshold or when progress stalls
LINEAR_RECIPE = {"lrs": [3.0, 1.0, 10.0], "steps": 1024, "patience": 128}


def _fig5_jobs(config: dict) -> list[dict]:
    """One training run per (schedule, d, method/seed): the exact-gradient run and a minibatch run per seed."""
    protocol = config["protocol"]
    dims = config.get("d")
    if dims is not None and protocol["model"] == "linear":
        raise ValueError("d does not apply to fig5-left: its embeddings are one-hot, d = vocab_size")
    runs = ([{"method": "population", "seed": 0}] if config["population"] else []) + \
        [{"method": "minibatch", "seed": s} for s in config["seeds"]]
    return [{**protocol, **({"d": d} if d is not None else {}), "schedule": schedule, **run}
            for schedule in config["schedules"] for d in (dims or [None]) for run in runs]


def _fig5_job(job: dict, device: torch.device) -> list[dict]:
    cfg = DynamicsConfig(**{k: v for k, v in job.items() if k != "method"})
    dtype = torch.float64 if cfg.model == "linear" else torch.float32
    curve = train(cfg, job["method"], device=device, dtype=dtype)
    extra = {"model": cfg.model, "method": job["method"], "schedule": cfg.schedule, "seed": cfg.seed}
    if cfg.model == "softmax":
        extra["d"] = cfg.embed_dim
    return curve.rows(**extra)


#: Figure 5 (chapter 6). Left: the paper's protocol (linear attention, one-hot embeddings, S=16, R=4, D=8,
#: n_noise=20, T=32, init 1e-5, lr 0.1, 2^13 steps, batch 1024) by exact population gradient and by
#: minibatches. Right: softmax attention with random unit-norm embeddings; our choice of d = 512 and lr
#: (the paper does not give them), quick profile shortened to 2^12 steps at twice the learning rate.
FIG5_LEFT = {"model": "linear"}
FIG5_RIGHT = {"model": "softmax", "d": 512, "lr": 2.0, "steps": 2**13, "batch_size": 1024, "eval_repeats": 16}

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
    "fig5-left": Figure(
        name="fig5-left",
        description="Figure 5 (left): total, relation-only and subject-only losses of the linear-attention model",
        configs={
            "quick": {"protocol": FIG5_LEFT, "seeds": [0], "population": True, "schedules": ["constant"]},
            "full": {"protocol": FIG5_LEFT, "seeds": [0, 1, 2, 3, 4], "population": True,
                     "schedules": ["constant", "cosine"]},
        },
        jobs=_fig5_jobs,
        run_job=_fig5_job,
    ),
    "fig5-right": Figure(
        name="fig5-right",
        description="Figure 5 (right): the same losses for softmax attention with random embeddings",
        configs={
            "quick": {"protocol": {**FIG5_RIGHT, "lr": 4.0, "steps": 2**12, "batch_size": 256, "eval_repeats": 8},
                      "seeds": [0], "population": False, "schedules": ["constant"]},
            "full": {"protocol": FIG5_RIGHT, "seeds": [0, 1, 2], "population": False, "schedules": ["constant"]},
        },
        jobs=_fig5_jobs,
        run_job=_fig5_job,
    ),
}


def reproduce(figure: str, profile: str = "quick", device: str = "auto", out: str | None = None,
              progress: bool = True, d: list[int] | None = None, seeds: int | None = None,
              executor: str = "inline", workers: int | None = None, scheduler: str | None = None) -> dict:
    """Run a figure's sweep and return ``{"figure", "profile", "rows", "provenance"}``; resumable via ``out``.

    ``d`` and ``seeds`` (a count) override the profile's values; ``executor``, ``workers`` and ``scheduler``
    choose where the jobs run (see ``factlib.sweeps.run_sweep``).
    Finished jobs are kept in ``<out>.jobs.jsonl`` while the sweep runs, so a killed run picks up where it
    stopped; the file is removed once ``out`` is written.
    """
    check_choice("figure", figure, FIGURES)
    check_choice("profile", profile, PROFILES)
    fig = FIGURES[figure]
    dev = pick_device(device)
    config = dict(fig.configs[profile])
    if d is not None:
        config["d"] = [check_int("d", v, 2, 4096) for v in d]
    if seeds is not None:
        config["seeds"] = list(range(check_int("seeds", seeds, 1, 1000)))
    store_path = Path(f"{out}.jobs.jsonl") if out else None
    store = ResultStore(store_path) if store_path else None
    start = time.perf_counter()
    results = run_sweep(fig.jobs(config), functools.partial(fig.run_job, device=dev), store, progress,
                        desc=figure, executor=executor, workers=workers, scheduler=scheduler)
    # a job returns one row, or a list of rows (a training curve)
    rows = [row for res in results for row in (res if isinstance(res, list) else [res])]
    result = {
        "figure": figure,
        "profile": profile,
        "rows": rows,
        "provenance": {
            "factlib_version": __version__,
            "torch_version": torch.__version__,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
            "config": config,
            "seeds": config.get("seeds"),
            "wall_time_s": round(time.perf_counter() - start, 2),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
        store_path.unlink(missing_ok=True)
    return result

# Chapter 5's figures (Figs. 4, 7-9: trained one-layer transformers) live with their training code.
from .scaling import SCALING_FIGURES  # noqa: E402

FIGURES.update(SCALING_FIGURES)
