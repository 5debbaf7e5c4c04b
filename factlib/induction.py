"""Chapter 9: a transformer with causal attention on the bigram task, and the induction head as associative memories.

The model (chapter 9, Definition "transformer on sequences"): tokens z_1 .. z_T have frozen random embeddings e_z,
positions frozen random embeddings p_t, and outputs frozen random unembeddings u_y, all in R^d with i.i.d.
N(0, 1/d) entries. The residual stream starts at x_t = e_{z_t} + p_t; each of the L layers adds causal
self-attention,

    x_t <- x_t + sum_h sum_{s <= t} beta^h_{ts} W_OV^h x_s,   beta^h_{t.} = softmax_s(x_t^T W_KQ^h x_s),

with full d x d matrices W_KQ = W_Q^T W_K and W_OV = W_O W_V (one pair per head); an optional linear feed-forward
layer x_t <- x_t + W_F x_t follows the last one; the logit of token y is u_y^T x_t. Weights are named "KQ1",
"OV1", "KQ2", "OV2", "F" (tensors (H, d, d), and (d, d) for F). A weight that is not trained stays at its
initial value: zero for W_KQ (uniform attention), a random remapping with N(0, 1/d) entries for W_OV.

The induction head (Bietti et al., 2023) is three associative memories:
W_KQ^1 = sum_t p_t p_{t-1}^T (attend to the previous token), W_KQ^2 = sum_{k in Q} e_k e~_k^T with the remapped
previous token e~_k = W_OV^1 e_k (attend to the token after an earlier q_k), W_OV^2 = sum_k u_k e_k^T (copy it).
Recall probes measure how far a trained matrix holds its memory; training runs Adam, or SGD with momentum and weight
decay as the code of Bietti et al. does, and can hold chosen weights at their initial value for the first steps.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import ArgumentTypeError, check_choice, check_float, check_int
from .bigram import BigramBatch, BigramStats, BigramTask, sample_batch, triggers
from .config import check_device, generator
from .embeddings import gaussian_embeddings
from .train import adam_update_

WEIGHTS = ("KQ1", "OV1", "KQ2", "OV2", "F")
LOSSES = ("all", "in_context")


@dataclass(frozen=True)
class InductionConfig:
    """Sizes of the transformer of chapter 9 and which of its weights train."""

    N: int                          # vocabulary (input and output tokens)
    d: int = 64                     # residual stream dimension
    T: int = 64                     # positions (the longest sequence it reads)
    layers: int = 2                 # attention layers, 1 or 2
    heads: int = 1                  # heads per layer
    ffn: bool = False               # a linear feed-forward layer W_F after the last attention layer
    trainable: tuple[str, ...] = ("KQ1", "OV1", "KQ2", "OV2", "F")
    init_scale: float = 0.0         # trained weights start with N(0, init_scale^2 / d) entries (0: at zero)
    seed: int = 0                   # embeddings, frozen remappings and initialisation
    values: str = "stream"          # what layer 2 averages: the residual "stream" after layer 1, or the
                                    # "embeddings" e_z + p_t (the simplified architecture of the theorem)

    def __post_init__(self):
        check_int("N", self.N, 2, 1 << 16)
        check_int("d", self.d, 2, 4096)
        check_int("T", self.T, 2, 4096)
        check_int("layers", self.layers, 1, 2)
        check_int("heads", self.heads, 1, 16)
        check_int("seed", self.seed, 0)
        check_float("init_scale", self.init_scale, 0.0, 10.0)
        check_choice("values", self.values, ("stream", "embeddings"))
        if not isinstance(self.ffn, bool):
            raise ArgumentTypeError(f"ffn must be True or False, got {self.ffn!r}")
        if isinstance(self.trainable, str) or not isinstance(self.trainable, (tuple, list)):
            raise ArgumentTypeError(f"trainable must be a tuple of weight names from {WEIGHTS}, got "
                                    f"{self.trainable!r}")
        names = self.weight_names()
        for name in self.trainable:
            check_choice("trainable", name, WEIGHTS)
        object.__setattr__(self, "trainable", tuple(n for n in names if n in self.trainable))

    def weight_names(self) -> tuple[str, ...]:
        """The weights this model has, in order."""
        names = [f"{kind}{layer}" for layer in range(1, self.layers + 1) for kind in ("KQ", "OV")]
        return tuple(names + (["F"] if self.ffn else []))


class InductionTransformer(nn.Module):
    """The L-layer attention model of chapter 9 on frozen random embeddings (module docstring)."""

    def __init__(self, cfg: InductionConfig):
        super().__init__()
        self.cfg = cfg
        N, d, T, H = cfg.N, cfg.d, cfg.T, cfg.heads
        gen = generator(cfg.seed)
        # frozen: e_z, p_t, u_y with N(0, 1/d) entries (norms close to 1, overlaps O(1/sqrt(d)))
        self.register_buffer("E", gaussian_embeddings(N, d, gen, normalize=False))  # (N, d)
        self.register_buffer("P", gaussian_embeddings(T, d, gen, normalize=False))  # (T, d)
        self.register_buffer("U", gaussian_embeddings(N, d, gen, normalize=False))  # (N, d)
        for name in cfg.weight_names():
            shape = (d, d) if name == "F" else (H, d, d)
            random = gaussian_embeddings(math.prod(shape[:-1]), d, gen, normalize=False).reshape(shape)
            if name in cfg.trainable:
                value = cfg.init_scale * random
            else:  # frozen: a random remapping for W_OV, zero (uniform attention) for W_KQ and W_F
                value = random if name.startswith("OV") else torch.zeros(shape)
            self.register_parameter(name, nn.Parameter(value, requires_grad=name in cfg.trainable))

    def weights(self) -> dict[str, torch.Tensor]:
        """The weight tensors by name ("KQ1", "OV1", ...)."""
        return {name: getattr(self, name) for name in self.cfg.weight_names()}

    def forward(self, tokens: torch.Tensor, attention: bool = False):
        """Logits (B, T, N) for ``tokens`` (B, T); with ``attention``, also the attention weights of each layer,
        a list of (B, H, T, T) tensors (row t: the weights of query t over keys s <= t)."""
        B, T = tokens.shape
        if T > self.cfg.T:
            raise ValueError(f"tokens: sequences of length {T}, longer than the model's T = {self.cfg.T}")
        x = embedded = self.E[tokens] + self.P[:T]  # (B, T, d)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # (T, T): keys after the query
        maps = []
        for layer in range(1, self.cfg.layers + 1):
            KQ, OV = getattr(self, f"KQ{layer}"), getattr(self, f"OV{layer}")  # (H, d, d) each
            query = torch.einsum("btd,hde->bhte", x, KQ)  # (B, H, T, d): x_t^T W_KQ
            scores = query @ x.transpose(1, 2).unsqueeze(1)  # (B, H, T, T): x_t^T W_KQ x_s
            beta = scores.masked_fill(future, float("-inf")).softmax(dim=-1)  # (B, H, T, T)
            source = embedded if layer > 1 and self.cfg.values == "embeddings" else x  # (B, T, d)
            mixed = beta @ source.unsqueeze(1)  # (B, H, T, d): sum_s beta_ts x_s
            x = x + torch.einsum("bhte,hde->btd", mixed, OV)  # (B, T, d): + sum_h W_OV^h (...)
            maps.append(beta)
        if self.cfg.ffn:
            x = x + x @ self.F.T  # (B, T, d)
        logits = x @ self.U.T  # (B, T, N)
        return (logits, maps) if attention else logits


# ---- the induction head, built by hand ------------------------------------------------------------------------

def induction_memories(model: InductionTransformer, trigger_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three target memories of chapter 9, eq. "induction head", each (d, d), unscaled:
    W_KQ^1 = sum_{t>=2} p_t p_{t-1}^T, W_KQ^2 = sum_{k in Q} e_k (W_OV^1 e_k)^T, W_OV^2 = sum_k u_k e_k^T
    (head 0 of layer 1 gives the remapping W_OV^1)."""
    if model.cfg.layers != 2:
        raise ValueError("the induction head needs a model with layers = 2")
    q = torch.as_tensor(trigger_tokens, dtype=torch.long)
    if q.ndim != 1 or len(q) == 0 or int(q.min()) < 0 or int(q.max()) >= model.cfg.N:
        raise ValueError(f"trigger_tokens must be a non-empty 1-d list of tokens in [0, {model.cfg.N})")
    with torch.no_grad():
        E, P, U = model.E, model.P, model.U  # (N, d), (T, d), (N, d)
        remapped = E[q] @ model.OV1[0].T  # (K, d): e~_k = W_OV^1 e_k
        return {"KQ1": P[1:].T @ P[:-1],  # (d, d): sum_t p_t p_{t-1}^T
                "KQ2": E[q].T @ remapped,  # (d, d): sum_k e_k e~_k^T
                "OV2": U.T @ E}  # (d, d): sum_k u_k e_k^T


