"""Many one-layer transformers as one computation (chapter 5): the batched model behind ``factlib.trainer``.

Every trainable weight carries a leading run dimension (W_Q is (runs, H, d, d_h)); runs of one shape (d, H, d_h,
m) form a group, and runs whose tasks differ (S, R, D, noise tokens) are padded to the group's largest ones. Two
pieces, along the seams of the computation:

- ``GroupTasks``, what is frozen: each run's embeddings and unembeddings (exactly those of
  ``OneLayerTransformer`` for its ``ModelConfig``), fact table and data stream, and the sampler that draws every
  run's batch in one vectorised call (``factlib.streams``);
- ``RunGroup``, what trains: every weight of every run in one flat tensor (runs, P), the forward pass and its
  backward pass written by hand (checked against autograd in the tests), so that one Adam update moves all runs.

The model has no positions and only the last token (EOS) queries, so a prompt enters only through its tokens: one
subject, one relation, EOS and T - 3 noise tokens. The group keeps each run's vocabulary in one layout, subjects
first, then relations, EOS and the noise tokens (padding rows are zero and never drawn), and a batch as
``Prompts``: the subject and relation drawn for each prompt and the counts of its noise tokens. Each head's output
is then (table[s] + table[r] + table[EOS] + noise counts @ table[noise]) normalised, where ``table`` holds every
vocabulary token's exp(score) x value and exp(score), computed once per step.
"""
from __future__ import annotations

import ctypes
import functools
import math
import platform
from typing import NamedTuple

import torch

from ._validate import check_choice, check_float
from .config import generator
from .models import OneLayerTransformer
from .streams import below, draws, run_key, subkeys
from .task import fact_table

WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "W1", "b1", "W2")
INITS = ("release", "ours")
#: the frozen embeddings: "gaussian", i.i.d. N(0, 1/d) entries (the authors' release); "unit", the same draws
#: rescaled to unit norm (the memories of chapters 1-2)
EMBEDDINGS = ("gaussian", "unit")
#: elements of the largest per-chunk tensor (chunk runs x batch x width) computed at once on a CPU: about 4 MB, so
#: a chunk's intermediates stay in cache and are reused by the allocator instead of mapped afresh every step
CPU_CHUNK_ELEMENTS = 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed blocks of up to 32 MB for reuse instead of returning them to the
    system (``mallopt``); True if it took. A training step allocates its intermediates afresh, and on Linux a
    freed block of more than 128 KB would otherwise be unmapped and mapped again next step: the page faults cost
    a third of a step at the sizes of chapter 5. It changes no result; elsewhere it does nothing."""
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
        return bool(libc.mallopt(mmap_threshold, 32 << 20) and libc.mallopt(trim, 512 << 20))
    except (OSError, AttributeError):
        return False


class Prompts(NamedTuple):
    """A batch of prompts of the active runs, as the model sees them."""

    s: torch.Tensor      # (n, B) long: the subject of each prompt
    r: torch.Tensor      # (n, B) long: the relation
    noise: torch.Tensor  # (n, B, N) float: how often each noise token occurs in the prompt


def weight_shapes(d: int, H: int, d_h: int, m: int) -> dict[str, tuple[int, ...]]:
    """The shape of every trainable weight of one run, in the order of ``WEIGHTS``."""
    return {"W_Q": (H, d, d_h), "W_K": (H, d, d_h), "W_V": (H, d, d_h), "W_O": (H, d_h, d),
            "W1": (m, d), "b1": (m,), "W2": (d, m)}


def init_weights(run, scale: float = 1.0, init: str = "release") -> dict[str, torch.Tensor]:
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
    scale = check_float("scale", scale, 0.0)
    gen = generator(2**32 + run.seed)

    def normal(*shape, var):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * (scale * math.sqrt(var))

    attn = 1 / d_h if init == "release" else 1 / d
    out = 1 / d if init == "release" else 1 / (H * d_h)
    return {"W_Q": normal(H, d, d_h, var=attn), "W_K": normal(H, d, d_h, var=attn),
            "W_V": normal(H, d, d_h, var=attn), "W_O": normal(H, d_h, d, var=out),
            "W1": normal(m, d, var=1 / d), "b1": torch.zeros(m, dtype=torch.float64),
            "W2": normal(d, m, var=1 / max(m, 1))}


def unflatten(flat: torch.Tensor, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Views (n, ...) into the flat weights (n, P), one per name of ``shapes``, in their order."""
    out, start = {}, 0
    for k, shape in shapes.items():
        size = math.prod(shape)
        out[k] = flat[:, start:start + size].view(flat.shape[0], *shape)
        start += size
    return out


