"""Counter-based random integers for the batched trainer (chapter 5): every number a run draws is a hash of its
key and a counter, so many runs draw their batches in one vectorised call on any device, and a run's data never
depends on which other runs are drawn with it.

Two hashes: ``mix64`` (splitmix64's finaliser on int64) turns a run's key and (stream, step) into a 32-bit
subkey once per step, and ``hash32_`` (a 32-bit finaliser with low bias, two multiply-xorshift rounds) turns the
subkey and an element's index into that element's 32 random bits. Multiplications wrap modulo 2^64 or 2^32, as
torch's integer arithmetic does on every device; right shifts are made logical by masking (torch's are
arithmetic). ``below`` maps 32 random bits to [0, n) with their top 24 bits.
"""
from __future__ import annotations

import torch

_GOLDEN64 = 0x9E3779B97F4A7C15 - 2**64  # splitmix64's increment, as a signed int64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64
_GOLDEN32 = 0x9E3779B9 - 2**32  # the 32-bit golden-ratio increment, as a signed int32
_H1 = 0x7FEB352D                # the two multipliers of the 32-bit finaliser
_H2 = 0x846CA68B - 2**32


def _shr(z: torch.Tensor, k: int, bits: int = 64) -> torch.Tensor:
    """Logical right shift by ``k`` of int64 (``bits`` 64) or int32 (``bits`` 32) values."""
    return (z >> k) & ((1 << (bits - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on an int64 tensor: a bijective hash of 64-bit integers."""
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def hash32_(z: torch.Tensor) -> torch.Tensor:
    """A bijective hash of int32 values (xorshift-multiply, twice, with the constants of C. Wellons' "lowbias32"),
    in place (``z`` is returned): on a CPU, a large integer tensor costs more to allocate than to compute."""
    shifted = torch.empty_like(z)
    for k, factor in ((16, _H1), (15, _H2), (16, None)):
        torch.bitwise_right_shift(z, k, out=shifted).bitwise_and_((1 << (32 - k)) - 1)  # logical: z >>> k
        z.bitwise_xor_(shifted)
        if factor is not None:
            z.mul_(factor)
    return z


def run_key(seed: int, task) -> int:
    """The data stream of a run: a hash of its seed and task sizes (runs differing only in lr share data)."""
    z = torch.tensor([seed * 1_000_003 + task.S * 7919 + task.R * 104_729 + task.D * 15_485_863
                      + task.n_noise * 179_424_673 + task.T], dtype=torch.int64)
    return int(mix64(mix64(z))[0])


def subkeys(keys: torch.Tensor, stream: int, step: int) -> torch.Tensor:
    """One int32 subkey per run (n,) for draw ``step`` of ``stream``, from the runs' int64 ``keys`` (n,)."""
    offset = (stream * 2**40 + step) * _GOLDEN64 % 2**64  # wrapped to 64 bits here: a Python int does not wrap
    low = mix64(keys + (offset - 2**64 if offset >= 2**63 else offset)) & 0xFFFFFFFF  # (n,) in [0, 2^32)
    return (low - (low >= 2**31).long() * 2**32).to(torch.int32)  # the same 32 bits as a signed int32


def draws(sub: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """32 random bits (int32) (n, *index.shape) for every run and element: ``sub`` (n,) subkeys, ``index`` int32
    element numbers (element j of run r: hash32(sub_r + j x golden))."""
    return hash32_(sub.view((-1,) + (1,) * index.ndim) + index * _GOLDEN32)


def below(bits: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Integers uniform in [0, n) from 32 random bits ``bits`` (int32): floor(u n / 2^24) for u the top 24 bits,
    int64; ``n`` (float32, integers below 2^24) broadcasts against ``bits``. In float32, u and n / 2^24 are exact
    and their product is rounded once (the same on every device); it stays below n, and the rounding moves at most
    one u per integer boundary: a bias below 2^-24."""
    top = torch.bitwise_right_shift(bits, 8).bitwise_and_(0xFFFFFF)  # (...) the top 24 bits
    return top.float().mul_(n * 2.0**-24).long()
