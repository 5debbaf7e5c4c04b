"""Checkers for chapter 7 (information-theoretic lower bounds, bits per parameter)."""
from __future__ import annotations

import math

import torch

from . import checker, close
from .. import bounds

CASES = [(4, 2, 8, 0.9), (16, 16, 8, 0.99), (10, 3, 2, 0.75), (32, 32, 64, 0.5), (5, 5, 4, 1.0)]


def _value(fn, *args) -> float:
    value = fn(*args)
    assert isinstance(value, (int, float)) and not isinstance(value, bool) or (
        isinstance(value, torch.Tensor) and value.numel() == 1), f"return one number; got {value!r}"
    return float(value)


@checker(answers=(bounds.fano_bits,))
def test_fano_bits(fano_bits_fn) -> None:
    """``fano_bits_fn(S, R, D, accuracy)``: the bits a model reaching ``accuracy`` must hold (uniform table),
    S R [log2 D - h2(eps) - eps log2(D - 1)] with eps = 1 - accuracy, and 0 at or below chance (eps >= 1 - 1/D)."""
    for S, R, D, acc in CASES:
        want = bounds.fano_bits(S, R, D, acc)
        got = _value(fano_bits_fn, S, R, D, acc)
        eps = 1 - acc
        h = bounds.binary_entropy(eps)
        if want > 0:
            assert not math.isclose(got, want * math.log(2), rel_tol=1e-6), (
                "the result is in nats: the bound counts bits, so take logarithms in base 2")
            assert not math.isclose(got, S * R * (math.log2(D) - h), rel_tol=1e-6) or eps == 0 or D == 2, (
                "Fano's inequality has a second term: a wrong guess still has D - 1 candidates, "
                "H(a | guess) <= h2(eps) + eps log2(D - 1)")
            assert not math.isclose(got, S * R * (math.log2(D) - h - eps * math.log2(D)), rel_tol=1e-6) or eps == 0, (
                "after a wrong guess the answer is one of the D - 1 others: eps log2(D - 1), not eps log2 D")
            assert not math.isclose(got, S * R * (math.log2(D) - h - acc * math.log2(D - 1)), rel_tol=1e-6) or (
                acc == eps or D == 2), "eps is the error rate 1 - accuracy, not the accuracy"
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), (
            f"S={S}, R={R}, D={D}, accuracy={acc}: expected {want:.4f} bits, got {got:.4f}")
    for acc in (0.05, 0.0):
        got = _value(fano_bits_fn, 8, 4, 8, acc)
        assert math.isclose(got, 0.0, abs_tol=1e-9), (
            f"accuracy {acc} is below chance 1/D: expected 0 bits, got {got:.4f}. A model that stores nothing "
            "reaches 1/D, and h2(eps) + eps log2(D - 1) decreases past eps = 1 - 1/D, so use the bound only up to there")


@checker(answers=(bounds.loss_bits,))
def test_loss_bits(loss_bits_fn) -> None:
    """``loss_bits_fn(S, R, D, loss)``: the bits a model with expected cross-entropy ``loss`` (nats per prompt,
    uniform pairs) must hold, S R (log2 D - loss / ln 2), and 0 once that is negative."""
    for S, R, D, loss in [(4, 2, 8, 0.1), (16, 16, 8, 0.05), (10, 3, 2, 0.3), (5, 5, 4, 0.0), (8, 8, 16, 1.2)]:
        want = bounds.loss_bits(S, R, D, loss)
        got = _value(loss_bits_fn, S, R, D, loss)
        if loss > 0:
            assert not math.isclose(got, max(0.0, S * R * (math.log2(D) - loss)), rel_tol=1e-6), (
                "the loss is in nats and the bound in bits: divide the loss by ln 2 before subtracting")
            assert not math.isclose(got, max(0.0, S * R * (math.log2(D) - loss * math.log(2))), rel_tol=1e-6), (
                "nats to bits is a division by ln 2 (1 nat = 1.44 bits), not a multiplication")
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), (
            f"S={S}, R={R}, D={D}, loss={loss}: expected {want:.4f} bits, got {got:.4f}")
    got = _value(loss_bits_fn, 4, 4, 8, 3.0)
    assert math.isclose(got, 0.0, abs_tol=1e-9), (
        f"a loss above ln D = {math.log(8):.2f} (chance) proves nothing: the bound is 0, got {got}")


@checker(answers=(bounds.quantize, bounds.quantize_model))
def test_quantize(quantize_fn) -> None:
    """``quantize_fn(tensor, bits)``: uniform symmetric quantiser with one scale per tensor and 2^bits levels
    (k + 1/2) delta, delta = 2 max|w| / 2^bits, k in [-2^(bits-1), 2^(bits-1) - 1]; returns dequantised values."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, generator=gen, dtype=torch.float64)
    w[0] *= 10.0  # one row with much larger entries: a per-row scale would differ from one per tensor
    w[0, 0] = w.abs().max() + 1.0  # the largest entry positive: it sits exactly on the top edge of the range
    for bits in (1, 2, 3, 5, 8):
        ref = bounds.quantize(w, bits)
        q = quantize_fn(w.clone(), bits)
        assert isinstance(q, torch.Tensor) and q.shape == w.shape, (
            f"return a tensor of the input's shape {tuple(w.shape)}; got {getattr(q, 'shape', type(q))}")
        q = q.double()
        amax = w.abs().max()
        delta = 2 * amax / 2**bits
        if close(q, torch.round(q)) and bool((q != 0).any()) and not close(q, ref):
            raise AssertionError("return the dequantised values (k + 1/2) delta, not the integer codes k")
        row_scaled = torch.stack([bounds.quantize(row, bits) for row in w])
        assert not close(q, row_scaled), "use one scale per tensor (max |w| over all entries), not one per row"
        levels = len(torch.unique(q))
        assert levels <= 2**bits, (
            f"{bits} bits allow at most {2**bits} distinct values; got {levels} (clamp k to [-2^(bits-1), "
            "2^(bits-1) - 1]: the entry equal to max|w| falls just outside otherwise)")
        assert close(quantize_fn(-w.clone(), bits).double(), -q), (
            "the quantiser must be symmetric: quantize(-w) = -quantize(w) (a min-max range [min w, max w] is not)")
        assert not bool(((q == 0) & (w != 0)).any()), (
            "a level at zero (rounding to the nearest multiple of a step) leaves only 2^bits - 1 symmetric levels; "
            "use the 2^bits mid-rise levels (k + 1/2) delta")
        assert bool(((q - w).abs() <= delta / 2 * (1 + 1e-9)).all()), (
            "an entry moved by more than half a step delta / 2 = max|w| / 2^bits: is the scale max |w| "
            "(not the standard deviation), and is every entry sent to the level of its own cell?")
        assert close(q, ref, atol=1e-9), (
            f"bits={bits}: the levels must be the 2^bits mid-rise values (k + 1/2) delta; a quantiser with a level "
            "at zero has only 2^bits - 1 symmetric levels")
