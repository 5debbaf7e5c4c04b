"""The batched transformer trainer of chapter 5: many one-layer transformers trained as one computation.

Training one configuration at a time is far too slow for a capacity sweep, so this module trains many runs of the
one-layer transformer of ``factlib.models`` as one computation: every trainable weight carries a leading run
dimension (W_Q is (runs, H, d, d_h)), runs of one shape (d, H, d_h, m) form a group, and runs that differ in
the task (S, R, D, noise tokens) are padded to the group's largest vocabulary and answer set, the padded
answers masked with -inf. Each run keeps its own frozen embeddings (exactly those of ``OneLayerTransformer``
for its ``ModelConfig``), its own fact table, its own data stream and its own learning rate:

- **data**: every random integer of run r is a hash of (run key, stream, step, index) (``uniform_ints``,
  splitmix64 on int64 tensors), so all runs of a group draw their batch in one vectorised call on the device,
  and a run sees the same data whatever else is in its batch;
- **optimiser**: Adam written on the batched tensors with a per-run learning rate;
- **stopping**: every ``eval_every`` steps each run is evaluated on fresh samples; a run at the threshold
  stops (success), a run that made no progress for ``patience`` steps or ran out of steps stops (failure), and
  finished runs leave the batch.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace

import torch

from ._validate import check_float, check_int
from .config import generator
from .models import ModelConfig, OneLayerTransformer, parameter_count
from .task import TaskConfig, fact_table
from .train import adam_update_

# ---- counter-based random integers ------------------------------------------------------------------------------

_GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # splitmix64's increment, as a signed int64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on an int64 tensor (multiplications wrap modulo 2^64): a bijective hash."""
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def uniform_ints(keys: torch.Tensor, counters: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Integers uniform in [0, n_r) for run r: hash of (keys[r], counter), int64 of the counters' shape.

    ``keys`` (R,) and ``n`` (R,) broadcast against ``counters`` (R, ...). The top 53 bits of the hash modulo n
    have a bias below n / 2^53, invisible at any sample size we use.
    """
    shape = (-1,) + (1,) * (counters.ndim - 1)
    h = mix64(keys.view(shape) + counters * _GOLDEN)  # (R, ...)
    return _shr(h, 11) % n.view(shape)


def run_key(seed: int, task: TaskConfig) -> int:
    """The data stream of a run: a hash of its seed and task sizes (runs differing only in lr share data)."""
    z = torch.tensor([seed * 1_000_003 + task.S * 7919 + task.R * 104_729 + task.D * 15_485_863
                      + task.n_noise * 179_424_673 + task.T], dtype=torch.int64)
    return int(mix64(mix64(z))[0])


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

    def model_config(self) -> ModelConfig:
        return ModelConfig.for_task(self.task, d=self.d, H=self.H, d_h=self.d_h, m=self.m, seed=self.seed)


@dataclass(frozen=True)
class Protocol:
    """How runs are trained and judged (chapter 5); the defaults are the paper's protocol."""

    steps: int = 2**14          # Adam steps at most
    batch_size: int = 1024      # fresh samples per step and run
    eval_every: int = 128       # steps between evaluations
    eval_size: int = 1024       # fresh samples per evaluation and run
    threshold: float = 0.99     # success: evaluated accuracy >= threshold
    patience: int = 4096        # failure: no progress (accuracy + min_delta, or loss x (1 - min_delta)) for this long
    min_delta: float = 0.01
    foresight: float = 2.0      # failure: in the second half of the budget, accuracy + foresight x (recent accuracy
                                # gain per step) x (steps left) stays below the threshold (0 turns this rule off)
    init_scale: float = 1.0     # multiplies the initial weights (see ``init_weights``)

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


@dataclass(frozen=True)
class Outcome:
    """What happened to one run."""

    reached: bool      # evaluated accuracy reached the threshold
    steps: int         # steps trained when it stopped
    accuracy: float    # last evaluated accuracy
    best_accuracy: float
    curve: tuple = ()  # (step, evaluated accuracy) at every evaluation


WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "W1", "b1", "W2")