def set_induction_head(model: InductionTransformer, trigger_tokens: torch.Tensor, scale_kq1: float = 10.0,
                       scale_kq2: float = 10.0, scale_ov2: float = 1.0, names: tuple[str, ...] = ("KQ1", "KQ2", "OV2")
                       ) -> InductionTransformer:
    """Write the hand-built memories (times their scales) into head 0 of ``model`` for the weights ``names``
    (chapter 9, "the induction head, built by hand"); the scales of W_KQ are inverse temperatures of attention."""
    scales = {"KQ1": check_float("scale_kq1", scale_kq1, 0.0), "KQ2": check_float("scale_kq2", scale_kq2, 0.0),
              "OV2": check_float("scale_ov2", scale_ov2, 0.0)}
    memories = induction_memories(model, trigger_tokens)
    with torch.no_grad():
        for name in names:
            check_choice("names", name, tuple(memories))
            getattr(model, name)[0] = scales[name] * memories[name]
    return model


# ---- memory-recall probes -------------------------------------------------------------------------------------

def recall_probe(W: torch.Tensor, inputs: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor) -> float:
    """R(W, W_*) of chapter 9, eq. "probe": the fraction of inputs i whose target scores strictly above every other
    candidate, targets[i] = argmax_j c_j^T W x_i, for inputs x_i (M, d), candidates c_j (C, d) and targets (M,)
    indices into the candidates (a tie, as at W = 0, counts as a miss)."""
    W = torch.as_tensor(W)
    if W.ndim != 2 or inputs.ndim != 2 or candidates.ndim != 2 or W.shape != (candidates.shape[1], inputs.shape[1]):
        raise ValueError(f"shapes must be W (d, d'), inputs (M, d'), candidates (C, d); got {tuple(W.shape)}, "
                         f"{tuple(inputs.shape)}, {tuple(candidates.shape)}")
    if targets.shape != (inputs.shape[0],):
        raise ValueError(f"targets must have shape ({inputs.shape[0]},), got {tuple(targets.shape)}")
    scores = inputs @ W.T @ candidates.T  # (M, C)
    right = scores.gather(1, targets[:, None]).squeeze(1)  # (M,)
    others = scores.scatter(1, targets[:, None], float("-inf")).max(dim=1).values  # (M,)
    return (right > others).double().mean().item()


