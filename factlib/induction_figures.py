"""Chapter 9's figures as reproducible sweeps (``python -m factlib reproduce <figure>``), merged into
``factlib.figures.FIGURES``:

- ``induction-layers``: in-context accuracy (and agreement with the global bigrams) of one- and two-layer
  transformers against training steps, and the attention maps of the trained models on one sequence;
- ``induction-probes``: the memory-recall probes of W_OV^2, W_KQ^2, W_KQ^1 while the three are trained from zero
  (the other weights frozen, the loss on the in-context positions, SGD with momentum as in the code of Bietti et
  al., 2023), jointly or with some of them frozen for the first steps;
- ``induction-global``: on the noisy task, the probabilities of the global (noise) token and of the in-context
  output over training, then the effect of truncating the feed-forward layer to rank r.

Each job returns its rows; ``Figure.rows`` states which rows a job must produce, so that a stored record that does
not fit its job is recomputed (``factlib.sweeps.RowSpec``).
"""
from __future__ import annotations

import torch

from .bigram import BigramTask, noise_token, output_tokens, sample_batch, shakespeare_bigrams, triggers
from .config import generator
from .induction import (InductionConfig, InductionTransformer, TrainConfig, batch_to, context_vs_global, evaluate,
                        memory_probes, train, truncate_ffn)
from .sweeps import Figure, RowParts, RowSpec

#: the sequence whose attention maps are stored
ATTENTION_SEED = 2024
#: the measures ``induction.evaluate`` adds to every row (with the text's bigram statistics)
EVALUATED = ("in_context", "loss", "global")
UNIT = ("number", 0.0, 1.0)
LOSS = ("number", 0.0, None)


def _setup(job: dict, **model_overrides) -> tuple:
    torch.set_num_threads(1)  # small models: one thread is as fast, and the numbers do not depend on the machine
    stats = shakespeare_bigrams()
    task = BigramTask(**job["task"])
    cfg = InductionConfig(N=stats.N, T=task.T, seed=job["seed"], **{**job["model"], **model_overrides})
    return stats, task, InductionTransformer(cfg), TrainConfig(seed=job["seed"], **job["train"])


def _seed_jobs(config: dict, **extra) -> list[dict]:
    return [{"task": config["task"], "model": config["model"], "train": config["train"], "seed": seed, **extra}
            for seed in config["seeds"]]


def _eval_steps(job: dict) -> list[int]:
    """The steps at which ``induction.train`` records a row: 0, every ``eval_every`` steps and the last."""
    recipe = TrainConfig(**job["train"])
    return sorted(set(range(0, recipe.steps + 1, recipe.eval_every)) | {recipe.steps})


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
                         "tokens": batch.tokens[0].tolist(),  # T + 1 tokens
                         "weights": [round(v, 3) for v in beta[0, 0].flatten().cpu().tolist()]})  # T x T, row-major
    return rows


def _layers_rows(job: dict) -> RowParts:
    """A layers job: one curve row per evaluation step, then (seed 0) one attention map per layer."""
    run = {"layers": job["layers"], "seed": job["seed"]}
    curve = RowSpec([{"kind": "curve", **run, "step": k} for k in _eval_steps(job)],
                    {"in_context": UNIT, "loss": LOSS, "global": UNIT})
    if job["seed"] != 0:
        return RowParts((curve,))
    N = shakespeare_bigrams().N
    maps = RowSpec([{"kind": "attention", **run, "layer": layer} for layer in range(1, job["layers"] + 1)],
                   {"tokens": ("numbers", 0, N - 1), "weights": ("numbers", 0.0, 1.0)})
    return RowParts((curve, maps))


# ---- induction-probes ------------------------------------------------------------------------------------------

def _probes_jobs(config: dict) -> list[dict]:
    return [job for mode, frozen in config["modes"].items()
            for job in _seed_jobs({**config, "train": {**config["train"], "frozen_until": frozen}}, mode=mode)]


