"""Checkers for chapter 6 (sequential learning and the hallucination stage)."""
from __future__ import annotations

import math

import numpy as np
import torch

from . import _described, checker, number
from ..dynamics import growth_rates, partial_log_probs, predicted_escape_steps, time_to_step


def _number(x, what: str) -> float:
    if isinstance(x, torch.Tensor):
        assert x.numel() == 1, f"{what}: return one number (the mean over the batch), not a tensor of shape " \
                               f"{tuple(x.shape)}"
    return number(x, what)


@checker(answers=(partial_log_probs,))
def test_partial_losses(partial_losses_fn) -> None:
    """``partial_losses_fn(logits, answers, D)`` -> (relation-only loss, subject-only loss), batch means.

    relation-only: -log sum_{a in A_r} p(a | z) with r = a* // D; subject-only: -log sum_{a : a = a* mod D} p(a | z).
    """
    R, D, B = 3, 4, 64
    gen = torch.Generator().manual_seed(6)
    logits = 2.0 * torch.randn(B, R * D, generator=gen, dtype=torch.float64)  # (B, R D)
    answers = torch.randint(R * D, (B,), generator=gen)  # (B,)
    _, ref_rel, ref_sub = (-x.mean().item() for x in partial_log_probs(logits, answers, D))
    out = partial_losses_fn(logits, answers, D)
    assert isinstance(out, (tuple, list)) and len(out) == 2, (
        f"partial_losses_fn returned {_described(out)}; return a pair (relation_loss, subject_loss)")
    rel, sub = (_number(x, name) for x, name in zip(out, ("relation_loss", "subject_loss")))
    p = torch.softmax(logits, dim=-1).reshape(B, R, D)  # (B, R, D)
    rows = torch.arange(B)
    max_rel = -torch.log(p[rows, answers // D].max(-1).values).mean().item()
    assert not math.isclose(rel, max_rel, rel_tol=1e-6), (
        "the relation-only loss sums the probabilities of all D answers of A_r; you took the largest one")
    raw_rel = -torch.logsumexp(logits.reshape(B, R, D)[rows, answers // D], -1).mean().item()
    assert not math.isclose(rel, raw_rel, rel_tol=1e-6), (
        "you summed exponentiated logits without normalising: take the softmax over all R D answers first")
    assert rel >= 0 and sub >= 0, "a loss is minus a log-probability, so it is >= 0: check the sign"
    assert not (math.isclose(rel, ref_sub, rel_tol=1e-6) and math.isclose(sub, ref_rel, rel_tol=1e-6)), (
        "the two losses are swapped: answers are laid out as a = r D + k, so the relation is a // D (the set "
        "A_r = [r D, (r + 1) D)) and the subject's answer index is a % D")
    shifted = partial_losses_fn(logits + 7.0, answers, D)
    assert math.isclose(_number(shifted[0], "relation_loss"), rel, rel_tol=1e-6), (
        "adding a constant to every logit must not change the losses (the softmax is shift invariant)")
    assert math.isclose(rel, ref_rel, rel_tol=1e-6), f"relation-only loss {rel:.6f}, expected {ref_rel:.6f}"
    assert math.isclose(sub, ref_sub, rel_tol=1e-6), f"subject-only loss {sub:.6f}, expected {ref_sub:.6f}"
    uniform = partial_losses_fn(torch.zeros(2, R * D, dtype=torch.float64), answers[:2], D)
    assert math.isclose(_number(uniform[0], "relation_loss"), math.log(R), rel_tol=1e-6), \
        "at uniform predictions the relation-only loss is log R"


@checker(answers=(growth_rates,))
def test_growth_rates(growth_rates_fn) -> None:
    """``growth_rates_fn(S, R, D)`` -> (c_relation, c_subject), the linear-phase rates of chapter 6."""
    for S, R, D in [(16, 4, 8), (8, 16, 8), (30, 3, 5), (12, 2, 12)]:
        ref = growth_rates(S, R, D)
        out = growth_rates_fn(S, R, D)
        assert isinstance(out, (tuple, list)) and len(out) == 2, (
            f"growth_rates_fn returned {_described(out)}; return a pair (c_relation, c_subject)")
        c_rel, c_sub = (_number(x, name) for x, name in zip(out, ("c_relation", "c_subject")))
        assert c_rel > 0 and c_sub > 0, "the rates are positive: the relevant weights grow from zero"
        assert not (math.isclose(c_rel, ref["subject"], rel_tol=1e-6) and
                    math.isclose(c_sub, ref["relation"], rel_tol=1e-6)), "the two rates are swapped"
        assert not math.isclose(c_rel, R * ref["relation"], rel_tol=1e-6), (
            "missing the frequency 1/R: a given relation token appears in only 1/R of the prompts, so the "
            "population gradient on its weights carries a factor 1/R (and 1/S for a subject)")
        assert not math.isclose(c_sub, S * ref["subject"], rel_tol=1e-6), \
            "missing the frequency 1/S of a given subject token"
        assert not math.isclose(c_rel, ref["relation"] ** 2, rel_tol=1e-6), "missing a square root"
        assert math.isclose(c_rel, ref["relation"], rel_tol=1e-6), (
            f"c_relation for (S, R, D) = {(S, R, D)}: got {c_rel:.6g}, expected {ref['relation']:.6g}; it is "
            "(1/R) (R-1)/R times kappa_r = sqrt(R / (D (R-1))): check the (k - 1) / k factor (k - 1, not k)")
        assert math.isclose(c_sub, ref["subject"], rel_tol=1e-6), (
            f"c_subject for (S, R, D) = {(S, R, D)}: got {c_sub:.6g}, expected {ref['subject']:.6g}")


def _reference_escape_step(rate: float, init_scale: float, lrs) -> int | None:
    elapsed = np.concatenate([[0.0], np.cumsum(lrs)])
    hit = np.nonzero(elapsed >= math.log(1.0 / init_scale) / rate)[0]
    return int(hit[0]) if hit.size else None


@checker(answers=(_reference_escape_step, predicted_escape_steps, time_to_step))
def test_escape_step(escape_step_fn) -> None:
    """``escape_step_fn(rate, init_scale, lrs)``: first step k with lrs[0] + ... + lrs[k-1] >= ln(1/eps) / rate,
    or None if the whole schedule is too short (leading-order escape of chapter 6)."""
    rate, eps = 0.025, 1e-5
    constant = np.full(12000, 0.1)
    cosine = 0.1 * 0.5 * (1 + np.cos(np.pi * np.arange(8192) / 8192))
    warm = np.concatenate([np.linspace(0.0, 0.2, 1000), np.full(5000, 0.2)])
    for lrs, label in [(constant, "constant"), (warm, "warm-up then constant")]:
        ref = _reference_escape_step(rate, eps, lrs)
        got = escape_step_fn(rate, eps, lrs)
        assert got is not None, f"{label} schedule: the escape happens within the run, so return a step"
        got = _number(got, "escape step")
        assert abs(got - 2 * ref) > 2 or abs(ref) < 2, (
            "twice too late: the logit gap grows like eps^2 e^{2 c t}, so it reaches order one at "
            "t = ln(1/eps^2) / (2 c) = ln(1/eps) / c")
        if label == "constant":
            assert abs(got - math.log10(1 / eps) / rate / lrs[0]) > 2, "use the natural log, not log10"
        else:
            assert abs(got - math.log(1 / eps) / rate / lrs[-1]) > 2, (
                "the learning rate changes along the schedule: add up the lrs until the flow time is reached")
        assert abs(got - ref) <= 1, f"{label} schedule: got step {got:g}, expected {ref}"
    got = escape_step_fn(rate, eps, cosine)
    assert got is None, (
        f"a cosine decay from 0.1 to 0 over 8192 steps covers flow time {cosine.sum():.1f} < "
        f"ln(1/eps)/c = {math.log(1 / eps) / rate:.1f}: the escape never happens, return None (got {got})")
