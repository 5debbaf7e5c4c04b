"""The training protocol of chapter 5: runs, the paper's protocol, and the loop that trains many one-layer
transformers at once (the batched model is ``factlib.batched``, its data streams ``factlib.streams``).

Each run keeps its own frozen embeddings, fact table, data stream and learning rate; runs of one shape are trained
as one computation (``RunGroup``):

- **data**: every random integer of run r is a hash of (run key, stream, step, index), so all runs of a group draw
  their batch in one vectorised call on the device, and a run sees the same data whatever else is in its batch;
- **optimiser**: every weight of every run in one flat tensor (runs, P); the gradient is written by hand and one
  Adam update with a per-run learning rate moves all of them;
- **stopping**: every ``eval_every`` steps each run is evaluated on 1024 prompts (fresh ones each time, or one
  fixed set as in the authors' release: ``Protocol.eval_set``); a run at the threshold stops (success), a run
  that made no progress for ``patience`` steps or ran out of steps stops (failure), and finished runs leave the
  batch; a successful run's every (s, r) pair is then checked (``population_check``).
"""
from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import dataclass, replace

import torch

from ._validate import ArgumentTypeError, check_allocation, check_choice, check_float, check_int
from .batched import EMBEDDINGS, INITS, RunGroup, cross_entropy, run_table
from .config import check_device
from .models import ModelConfig, OneLayerTransformer, parameter_count
from .task import TaskConfig, evaluate_population
from .train import adam_update_

# ---- runs and the training protocol ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One training run: a task, a model shape, a learning rate and a seed (chapter 5).

    The seed fixes the frozen embeddings (``ModelConfig.seed``), the fact table (``fact_table`` with seed
    2^31 + seed), the initial weights (seed 2^32 + seed) and, with the task, the data stream (``run_key``).
    """

    task: TaskConfig
    d: int
    H: int
    d_h: int
    m: int
    lr: float
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.task, TaskConfig):
            raise ValueError(f"task must be a TaskConfig, got {type(self.task).__name__}")
        if self.task.subjects != "uniform":
            raise ValueError(f"task.subjects must be uniform for the batched trainer; got {self.task.subjects!r}")
        check_int("d", self.d, 1)
        check_int("H", self.H, 1)
        check_int("d_h", self.d_h, 1)
        check_int("m", self.m, 0)
        check_float("lr", self.lr, 0.0, 10.0, low_open=True)
        check_int("seed", self.seed, 0, 2**31 - 1)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.d, self.H, self.d_h, self.m

    def model_config(self, normalize: bool = False) -> ModelConfig:
        """The run's model; ``normalize``: unit-norm embeddings (default: i.i.d. N(0, 1/d), as in the release)."""
        return ModelConfig.for_task(self.task, d=self.d, H=self.H, d_h=self.d_h, m=self.m, seed=self.seed,
                                    normalize=normalize)


EVAL_SETS = ("fresh", "fixed")


@dataclass(frozen=True)
class Protocol:
    """How runs are trained and judged (chapter 5); the defaults are the paper's protocol and the authors' model."""

    steps: int = 2**14          # Adam steps at most
    batch_size: int = 1024      # fresh samples per step and run
    eval_every: int = 128       # steps between evaluations
    eval_size: int = 1024       # fresh samples per evaluation and run
    threshold: float = 0.99     # success: evaluated accuracy >= threshold
    patience: int = 4096        # failure: no progress (accuracy + min_delta, or loss x (1 - min_delta)) for this long
    min_delta: float = 0.01
    foresight: float = 0.0      # failure: in the second half of the budget, accuracy + foresight x (recent accuracy
                                # gain per step) x (steps left) stays below the threshold (0, the default: off; at
                                # 2 it stopped 9 of 57 eventual successes, book/data/fig4-stopping-quick.json)
    init_scale: float = 1.0     # multiplies the initial weights (see ``init_weights``)
    init: str = "release"       # "release": the authors' initialisation; "ours": this book's first one
    eos_residual: bool = False  # add the EOS embedding to the attention output (the authors' model does not)
    embeddings: str = "gaussian"  # frozen embeddings: "gaussian", i.i.d. N(0, 1/d) (the release's), or "unit" norm
    eval_set: str = "fresh"     # "fresh": new prompts at every evaluation; "fixed": one set drawn once (the release)
    population_repeats: int = 8  # on success, every (s, r) pair is checked on this many prompts (0: not checked)

    def __post_init__(self):
        check_int("steps", self.steps, 1, 2**24)
        check_int("batch_size", self.batch_size, 1, 2**16)
        check_int("eval_every", self.eval_every, 1)
        check_int("eval_size", self.eval_size, 1, 2**16)
        check_float("threshold", self.threshold, 0.0, 1.0, low_open=True)
        check_int("patience", self.patience, 1)
        check_float("min_delta", self.min_delta, 0.0, 1.0)
        check_float("foresight", self.foresight, 0.0)
        check_float("init_scale", self.init_scale, 0.0)
        check_choice("init", self.init, INITS)
        check_choice("embeddings", self.embeddings, EMBEDDINGS)
        check_choice("eval_set", self.eval_set, EVAL_SETS)
        check_int("population_repeats", self.population_repeats, 0, 1024)
        if not isinstance(self.eos_residual, bool):
            raise ValueError(f"eos_residual must be True or False, got {self.eos_residual!r}")


