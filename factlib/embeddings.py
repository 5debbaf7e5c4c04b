"""Embeddings: random Gaussian vectors (optionally normalised to the unit sphere) and one-hot vectors."""
from __future__ import annotations

import torch

from ._validate import check_allocation, check_dtype, check_int
from .config import check_device, generator


def gaussian_embeddings(n: int, d: int, seed: int | torch.Generator, *, normalize: bool = True,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` random vectors in R^d with i.i.d. N(0, 1/d) entries, rescaled to unit norm if ``normalize``.

    Drawn on the CPU (from ``seed`` or a given generator) and then moved to ``device``.
    Returns a tensor of shape (n, d).
    """
    n = check_int("n", n, 1)
    d = check_int("d", d, 1)
    dtype, device = check_dtype("dtype", dtype), check_device(device)
    check_allocation({"n": n, "d": d}, n * d, torch.float64, "the embeddings (n, d), drawn in float64,")
    gen = seed if isinstance(seed, torch.Generator) else generator(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64).div_(d**0.5)  # (n, d)
    if normalize:
        X.div_(X.norm(dim=1, keepdim=True))
    return X.to(device=device, dtype=dtype)


def memory_embeddings(N: int, M: int, d: int, seed: int, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings E (N, d) and output embeddings U (M, d), both normalised Gaussian, from one seed.

    E is drawn first and U second from the same generator, so E[:k] for a smaller N is a prefix of the
    larger draw only if M is unchanged; capacity searches draw once at the largest size and slice.
    """
    gen = generator(seed)
    E = gaussian_embeddings(N, d, gen, **kwargs)  # (N, d)
    U = gaussian_embeddings(M, d, gen, **kwargs)  # (M, d)
    return E, U


def orthogonal_embeddings(n: int, d: int | None = None, *, device: torch.device | str = "cpu",
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot embeddings: the first ``n`` standard basis vectors of R^d (d defaults to n). Shape (n, d)."""
    n = check_int("n", n, 1)
    d = n if d is None else check_int("d", d, n)
    dtype, device = check_dtype("dtype", dtype), check_device(device)
    check_allocation({"n": n, "d": d}, n * d, dtype, "the one-hot embeddings (n, d)")
    return torch.eye(n, d, device=device, dtype=dtype)
