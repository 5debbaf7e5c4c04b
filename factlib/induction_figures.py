"""Chapter 9's figures as reproducible sweeps (``python -m factlib reproduce <figure>``), merged into
``factlib.figures.FIGURES``:

- ``induction-layers``: in-context accuracy of one- and two-layer transformers against training steps, and the
  attention maps of the trained models on one sequence;
- ``induction-probes``: the memory-recall probes of W_OV^2, W_KQ^2, W_KQ^1 while the three are trained jointly
  from zero, and while each is trained alone with the other two held at the hand-built memories;
- ``induction-global``: on the noisy task, the probabilities of the global (noise) token and of the in-context
  output over training, then the effect of truncating the feed-forward layer to rank r.
"""
from __future__ import annotations

import torch

from .bigram import BigramTask, noise_token, output_tokens, sample_batch, shakespeare_bigrams, triggers
from .config import generator
from .induction import (InductionConfig, InductionTransformer, TrainConfig, batch_to, context_vs_global,
                        memory_probes, set_induction_head, train, truncate_ffn)
from .sweeps import Figure

#: the hand-built memories' scales where a probe run holds them fixed (inverse temperatures, output scale)
HELD_SCALES = {"scale_kq1": 10.0, "scale_kq2": 10.0, "scale_ov2": 3.0}
#: the sequence whose attention maps are stored
ATTENTION_SEED = 2024


def _setup(job: dict, **model_overrides) -> tuple:
    torch.set_num_threads(1)  # small models: one thread is as fast, and the numbers do not depend on the machine
    stats = shakespeare_bigrams()
    task = BigramTask(**job["task"])
    cfg = InductionConfig(N=stats.N, T=task.T, seed=job["seed"], **{**job["model"], **model_overrides})
    return stats, task, InductionTransformer(cfg), TrainConfig(seed=job["seed"], **job["train"])


def _seed_jobs(config: dict, **extra) -> list[dict]:
    return [{"task": config["task"], "model": config["model"], "train": config["train"], "seed": seed, **extra}
            for seed in config["seeds"]]


# ---- induction-layers ------------------------------------------------------------------------------------------

def _layers_jobs(config: dict) -> list[dict]:
    return [job for layers in config["layers"] for job in _seed_jobs(config, layers=layers)]


def _layers_job(job: dict, device: torch.device) -> list[dict]:
    stats, task, model, recipe = _setup(job, layers=job["layers"])
    curve = train(model, task, stats, recipe, device=device)
    rows = [{"kind": "curve", "layers": job["layers"], "seed": job["seed"], **row} for row in curve]
    if job["seed"] == 0:
        batch = sample_batch(task, stats, 1, ATTENTION_SEED)
        with torch.no_grad():
            _, maps = model(batch.inputs.to(model.E.device), attention=True)
        for layer, beta in enumerate(maps, start=1):
            rows.append({"kind": "attention", "layers": job["layers"], "seed": job["seed"], "layer": layer,
                         "tokens": batch.tokens[0].tolist(),
                         "weights": [[round(v, 3) for v in r] for r in beta[0, 0].cpu().tolist()]})
    return rows


# ---- induction-probes ------------------------------------------------------------------------------------------

def _probes_jobs(config: dict) -> list[dict]:
    return [job for mode in config["modes"] for job in _seed_jobs(config, mode=mode)]


def _probes_job(job: dict, device: torch.device) -> list[dict]:
    mode = job["mode"]
    trained = ("KQ1", "KQ2", "OV2") if mode == "joint" else (mode,)
    stats, task, model, recipe = _setup(job, trainable=trained)
    q = triggers(task, stats)
    held = tuple(n for n in ("KQ1", "KQ2", "OV2") if n not in trained)
    if held:
        set_induction_head(model, q, names=held, **HELD_SCALES)
    outputs = output_tokens(task, stats)

    def measure(m, step):
        return {f"probe_{k}": v for k, v in memory_probes(m, q.to(m.E.device), outputs.to(m.E.device)).items()}

    curve = train(model, task, stats, recipe, measure=measure, device=device)
    return [{"mode": mode, "seed": job["seed"], **row} for row in curve]