@dataclass(frozen=True)
class Outcome:
    """What happened to one run."""

    reached: bool      # evaluated accuracy reached the threshold
    steps: int         # steps trained when it stopped
    accuracy: float    # last evaluated accuracy
    best_accuracy: float
    curve: tuple = ()  # (step, evaluated accuracy, evaluated loss) at every evaluation
    facts_exact: float | None = None  # on success: fraction of the (s, r) pairs answered right on every prompt
    population_accuracy: float | None = None  # on success: accuracy over every pair (``task.evaluate_population``)


def evaluate_group(group: RunGroup, step: int, size: int, eval_set: str = "fresh"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and loss of every active run on ``size`` prompts of stream 1, each (n,): fresh prompts for each
    ``step``, or (``eval_set="fixed"``) the same prompts at every step."""
    accs, losses = [], []
    draw = step if check_choice("eval_set", eval_set, EVAL_SETS) == "fresh" else 0
    with torch.no_grad():
        for rows in group.chunks(size):
            prompts, answers = group.tasks.sample(draw, size, stream=1, rows=rows)
            logits = group.forward(prompts, rows=rows)  # (n, B, A)
            accs.append((logits.argmax(dim=2) == answers).float().mean(dim=1))  # (n,)
            losses.append(cross_entropy(logits, answers))  # (n,)
    return torch.cat(accs), torch.cat(losses)


def train_step(group: RunGroup, chunks: list[slice], grad: torch.Tensor,
               moments: tuple[torch.Tensor, torch.Tensor], step: int, batch_size: int) -> None:
    """One training step of every active run: a fresh batch, the gradient chunk by chunk of runs into ``grad``
    (n, P), and one Adam update of all the weights."""
    for rows in chunks:
        prompts, answers = group.tasks.sample(step, batch_size, rows=rows)  # .., (n, B)
        group.gradient(prompts, answers, rows, out=grad[rows])
    adam_update_(group.flat, grad, moments, group.lr[:, None], step)


def train_group(group: RunGroup, protocol: Protocol = Protocol(), keep_models: bool = False
                ) -> tuple[list[Outcome], list[OneLayerTransformer | None]]:
    """Train every run of ``group`` with Adam (per-run lr) until it succeeds or fails (see ``Protocol``).

    Each step samples, runs forward and backward (``RunGroup.loss_and_grad``) chunk by chunk of runs into one
    flat gradient (n, P), and one Adam update moves every weight of every run. Returns the outcome of each
    run, in the order of ``group.runs``, and, with ``keep_models``, each run's trained ``OneLayerTransformer``
    (at the step it stopped).
    """
    n0, dev = len(group.runs), group.device
    outcomes: list[Outcome | None] = [None] * n0
    models: list[OneLayerTransformer | None] = [None] * n0
    moments = (torch.zeros_like(group.flat), torch.zeros_like(group.flat))  # Adam's, (n, P) each
    grad = torch.empty_like(group.flat)  # (n, P)
    best_acc = torch.zeros(n0, device=dev)
    best_loss = torch.full((n0,), float("inf"), device=dev)
    last_progress = torch.zeros(n0, dtype=torch.long, device=dev)
    last_acc = torch.zeros(n0, device=dev)
    rate = torch.zeros(n0, device=dev)  # moving average of the accuracy gained per step
    curves: list[list] = [[] for _ in range(n0)]
    evals: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (step, runs, acc, loss), read at the end
    chunks = group.chunks(protocol.batch_size)
    for step in range(1, protocol.steps + 1):
        train_step(group, chunks, grad, moments, step, protocol.batch_size)
        if step % protocol.eval_every and step != protocol.steps:
            continue
        acc, loss_r = evaluate_group(group, step, protocol.eval_size, protocol.eval_set)  # (n,), (n,)
        idx = group.index
        improved = (acc >= best_acc[idx] + protocol.min_delta) | (loss_r <= best_loss[idx] * (1 - protocol.min_delta))
        last_progress[idx] = torch.where(improved, step, last_progress[idx])
        best_acc[idx] = torch.maximum(best_acc[idx], acc)
        best_loss[idx] = torch.minimum(best_loss[idx], loss_r)
        evals.append((step, idx, acc, loss_r))
        rate[idx] = 0.5 * rate[idx] + 0.5 * (acc - last_acc[idx]) / protocol.eval_every
        last_acc[idx] = acc
        hopeless = (acc + protocol.foresight * rate[idx].clamp(min=0) * (protocol.steps - step) < protocol.threshold) & (
            2 * step >= protocol.steps) & (protocol.foresight > 0)
        done = (acc >= protocol.threshold) | (step - last_progress[idx] >= protocol.patience) | hopeless | (
            step == protocol.steps)
        if bool(done.any()):
            for pos in done.nonzero()[:, 0].tolist():  # one host round-trip per evaluation, not per step
                i = int(idx[pos])
                reached = bool(acc[pos] >= protocol.threshold)
                outcomes[i] = Outcome(reached=reached, steps=step, accuracy=float(acc[pos]),
                                      best_accuracy=float(best_acc[i]))
                if keep_models or (reached and protocol.population_repeats):
                    models[i] = group.model(i)
                if reached and protocol.population_repeats:
                    outcomes[i] = replace(outcomes[i], **population_check(group.runs[i], models[i],
                                                                           protocol.population_repeats, dev))
                if not keep_models:
                    models[i] = None
            keep = ~done
            moments = (moments[0][keep], moments[1][keep])
            group.keep(keep)
            if not len(group):
                break
            grad = torch.empty_like(group.flat)
            chunks = group.chunks(protocol.batch_size)
    for step, idx, acc, loss_r in evals:
        for i, a, lo in zip(idx.tolist(), acc.tolist(), loss_r.tolist()):
            curves[i].append((step, a, lo))
    return [replace(o, curve=tuple(curves[i])) for i, o in enumerate(outcomes)], models


def population_check(run: Run, model: OneLayerTransformer, repeats: int,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Every (s, r) pair of the run's table on ``repeats`` prompts each (chapter 3's ``evaluate_population``,
    fresh positions and noise), on ``device``: the fraction of facts answered right on every prompt, and the
    accuracy."""
    if torch.device(device).type != "cpu":
        model = copy.deepcopy(model).to(device)  # the caller keeps its CPU copy
    result = evaluate_population(model, run.task, run_table(run), repeats=repeats, seed=2**30 + run.seed,
                                 device=device)
    exact = (result.pair_accuracy == 1).double().mean()
    return {"facts_exact": round(float(exact), 6), "population_accuracy": round(result.accuracy, 6)}


def replay_stopping(curve, protocol: Protocol) -> tuple[bool, int]:
    """(reached, step) that ``protocol``'s stopping rules give a run whose evaluations were ``curve`` (a sequence
    of (step, accuracy, loss), e.g. ``Outcome.curve`` of a run trained with early failure off): the rules of
    ``train_group``, replayed in Python, to compare the verdicts with the full budget's (chapter 5)."""
    best_acc, best_loss, last_progress, last_acc, rate = 0.0, math.inf, 0, 0.0, 0.0
    for step, acc, loss in curve:
        if acc >= best_acc + protocol.min_delta or loss <= best_loss * (1 - protocol.min_delta):
            last_progress = step
        best_acc, best_loss = max(best_acc, acc), min(best_loss, loss)
        rate = 0.5 * rate + 0.5 * (acc - last_acc) / protocol.eval_every
        last_acc = acc
        hopeless = (protocol.foresight > 0 and 2 * step >= protocol.steps
                    and acc + protocol.foresight * max(rate, 0.0) * (protocol.steps - step) < protocol.threshold)
        if acc >= protocol.threshold or step - last_progress >= protocol.patience or hopeless or step >= protocol.steps:
            return acc >= protocol.threshold, step
    return False, curve[-1][0] if curve else 0


def check_step_size(runs: list[Run], protocol: Protocol, together: int) -> None:
    """Refuse, from the sizes alone, runs whose training step would not fit in memory: ``together`` runs of the
    largest task computed at once (one on a CPU, which trains a chunk of runs at a time; all of a group on a GPU),
    each with a batch of ``protocol.batch_size`` prompts of T tokens (the random draws, int64) or of its answers."""
    if not runs:
        return
    run = max(runs, key=lambda r: max(r.task.T + 1, r.task.num_answers, r.task.vocab_size))
    width = max(run.task.T + 1, run.task.num_answers, run.task.vocab_size)
    check_allocation({"runs at once": together, "batch_size": protocol.batch_size, "T": run.task.T,
                      "answers": run.task.num_answers}, together * protocol.batch_size * width, torch.int64,
                     "one training step")


def train_runs(runs: list[Run], protocol: Protocol = Protocol(), device: torch.device | str = "cpu",
               keep_models: bool = False, max_runs: int = 256, mixed_shapes: bool | None = None
               ) -> tuple[list[Outcome], list]:
    """Train ``runs``, grouped by shape (d, H, d_h, m), at most ``max_runs`` per batched computation.

    ``mixed_shapes`` (default: on any device but the CPU): runs of different shapes share groups, padded
    (``RunGroup``), so that a GPU keeps all of them in flight; on a CPU padding costs more than it saves.
    Returns (outcomes, models) in the order of ``runs`` (models are None unless ``keep_models``).
    """
    runs = list(runs)
    for run in runs:
        if not isinstance(run, Run):
            raise ValueError(f"runs must be Run instances, got {type(run).__name__}")
    if not isinstance(protocol, Protocol):
        raise ArgumentTypeError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    device = check_device(device)
    max_runs = check_int("max_runs", max_runs, 1)
    if mixed_shapes is None:
        mixed_shapes = device.type != "cpu"
    check_step_size(runs, protocol, min(len(runs), max_runs) if device.type != "cpu" else 1)
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        by_shape[(None if mixed_shapes else run.shape, run.task.T)].append(i)
    outcomes: list = [None] * len(runs)
    models: list = [None] * len(runs)
    for members in by_shape.values():
        # similar shapes and tasks share a chunk: less padding
        members = sorted(members, key=lambda i: (runs[i].shape, runs[i].task.num_answers, runs[i].task.n_noise))
        for start in range(0, len(members), max_runs):
            chunk = members[start:start + max_runs]
            group = RunGroup([runs[i] for i in chunk], device, protocol.init_scale, protocol.init,
                             protocol.eos_residual, mixed_shapes, protocol.embeddings)
            out, mods = train_group(group, protocol, keep_models)
            for i, o, mo in zip(chunk, out, mods):
                outcomes[i], models[i] = o, mo
    return outcomes, models


def tradeoff_grid(task: TaskConfig, d: int, d_h: int, Hs, ms, lr: float = 1e-2, protocol: Protocol = Protocol(),
                  seed: int = 0, device: torch.device | str = "cpu", eval_size: int = 2048) -> dict:
    """Train one model per (H, m) on ``task`` (chapter 5, Fig. 4 right in small) and describe each: a dict
    (H, m) -> {"accuracy", "reached", "steps", "params", "curve", "blocks"}, where "blocks" holds the accuracy
    of the attention's and the MLP's logits alone (``block_logits``) on ``eval_size`` fresh prompts."""
    from .models import block_logits
    from .task import sample_batch

    for name, values, low in (("Hs", Hs, 1), ("ms", ms, 0)):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not list(values):
            raise ValueError(f"{name} must be a non-empty list of integers >= {low}; got {values!r}")
        for value in values:
            check_int(name, value, low)

    runs = [Run(task, d, H, d_h, m, lr, seed) for H in Hs for m in ms]
    outcomes, models = train_runs(runs, protocol, device, keep_models=True)
    tokens, answers, *_ = sample_batch(task, run_table(runs[0]), eval_size, seed=2**20 + seed)  # (B, T), (B,)
    cells = {}
    for run, outcome, model in zip(runs, outcomes, models):
        with torch.no_grad():
            parts = block_logits(model, tokens)  # name -> (B, R D)
        blocks = {name: float((parts[name].argmax(1) == answers).float().mean())
                  for name in ("attention", "mlp") if name == "attention" or run.m}
        cells[(run.H, run.m)] = {"accuracy": outcome.accuracy, "reached": outcome.reached, "steps": outcome.steps,
                                 "params": parameter_count(run.model_config())["total"],
                                 "curve": [(step, acc) for step, acc, _ in outcome.curve],
                                 "blocks": blocks}
    return cells
