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
- **optimiser**: every weight of every run in one flat tensor (runs, P); the gradient is written by hand (the
  backward pass of ``RunGroup._forward``, checked against autograd in the tests) and one Adam update with a
  per-run learning rate moves all of them;
- **stopping**: every ``eval_every`` steps each run is evaluated on fresh samples; a run at the threshold
  stops (success), a run that made no progress for ``patience`` steps or ran out of steps stops (failure), and
  finished runs leave the batch; a successful run's every (s, r) pair is then checked (``population_check``).
"""
from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import dataclass, replace

import torch

from ._validate import check_choice, check_float, check_int
from .config import generator
from .models import ModelConfig, OneLayerTransformer, parameter_count
from .task import TaskConfig, evaluate_population, fact_table
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
                                # 2 it stopped 7 of 58 eventual successes, book/data/fig4-stopping-quick.json)
    init_scale: float = 1.0     # multiplies the initial weights (see ``init_weights``)
    init: str = "release"       # "release": the authors' initialisation; "ours": this book's first one
    eos_residual: bool = False  # add the EOS embedding to the attention output (the authors' model does not)
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


WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "W1", "b1", "W2")
INITS = ("release", "ours")


def weight_shapes(d: int, H: int, d_h: int, m: int) -> dict[str, tuple[int, ...]]:
    """The shape of every trainable weight of one run, in the order of ``WEIGHTS``."""
    return {"W_Q": (H, d, d_h), "W_K": (H, d, d_h), "W_V": (H, d, d_h), "W_O": (H, d_h, d),
            "W1": (m, d), "b1": (m,), "W2": (d, m)}


def init_weights(run: Run, scale: float = 1.0, init: str = "release") -> dict[str, torch.Tensor]:
    """Initial weights of one run, from its own generator (seed 2^32 + seed), float64 on the CPU, times ``scale``.

    ``init="release"`` (the default): the initialisation of the authors' released code, W_Q, W_K, W_V with
    i.i.d. N(0, 1/d_h) entries, W_O with N(0, 1/d), and the MLP at a dense layer's default, W1 with N(0, 1/d),
    W2 with N(0, 1/m) (variance 1/fan_in; the release's framework truncates the normal at two standard
    deviations, we do not) and b1 = 0. ``init="ours"``: this book's first choice, W_Q, W_K, W_V, W1 with
    N(0, 1/d), W_O with N(0, 1/(H d_h)), W2 with N(0, 1/m), b1 = 0. Zero W_O and W_V together would stall
    attention (each one's gradient is proportional to the other).
    """
    d, H, d_h, m = run.shape
    check_choice("init", init, INITS)
    gen = generator(2**32 + run.seed)

    def normal(*shape, var):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * (scale * math.sqrt(var))

    attn = 1 / d_h if init == "release" else 1 / d
    out = 1 / d if init == "release" else 1 / (H * d_h)
    return {"W_Q": normal(H, d, d_h, var=attn), "W_K": normal(H, d, d_h, var=attn),
            "W_V": normal(H, d, d_h, var=attn), "W_O": normal(H, d_h, d, var=out),
            "W1": normal(m, d, var=1 / d), "b1": torch.zeros(m, dtype=torch.float64),
            "W2": normal(d, m, var=1 / max(m, 1))}


# ---- a group of runs of one shape, as batched tensors --------------------------------------------------------------

_MASK21 = (1 << 21) - 1
#: elements of the largest per-chunk tensor (chunk runs x batch x max(answers, vocabulary)) on a CPU: about 4 MB,
#: so a chunk's intermediates stay in cache and are reused by the allocator instead of mapped afresh every step
CPU_CHUNK_ELEMENTS = 2**20


class RunGroup:
    """Runs of one shape (d, H, d_h, m) as batched tensors: frozen tables padded to the largest task, weights
    with a leading run dimension, and a vectorised sampler. ``forward`` is the model of ``factlib.models``.

    The weights of all runs live in one flat tensor ``flat`` (runs, P), so that Adam updates every weight of
    every run in a handful of operations; ``weights`` gives each weight as a view (runs, ...) into it.

    With ``mixed_shapes``, runs of different shapes share the group (many more runs in flight on a GPU): every
    size is padded to the group's largest d, H, d_h and m with zeros (embeddings, unembeddings and weights). The
    padding is exact and stays so: a zero row or column gets an exactly zero gradient, and Adam leaves a weight
    whose gradient has always been zero at zero.
    """

    def __init__(self, runs: list[Run], device: torch.device | str = "cpu", init_scale: float = 1.0,
                 init: str = "release", eos_residual: bool = False, mixed_shapes: bool = False):
        if not runs:
            raise ValueError("runs must be a non-empty list of Run")
        shapes = {run.shape for run in runs}
        if len(shapes) != 1 and not mixed_shapes:
            raise ValueError(f"runs of a group must share (d, H, d_h, m) unless mixed_shapes; got {sorted(shapes)}")
        if len({run.task.T for run in runs}) != 1:
            raise ValueError("runs of a group must share the prompt length T")
        self.runs = list(runs)
        self.d, self.H, self.d_h, self.m = (max(shape[k] for shape in shapes) for k in range(4))
        self.T = runs[0].task.T
        self.device = torch.device(device)
        self.eos_residual = bool(eos_residual)
        self.shapes = weight_shapes(self.d, self.H, self.d_h, self.m)
        n = len(runs)
        tasks = [run.task for run in runs]
        V, A = max(t.vocab_size for t in tasks), max(t.num_answers for t in tasks)
        S_max, R_max = max(t.S for t in tasks), max(t.R for t in tasks)
        E = torch.zeros(n, V, self.d)  # (n, V, d): rows past a run's vocabulary stay zero (count zero)
        U = torch.zeros(n, A, self.d)  # (n, A, d)
        table = torch.zeros(n, S_max, R_max, dtype=torch.long)  # (n, S, R)
        flat = []
        for i, run in enumerate(runs):
            model = OneLayerTransformer(run.model_config())  # the same draws as the per-model code
            E[i, :run.task.vocab_size, :run.d], U[i, :run.task.num_answers, :run.d] = model.E, model.U
            table[i, :run.task.S, :run.task.R] = fact_table(run.task, 2**31 + run.seed)
            w = init_weights(run, init_scale, init)
            padded = {k: torch.zeros(shape, dtype=torch.float64) for k, shape in self.shapes.items()}
            for k, v in w.items():
                padded[k][tuple(slice(0, size) for size in v.shape)] = v  # the run's own block, zeros around it
            flat.append(torch.cat([padded[k].reshape(-1) for k in WEIGHTS]).float())
        long = {"dtype": torch.long, "device": self.device}
        self.S = torch.tensor([t.S for t in tasks], **long)  # (n,)
        self.R = torch.tensor([t.R for t in tasks], **long)  # (n,)
        self.n_noise = torch.tensor([max(t.n_noise, 1) for t in tasks], **long)  # (n,)
        self.eos = torch.tensor([t.eos for t in tasks], **long)  # (n,)
        self.keys = torch.tensor([run_key(run.seed, run.task) for run in runs], **long)  # (n,)
        self.lr = torch.tensor([run.lr for run in runs], device=self.device)  # (n,)
        self.score_scale = torch.tensor([run.d_h ** -0.5 for run in runs], device=self.device)  # (n,) 1/sqrt(d_h)
        self.E, self.U, self.table = E.to(self.device), U.to(self.device), table.to(self.device)
        mask = torch.arange(A)[None, :] < torch.tensor([t.num_answers for t in tasks])[:, None]  # (n, A)
        self.answer_bias = torch.zeros(n, A).masked_fill(~mask, float("-inf")).to(self.device)  # (n, A)
        self.flat = torch.stack(flat).to(self.device)  # (n, P): every weight of every run
        self.index = torch.arange(n, device=self.device)  # (n,) position of each active run in ``runs``
        self.vocab_width, self.answer_width = V, A  # Python ints: no device sync to read them

    def __len__(self) -> int:
        return len(self.index)

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """Each weight as a view (n, ...) into ``flat``."""
        return unflatten(self.flat, self.shapes)

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the runs where ``mask`` (active,) is False from every batched tensor."""
        for name in ("S", "R", "n_noise", "eos", "keys", "lr", "score_scale", "E", "U", "table", "answer_bias",
                     "index", "flat"):
            setattr(self, name, getattr(self, name)[mask])

    def chunks(self, batch_size: int) -> list[slice]:
        """Slices of the active runs computed together: all at once on a GPU; on a CPU, chunks whose largest
        tensor has about ``CPU_CHUNK_ELEMENTS`` elements (see there)."""
        n = len(self)
        if self.device.type != "cpu":
            return [slice(0, n)]
        size = max(1, CPU_CHUNK_ELEMENTS // (batch_size * max(self.answer_width, self.vocab_width, self.T)))
        return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]

    def sample_parts(self, step: int, batch_size: int, stream: int = 0, rows: slice = slice(None)
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A fresh batch for the active runs ``rows`` as its parts: subjects (n, B), relations (n, B), the T - 3
        noise tokens' indices in [0, n_noise) (n, B, T-3) and answers (n, B), all long on the device.

        Subjects and relations uniform, noise uniform and independent: the distribution of
        ``factlib.task.sample_batch`` up to the positions, which the model does not see (``sample`` adds them).
        Each sample hashes (run key, stream, step, index in the batch) into 1 + (T - 3) / 3 words of 64 bits
        (``mix64``): s and r from the two 32-bit halves of the first, three noise tokens from 21-bit pieces of
        each other one; a piece x becomes floor(x n / 2^bits), uniform up to a bias below n / 2^21.
        A sample depends only on the run and its index, not on which runs are drawn with it.
        """
        keys, S, R, n_noise = self.keys[rows], self.S[rows], self.R[rows], self.n_noise[rows]
        B, k = batch_size, self.T - 3
        per_sample = 1 + (k + 2) // 3
        base = stream * 2**44 + step * B * per_sample
        counters = base + torch.arange(B * per_sample, device=self.device).view(1, B, per_sample)  # (1, B, p)
        h = mix64(keys.view(-1, 1, 1) + counters * _GOLDEN)  # (n, B, p) 64-bit hashes
        s = (_shr(h[:, :, 0], 32) * S[:, None]) >> 32  # (n, B): the high half times S, over 2^32
        r = ((h[:, :, 0] & 0xFFFFFFFF) * R[:, None]) >> 32  # (n, B)
        words = h[:, :, 1:]  # (n, B, p - 1)
        pieces = torch.stack([words & _MASK21, _shr(words, 21) & _MASK21, _shr(words, 42) & _MASK21],
                             dim=3).flatten(2)[:, :, :k]  # (n, B, k) 21-bit integers
        noise = (pieces * n_noise[:, None, None]) >> 21  # (n, B, T-3)
        table = self.table[rows]
        return s, r, noise, table[torch.arange(len(keys), device=self.device)[:, None], s, r]

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

    def counts(self, s: torch.Tensor, r: torch.Tensor, noise: torch.Tensor, rows: slice = slice(None)
               ) -> torch.Tensor:
        """How often each vocabulary token occurs in each prompt, (n, B, V) float, from its parts (the model
        has no positions: a prompt is the multiset {s, r, EOS} plus its noise tokens)."""
        S, R, eos = self.S[rows], self.R[rows], self.eos[rows]
        n, B = s.shape
        ids = torch.cat([s[..., None], (S[:, None] + r)[..., None], eos[:, None, None].expand(n, B, 1),
                         (S + R)[:, None, None] + noise], dim=2)  # (n, B, T)
        out = torch.zeros(n, B, self.vocab_width, device=self.device)  # (n, B, V)
        return out.scatter_add_(2, ids, torch.ones(1, device=self.device).expand(ids.shape))

    def token_counts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Counts (n, B, V) of the vocabulary tokens in prompts ``tokens`` (n, B, T)."""
        out = torch.zeros(*tokens.shape[:2], self.vocab_width, device=self.device)  # (n, B, V)
        return out.scatter_add_(2, tokens, torch.ones(1, device=self.device).expand(tokens.shape))

    def forward(self, tokens: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (n, B, A) of every run on its well-formed prompts ``tokens`` (n, B, T); padded answers -inf."""
        return self.forward_counts(self.token_counts(tokens), weights)

    def forward_counts(self, counts: torch.Tensor, weights: dict[str, torch.Tensor] | None = None,
                       rows: slice = slice(None)) -> torch.Tensor:
        """Logits (n, B, A) of the runs ``rows`` from their prompts' token counts (n, B, V); differentiable in
        ``weights`` (default: the group's). The function of ``OneLayerTransformer.forward``."""
        W = {k: v[rows] for k, v in (self.weights if weights is None else weights).items()}
        return self._forward(counts, W, rows)[0]

    def _forward(self, c: torch.Tensor, W: dict[str, torch.Tensor], rows: slice):
        """Logits (n, B, A) and what the gradient needs. The query depends only on EOS, so every vocabulary
        token's score and value are tables computed once per step, and a prompt enters through its counts:
        each head's output is (c @ [exp(score) value]) / (c @ exp(score)), one matrix product.

        The scores are shifted by each head's largest over the vocabulary (exact: the shift cancels) and
        clipped 80 below it, where exp(-80) is still a normal float32: a prompt whose tokens all score 80 below
        the vocabulary's best would otherwise divide zero by zero."""
        E, U, eos = self.E[rows], self.U[rows], self.eos[rows]
        n, B, V = c.shape
        H, d_h, d = self.H, self.d_h, self.d
        x_eos = E[torch.arange(n, device=self.device), eos]  # (n, d)
        q = torch.einsum("rd,rhde->rhe", x_eos, W["W_Q"])  # (n, H, d_h)
        scale = self.score_scale[rows][:, None, None]  # (n, 1, 1): 1/sqrt(d_h) of each run
        kq = torch.einsum("rhde,rhe->rhd", W["W_K"], q) * scale  # (n, H, d): score(z) = kq . e_z
        scores = torch.bmm(E, kq.transpose(1, 2))  # (n, V, H)
        shift = scores.detach().amax(dim=1, keepdim=True)  # (n, 1, H)
        w = torch.exp((scores - shift).clamp(min=-80.0))  # (n, V, H) in (0, 1]
        v = torch.bmm(E, W["W_V"].permute(0, 2, 1, 3).reshape(n, d, H * d_h)).view(n, V, H, d_h)  # (n, V, H, d_h)
        table = torch.cat([w[..., None] * v, w[..., None]], dim=3)  # (n, V, H, d_h + 1)
        pooled = torch.bmm(c, table.view(n, V, H * (d_h + 1))).view(n, B, H, d_h + 1)  # (n, B, H, d_h + 1)
        den = pooled[..., d_h:]  # (n, B, H, 1)
        heads = pooled[..., :d_h] / den  # (n, B, H, d_h): the attention-weighted values
        h0 = torch.bmm(heads.reshape(n, B, H * d_h), W["W_O"].reshape(n, H * d_h, d))  # (n, B, d)
        if self.eos_residual:
            h0 = h0 + x_eos[:, None, :]
        h, a, z = h0, None, None
        if self.m:
            a = torch.baddbmm(W["b1"][:, None, :], h0, W["W1"].transpose(1, 2))  # (n, B, m)
            z = torch.relu(a)  # (n, B, m)
            h = torch.baddbmm(h0, z, W["W2"].transpose(1, 2))  # (n, B, d)
        logits = torch.baddbmm(self.answer_bias[rows][:, None, :], h, U.transpose(1, 2))  # (n, B, A)
        return logits, (E, U, x_eos, q, scale, w, v, den, heads, h0, a, z)

    def loss_and_grad(self, c: torch.Tensor, answers: torch.Tensor, rows: slice = slice(None)
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's mean cross-entropy (n,) on prompts with counts ``c`` (n, B, V) and ``answers`` (n, B), and
        its gradient in the flat layout (n, P), by hand (the backward pass of ``_forward``, no autograd graph)."""
        W = {k: v[rows] for k, v in self.weights.items()}
        with torch.no_grad():
            logits, (E, U, x_eos, q, scale, w, v, den, heads, h0, a, z) = self._forward(c, W, rows)
            n, B, V = c.shape
            H, d_h, d = self.H, self.d_h, self.d
            picked = logits.gather(2, answers[..., None])  # (n, B, 1)
            top = logits.amax(dim=2, keepdim=True)  # (n, B, 1)
            probs = logits.sub_(top).exp_()  # (n, B, A), in place: logits are not needed any more
            total = probs.sum(dim=2, keepdim=True)  # (n, B, 1)
            loss = (total.log() + top - picked).mean(dim=(1, 2))  # (n,)
            probs.mul_((1.0 / B) / total)  # softmax / B
            probs.scatter_add_(2, answers[..., None], torch.full((1,), -1.0 / B, device=self.device).expand(n, B, 1))
            dh = torch.bmm(probs, U)  # (n, B, d): the gradient of the sum of the runs' mean losses
            grads = {}
            if self.m:
                grads["W2"] = torch.bmm(dh.transpose(1, 2), z)  # (n, d, m)
                da = torch.bmm(dh, W["W2"]).mul_(a > 0)  # (n, B, m)
                grads["W1"] = torch.bmm(da.transpose(1, 2), h0)  # (n, m, d)
                grads["b1"] = da.sum(dim=1)  # (n, m)
                dh0 = torch.baddbmm(dh, da, W["W1"])  # (n, B, d)
            else:
                grads["W2"], grads["W1"], grads["b1"] = W["W2"] * 0, W["W1"] * 0, W["b1"] * 0
                dh0 = dh
            heads_flat = heads.reshape(n, B, H * d_h)
            grads["W_O"] = torch.bmm(heads_flat.transpose(1, 2), dh0)  # (n, H d_h, d)
            dheads = torch.bmm(dh0, W["W_O"].reshape(n, H * d_h, d).transpose(1, 2)).view(n, B, H, d_h)
            dnum = dheads / den  # (n, B, H, d_h)
            dden = -(dnum * heads).sum(dim=3, keepdim=True)  # (n, B, H, 1)
            dpooled = torch.cat([dnum, dden], dim=3).view(n, B, H * (d_h + 1))  # (n, B, H (d_h + 1))
            dtable = torch.bmm(c.transpose(1, 2), dpooled).view(n, V, H, d_h + 1)  # (n, V, H, d_h + 1)
            dw = (dtable[..., :d_h] * v).sum(dim=3) + dtable[..., d_h]  # (n, V, H)
            dv = dtable[..., :d_h] * w[..., None]  # (n, V, H, d_h)
            dscores = dw * w  # (n, V, H): exp's derivative (zero where clipped, as for the clip)
            dkq = torch.bmm(dscores.transpose(1, 2), E) * scale  # (n, H, d)
            grads["W_V"] = torch.bmm(E.transpose(1, 2), dv.reshape(n, V, H * d_h)).view(n, d, H, d_h).transpose(1, 2)
            grads["W_K"] = torch.einsum("rhd,rhe->rhde", dkq, q)  # (n, H, d, d_h)
            dq = torch.einsum("rhde,rhd->rhe", W["W_K"], dkq)  # (n, H, d_h)
            grads["W_Q"] = torch.einsum("rd,rhe->rhde", x_eos, dq)  # (n, H, d, d_h)
            flat = torch.cat([grads[k].reshape(n, -1) for k in WEIGHTS], dim=1)  # (n, P)
        return loss, flat

    def model(self, i: int) -> OneLayerTransformer:
        """Run ``i`` (its index in ``runs``, while still active) as a ``OneLayerTransformer`` with its weights."""
        pos = int((self.index == i).nonzero()[0, 0])
        model = OneLayerTransformer(replace(self.runs[i].model_config(), eos_residual=self.eos_residual))
        with torch.no_grad():
            for k, v in self.weights.items():
                own = getattr(model, k)
                own.copy_(v[pos][tuple(slice(0, size) for size in own.shape)].cpu())  # the run's block
        return model


def unflatten(flat: torch.Tensor, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Views (n, ...) into the flat weights (n, P), one per name of ``shapes``, in their order."""
    out, start = {}, 0
    for k, shape in shapes.items():
        size = math.prod(shape)
        out[k] = flat[:, start:start + size].view(flat.shape[0], *shape)
        start += size
    return out


def step_flops(d: int, H: int, d_h: int, m: int, V: int, A: int, batch_size: int) -> int:
    """Floating-point operations of the matrix products of one training step of one run (forward and the
    hand-written backward of ``RunGroup.loss_and_grad``), counted from the shapes: 2 per multiply-add."""
    B, Hd = batch_size, H * d_h
    tables = V * d * H + V * d * Hd  # scores and values of the vocabulary
    pooled = B * V * H * (d_h + 1)  # counts @ table
    per_sample = Hd * d + 2 * d * m + d * A  # W_O, the MLP, the unembedding
    forward = tables + pooled + B * per_sample
    backward = (B * A * d + 4 * B * d * m + 2 * B * Hd * d + pooled + V * H * d + V * d * Hd)
    return 2 * (forward + backward)


def evaluate_group(group: RunGroup, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and loss of every active run on ``size`` fresh samples (stream 1), each (n,)."""
    accs, losses = [], []
    with torch.no_grad():
        for rows in group.chunks(size):
            s, r, noise, answers = group.sample_parts(step, size, stream=1, rows=rows)
            logits = group.forward_counts(group.counts(s, r, noise, rows), rows=rows)  # (n, B, A)
            accs.append((logits.argmax(dim=2) == answers).float().mean(dim=1))  # (n,)
            losses.append(-logits.log_softmax(dim=2).gather(2, answers[..., None]).mean(dim=(1, 2)))  # (n,)
    return torch.cat(accs), torch.cat(losses)


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
        for rows in chunks:
            s, r, noise, answers = group.sample_parts(step, protocol.batch_size, rows=rows)  # (n, B) .., (n, B)
            grad[rows] = group.loss_and_grad(group.counts(s, r, noise, rows), answers, rows)[1]
        adam_update_(group.flat, grad, moments, group.lr[:, None], step)
        if step % protocol.eval_every and step != protocol.steps:
            continue
        acc, loss_r = evaluate_group(group, step, protocol.eval_size)  # (n,), (n,)
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
    max_runs = check_int("max_runs", max_runs, 1)
    if mixed_shapes is None:
        mixed_shapes = torch.device(device).type != "cpu"
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        by_shape[(None if mixed_shapes else run.shape, run.task.T)].append(i)
    outcomes: list = [None] * len(runs)
    models: list = [None] * len(runs)
    for members in by_shape.values():
        members = sorted(members, key=lambda i: runs[i].shape)  # similar shapes share a chunk: less padding
        for start in range(0, len(members), max_runs):
            chunk = members[start:start + max_runs]
            group = RunGroup([runs[i] for i in chunk], device, protocol.init_scale, protocol.init,
                             protocol.eos_residual, mixed_shapes)
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
                                 "params": parameter_count(run.model_config())["total"],
                                 "curve": [(step, acc) for step, acc, _ in outcome.curve],
                                 "blocks": blocks}
    return cells