# ---- induction-global ------------------------------------------------------------------------------------------

def _global_jobs(config: dict) -> list[dict]:
    return _seed_jobs(config, ranks=list(config["ranks"]))


def _global_job(job: dict, device: torch.device) -> list[dict]:
    stats, task, model, recipe = _setup(job, ffn=True)
    tau = noise_token(task, stats)
    held_out = sample_batch(task, stats, recipe.eval_size, generator(job["seed"] + 2 * 10**6))

    def measure(m, step):
        return context_vs_global(m, batch_to(held_out, m.E.device), tau)

    curve = train(model, task, stats, recipe, measure=measure, device=device)
    rows = [{"kind": "curve", "seed": job["seed"], **row} for row in curve]
    for rank in job["ranks"]:
        cut = truncate_ffn(model, min(rank, model.cfg.d))
        rows.append({"kind": "truncation", "seed": job["seed"], "rank": min(rank, model.cfg.d),
                     **context_vs_global(cut, batch_to(held_out, cut.E.device), tau)})
    return rows


# ---- the registry ----------------------------------------------------------------------------------------------

#: the task: K = 3 triggers (space, e, t), uniform outputs, T = 64 characters
TASK = {"K": 3, "T": 64}
LAYERS_QUICK = {"task": TASK, "model": {"d": 48, "ffn": True, "trainable": ["KQ1", "OV1", "KQ2", "OV2", "F"]},
                "train": {"steps": 250, "batch_size": 32, "lr": 0.02, "eval_every": 25, "eval_size": 128},
                "layers": [1, 2], "seeds": [0, 1]}
LAYERS_FULL = {**LAYERS_QUICK, "model": {**LAYERS_QUICK["model"], "d": 64},
               "train": {"steps": 1000, "batch_size": 64, "lr": 0.01, "eval_every": 50, "eval_size": 512},
               "seeds": [0, 1, 2]}
PROBES_QUICK = {"task": TASK, "model": {"d": 48},
                "train": {"steps": 200, "batch_size": 32, "lr": 0.02, "loss": "in_context", "eval_every": 10,
                          "eval_size": 128},
                "modes": ["joint", "OV2", "KQ2", "KQ1"], "seeds": [0]}
PROBES_FULL = {**PROBES_QUICK, "model": {"d": 64},
               "train": {**PROBES_QUICK["train"], "steps": 1000, "batch_size": 64, "lr": 0.01, "eval_every": 20,
                         "eval_size": 512},
               "seeds": [0, 1, 2]}
GLOBAL_QUICK = {"task": {**TASK, "noise_prob": 0.5}, "model": {"d": 48},
                "train": {"steps": 250, "batch_size": 32, "lr": 0.02, "eval_every": 10, "eval_size": 128},
                "ranks": [0, 1, 2, 4, 8, 16, 32, 48], "seeds": [0, 1]}
GLOBAL_FULL = {**GLOBAL_QUICK, "model": {"d": 64},
               "train": {"steps": 1200, "batch_size": 64, "lr": 0.01, "eval_every": 25, "eval_size": 512},
               "ranks": [0, 1, 2, 4, 8, 16, 32, 64], "seeds": [0, 1]}

INDUCTION_FIGURES = {
    "induction-layers": Figure(
        name="induction-layers",
        description="Chapter 9: in-context accuracy of one- and two-layer transformers on the bigram task",
        configs={"quick": LAYERS_QUICK, "full": LAYERS_FULL},
        jobs=_layers_jobs,
        run_job=_layers_job,
    ),
    "induction-probes": Figure(
        name="induction-probes",
        description="Chapter 9: memory-recall probes of W_OV^2, W_KQ^2, W_KQ^1, trained jointly and one at a time",
        configs={"quick": PROBES_QUICK, "full": PROBES_FULL},
        jobs=_probes_jobs,
        run_job=_probes_job,
    ),
    "induction-global": Figure(
        name="induction-global",
        description="Chapter 9: global against in-context predictions over training, and the feed-forward layer "
                    "truncated to rank r",
        configs={"quick": GLOBAL_QUICK, "full": GLOBAL_FULL},
        jobs=_global_jobs,
        run_job=_global_job,
    ),
}
