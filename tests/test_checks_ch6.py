"""Chapter 6 checkers: each passes the chapter's solution and fails, naming the misconception, on known-wrong ones."""
import math

import numpy as np
import pytest
import torch

from chapter_solutions import chapter_solutions
from factlib.checks import ch6


@pytest.mark.parametrize("name", ["test_partial_losses", "test_growth_rates", "test_escape_step"])
def test_checker_passes_the_chapters_solution(capsys, name):
    getattr(ch6, name)(chapter_solutions(6)[name])
    assert capsys.readouterr().out == f"All tests in {name} passed!\n"


# --- partial losses ---------------------------------------------------------------------------------------

def _probs(logits, D):
    return torch.softmax(logits, -1).reshape(logits.shape[0], -1, D)  # (B, R, D)


def good_partial(logits, answers, D):
    p = _probs(logits, D)
    rows = torch.arange(len(answers))
    rel = -torch.log(p[rows, answers // D].sum(-1)).mean()
    sub = -torch.log(p[rows, :, answers % D].sum(-1)).mean()
    return rel.item(), sub.item()


def swapped_partial(logits, answers, D):
    return good_partial(logits, answers, D)[::-1]


def max_partial(logits, answers, D):
    p = _probs(logits, D)
    rows = torch.arange(len(answers))
    return -torch.log(p[rows, answers // D].max(-1).values).mean().item(), good_partial(logits, answers, D)[1]


def unnormalised_partial(logits, answers, D):
    rows = torch.arange(len(answers))
    grid = logits.reshape(logits.shape[0], -1, D)
    return -torch.logsumexp(grid[rows, answers // D], -1).mean().item(), good_partial(logits, answers, D)[1]


def vector_partial(logits, answers, D):
    p = _probs(logits, D)
    rows = torch.arange(len(answers))
    return -torch.log(p[rows, answers // D].sum(-1)), -torch.log(p[rows, :, answers % D].sum(-1))


def test_partial_losses_checker():
    ch6.test_partial_losses(good_partial)
    for wrong, message in [(swapped_partial, "swapped"), (max_partial, "largest"),
                           (unnormalised_partial, "normalising"), (vector_partial, "one number")]:
        with pytest.raises(AssertionError, match=message):
            ch6.test_partial_losses(wrong)


# --- growth rates -----------------------------------------------------------------------------------------

def good_rates(S, R, D):
    return math.sqrt((R - 1) / (R * D)) / R, math.sqrt((D - 1) / (R * D)) / S


@pytest.mark.parametrize("wrong, message", [
    (lambda S, R, D: good_rates(S, R, D)[::-1], "swapped"),
    (lambda S, R, D: (math.sqrt((R - 1) / (R * D)), good_rates(S, R, D)[1]), "frequency 1/R"),
    (lambda S, R, D: (good_rates(S, R, D)[0], math.sqrt((D - 1) / (R * D))), "frequency 1/S"),
    (lambda S, R, D: (R / (R * D) / R, math.sqrt(D / (R * D)) / S), "k - 1"),
    (lambda S, R, D: ((R - 1) / (R * D) / R**2, good_rates(S, R, D)[1]), "square root"),
])
def test_growth_rates_checker(wrong, message):
    ch6.test_growth_rates(good_rates)
    with pytest.raises(AssertionError, match=message):
        ch6.test_growth_rates(wrong)


# --- escape step ------------------------------------------------------------------------------------------

def good_escape(rate, init_scale, lrs):
    target = math.log(1 / init_scale) / rate
    elapsed = np.cumsum(lrs)
    hit = np.nonzero(elapsed >= target)[0]
    return int(hit[0]) + 1 if hit.size else None


def twice_escape(rate, init_scale, lrs):
    return good_escape(rate, init_scale**2, lrs)  # ln(1/eps^2) / c


def log10_escape(rate, init_scale, lrs):
    return math.log10(1 / init_scale) / rate / lrs[0]


def first_lr_escape(rate, init_scale, lrs):
    return math.log(1 / init_scale) / rate / lrs[-1]


def never_none_escape(rate, init_scale, lrs):
    step = good_escape(rate, init_scale, lrs)
    return len(lrs) if step is None else step


@pytest.mark.parametrize("wrong, message", [
    (twice_escape, "twice too late"), (log10_escape, "log10"), (first_lr_escape, "add up"),
    (never_none_escape, "never happens"),
])
def test_escape_step_checker(wrong, message):
    ch6.test_escape_step(good_escape)
    with pytest.raises(AssertionError, match=message):
        ch6.test_escape_step(wrong)
