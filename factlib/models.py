"""The one-layer transformer of the paper (chapter 4, Figure 3), readable top to bottom.

Tokens z_1 .. z_T have frozen random embeddings e_z in R^d (rows of E); only the last position (EOS) queries.
Each of the H heads scores every position j by (W_Q^T e_EOS) . (W_K^T e_{z_j}) / sqrt(d_h), takes the softmax
over the T positions and averages the values W_V^T e_{z_j} in R^{d_h}; W_O maps the H concatenated head outputs
back to R^d and adds them to the residual stream e_EOS (``eos_residual=False``: the stream starts at zero, as in
the authors' trained model). A residual MLP W2 relu(W1 h + b1) of width m follows
(m = 0: no MLP), and the logit of answer a is u_a . h with frozen random unembeddings u_a (rows of U).
There are no positional embeddings: the output depends on the multiset of prompt tokens, not on their order.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ._validate import check_int
from .config import generator
from .embeddings import gaussian_embeddings
from .task import TaskConfig


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the one-layer transformer (chapter 4, eq. "one-layer transformer")."""

    vocab_size: int            # input tokens: S + R + n_noise + 1 for the factual recall task
    num_answers: int           # output vocabulary: R D answers
    d: int = 64                # embedding (residual stream) dimension
    H: int = 8                 # attention heads
    d_h: int = 8               # head dimension
    m: int = 0                 # MLP width (0: attention only)
    seed: int = 0              # seed of the frozen embeddings E and unembeddings U
    normalize: bool = True     # unit-norm embeddings (else i.i.d. N(0, 1/d) entries, norm close to 1)
    eos_residual: bool = True  # the EOS embedding is added to the attention output (the authors' trained model
                               # has no such copy: chapter 5 trains with False)

    def __post_init__(self):
        check_int("vocab_size", self.vocab_size, 2)
        check_int("num_answers", self.num_answers, 1)
        check_int("d", self.d, 1)
        check_int("H", self.H, 1)
        check_int("d_h", self.d_h, 1)
        check_int("m", self.m, 0)
        check_int("seed", self.seed, 0)
        if not isinstance(self.eos_residual, bool):
            raise ValueError(f"eos_residual must be True or False, got {self.eos_residual!r}")

    @classmethod
    def for_task(cls, task: TaskConfig, **sizes) -> "ModelConfig":
        """The model whose vocabularies fit ``task``; ``sizes`` sets d, H, d_h, m, seed, normalize."""
        return cls(vocab_size=task.vocab_size, num_answers=task.num_answers, **sizes)


def parameter_count(cfg: ModelConfig) -> dict[str, int]:
    """Trainable parameters as the paper counts them (chapter 4): attention 4 H d_h d, MLP 2 m d.

    W_Q, W_K, W_V (d x d_h each, per head) and W_O (H d_h x d) give 4 H d_h d; W1 and W2 give 2 m d
    (the m biases b1 are not counted). The frozen embeddings are not parameters.
    """
    attention = 4 * cfg.H * cfg.d_h * cfg.d
    mlp = 2 * cfg.m * cfg.d
    return {"attention": attention, "mlp": mlp, "total": attention + mlp}