def _probes_job(job: dict, device: torch.device) -> list[dict]:
    stats, task, model, recipe = _setup(job, trainable=("KQ1", "KQ2", "OV2"))
    q, outputs = triggers(task, stats), output_tokens(task, stats)
    early = torch.arange(1, max(2, task.T // 4))  # the first quarter of the query positions

    def measure(m, step):
        q_, out_ = q.to(m.E.device), outputs.to(m.E.device)
        probes = {f"probe_{k}": v for k, v in memory_probes(m, q_, out_).items()}
        probes["probe_KQ1_early"] = memory_probes(m, q_, out_, positions=early.to(m.E.device))["KQ1"]
        return probes

    curve = train(model, task, stats, recipe, measure=measure, device=device)
    return [{"mode": job["mode"], "seed": job["seed"], **row} for row in curve]


def _probes_rows(job: dict) -> RowSpec:
    """A probes job: one row per evaluation step with the four probes."""
    probes = {f"probe_{k}": UNIT for k in ("OV2", "KQ2", "KQ1", "KQ1_early")}
    return RowSpec([{"mode": job["mode"], "seed": job["seed"], "step": k} for k in _eval_steps(job)],
                   {"in_context": UNIT, "loss": LOSS, "global": UNIT, **probes})


# ---- induction-global ------------------------------------------------------------------------------------------

#: what ``_global_measures`` records on a model: probabilities and argmax fractions of tau and o_k, and the
#: in-context accuracy on sequences of the task without noise
GLOBAL_MEASURES = ("p_global", "p_context", "argmax_global", "argmax_context", "clean")


def _global_jobs(config: dict) -> list[dict]:
    return _seed_jobs(config, ranks=list(config["ranks"]))


def _global_job(job: dict, device: torch.device) -> list[dict]:
    stats, task, model, recipe = _setup(job, ffn=True)
    tau = noise_token(task, stats)
    noisy = sample_batch(task, stats, recipe.eval_size, generator(job["seed"] + 2 * 10**6))
    clean_task = BigramTask(**{**job["task"], "noise_prob": 0.0})
    clean = sample_batch(clean_task, stats, recipe.eval_size, generator(job["seed"] + 3 * 10**6))

    def measure(m, step):
        dev = m.E.device
        return {**context_vs_global(m, batch_to(noisy, dev), tau), "clean": evaluate(m, batch_to(clean, dev))[
            "in_context"]}

    curve = train(model, task, stats, recipe, measure=measure, device=device)
    rows = [{"kind": "curve", "seed": job["seed"], **row} for row in curve]
    for rank in job["ranks"]:
        cut = truncate_ffn(model, min(rank, model.cfg.d))
        rows.append({"kind": "truncation", "seed": job["seed"], "rank": min(rank, model.cfg.d),
                     **evaluate(cut, batch_to(noisy, cut.E.device), stats), **measure(cut, None)})
    return rows


def _global_rows(job: dict) -> RowParts:
    """A global job: one curve row per evaluation step, then one row per rank of the truncated W_F."""
    measures = {"in_context": UNIT, "loss": LOSS, "global": UNIT, **{k: UNIT for k in GLOBAL_MEASURES}}
    d = job["model"]["d"]
    curve = RowSpec([{"kind": "curve", "seed": job["seed"], "step": k} for k in _eval_steps(job)], measures)
    cuts = RowSpec([{"kind": "truncation", "seed": job["seed"], "rank": min(r, d)} for r in job["ranks"]], measures)
    return RowParts((curve, cuts))


# ---- the registry ----------------------------------------------------------------------------------------------

#: the task: K = 5 triggers (the five most frequent characters), uniform outputs, T = 64 characters (quick) or 128
#: (full); Bietti et al.'s code takes the K most frequent tokens as fixed triggers in the same way
TASK = {"K": 5, "T": 64}
TASK_FULL = {"K": 5, "T": 128}
LAYERS_QUICK = {"task": TASK, "model": {"d": 128, "ffn": True, "trainable": ["KQ1", "OV1", "KQ2", "OV2", "F"]},
                "train": {"steps": 500, "batch_size": 32, "lr": 0.01, "eval_every": 25, "eval_size": 256},
                "layers": [1, 2], "seeds": [0, 1, 2]}
#: the full profile decays Adam's step size along a cosine: at a constant 0.01 a two-layer model at d = 256 that had
#: held 0.99 for over a thousand steps fell to chance in one evaluation interval (step 1700 of 3000) and recovered
#: to 0.26 only
LAYERS_FULL = {**LAYERS_QUICK, "task": TASK_FULL, "model": {**LAYERS_QUICK["model"], "d": 256},
               "train": {**LAYERS_QUICK["train"], "steps": 1000, "eval_every": 50, "schedule": "cosine"}}
#: the probes' recipe: SGD with momentum 0.9 and weight decay 1e-4 (the optimiser of Bietti et al.'s code; the step
#: size is ours, for this parametrisation), the loss on the in-context positions only; ``modes`` name the weights
#: held at zero for the first ``hold`` steps
HOLD, HOLD_FULL = 60, 200
PROBES_QUICK = {"task": TASK, "model": {"d": 128},
                "train": {"steps": 300, "batch_size": 32, "lr": 3.0, "optimizer": "sgd", "momentum": 0.9,
                          "weight_decay": 1e-4, "loss": "in_context", "eval_every": 5, "eval_size": 128},
                "modes": {"joint": {}, "OV2 first": {"KQ2": HOLD, "KQ1": HOLD}, "KQ1 late": {"KQ1": HOLD},
                          "OV2 late": {"OV2": HOLD}},
                "seeds": [0, 1]}
PROBES_FULL = {**PROBES_QUICK, "task": TASK_FULL, "model": {"d": 256},
               "train": {**PROBES_QUICK["train"], "steps": 1000, "eval_every": 10},
               "modes": {"joint": {}, "OV2 first": {"KQ2": HOLD_FULL, "KQ1": HOLD_FULL},
                         "KQ1 late": {"KQ1": HOLD_FULL}, "OV2 late": {"OV2": HOLD_FULL}},
               "seeds": [0, 1, 2]}
#: the noisy task of Chen, Bruna and Bietti (2024): after a trigger, the noise token with probability 1/2; the loss
#: on the in-context positions only, as in their code
GLOBAL_QUICK = {"task": {**TASK, "noise_prob": 0.5}, "model": {"d": 128},
                "train": {"steps": 600, "batch_size": 32, "lr": 0.01, "loss": "in_context", "eval_every": 20,
                          "eval_size": 256},
                "ranks": [0, 1, 2, 4, 8, 16, 32, 64, 128], "seeds": [0, 1, 2]}
GLOBAL_FULL = {**GLOBAL_QUICK, "task": {**TASK_FULL, "noise_prob": 0.5}, "model": {"d": 256},
               "train": {**GLOBAL_QUICK["train"], "steps": 2000, "eval_every": 50},
               "ranks": [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]}

INDUCTION_FIGURES = {
    "induction-layers": Figure(
        name="induction-layers",
        description="Chapter 9: in-context accuracy of one- and two-layer transformers on the bigram task",
        configs={"quick": LAYERS_QUICK, "full": LAYERS_FULL},
        jobs=_layers_jobs,
        run_job=_layers_job,
        options=("seeds",),
        rows=_layers_rows,
    ),
    "induction-probes": Figure(
        name="induction-probes",
        description="Chapter 9: memory-recall probes of W_OV^2, W_KQ^2, W_KQ^1, trained jointly or some held back",
        configs={"quick": PROBES_QUICK, "full": PROBES_FULL},
        jobs=_probes_jobs,
        run_job=_probes_job,
        options=("seeds",),
        rows=_probes_rows,
    ),
    "induction-global": Figure(
        name="induction-global",
        description="Chapter 9: global against in-context predictions over training, and the feed-forward layer "
                    "truncated to rank r",
        configs={"quick": GLOBAL_QUICK, "full": GLOBAL_FULL},
        jobs=_global_jobs,
        run_job=_global_job,
        options=("seeds",),
        rows=_global_rows,
    ),
}