def memory_probes(model: InductionTransformer, trigger_tokens: torch.Tensor, outputs: torch.Tensor | None = None,
                  positions: torch.Tensor | None = None) -> dict[str, float]:
    """The three probes of chapter 9 on head 0, eq. "probe", as the code of Bietti et al. (2023) applies them:
    W_OV^2 recalls u_k from e_k (inputs: the tokens that can be outputs, default all; argmax over all N outputs).
    For the two attention matrices the argmax runs over the keys, for a fixed query, as attention's softmax does:
    W_KQ^2 at the query e_q of each trigger must prefer the key e~_q = W_OV^1 e_q among the remapped keys of all N
    tokens, and W_KQ^1 at the query p_t must prefer the key p_{t-1} among all T positions, for the query positions
    t in ``positions`` (default 1 .. T - 1, 0-based)."""
    q = torch.as_tensor(trigger_tokens, dtype=torch.long)
    out = torch.arange(model.cfg.N) if outputs is None else torch.as_tensor(outputs, dtype=torch.long)
    t = torch.arange(1, model.cfg.T) if positions is None else torch.as_tensor(positions, dtype=torch.long)
    with torch.no_grad():
        E, P, U = model.E, model.P, model.U  # (N, d), (T, d), (N, d)
        remapped = E @ model.OV1[0].T  # (N, d): e~_j = W_OV^1 e_j, the key a position holds after layer 1
        # recall_probe scores c_j^T W x_i; with W = W_KQ^T, inputs the queries and candidates the keys, that is
        # x_i^T W_KQ c_j: the attention score of query i for key j
        return {"OV2": recall_probe(model.OV2[0], E[out], U, out),
                "KQ2": recall_probe(model.KQ2[0].T, E[q], remapped, q),
                "KQ1": recall_probe(model.KQ1[0].T, P[t], P, t - 1)}


# ---- evaluation and training ----------------------------------------------------------------------------------