class OneLayerTransformer(nn.Module):
    """One attention layer (EOS query, H heads) and a residual MLP, on frozen random embeddings."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, H, d_h, m = cfg.d, cfg.H, cfg.d_h, cfg.m
        gen = generator(cfg.seed)
        # frozen: buffers, not parameters; E is drawn first, then U, from one CPU generator
        self.register_buffer("E", gaussian_embeddings(cfg.vocab_size, d, gen, normalize=cfg.normalize))  # (V, d)
        self.register_buffer("U", gaussian_embeddings(cfg.num_answers, d, gen, normalize=cfg.normalize))  # (A, d)
        # trainable weights, zero until a construction or a training loop sets them
        self.W_Q = nn.Parameter(torch.zeros(H, d, d_h))  # (H, d, d_h)
        self.W_K = nn.Parameter(torch.zeros(H, d, d_h))  # (H, d, d_h)
        self.W_V = nn.Parameter(torch.zeros(H, d, d_h))  # (H, d, d_h)
        self.W_O = nn.Parameter(torch.zeros(H, d_h, d))  # (H, d_h, d): the paper's (H d_h, d), split by head
        self.W1 = nn.Parameter(torch.zeros(m, d))        # (m, d)
        self.b1 = nn.Parameter(torch.zeros(m))           # (m,)
        self.W2 = nn.Parameter(torch.zeros(d, m))        # (d, m)

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention from the last position: (output (B, d), weights (B, H, T)) for x (B, T, d)."""
        q = torch.einsum("bd,hde->bhe", x[:, -1], self.W_Q)  # (B, H, d_h): only EOS queries
        k = torch.einsum("btd,hde->bhte", x, self.W_K)  # (B, H, T, d_h)
        v = torch.einsum("btd,hde->bhte", x, self.W_V)  # (B, H, T, d_h)
        scores = torch.einsum("bhe,bhte->bht", q, k) / self.cfg.d_h ** 0.5  # (B, H, T)
        weights = scores.softmax(dim=-1)  # (B, H, T)
        heads = torch.einsum("bht,bhte->bhe", weights, v)  # (B, H, d_h)
        return torch.einsum("bhe,hed->bd", heads, self.W_O), weights  # (B, d), (B, H, T)

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        """W2 relu(W1 h + b1), (B, d) -> (B, d); zero when m = 0."""
        return torch.relu(h @ self.W1.T + self.b1) @ self.W2.T  # (B, m) -> (B, d)

    def blocks(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three terms of the final residual stream, each (B, d): EOS embedding, attention, MLP."""
        x = self.E[tokens]  # (B, T, d)
        residual = x[:, -1] if self.cfg.eos_residual else torch.zeros_like(x[:, -1])  # (B, d): the EOS embedding
        attn, _ = self.attention(x)  # (B, d)
        mlp = self.mlp(residual + attn)  # (B, d)
        return {"residual": residual, "attention": attn, "mlp": mlp}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits over the answers, (B, R D), for prompts ``tokens`` (B, T) whose last token is the query."""
        h = sum(self.blocks(tokens).values())  # (B, d)
        return h @ self.U.T  # (B, A)


def block_logits(model: OneLayerTransformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The logits split by block (chapter 4, "which block holds the facts"): each (B, R D), summing to model(tokens)."""
    return {name: part @ model.U.T for name, part in model.blocks(tokens).items()}  # (B, A) each


def unreachable_answers(U: torch.Tensor) -> list[int]:
    """The answers that no residual stream can make the strict argmax (chapter 5): a ``u_a`` (rows of U (A, d))
    inside the convex hull of the others scores at most their best against every h, so its facts cannot be
    recalled. Unit-norm unembeddings have none (no point of a sphere is a mean of others); with i.i.d. N(0, 1/d)
    entries, as in the authors' release, short vectors can be. Each answer is one linear programme:
    maximise t over h in [-1, 1]^d with (u_a - u_b) . h >= t for all b; a is unreachable if the best t is 0."""
    import numpy as np
    from scipy.optimize import linprog

    if not isinstance(U, torch.Tensor) or U.ndim != 2 or U.shape[0] < 2:
        raise ValueError(f"U must be a tensor (answers >= 2, d); got {getattr(U, 'shape', type(U).__name__)}")
    points = U.detach().double().cpu().numpy()  # (A, d)
    A, d = points.shape
    cost = np.zeros(d + 1)
    cost[-1] = -1.0  # maximise t
    out = []
    for a in range(A):
        gaps = points[a] - np.delete(points, a, axis=0)  # (A - 1, d)
        bounds = [(-1.0, 1.0)] * d + [(None, 1.0)]
        best = linprog(cost, A_ub=np.hstack([-gaps, np.ones((A - 1, 1))]), b_ub=np.zeros(A - 1), bounds=bounds)
        if not best.success:
            raise RuntimeError(f"unreachable_answers: the linear programme of answer {a} failed: {best.message}")
        if -best.fun <= 1e-9 * max(1.0, float(np.abs(gaps).max())):
            out.append(a)
    return out
