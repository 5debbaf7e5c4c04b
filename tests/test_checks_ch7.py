"""Every chapter 7 checker passes the chapter's solution and names the misconception of wrong ones."""
import math

import pytest
import torch

from chapter_solutions import chapter_solutions
from factlib.checks import ch7


@pytest.mark.parametrize("name", ["test_fano_bits", "test_loss_bits", "test_quantize"])
def test_checker_passes_the_chapters_solution(capsys, name):
    getattr(ch7, name)(chapter_solutions(7)[name])
    assert capsys.readouterr().out == f"All tests in {name} passed!\n"


def h2(eps):
    return 0.0 if eps in (0.0, 1.0) else -eps * math.log2(eps) - (1 - eps) * math.log2(1 - eps)


def fano_reference(S, R, D, accuracy):
    eps = 1 - accuracy
    if eps >= 1 - 1 / D:  # at or below chance the bound says nothing
        return 0.0
    return max(0.0, S * R * (math.log2(D) - h2(eps) - eps * math.log2(D - 1)))


def test_fano_bits_checker(capsys):
    ch7.test_fano_bits(fano_reference)
    assert capsys.readouterr().out.count("All tests in test_fano_bits passed!") == 1
    for wrong, message in [
        (lambda S, R, D, a: fano_reference(S, R, D, a) * math.log(2), "nats"),
        (lambda S, R, D, a: max(0.0, S * R * (math.log2(D) - h2(1 - a))), "second term"),
        (lambda S, R, D, a: max(0.0, S * R * (math.log2(D) - h2(1 - a) - (1 - a) * math.log2(D))), "D - 1"),
        (lambda S, R, D, a: max(0.0, S * R * (math.log2(D) - h2(1 - a) - a * math.log2(D - 1))), "error rate"),
        (lambda S, R, D, a: S * R * (math.log2(D) - h2(1 - a) - (1 - a) * math.log2(D - 1)), "chance"),
        (lambda S, R, D, a: max(0.0, S * R * (math.log2(D) - h2(1 - a) - (1 - a) * math.log2(D - 1))), "chance"),
        (lambda S, R, D, a: S * R * math.log2(D), "expected"),
        (lambda S, R, D, a: "many", "one number"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch7.test_fano_bits(wrong)


def loss_reference(S, R, D, loss):
    return max(0.0, S * R * (math.log2(D) - loss / math.log(2)))


def test_loss_bits_checker(capsys):
    ch7.test_loss_bits(loss_reference)
    assert "All tests in test_loss_bits passed!" in capsys.readouterr().out
    for wrong, message in [
        (lambda S, R, D, L: max(0.0, S * R * (math.log2(D) - L)), "divide the loss by ln 2"),
        (lambda S, R, D, L: max(0.0, S * R * (math.log2(D) - L * math.log(2))), "not a multiplication"),
        (lambda S, R, D, L: S * R * (math.log2(D) - L / math.log(2)), "chance"),
        (lambda S, R, D, L: S * R * math.log2(D), "expected"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch7.test_loss_bits(wrong)


def quantize_reference(w, bits):
    delta = 2 * w.abs().max() / 2**bits
    k = torch.floor(w / delta).clamp(-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return (k + 0.5) * delta


def quantize_codes(w, bits):
    delta = 2 * w.abs().max() / 2**bits
    return torch.floor(w / delta).clamp(-2 ** (bits - 1), 2 ** (bits - 1) - 1)


def quantize_unclamped(w, bits):
    delta = 2 * w.abs().max() / 2**bits
    return (torch.floor(w / delta) + 0.5) * delta


def quantize_per_row(w, bits):
    return torch.stack([quantize_reference(row, bits) for row in w])


def quantize_min_max(w, bits):
    lo, hi = w.min(), w.max()
    delta = (hi - lo) / 2**bits
    k = torch.floor((w - lo) / delta).clamp(0, 2**bits - 1)
    return lo + (k + 0.5) * delta


def quantize_std(w, bits):
    delta = 2 * 2 * w.std() / 2**bits
    k = torch.floor(w / delta).clamp(-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return (k + 0.5) * delta


def quantize_mid_tread(w, bits):
    levels = 2 ** (bits - 1) - 1
    if levels == 0:  # one bit: only the level zero
        return torch.zeros_like(w)
    delta = w.abs().max() / levels
    return torch.round(w / delta).clamp(-levels, levels) * delta


def test_quantize_checker(capsys):
    ch7.test_quantize(quantize_reference)
    assert capsys.readouterr().out.count("All tests in test_quantize passed!") == 1
    for wrong, message in [(quantize_codes, "integer codes"), (quantize_unclamped, "at most"),
                           (quantize_per_row, "per tensor"), (quantize_min_max, "symmetric"),
                           (quantize_std, "half a step"), (quantize_mid_tread, "level at zero"),
                           (lambda w, bits: w[:1], "shape")]:
        with pytest.raises(AssertionError, match=message):
            ch7.test_quantize(wrong)