def evaluate(model: InductionTransformer, batch: BigramBatch, stats: BigramStats | None = None) -> dict[str, float]:
    """Chapter 9's measures on a batch: ``in_context`` (accuracy of the argmax on the in-context positions),
    ``loss`` (cross-entropy over all positions) and, given ``stats``, ``global`` (agreement of the argmax with the
    most likely next character argmax_j pi_b(j | z_t) on the non-trigger positions)."""
    with torch.no_grad():
        logits = model(batch.inputs)  # (B, T, N)
        pred = logits.argmax(dim=-1)  # (B, T)
        mask = batch.in_context
        out = {"in_context": (pred[mask] == batch.answer[mask]).double().mean().item() if mask.any() else math.nan,
               "loss": F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten()).item()}
        if stats is not None:
            other = ~batch.trigger
            best = stats.bigram.argmax(dim=1).to(pred.device)[batch.inputs]  # (B, T)
            out["global"] = (pred[other] == best[other]).double().mean().item()
        return out


def context_vs_global(model: InductionTransformer, batch: BigramBatch, tau: int) -> dict[str, float]:
    """On the in-context positions of a noisy batch (chapter 9, "global against in-context"): the mean probability
    the model gives to the noise token tau (the global association) and to the in-context output o_k, and the
    fractions of positions where each is the argmax."""
    with torch.no_grad():
        logits = model(batch.inputs)[batch.in_context]  # (n, N)
        prob = logits.softmax(dim=-1)  # (n, N)
        answer = batch.answer[batch.in_context]  # (n,)
        pred = logits.argmax(dim=-1)  # (n,)
        return {"p_global": prob[:, tau].mean().item(),
                "p_context": prob.gather(1, answer[:, None]).mean().item(),
                "argmax_global": (pred == tau).double().mean().item(),
                "argmax_context": (pred == answer).double().mean().item()}


def attention_summary(beta: torch.Tensor, tokens: torch.Tensor, trigger_tokens: torch.Tensor) -> dict[str, float]:
    """Two numbers that name a head on one sequence (chapter 9, "attention maps"), from its weights beta (T, T)
    (row t: query t over keys s <= t) and the sequence's tokens (at least T): ``previous``, the mean weight of a
    query on the key just before it (a previous-token head puts it near 1); ``induction``, over the queries whose
    token is a trigger seen before, the mean weight on the keys s whose previous token is that trigger (an
    induction head puts it near 1; NaN if the sequence has no such query)."""
    beta = torch.as_tensor(beta, dtype=torch.float64)
    T = beta.shape[0]
    if beta.ndim != 2 or beta.shape[1] != T or T < 2:
        raise ValueError(f"beta must be a square (T, T) matrix with T >= 2, got shape {tuple(beta.shape)}")
    z = torch.as_tensor(tokens, dtype=torch.long)[:T]  # (T,)
    if z.shape != (T,):
        raise ValueError(f"tokens must hold at least T = {T} tokens, got {len(z)}")
    q = torch.as_tensor(trigger_tokens, dtype=torch.long)
    previous = beta.diagonal(-1).mean().item()
    after = torch.zeros(T, T, dtype=torch.bool)  # (T, T): key s (>= 1) follows the token of query t
    after[:, 1:] = z[:-1][None, :] == z[:, None]
    after &= torch.ones(T, T, dtype=torch.bool).tril()
    rows = torch.isin(z, q) & after.any(dim=1)  # (T,): a trigger that occurred before
    induction = (beta * after).sum(dim=1)[rows].mean().item() if rows.any() else math.nan
    return {"previous": previous, "induction": induction}


def first_step(rows: list[dict], key: str, level: float, stay: bool = True) -> int | None:
    """The first ``step`` of ``rows`` (sorted by step) at which ``row[key] >= level`` and, with ``stay``, every
    later row too; None if there is none (chapter 9's "learned from step ...")."""
    check_float("level", level)
    steps = [r["step"] for r in rows]
    if steps != sorted(steps):
        raise ValueError("rows must be sorted by step")
    for i, row in enumerate(rows):
        if row[key] >= level and (not stay or all(r[key] >= level for r in rows[i:])):
            return row["step"]
    return None