def init_weights(run: Run, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Initial weights of one run, from its own generator (seed 2^32 + seed), float32 on the CPU.

    Our choice (the paper does not state one): W_Q, W_K, W_V, W1 with i.i.d. N(0, 1/d) entries, W_O with
    N(0, 1/(H d_h)), W2 with N(0, 1/m), b1 = 0, all times ``scale``: every block starts with outputs of order
    one. Zero W_O and W_V together would stall attention (each one's gradient is proportional to the other).
    """
    d, H, d_h, m = run.shape
    gen = generator(2**32 + run.seed)

    def normal(*shape, fan_in):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * (scale / math.sqrt(max(fan_in, 1)))

    return {"W_Q": normal(H, d, d_h, fan_in=d), "W_K": normal(H, d, d_h, fan_in=d),
            "W_V": normal(H, d, d_h, fan_in=d), "W_O": normal(H, d_h, d, fan_in=H * d_h),
            "W1": normal(m, d, fan_in=d), "b1": torch.zeros(m, dtype=torch.float64),
            "W2": normal(d, m, fan_in=m)}


# ---- a group of runs of one shape, as batched tensors --------------------------------------------------------------

class RunGroup:
    """Runs of one shape (d, H, d_h, m) as batched tensors: frozen tables padded to the largest task, weights
    with a leading run dimension, and a vectorised sampler. ``forward`` is the model of ``factlib.models``."""

    def __init__(self, runs: list[Run], device: torch.device | str = "cpu", init_scale: float = 1.0):
        if not runs:
            raise ValueError("runs must be a non-empty list of Run")
        shapes = {run.shape for run in runs}
        if len(shapes) != 1:
            raise ValueError(f"runs of a group must share (d, H, d_h, m); got {sorted(shapes)}")
        if len({run.task.T for run in runs}) != 1:
            raise ValueError("runs of a group must share the prompt length T")
        self.runs = list(runs)
        self.d, self.H, self.d_h, self.m = runs[0].shape
        self.T = runs[0].task.T
        self.device = torch.device(device)
        n = len(runs)
        tasks = [run.task for run in runs]
        V, A = max(t.vocab_size for t in tasks), max(t.num_answers for t in tasks)
        S_max, R_max = max(t.S for t in tasks), max(t.R for t in tasks)
        E = torch.zeros(n, V, self.d)  # (n, V, d): rows past a run's vocabulary stay zero, never gathered
        U = torch.zeros(n, A, self.d)  # (n, A, d)
        table = torch.zeros(n, S_max, R_max, dtype=torch.long)  # (n, S, R)
        weights = {k: [] for k in WEIGHTS}
        for i, run in enumerate(runs):
            model = OneLayerTransformer(run.model_config())  # the same draws as the per-model code
            E[i, :run.task.vocab_size], U[i, :run.task.num_answers] = model.E, model.U
            table[i, :run.task.S, :run.task.R] = fact_table(run.task, 2**31 + run.seed)
            for k, v in init_weights(run, init_scale).items():
                weights[k].append(v.float())
        long = {"dtype": torch.long, "device": self.device}
        self.S = torch.tensor([t.S for t in tasks], **long)  # (n,)
        self.R = torch.tensor([t.R for t in tasks], **long)  # (n,)
        self.n_noise = torch.tensor([max(t.n_noise, 1) for t in tasks], **long)  # (n,)
        self.noise_width = max(max(t.n_noise, 1) for t in tasks)  # columns of the noise counts (a Python int: no sync)
        self.eos = torch.tensor([t.eos for t in tasks], **long)  # (n,)
        self.keys = torch.tensor([run_key(run.seed, run.task) for run in runs], **long)  # (n,)
        self.lr = torch.tensor([run.lr for run in runs], device=self.device)  # (n,)
        self.E, self.U, self.table = E.to(self.device), U.to(self.device), table.to(self.device)
        mask = torch.arange(A)[None, :] < torch.tensor([t.num_answers for t in tasks])[:, None]  # (n, A)
        self.answer_bias = torch.zeros(n, A).masked_fill(~mask, float("-inf")).to(self.device)  # (n, A)
        self.weights = {k: torch.stack(v).to(self.device) for k, v in weights.items()}  # (n, ...) each
        self.index = torch.arange(n, device=self.device)  # (n,) position of each active run in ``runs``

    def __len__(self) -> int:
        return len(self.index)

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the runs where ``mask`` (active,) is False from every batched tensor."""
        for name in ("S", "R", "n_noise", "eos", "keys", "lr", "E", "U", "table", "answer_bias", "index"):
            setattr(self, name, getattr(self, name)[mask])
        self.weights = {k: v[mask] for k, v in self.weights.items()}

    def sample_parts(self, step: int, batch_size: int, stream: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A fresh batch for every active run as its parts: subjects (n, B), relations (n, B), the T - 3 noise
        tokens' indices in [0, n_noise) (n, B, T-3) and answers (n, B), all long on the device.

        Subjects and relations uniform, noise uniform and independent: the distribution of
        ``factlib.task.sample_batch`` up to the positions, which the model does not see (``sample`` adds them).
        Drawn by ``uniform_ints``: a sample depends only on (run key, stream, step, index in the batch).
        """
        n, B, k = len(self), batch_size, self.T - 3
        per_sample = 2 + (k + 1) // 2  # s, r, then two noise tokens per hash (each from 32 of its bits)
        base = stream * 2**44 + step * B * per_sample
        counters = base + torch.arange(B * per_sample, device=self.device).view(1, B, per_sample)  # (1, B, p)
        h = mix64(self.keys.view(-1, 1, 1) + counters * _GOLDEN)  # (n, B, p) 64-bit hashes
        s = _shr(h[:, :, 0], 11) % self.S[:, None]  # (n, B)
        r = _shr(h[:, :, 1], 11) % self.R[:, None]  # (n, B)
        halves = torch.stack([h[:, :, 2:] & 0xFFFFFFFF, _shr(h[:, :, 2:], 32)], dim=3).flatten(2)[:, :, :k]  # (n, B, k)
        noise = halves % self.n_noise[:, None, None]  # (n, B, T-3): bias below n_noise / 2^32
        rows = torch.arange(n, device=self.device)[:, None]
        return s, r, noise, self.table[rows, s, r]

    def sample(self, step: int, batch_size: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``sample_parts`` as prompts (n, B, T) long, with answers (n, B): the subject and the
        relation at two distinct uniform positions among the first T - 1, the noise tokens in the other
        positions in their drawn order, EOS last (the layout of ``factlib.task.prompts_for_pairs``)."""
        s, r, noise, answers = self.sample_parts(step, batch_size, stream)
        n, B, L = len(self), batch_size, self.T - 1
        counters = stream * 2**44 + 2**43 + step * B * 2 + torch.arange(B * 2, device=self.device).view(1, B, 2)
        ones = torch.ones_like(self.S)
        i = uniform_ints(self.keys, counters[:, :, 0], ones * L)  # (n, B) subject position
        j = uniform_ints(self.keys, counters[:, :, 1], ones * (L - 1))  # (n, B) relation position, i skipped
        j = j + (j >= i).long()
        pos = torch.arange(L, device=self.device).view(1, 1, L)
        slot = pos - (pos > i[..., None]).long() - (pos > j[..., None]).long()  # (n, B, T-1): noise index per slot
        body = (self.S + self.R)[:, None, None] + noise.gather(2, slot.clamp(max=L - 3))  # (n, B, T-1)
        body = torch.where(pos == i[..., None], s[..., None], body)
        body = torch.where(pos == j[..., None], (self.S[:, None] + r)[..., None], body)
        tokens = torch.cat([body, self.eos[:, None, None].expand(n, B, 1)], dim=2)  # (n, B, T)
        return tokens, answers

    def parts(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(subjects (n, B), relations (n, B), noise counts (n, B, n_noise)) of well-formed prompts (n, B, T)."""
        S, Rr, off = self.S.view(-1, 1, 1), self.R.view(-1, 1, 1), (self.S + self.R).view(-1, 1, 1)
        is_s, is_r = tokens < S, (tokens >= S) & (tokens < off)  # (n, B, T)
        is_noise = (tokens >= off) & (tokens < self.eos.view(-1, 1, 1))
        s = torch.where(is_s, tokens, 0).sum(2)  # (n, B)
        r = torch.where(is_r, tokens - S, 0).sum(2)  # (n, B)
        counts = torch.zeros(*tokens.shape[:2], self.noise_width, device=self.device)  # (n, B, n_noise)
        counts.scatter_add_(2, torch.where(is_noise, tokens - off, 0), is_noise.float())
        return s, r, counts

    def noise_counts(self, noise: torch.Tensor) -> torch.Tensor:
        """Counts (n, B, n_noise) float of the noise indices (n, B, k)."""
        counts = torch.zeros(*noise.shape[:2], self.noise_width, device=self.device)
        return counts.scatter_add_(2, noise, torch.ones_like(noise, dtype=counts.dtype))

    def forward(self, tokens: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (n, B, A) of every run on its well-formed prompts ``tokens`` (n, B, T); padded answers -inf."""
        return self.forward_parts(*self.parts(tokens), weights)

    def forward_parts(self, s: torch.Tensor, r: torch.Tensor, counts: torch.Tensor,
                      weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (n, B, A) from prompts given as parts: subjects (n, B), relations (n, B), noise counts
        (n, B, n_noise). The function of ``OneLayerTransformer.forward``, organised for speed.

        The query depends only on EOS, so every vocabulary token's score and value are computed once per step
        as tables. The model has no positions, so a prompt is the multiset {s, r, EOS} plus noise: the three
        fixed tokens are gathered, and the noise enters the softmax through its counts, one matrix product
        counts @ [exp(score) value, exp(score)] over the noise vocabulary.
        """
        Wt = self.weights if weights is None else weights
        n, B = s.shape
        rows = torch.arange(n, device=self.device)
        x_eos = self.E[rows, self.eos]  # (n, d)
        q = torch.einsum("rd,rhde->rhe", x_eos, Wt["W_Q"])  # (n, H, d_h)
        kq = torch.einsum("rhde,rhe->rhd", Wt["W_K"], q) / self.d_h ** 0.5  # (n, H, d): score(z) = kq . e_z
        # the noise vocabulary of each run, rows S + R .. S + R + n_noise - 1 (padded ones get zero counts)
        Nn = counts.shape[2]
        noise_ids = ((self.S + self.R)[:, None] + torch.arange(Nn, device=self.device)).clamp(
            max=self.E.shape[1] - 1)  # (n, Nn)
        x_noise = self.E[rows[:, None], noise_ids]  # (n, Nn, d), frozen
        noise_scores = torch.bmm(x_noise, kq.transpose(1, 2))  # (n, Nn, H)
        valid = torch.arange(Nn, device=self.device)[None, :] < self.n_noise[:, None]  # (n, Nn)
        shift = noise_scores.masked_fill(~valid[..., None], float("-inf")).amax(dim=1).detach()  # (n, H)
        noise_w = torch.exp(noise_scores - shift[:, None, :])  # (n, Nn, H) <= 1
        noise_values = torch.einsum("rnd,rhde->rnhe", x_noise, Wt["W_V"])  # (n, Nn, H, d_h)
        noise_feat = torch.cat([noise_w[..., None] * noise_values, noise_w[..., None]], dim=3)  # (n, Nn, H, d_h+1)
        pooled = torch.bmm(counts, noise_feat.flatten(2)).view(n, B, self.H, self.d_h + 1)  # (n, B, H, d_h+1)
        fixed = torch.stack([s, (self.S[:, None] + r), self.eos[:, None].expand(n, B)], dim=2)  # (n, B, 3)
        x_fixed = self.E[rows[:, None, None], fixed]  # (n, B, 3, d), frozen
        fixed_scores = torch.einsum("rbkd,rhd->rbkh", x_fixed, kq)  # (n, B, 3, H)
        top = torch.maximum(fixed_scores.amax(dim=2), shift[:, None, :]).detach()  # (n, B, H): any shift is exact
        fixed_w = torch.exp(fixed_scores - top[:, :, None, :])  # (n, B, 3, H)
        noise_scale = torch.exp(shift[:, None, :] - top)[..., None]  # (n, B, H, 1)
        fixed_values = torch.bmm(x_fixed.view(n, B * 3, self.d), Wt["W_V"].permute(0, 2, 1, 3).reshape(
            n, self.d, self.H * self.d_h)).view(n, B, 3, self.H, self.d_h)  # (n, B, 3, H, d_h)
        num = (fixed_w[..., None] * fixed_values).sum(dim=2) + noise_scale * pooled[..., :-1]  # (n, B, H, d_h)
        den = fixed_w.sum(dim=2)[..., None] + noise_scale * pooled[..., -1:]  # (n, B, H, 1)
        heads = num / den  # (n, B, H, d_h): the attention-weighted values
        h = x_eos[:, None, :] + torch.einsum("rbhe,rhed->rbd", heads, Wt["W_O"])  # (n, B, d)
        if self.m:
            hidden = torch.relu(torch.einsum("rbd,rmd->rbm", h, Wt["W1"]) + Wt["b1"][:, None, :])  # (n, B, m)
            h = h + torch.einsum("rbm,rdm->rbd", hidden, Wt["W2"])  # (n, B, d)
        return torch.einsum("rbd,rad->rba", h, self.U) + self.answer_bias[:, None, :]  # (n, B, A)

    def model(self, i: int) -> OneLayerTransformer:
        """Run ``i`` (its index in ``runs``, while still active) as a ``OneLayerTransformer`` with its weights."""
        pos = int((self.index == i).nonzero()[0, 0])
        model = OneLayerTransformer(self.runs[i].model_config())
        with torch.no_grad():
            for k in WEIGHTS:
                getattr(model, k).copy_(self.weights[k][pos].cpu())
        return model


def evaluate_group(group: RunGroup, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and loss of every active run on ``size`` fresh samples (stream 1), each (n,)."""
    s, r, noise, answers = group.sample_parts(step, size, stream=1)
    with torch.no_grad():
        logits = group.forward_parts(s, r, group.noise_counts(noise))  # (n, B, A)
        acc = (logits.argmax(dim=2) == answers).float().mean(dim=1)  # (n,)
        loss = -logits.log_softmax(dim=2).gather(2, answers[..., None]).mean(dim=(1, 2))  # (n,)
    return acc, loss


def train_group(group: RunGroup, protocol: Protocol = Protocol(), keep_models: bool = False
                ) -> tuple[list[Outcome], list[OneLayerTransformer | None]]:
    """Train every run of ``group`` with Adam (per-run lr) until it succeeds or fails (see ``Protocol``).

    Returns the outcome of each run, in the order of ``group.runs``, and, with ``keep_models``, each run's
    trained ``OneLayerTransformer`` (at the step it stopped).
    """
    n0, dev = len(group.runs), group.device
    outcomes: list[Outcome | None] = [None] * n0
    models: list[OneLayerTransformer | None] = [None] * n0
    moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in group.weights.items()
               if group.m or k in WEIGHTS[:4]}  # m = 0: no MLP weights to train
    best_acc = torch.zeros(n0, device=dev)
    best_loss = torch.full((n0,), float("inf"), device=dev)
    last_progress = torch.zeros(n0, dtype=torch.long, device=dev)
    last_acc = torch.zeros(n0, device=dev)
    rate = torch.zeros(n0, device=dev)  # moving average of the accuracy gained per step
    curves: list[list] = [[] for _ in range(n0)]
    evals: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, run indices, accuracies), read at the end
    for step in range(1, protocol.steps + 1):
        params = {k: v.requires_grad_(True) for k, v in group.weights.items() if group.m or k in WEIGHTS[:4]}
        s, r, noise, answers = group.sample_parts(step, protocol.batch_size)  # (n, B) x 2, (n, B, T-3), (n, B)
        logits = group.forward_parts(s, r, group.noise_counts(noise), params)  # (n, B, A)
        # the sum over runs of each run's mean loss: run r's gradient is that of its own loss
        loss = -logits.log_softmax(dim=2).gather(2, answers[..., None]).mean(dim=(1, 2)).sum()
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        with torch.no_grad():
            for k, w in params.items():
                w = w.detach()  # the gradient is taken: update the values in place, outside the graph
                adam_update_(w, grads[k], moments[k], group.lr.view((-1,) + (1,) * (w.ndim - 1)), step)
                group.weights[k] = w
        if step % protocol.eval_every and step != protocol.steps:
            continue
        acc, loss_r = evaluate_group(group, step, protocol.eval_size)  # (n,), (n,)
        idx = group.index
        improved = (acc >= best_acc[idx] + protocol.min_delta) | (loss_r <= best_loss[idx] * (1 - protocol.min_delta))
        last_progress[idx] = torch.where(improved, step, last_progress[idx])
        best_acc[idx] = torch.maximum(best_acc[idx], acc)
        best_loss[idx] = torch.minimum(best_loss[idx], loss_r)
        evals.append((step, idx, acc))
        rate[idx] = 0.5 * rate[idx] + 0.5 * (acc - last_acc[idx]) / protocol.eval_every
        last_acc[idx] = acc
        hopeless = (acc + protocol.foresight * rate[idx].clamp(min=0) * (protocol.steps - step) < protocol.threshold) & (
            2 * step >= protocol.steps) & (protocol.foresight > 0)
        done = (acc >= protocol.threshold) | (step - last_progress[idx] >= protocol.patience) | hopeless | (
            step == protocol.steps)
        if bool(done.any()):
            for pos in done.nonzero()[:, 0].tolist():  # one host round-trip per evaluation, not per step
                i = int(idx[pos])
                outcomes[i] = Outcome(reached=bool(acc[pos] >= protocol.threshold), steps=step,
                                      accuracy=float(acc[pos]), best_accuracy=float(best_acc[i]))
                if keep_models:
                    models[i] = group.model(i)
            keep = ~done
            moments = {k: (m1[keep], m2[keep]) for k, (m1, m2) in moments.items()}
            group.keep(keep)
            if not len(group):
                break
    for step, idx, acc in evals:
        for i, a in zip(idx.tolist(), acc.tolist()):
            curves[i].append((step, a))
    return [replace(o, curve=tuple(curves[i])) for i, o in enumerate(outcomes)], models


def train_runs(runs: list[Run], protocol: Protocol = Protocol(), device: torch.device | str = "cpu",
               keep_models: bool = False, max_runs: int = 256) -> tuple[list[Outcome], list]:
    """Train ``runs``, grouped by shape (d, H, d_h, m), at most ``max_runs`` per batched computation.

    Returns (outcomes, models) in the order of ``runs`` (models are None unless ``keep_models``).
    """
    runs = list(runs)
    for run in runs:
        if not isinstance(run, Run):
            raise ValueError(f"runs must be Run instances, got {type(run).__name__}")
    max_runs = check_int("max_runs", max_runs, 1)
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        by_shape[(run.shape, run.task.T)].append(i)
    outcomes: list = [None] * len(runs)
    models: list = [None] * len(runs)
    for members in by_shape.values():
        for start in range(0, len(members), max_runs):
            chunk = members[start:start + max_runs]
            group = RunGroup([runs[i] for i in chunk], device, protocol.init_scale)
            out, mods = train_group(group, protocol, keep_models)
            for i, o, mo in zip(chunk, out, mods):
                outcomes[i], models[i] = o, mo
    return outcomes, models


def run_table(run: Run) -> torch.Tensor:
    """The fact table a run is trained on, long (S, R)."""
    return fact_table(run.task, 2**31 + run.seed)


def tradeoff_grid(task: TaskConfig, d: int, d_h: int, Hs, ms, lr: float = 1e-2, protocol: Protocol = Protocol(),
                  seed: int = 0, device: torch.device | str = "cpu", eval_size: int = 2048) -> dict:
    """Train one model per (H, m) on ``task`` (chapter 5, Fig. 4 right in small) and describe each: a dict
    (H, m) -> {"accuracy", "reached", "steps", "params", "curve", "blocks"}, where "blocks" holds the accuracy
    of the attention's and the MLP's logits alone (``block_logits``) on ``eval_size`` fresh prompts."""
    from .models import block_logits
    from .task import sample_batch

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
                                 "params": parameter_count(run.model_config())["total"], "curve": list(outcome.curve),
                                 "blocks": blocks}
    return cells