class GroupTasks:
    """The frozen side of a group of runs: tasks, fact tables, data streams and embeddings, padded to the largest
    task (and, with several shapes, to the largest d), and the sampler.

    Vocabulary layout, the same for every run: subjects [0, S_max), relations [S_max, S_max + R_max), EOS at
    ``eos_index``, noise tokens from ``noise_offset`` on; a run's rows past its own sizes are zero.
    """

    #: batch elements drawn per prompt beyond its T - 3 noise tokens: subject, relation, and (``sample_tokens``
    #: only) the positions of the subject and the relation
    EXTRA = 4

    def __init__(self, runs: list, d: int, device: torch.device, normalize: bool):
        tasks = [run.task for run in runs]
        self.T = tasks[0].T
        self.S_max, self.R_max = max(t.S for t in tasks), max(t.R for t in tasks)
        self.noise_width = max(max(t.n_noise for t in tasks), 1)
        self.rel_offset, self.eos_index = self.S_max, self.S_max + self.R_max
        self.noise_offset = self.eos_index + 1
        self.vocab_width = self.noise_offset + self.noise_width
        self.answer_width = max(t.num_answers for t in tasks)
        n, V, A = len(runs), self.vocab_width, self.answer_width
        E, U = torch.zeros(n, V, d), torch.zeros(n, A, d)  # (n, V, d), (n, A, d)
        table = torch.zeros(n, self.S_max, self.R_max, dtype=torch.long)  # (n, S, R)
        for i, run in enumerate(runs):
            t = run.task
            model = OneLayerTransformer(run.model_config(normalize=normalize))  # the per-model code's draws
            E[i, self.layout(t), :run.d] = model.E
            U[i, :t.num_answers, :run.d] = model.U
            table[i, :t.S, :t.R] = run_table(run)
        long = {"dtype": torch.long, "device": device}
        self.device = device
        self.S = torch.tensor([t.S for t in tasks], **long)  # (n,)
        self.R = torch.tensor([t.R for t in tasks], **long)  # (n,)
        self.n_noise = torch.tensor([max(t.n_noise, 1) for t in tasks], **long)  # (n,)
        self.task_eos = torch.tensor([t.eos for t in tasks], **long)  # (n,) EOS in each task's own vocabulary
        self.key_list = [run_key(run.seed, run.task) for run in runs]  # Python ints: no device round-trip
        self.keys = torch.tensor(self.key_list, **long)  # (n,)
        self.E, self.U, self.table = E.to(device), U.to(device), table.to(device)
        mask = torch.arange(A)[None, :] < torch.tensor([t.num_answers for t in tasks])[:, None]  # (n, A)
        self.answer_bias = torch.zeros(n, A).masked_fill(~mask, float("-inf")).to(device)  # (n, A)
        # each run's answers and noise tokens as Python ints: a chunk's widths without a device round-trip
        self.answers = [t.num_answers for t in tasks]
        self.noises = [max(t.n_noise, 1) for t in tasks]
        self.limits = torch.tensor([[max(t.n_noise, 1)] * (self.T - 3) + [t.S, t.R, self.T - 1, self.T - 2]
                                    for t in tasks], dtype=torch.float32, device=device)  # (n, T + 1): see ``sample``
        self._index: dict[tuple[int, int], torch.Tensor] = {}

    FIELDS = ("S", "R", "n_noise", "task_eos", "keys", "E", "U", "table", "answer_bias", "limits")

    def widths(self, rows: slice) -> tuple[int, int, bool]:
        """The answers and noise tokens the runs ``rows`` need (their largest), and whether some run has fewer
        answers (its extra ones masked with -inf)."""
        answers = self.answers[rows]
        return max(answers), max(self.noises[rows]), min(answers) < max(answers)

    def layout(self, task) -> torch.Tensor:
        """Where each token of ``task``'s own vocabulary (subjects, relations, noise, EOS) sits in the group's."""
        return torch.cat([torch.arange(task.S), self.rel_offset + torch.arange(task.R),
                          self.noise_offset + torch.arange(task.n_noise), torch.tensor([self.eos_index])])

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the runs where ``mask`` (n,) is False."""
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])
        keep = mask.tolist()
        self.answers = [a for a, k in zip(self.answers, keep) if k]
        self.noises = [a for a, k in zip(self.noises, keep) if k]
        self.key_list = [a for a, k in zip(self.key_list, keep) if k]

    def _bits(self, step: int, batch_size: int, stream: int, rows: slice, count: int) -> torch.Tensor:
        """Random int32 bits (n, B, count): the first ``count`` elements of each prompt's draws."""
        stride = self.T - 3 + self.EXTRA
        if (batch_size, count) not in self._index:  # contiguous: integer ops on a strided view are much slower
            self._index[batch_size, count] = torch.arange(batch_size * stride, dtype=torch.int32, device=self.device
                                                          ).view(batch_size, stride)[:, :count].contiguous()
        return draws(subkeys(self.keys[rows], stream, step), self._index[batch_size, count])

    def sample(self, step: int, batch_size: int, stream: int = 0, rows: slice = slice(None)
               ) -> tuple[Prompts, torch.Tensor]:
        """A fresh batch for the active runs ``rows``: ``Prompts`` and the answers (n, B).

        Subjects, relations and noise tokens uniform and independent: the distribution of
        ``factlib.task.sample_batch`` up to the positions, which the model does not see (``sample_tokens``
        adds them). Element t of prompt b of run r is ``below(hash32(subkey + (b (T + 1) + t) golden), n)``
        with the run's subkey for (stream, step): the noise tokens first, then the subject and the relation.
        """
        k = self.T - 3
        first, copies = self._distinct(rows)
        limits = self.limits[first][:, None, :k + 2]  # (u, 1, k + 2): n_noise k times, then S and R
        drawn = below(self._bits(step, batch_size, stream, first, k + 2), limits)  # (u, B, k + 2)
        noise = self.noise_counts(drawn[:, :, :k], self.widths(rows)[1])  # (u, B, N)
        s, r = drawn[:, :, k], drawn[:, :, k + 1]  # (u, B) each
        if copies is not None:  # runs that share a data stream (the learning rates of one search) draw it once
            s, r, noise = s.index_select(0, copies), r.index_select(0, copies), noise.index_select(0, copies)
        return Prompts(s, r, noise), self.answer(s, r, rows)

    def _distinct(self, rows: slice) -> tuple[slice | torch.Tensor, torch.Tensor | None]:
        """The runs of ``rows`` whose data streams differ, and where each run of ``rows`` finds its stream among
        them (None if all differ): runs with the same key draw the same batch, so it is drawn once."""
        keys = self.key_list[rows]
        if len(set(keys)) == len(keys):
            return rows, None
        start = rows.start or 0
        place = {}
        for i, key in enumerate(keys):
            place.setdefault(key, len(place))
        unique = [start + keys.index(key) for key in place]  # the first run of each stream
        long = {"dtype": torch.long, "device": self.device}
        return torch.tensor(unique, **long), torch.tensor([place[key] for key in keys], **long)

    def answer(self, s: torch.Tensor, r: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The answers a*(s, r) (n, B) of the runs ``rows`` to subjects ``s`` and relations ``r`` (n, B)."""
        table = self.table[rows]  # (n, S, R)
        n, S, R = table.shape
        at = (torch.arange(n, device=self.device)[:, None] * S + s) * R + r  # (n, B) into the flat tables
        return table.reshape(-1).index_select(0, at.view(-1)).view(at.shape)

    def noise_counts(self, noise: torch.Tensor, width: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Counts (n, B, width) of noise indices ``noise`` (n, B, k) in [0, width), each counted with ``weight``
        (default 1)."""
        n, B, _ = noise.shape
        out = torch.zeros(n, B, width, device=self.device)  # (n, B, N)
        ones = torch.ones(1, device=self.device).expand(noise.shape) if weight is None else weight
        return out.scatter_add_(2, noise, ones)

    def sample_tokens(self, step: int, batch_size: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``sample`` as prompts in each task's own vocabulary (n, B, T) long, with answers (n, B):
        the subject and the relation at two distinct uniform positions among the first T - 1, the noise tokens
        in the other positions in their drawn order, EOS last (the layout of ``factlib.task.prompts_for_pairs``)."""
        k, L = self.T - 3, self.T - 1
        n = len(self.S)
        drawn = below(self._bits(step, batch_size, stream, slice(None), k + 4), self.limits[:, None])  # (n, B, k + 4)
        noise, s, r, i, j = drawn[:, :, :k], drawn[:, :, k], drawn[:, :, k + 1], drawn[:, :, k + 2], drawn[:, :, k + 3]
        j = j + (j >= i).long()  # the relation's position skips the subject's
        pos = torch.arange(L, device=self.device).view(1, 1, L)
        slot = pos - (pos > i[..., None]).long() - (pos > j[..., None]).long()  # (n, B, T-1): noise index per slot
        body = (self.S + self.R)[:, None, None] + noise.gather(2, slot.clamp(max=k - 1))  # (n, B, T-1)
        body = torch.where(pos == i[..., None], s[..., None], body)
        body = torch.where(pos == j[..., None], (self.S[:, None] + r)[..., None], body)
        tokens = torch.cat([body, self.task_eos[:, None, None].expand(n, batch_size, 1)], dim=2)  # (n, B, T)
        return tokens, self.answer(s, r)

    def prompts(self, tokens: torch.Tensor) -> Prompts:
        """The ``Prompts`` of well-formed task prompts ``tokens`` (n, B, T) (one subject, one relation, EOS last)."""
        S, R = self.S[:, None, None], self.R[:, None, None]
        subject, relation = tokens < S, (tokens >= S) & (tokens < S + R)  # (n, B, T)
        noise = (tokens >= S + R) & (tokens != self.task_eos[:, None, None])  # (n, B, T)
        index = (tokens - S - R).clamp(0, self.noise_width - 1)  # (n, B, T)
        return Prompts((tokens * subject).sum(2), ((tokens - S) * relation).sum(2),
                       self.noise_counts(index, self.noise_width, noise.float()))


class RunGroup:
    """Runs of one shape (d, H, d_h, m) as batched tensors: frozen ``GroupTasks`` and the trainable weights of
    every run in one flat tensor ``flat`` (runs, P); ``weights`` gives each weight as a view (runs, ...) into it,
    and ``forward`` is the model of ``factlib.models``.

    With ``mixed_shapes``, runs of different shapes share the group (many more runs in flight on a GPU): every
    size is padded to the group's largest d, H, d_h and m with zeros (embeddings, unembeddings and weights). The
    padding is exact and stays so: a zero row or column gets an exactly zero gradient, and Adam leaves a weight
    whose gradient has always been zero at zero.
    """

    def __init__(self, runs: list, device: torch.device | str = "cpu", init_scale: float = 1.0,
                 init: str = "release", eos_residual: bool = False, mixed_shapes: bool = False,
                 embeddings: str = "gaussian"):
        if not runs:
            raise ValueError("runs must be a non-empty list of Run")
        shapes = {run.shape for run in runs}
        if len(shapes) != 1 and not mixed_shapes:
            raise ValueError(f"runs of a group must share (d, H, d_h, m) unless mixed_shapes; got {sorted(shapes)}")
        if len({run.task.T for run in runs}) != 1:
            raise ValueError("runs of a group must share the prompt length T")
        check_choice("embeddings", embeddings, EMBEDDINGS)
        self.runs = list(runs)
        self.d, self.H, self.d_h, self.m = (max(shape[k] for shape in shapes) for k in range(4))
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.eos_residual = bool(eos_residual)
        self.embeddings = embeddings
        self.shapes = weight_shapes(self.d, self.H, self.d_h, self.m)
        self.tasks = GroupTasks(self.runs, self.d, self.device, normalize=embeddings == "unit")
        flat = []
        for run in runs:
            w = init_weights(run, init_scale, init)
            padded = {k: torch.zeros(shape, dtype=torch.float64) for k, shape in self.shapes.items()}
            for k, v in w.items():
                padded[k][tuple(slice(0, size) for size in v.shape)] = v  # the run's own block, zeros around it
            flat.append(torch.cat([padded[k].reshape(-1) for k in WEIGHTS]).float())
        self.flat = torch.stack(flat).to(self.device)  # (n, P): every weight of every run
        self.lr = torch.tensor([run.lr for run in runs], device=self.device)  # (n,)
        self.score_scale = torch.tensor([run.d_h ** -0.5 for run in runs], device=self.device)  # (n,) 1/sqrt(d_h)
        self.index = torch.arange(len(runs), device=self.device)  # (n,) position of each active run in ``runs``

    def __len__(self) -> int:
        return len(self.index)

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """Each weight as a view (n, ...) into ``flat``."""
        return unflatten(self.flat, self.shapes)

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the runs where ``mask`` (active,) is False."""
        self.tasks.keep(mask)
        for name in ("lr", "score_scale", "index", "flat"):
            setattr(self, name, getattr(self, name)[mask])

    def chunks(self, batch_size: int) -> list[slice]:
        """Slices of the active runs computed together: all at once on a GPU; on a CPU, chunks whose largest
        tensor has about ``CPU_CHUNK_ELEMENTS`` elements (see there)."""
        n = len(self)
        if self.device.type != "cpu":
            return [slice(0, n)]
        size = max(1, CPU_CHUNK_ELEMENTS // (batch_size * self.width))
        return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]

    @property
    def width(self) -> int:
        """The widest per-prompt tensor of a step: answers, noise tokens, MLP, pooled heads, d, or the T + 1 random
        draws of a prompt."""
        t = self.tasks
        return max(t.answer_width, t.noise_width, self.m, self.H * (self.d_h + 1), self.d, t.T - 3 + t.EXTRA)

    def forward(self, prompts: Prompts, weights: dict[str, torch.Tensor] | None = None,
                rows: slice = slice(None)) -> torch.Tensor:
        """Logits (n, B, A) of the runs ``rows`` on ``prompts``, A the largest answer set of these runs, padded
        answers -inf; differentiable in ``weights``
        (default: the group's). The function of ``OneLayerTransformer.forward``."""
        W = {k: v[rows] for k, v in (self.weights if weights is None else weights).items()}
        return self._forward(prompts, W, rows)[0]

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (n, B, A) of every run on its well-formed prompts ``tokens`` (n, B, T), in its own vocabulary."""
        return self.forward(self.tasks.prompts(tokens))

    def _forward(self, p: Prompts, W: dict[str, torch.Tensor], rows: slice):
        """Logits (n, B, A) and what the gradient needs.

        The scores are shifted by each head's largest over the vocabulary (exact: the shift cancels) and
        clipped 80 below it, where exp(-80) is still a normal float32: a prompt whose tokens all score 80 below
        the vocabulary's best would otherwise divide zero by zero."""
        t = self.tasks
        A, _, masked = t.widths(rows)
        E, U = t.E[rows], t.U[rows, :A]  # (n, V, d), (n, A, d)
        n, B, N = p.noise.shape
        H, d_h, d = self.H, self.d_h, self.d
        C = H * (d_h + 1)
        x_eos = E[:, t.eos_index]  # (n, d)
        q = torch.einsum("rd,rhde->rhe", x_eos, W["W_Q"])  # (n, H, d_h): only EOS queries
        scale = self.score_scale[rows][:, None, None]  # (n, 1, 1): 1/sqrt(d_h) of each run
        kq = torch.einsum("rhde,rhe->rhd", W["W_K"], q) * scale  # (n, H, d): score(z) = kq . e_z
        scores = torch.bmm(E, kq.transpose(1, 2))  # (n, V, H)
        shift = scores.detach().amax(dim=1, keepdim=True)  # (n, 1, H)
        w = torch.exp((scores - shift).clamp(min=-80.0))  # (n, V, H) in (0, 1]
        v = torch.bmm(E, W["W_V"].permute(0, 2, 1, 3).reshape(n, d, H * d_h)).view(n, -1, H, d_h)  # (n, V, H, d_h)
        table = torch.cat([w[..., None] * v, w[..., None]], dim=3).view(n, -1, C)  # (n, V, C)
        base = torch.arange(n, device=self.device)[:, None] * t.vocab_width  # (n, 1): each run's first row
        at_s, at_r = (p.s + base).view(-1), (p.r + t.rel_offset + base).view(-1)  # (n B,) rows of the flat table
        flat = table.view(-1, C)  # (n V, C)
        fixed = (flat.index_select(0, at_s) + flat.index_select(0, at_r)).view(n, B, C)  # (n, B, C)
        fixed += table[:, t.eos_index, None]
        noise_rows = table[:, t.noise_offset:t.noise_offset + N]  # (n, N, C)
        pooled = torch.baddbmm(fixed, p.noise, noise_rows).view(n, B, H, d_h + 1)  # (n, B, H, d_h + 1)
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
        logits = torch.bmm(h, U.transpose(1, 2))  # (n, B, A)
        if masked:
            logits += t.answer_bias[rows, None, :A]  # the answers past a run's own: -inf
        return logits, (E, U, x_eos, q, scale, w, v, den, heads, h0, a, z, at_s, at_r)

    def gradient(self, p: Prompts, answers: torch.Tensor, rows: slice = slice(None),
                 out: torch.Tensor | None = None, with_loss: bool = False):
        """The gradient of each run's mean cross-entropy on prompts ``p`` with ``answers`` (n, B), in the flat
        layout (n, P) (written into ``out`` if given), by hand: the backward pass of ``_forward``, no autograd
        graph. With ``with_loss``, returns (loss (n,), gradient)."""
        W = {k: v[rows] for k, v in self.weights.items()}
        with torch.no_grad():
            logits, (E, U, x_eos, q, scale, w, v, den, heads, h0, a, z, at_s, at_r) = self._forward(p, W, rows)
            n, B = answers.shape
            H, d_h, d = self.H, self.d_h, self.d
            t = self.tasks
            loss = None
            if with_loss:
                loss = cross_entropy(logits, answers)
            probs = logits.view(n * B, -1).softmax(dim=1).view(n, B, -1)  # (n, B, A): 2-D is much faster on a CPU
            probs.scatter_add_(2, answers[..., None], torch.full((1,), -1.0, device=self.device).expand(n, B, 1))
            dh = torch.bmm(probs, U).mul_(1.0 / B)  # (n, B, d): the gradient of the sum of the runs' mean losses
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
            dpooled = torch.cat([dnum, dden], dim=3).view(n, B, H * (d_h + 1))  # (n, B, C)
            C = H * (d_h + 1)
            dtable = torch.zeros(n, t.vocab_width, C, device=self.device)  # (n, V, C)
            N = p.noise.shape[2]
            dtable[:, t.noise_offset:t.noise_offset + N] = torch.bmm(p.noise.transpose(1, 2), dpooled)  # (n, N, C)
            dtable[:, t.eos_index] = dpooled.sum(dim=1)
            dflat, drows = dtable.view(-1, C), dpooled.view(-1, C)  # (n V, C), (n B, C)
            dflat.index_add_(0, at_s, drows).index_add_(0, at_r, drows)
            dtable = dtable.view(n, -1, H, d_h + 1)  # (n, V, H, d_h + 1)
            dw = (dtable[..., :d_h] * v).sum(dim=3) + dtable[..., d_h]  # (n, V, H)
            dv = dtable[..., :d_h] * w[..., None]  # (n, V, H, d_h)
            dscores = dw * w  # (n, V, H): exp's derivative (zero where clipped, as for the clip)
            dkq = torch.bmm(dscores.transpose(1, 2), E) * scale  # (n, H, d)
            grads["W_V"] = torch.bmm(E.transpose(1, 2), dv.reshape(n, -1, H * d_h)).view(n, d, H, d_h).transpose(1, 2)
            grads["W_K"] = torch.einsum("rhd,rhe->rhde", dkq, q)  # (n, H, d, d_h)
            dq = torch.einsum("rhde,rhd->rhe", W["W_K"], dkq)  # (n, H, d_h)
            grads["W_Q"] = torch.einsum("rd,rhe->rhde", x_eos, dq)  # (n, H, d, d_h)
            parts = [grads[k].reshape(n, -1) for k in WEIGHTS]
            flat = torch.cat(parts, dim=1) if out is None else torch.cat(parts, dim=1, out=out)  # (n, P)
        return (loss, flat) if with_loss else flat

    def model(self, i: int) -> OneLayerTransformer:
        """Run ``i`` (its index in ``runs``, while still active) as a ``OneLayerTransformer`` with its weights."""
        from dataclasses import replace

        pos = int((self.index == i).nonzero()[0, 0])
        config = self.runs[i].model_config(normalize=self.embeddings == "unit")
        model = OneLayerTransformer(replace(config, eos_residual=self.eos_residual))
        with torch.no_grad():
            for k, v in self.weights.items():
                own = getattr(model, k)
                own.copy_(v[pos][tuple(slice(0, size) for size in own.shape)].cpu())  # the run's block
        return model


def cross_entropy(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Each run's mean cross-entropy (n,) of logits (n, B, A) on ``answers`` (n, B) (softmax over a 2-D view: on a
    CPU, much faster than over the last dimension of a 3-D tensor)."""
    n, B, A = logits.shape
    picked = logits.view(n * B, A).log_softmax(dim=1).gather(1, answers.view(-1, 1))  # (n B, 1)
    return -picked.view(n, B).mean(dim=1)


def run_table(run) -> torch.Tensor:
    """The fact table a run is trained on, long (S, R)."""
    return fact_table(run.task, 2**31 + run.seed)


def step_flops(d: int, H: int, d_h: int, m: int, V: int, A: int, batch_size: int, noise: int | None = None) -> int:
    """Floating-point operations of the matrix products of one training step of one run (forward and the
    hand-written backward of ``RunGroup.gradient``), counted from the shapes: 2 per multiply-add. ``V`` is the
    vocabulary, ``noise`` the noise tokens (default: all of V), whose counts enter through a matrix product."""
    B, Hd, C = batch_size, H * d_h, H * (d_h + 1)
    N = V if noise is None else noise
    tables = V * d * H + V * d * Hd  # scores and values of the vocabulary
    pooled = B * N * C  # noise counts @ table
    per_sample = Hd * d + 2 * d * m + d * A  # W_O, the MLP, the unembedding
    forward = tables + pooled + B * per_sample
    backward = B * A * d + 4 * B * d * m + 2 * B * Hd * d + pooled + V * H * d + V * d * Hd
    return 2 * (forward + backward)