def truncate_ffn(model: InductionTransformer, rank: int) -> InductionTransformer:
    """A copy of ``model`` whose feed-forward W_F is replaced by its best rank-``rank`` approximation (the top
    singular directions; rank 0 removes the layer) (chapter 9, "truncating the feed-forward layer")."""
    if not model.cfg.ffn:
        raise ValueError("model has no feed-forward layer (ffn=False)")
    rank = check_int("rank", rank, 0, model.cfg.d)
    clone = InductionTransformer(model.cfg).to(model.E.device)
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        U_, S_, Vh = torch.linalg.svd(model.F.double())  # (d, d), (d,), (d, d)
        clone.F.copy_((U_[:, :rank] * S_[:rank]) @ Vh[:rank])
    return clone


OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Training of chapter 9: Adam, or SGD with momentum as in the code of Bietti et al. (2023), on fresh batches
    of the bigram task (online, one batch per step)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-2
    loss: str = "all"           # "all": next-token loss on every position; "in_context": only there
    eval_every: int = 25
    eval_size: int = 256
    seed: int = 0               # data seed (the model's seed is in InductionConfig)
    optimizer: str = "adam"     # "adam", or "sgd" (with momentum and weight decay)
    momentum: float = 0.9       # SGD only
    weight_decay: float = 0.0   # SGD only: adds weight_decay * W to each gradient
    frozen_until: dict = field(default_factory=dict)  # weight name -> first step at which it is updated
    schedule: str = "constant"  # "cosine": step t (1..steps) uses lr * (1 + cos(pi (t - 1) / steps)) / 2

    def __post_init__(self):
        check_int("steps", self.steps, 1, 10**7)
        check_int("batch_size", self.batch_size, 1, 1 << 16)
        check_float("lr", self.lr, 0.0, 1e3, low_open=True)
        check_choice("loss", self.loss, LOSSES)
        check_int("eval_every", self.eval_every, 1)
        check_int("eval_size", self.eval_size, 1, 1 << 16)
        check_int("seed", self.seed, 0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_float("momentum", self.momentum, 0.0, 1.0)
        check_float("weight_decay", self.weight_decay, 0.0, 1.0)
        if not isinstance(self.frozen_until, dict):
            raise ArgumentTypeError(f"frozen_until must be a dict of weight name -> step, got {self.frozen_until!r}")
        for name, step in self.frozen_until.items():
            check_choice("frozen_until", name, WEIGHTS)
            check_int(f"frozen_until[{name!r}]", step, 0, 10**7)

    def lr_at(self, step: int) -> float:
        """The step size of step ``step`` (1 .. steps): ``lr``, or with ``schedule="cosine"`` ``lr`` decayed along
        half a cosine, from ``lr`` at step 1 towards 0 at the last step."""
        check_int("step", step, 1, self.steps)
        if self.schedule == "constant":
            return self.lr
        return self.lr * (1.0 + math.cos(math.pi * (step - 1) / self.steps)) / 2.0


def training_loss(model: InductionTransformer, batch: BigramBatch, loss: str = "all") -> torch.Tensor:
    """Mean cross-entropy of next-token prediction over every position, or over the in-context positions only."""
    logits = model(batch.inputs)  # (B, T, N)
    if loss == "all":
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())
    mask = batch.in_context
    if not mask.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], batch.targets[mask])


def train(model: InductionTransformer, task: BigramTask, stats: BigramStats, config: TrainConfig = TrainConfig(),
          measure: Callable[[InductionTransformer, int], dict] | None = None,
          device: torch.device | str = "cpu") -> list[dict]:
    """Train ``model`` in place (chapter 9, "training"); returns one row per evaluation (step 0 included):
    step, in-context accuracy, global-bigram agreement, loss, and whatever ``measure(model, step)`` adds.
    A weight named in ``config.frozen_until`` keeps its value until that step (its first update is that step's)."""
    if not isinstance(model, InductionTransformer):
        raise ArgumentTypeError(f"model must be an InductionTransformer, got {type(model).__name__}")
    if task.T > model.cfg.T:
        raise ValueError(f"task.T = {task.T} exceeds the model's T = {model.cfg.T}")
    untrained = sorted(set(config.frozen_until) - set(model.cfg.trainable))
    if untrained:
        raise ValueError(f"frozen_until names {untrained}, which the model does not train "
                         f"(trainable: {model.cfg.trainable})")
    dev = check_device(device)
    model.to(dev)
    names = model.cfg.trainable
    start = {n: config.frozen_until.get(n, 1) for n in names}  # first step at which each weight moves
    state = {n: (torch.zeros_like(getattr(model, n)), torch.zeros_like(getattr(model, n))) for n in names}
    gen = generator(config.seed)
    held_out = batch_to(sample_batch(task, stats, config.eval_size, generator(config.seed + 10**6)), dev)
    rows = []

    def record(step: int) -> None:
        row = {"step": step, **evaluate(model, held_out, stats)}
        if measure is not None:
            row.update(measure(model, step))
        rows.append(row)

    record(0)
    for step in range(1, config.steps + 1):
        batch = batch_to(sample_batch(task, stats, config.batch_size, gen), dev)
        active = [n for n in names if step >= start[n]]
        if active:
            loss = training_loss(model, batch, config.loss)
            grads = torch.autograd.grad(loss, [getattr(model, n) for n in active])
            with torch.no_grad():
                for name, grad in zip(active, grads):
                    _update_(getattr(model, name), grad, state[name], config, step - max(start[name], 1) + 1,
                             config.lr_at(step))
        if step % config.eval_every == 0 or step == config.steps:
            record(step)
    return rows


def _update_(param: torch.Tensor, grad: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
             config: TrainConfig, count: int, lr: float) -> None:
    """One optimizer step of size ``lr`` on ``param`` in place: Adam (``train.adam_update_``, ``count`` its own
    steps), or SGD with momentum and weight decay in the arithmetic of ``torch.optim.SGD`` (``state[0]`` its
    momentum buffer)."""
    if config.optimizer == "adam":
        adam_update_(param, grad, state, lr, count)
        return
    direction = grad + config.weight_decay * param if config.weight_decay else grad
    buffer = state[0]
    if count == 1:
        buffer.copy_(direction)
    else:
        buffer.mul_(config.momentum).add_(direction)
    param.sub_(lr * buffer)


def batch_to(batch: BigramBatch, device: torch.device | str) -> BigramBatch:
    """``batch`` with its tensors on ``device``."""
    device = torch.device(device)
    if device.type == "cpu":
        return batch
    return BigramBatch(*(getattr(batch, f).to(device) for f in ("tokens", "outputs", "trigger", "in_context",
                                                                 "answer")))


# ---- gradients with noisy inputs (the lemma) -------------------------------------------------------------------

def linear_readout_loss(W: torch.Tensor, U: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L(W) = mean_i CE(y_i, (u_k^T W x_i)_k) for inputs X (n, d), labels y (n,), outputs U (N, d'), W (d', d)
    (chapter 9, Lemma "gradients with noisy inputs", on the empirical distribution of the n pairs)."""
    return F.cross_entropy(X @ W.T @ U.T, y)  # (n, N) logits


def lemma_gradient(W: torch.Tensor, U: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of ``linear_readout_loss`` by chapter 9, eq. "noisy gradient": sum_k p(y=k) u_k (mu^_k - mu_k)^T
    with mu_k = E[x | y = k] and mu^_k = E_x[p^_W(k | x) x] / p(y = k); every label must occur (p(y = k) > 0)."""
    N, n = U.shape[0], X.shape[0]
    if y.shape != (n,) or int(y.min()) < 0 or int(y.max()) >= N:
        raise ValueError(f"y must hold n = {n} labels in [0, {N})")
    counts = torch.bincount(y, minlength=N).to(X.dtype)  # (N,)
    if bool((counts == 0).any()):
        raise ValueError("every label k must occur at least once: the lemma divides by p(y = k)")
    p_y = counts / n  # (N,)
    p_hat = (X @ W.T @ U.T).softmax(dim=1)  # (n, N): p^_W(k | x_i)
    mu = F.one_hot(y, N).to(X.dtype).T @ X / counts[:, None]  # (N, d): E[x | y = k]
    mu_hat = p_hat.T @ X / n / p_y[:, None]  # (N, d): E[p^(k | x) x] / p(y = k)
    return U.T @ (p_y[:, None] * (mu_hat - mu))  # (d', d)


# ---- three gradient steps (the theorem, in its simplified setting) ---------------------------------------------

@dataclass(frozen=True)
class StepSetting:
    """The simplified setting of chapter 9's Theorem "three gradient steps" (our reconstruction): one trigger
    q = token 0 that occurs twice, at a uniform position s < T - 1 followed by the output o and at the last
    position T; every other token, and o, uniform on [N] minus q; orthonormal embeddings (infinite width)."""

    N: int = 48                 # vocabulary; the theorem wants N >> T
    T: int = 12                 # sequence length (the query is z_T = q)
    samples: int = 4096         # sequences standing in for the population
    seed: int = 0

    def __post_init__(self):
        check_int("N", self.N, 3, 4096)
        check_int("T", self.T, 3, 512)
        check_int("samples", self.samples, 1, 1 << 20)
        check_int("seed", self.seed, 0)


def step_model(setting: StepSetting, dtype: torch.dtype = torch.float32) -> InductionTransformer:
    """The two-layer model of the simplified setting: e_k, u_k, p_t, e~_k = W_OV^1 e_k and W_OV^1 p_t are
    3N + 2T orthonormal vectors (the limit of random embeddings at infinite width); W_OV^1 is the partial isometry
    e_k -> e~_k, p_t -> W_OV^1 p_t; W_KQ^1 = W_KQ^2 = W_OV^2 = 0 (uniform attention, no output)."""
    N, T = setting.N, setting.T
    d = 3 * N + 2 * T
    cfg = InductionConfig(N=N, d=d, T=T, layers=2, trainable=("KQ1", "KQ2", "OV2"), seed=setting.seed,
                          values="embeddings")
    model = InductionTransformer(cfg).to(dtype)
    basis = torch.eye(d, dtype=dtype)  # (d, d)
    e, u, p = basis[:N], basis[N:2 * N], basis[2 * N:2 * N + T]  # (N, d), (N, d), (T, d)
    e_tilde, p_tilde = basis[2 * N + T:3 * N + T], basis[3 * N + T:]  # (N, d), (T, d)
    with torch.no_grad():
        model.E.copy_(e)
        model.U.copy_(u)
        model.P.copy_(p)
        model.OV1[0] = e_tilde.T @ e + p_tilde.T @ p  # (d, d): e_k -> e~_k, p_t -> p~_t
    return model


def step_batch(setting: StepSetting, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``setting.samples`` sequences (M, T) of the simplified setting and their targets o (M,)."""
    N, T, M = setting.N, setting.T, setting.samples
    gen = generator(setting.seed if seed is None else seed)
    tokens = torch.randint(1, N, (M, T), generator=gen)  # (M, T): uniform on [N] minus q = 0
    first = torch.randint(0, T - 2, (M,), generator=gen)  # (M,): first occurrence s of q, s + 1 < T - 1
    rows = torch.arange(M)
    tokens[rows, first] = 0
    tokens[:, -1] = 0
    return tokens, tokens[rows, first + 1]


def last_position_loss(model: InductionTransformer, tokens: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the prediction at the last position (the second occurrence of the trigger)."""
    return F.cross_entropy(model(tokens)[:, -1], y)


def gradient_steps(setting: StepSetting, lrs: dict[str, float],
                   order: tuple[str, ...] = ("OV2", "KQ2", "KQ1")) -> list[dict]:
    """One full-batch gradient step on each weight of ``order`` in turn, from zero (chapter 9, Theorem "three
    gradient steps"). Returns a row per stage (before the first step, then after each): the norms of the three
    gradients at that point, the three probes and the accuracy and loss at the last position."""
    model = step_model(setting)
    tokens, y = step_batch(setting)
    q = torch.tensor([0])
    # the outputs are the tokens other than q; the output follows q at positions 1 .. T - 2 (0-based)
    outputs, positions = torch.arange(1, setting.N), torch.arange(1, setting.T - 1)
    names = ("OV2", "KQ2", "KQ1")
    rows = []
    for stage, name in enumerate((None,) + tuple(order)):
        if name is not None:
            check_choice("order", name, names)
            lr = check_float(f"lrs[{name!r}]", lrs[name], 0.0)
            grad = torch.autograd.grad(last_position_loss(model, tokens, y), getattr(model, name))[0]
            with torch.no_grad():
                getattr(model, name).sub_(lr * grad)
        grads = torch.autograd.grad(last_position_loss(model, tokens, y), [getattr(model, n) for n in names])
        with torch.no_grad():
            logits = model(tokens)[:, -1]  # (M, N)
            rows.append({"stage": stage, "step": name or "init",
                         **{f"grad_{n}": g.norm().item() for n, g in zip(names, grads)},
                         **{f"probe_{k}": v for k, v in memory_probes(model, q, outputs, positions).items()},
                         "accuracy": (logits.argmax(1) == y).double().mean().item(),
                         "loss": F.cross_entropy(logits, y).item()})
    return rows
