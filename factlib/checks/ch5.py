"""Checkers for chapter 5 (training one-layer transformers: facts against parameters)."""
from __future__ import annotations

import math

import numpy as np
import torch

from . import _described, checker, close, number, tensor
from ..searches import bootstrap_fit, fit_scaling


@checker(answers=(fit_scaling, bootstrap_fit))
def test_fit_scaling(fit_fn) -> None:
    """``fit_fn(params, facts)`` must return (slope, facts_per_param): the least-squares slope of log facts
    against log params, and the median of facts / params."""
    rng = np.random.default_rng(0)
    params = np.array([300, 800, 2000, 5000, 12000, 30000, 80000], dtype=float)
    facts = 0.12 * params ** 0.9 * np.exp(rng.normal(0, 0.05, len(params)))
    want_slope = np.polyfit(np.log(params), np.log(facts), 1)[0]
    want_constant = float(np.median(facts / params))
    out = fit_fn(params.tolist(), facts.tolist())
    assert isinstance(out, (tuple, list)) and len(out) == 2, (
        f"fit_fn returned {_described(out)}; expected a pair (slope, facts_per_param)")
    slope, constant = (number(x, f"fit_fn's {name}") for x, name in zip(out, ("slope", "facts_per_param")))
    if abs(slope - np.polyfit(np.log(facts), np.log(params), 1)[0]) < 1e-6:
        raise AssertionError("you fitted log params against log facts: regress log facts (y) on log params (x)")
    if abs(slope - np.polyfit(params, facts, 1)[0]) < 1e-6:
        raise AssertionError("a scaling law is a straight line on log-log axes: fit log facts against log params")
    assert abs(slope - want_slope) < 1e-6, f"expected the log-log slope {want_slope:.4f}, got {slope:.4f}"
    if abs(constant - float(np.mean(facts / params))) < 1e-9 and abs(constant - want_constant) > 1e-9:
        raise AssertionError("use the median of facts / params: one outlying model should not move the constant")
    if abs(constant - float(np.median(params / facts))) < 1e-6:
        raise AssertionError("the constant is facts per parameter, facts / params, not params per fact")
    assert abs(constant - want_constant) < 1e-6, f"expected facts per parameter {want_constant:.4f}, got {constant:.4f}"


@checker
def test_masked_cross_entropy(loss_fn) -> None:
    """``loss_fn(logits, answers, num_answers)`` for padded logits (n, B, A_max), answers (n, B) and the true
    answer counts (n,) must return each run's mean cross-entropy over its own first num_answers[r] logits, (n,)."""
    gen = torch.Generator().manual_seed(0)
    n, B, A = 3, 64, 12
    num = torch.tensor([12, 5, 8])
    logits = torch.randn(n, B, A, generator=gen, dtype=torch.float64)
    answers = torch.stack([torch.randint(int(k), (B,), generator=gen) for k in num])
    want = torch.stack([torch.nn.functional.cross_entropy(logits[r, :, :k], answers[r]) for r, k in enumerate(num)])
    got = tensor(loss_fn(logits.clone(), answers, num), (n,), "loss_fn", f"(n,) = ({n},): one loss per run")
    unmasked = torch.nn.functional.cross_entropy(logits.reshape(-1, A), answers.reshape(-1), reduction="none")
    if close(got, unmasked.reshape(n, B).mean(1)):
        raise AssertionError("the padded answers take part in the softmax: mask logits[r, :, k:] for k = num_answers[r] "
                             "with -inf before the log-softmax (a run with 5 answers must not spread mass on 12)")
    zeroed = logits.clone()
    for r, k in enumerate(num):
        zeroed[r, :, k:] = 0.0
    if close(got, torch.nn.functional.cross_entropy(zeroed.reshape(-1, A), answers.reshape(-1),
                                                    reduction="none").reshape(n, B).mean(1)):
        raise AssertionError("setting the padded logits to 0 still gives them probability exp(0); use -inf")
    if close(got, want.mean().expand(n)) or close(got.sum(), want.mean()):
        raise AssertionError("keep one loss per run: each run's gradient must come from its own loss only")
    assert close(got, want, atol=1e-6), f"expected {want.tolist()}, got {got.tolist()}"


@checker
def test_adam_step(adam_fn) -> None:
    """``adam_fn(w, grad, m, v, step, lr)`` for batched weights w (n, ...) and one learning rate per run lr (n,)
    must return the new (w, m, v) of Adam (beta1 0.9, beta2 0.999, eps 1e-8) with bias correction at ``step``."""
    gen = torch.Generator().manual_seed(1)
    n = 3
    w = torch.randn(n, 4, 5, generator=gen, dtype=torch.float64)
    grad = torch.randn(n, 4, 5, generator=gen, dtype=torch.float64)
    m = 0.1 * torch.randn(n, 4, 5, generator=gen, dtype=torch.float64)
    v = 0.01 * torch.rand(n, 4, 5, generator=gen, dtype=torch.float64)
    grad[:, 0], m[:, 0], v[:, 0] = 1e-6 * grad[:, 0], 1e-6 * m[:, 0], 0.0  # weights that barely moved: eps matters
    lr = torch.tensor([1e-3, 3e-3, 1e-2], dtype=torch.float64)
    step = 3
    m_want = 0.9 * m + 0.1 * grad
    v_want = 0.999 * v + 0.001 * grad ** 2
    m_hat, v_hat = m_want / (1 - 0.9 ** step), v_want / (1 - 0.999 ** step)
    per_run = lr.view(n, 1, 1)
    want = w - per_run * m_hat / (v_hat.sqrt() + 1e-8)
    out = adam_fn(w.clone(), grad.clone(), m.clone(), v.clone(), step, lr.clone())
    assert isinstance(out, tuple) and len(out) == 3, f"adam_fn returned {_described(out)}; return the tuple (w, m, v)"
    for x, name in zip(out, "wmv"):
        tensor(x, what=f"adam_fn's {name}")
    w2, m2, v2 = (torch.as_tensor(x, dtype=torch.float64) for x in out)
    assert close(m2, m_want), "first moment: m = beta1 m + (1 - beta1) grad"
    if close(v2, 0.999 * v + 0.001 * grad):
        raise AssertionError("second moment: average the squared gradient, grad ** 2")
    assert close(v2, v_want), "second moment: v = beta2 v + (1 - beta2) grad ** 2"
    if close(w2, w - lr.mean() * m_hat / (v_hat.sqrt() + 1e-8)):
        raise AssertionError("every run has its own learning rate: broadcast lr (n,) as lr.view(n, 1, 1), not a mean")
    if close(w2, w - per_run * m_want / (v_want.sqrt() + 1e-8)):
        raise AssertionError("divide m by 1 - beta1^step and v by 1 - beta2^step (bias correction)")
    if close(w2, w - per_run * m_hat / (v_hat + 1e-8).sqrt()):
        raise AssertionError("eps goes outside the square root: m_hat / (sqrt(v_hat) + eps)")
    if close(w2, w + per_run * m_hat / (v_hat.sqrt() + 1e-8)):
        raise AssertionError("descend: subtract the step")
    assert close(w2, want), "expected w - lr m_hat / (sqrt(v_hat) + eps), with lr per run"


@checker
def test_capacity_from_outcomes(capacity_fn) -> None:
    """``capacity_fn(outcomes)`` for {n: reached} from a search (possibly not monotone) must return the largest
    n that reached the threshold below the smallest n that failed (0 if even the smallest tried n failed)."""
    cases = [({4: True, 6: True, 8: False, 10: False}, 6),
             ({4: True, 6: False, 8: True, 10: False}, 4),   # a lucky success above a failure does not count
             ({3: False, 5: False}, 0),
             ({2: True, 3: True, 5: True}, 5)]
    for outcomes, want in cases:
        got = capacity_fn(dict(outcomes))
        if outcomes == cases[1][0] and got == 8:
            raise AssertionError("8 succeeded above the failure at 6: a capacity must be monotone, so take the "
                                 "largest success below the smallest failure")
        if outcomes == cases[2][0] and got is None:
            raise AssertionError("when every n failed, return 0 (nothing is stored), not None")
        got = number(got, "capacity_fn", integer=True)
        assert got == want, f"outcomes {outcomes}: expected {want}, got {got:g}"


@checker
def test_bits_per_parameter(bits_fn) -> None:
    """``bits_fn(S, R, D, params, distinct=False)`` must return the bits of a uniformly random table per parameter:
    S R log2 D / params, or with ``distinct=True`` (D = S distinct answers per relation) R log2(S!) / params."""
    cases = [(12, 12, 8, 1536), (7, 7, 8, 1056), (32, 32, 8, 18432), (100, 3, 4, 50)]
    for S, R, D, P in cases:
        want = S * R * math.log2(D) / P
        got = number(bits_fn(S, R, D, P), "bits_fn")
        if abs(got - S * R * math.log(D) / P) < 1e-9 * want:
            raise AssertionError("a fact carries log2 D bits, not ln D nats: use math.log2")
        if abs(got - S * R / P) < 1e-9 * want:
            raise AssertionError("that is facts per parameter; each fact carries log2 D bits")
        if abs(got - P / (S * R * math.log2(D))) < 1e-9 * max(want, 1 / want):
            raise AssertionError("bits per parameter is bits / params, not params / bits")
        assert abs(got - want) < 1e-9 * want, f"S={S}, R={R}, D={D}, params={P}: expected {want:.6g}, got {got:.6g}"
    for S, R, P in [(8, 8, 384), (20, 20, 3000), (5, 2, 10)]:
        want = R * math.lgamma(S + 1) / math.log(2) / P
        got = number(bits_fn(S, R, S, P, distinct=True), "bits_fn with distinct=True")
        if abs(got - S * R * math.log2(S) / P) < 1e-9 * want:
            raise AssertionError("with distinct answers the facts of a relation are a permutation: the table "
                                 "carries R log2(S!) bits, less than S R log2 S")
        if abs(got - math.lgamma(S + 1) / math.log(2) / P) < 1e-9 * want:
            raise AssertionError("each of the R relations has its own permutation: R log2(S!) bits")
        if abs(got - R * math.lgamma(S + 1) / P) < 1e-9 * want:
            raise AssertionError("math.lgamma gives ln(S!) in nats: divide by ln 2 for bits")
        assert abs(got - want) < 1e-9 * want, f"S={S}, R={R}, distinct, params={P}: expected {want:.6g}, got {got:.6g}"


@checker
def test_iso_parameter_width(width_fn) -> None:
    """``width_fn(S, R, c, d, H, d_h)`` must return the MLP width m on the iso-parameter curve
    4 H d_h d + 2 m d = S R / c (a float), and 0 where the attention alone already has S R / c parameters."""
    cases = [(32, 32, 0.0927, 32, 8, 8), (32, 32, 0.0927, 32, 1, 8), (8, 8, 0.1, 16, 4, 2), (16, 16, 0.5, 32, 8, 8)]
    for S, R, c, d, H, d_h in cases:
        free = S * R / c - 4 * H * d_h * d
        want = max(0.0, free / (2 * d))
        got = number(width_fn(S, R, c, d, H, d_h), "width_fn")
        if free < 0 and got < 0:
            raise AssertionError(f"S={S}, R={R}, c={c}, d={d}, H={H}, d_h={d_h}: the attention alone has more than "
                                 "S R / c parameters, so no MLP is needed: return 0, not a negative width")
        if free > 0 and abs(got - free / d) < 1e-9 * free:
            raise AssertionError("the MLP has two d x m matrices: its parameters are 2 m d")
        upside_down = (S * R * c - 4 * H * d_h * d) / (2 * d)
        if want > 0 and min(abs(got - upside_down), abs(got - max(0.0, upside_down))) < 1e-9 * want:
            raise AssertionError("c is facts per parameter: P = S R / c parameters, not S R c")
        if free > 0 and abs(got - (S * R / c - 3 * H * d_h * d) / (2 * d)) < 1e-9 * free:
            raise AssertionError("attention has four d x d_h maps per head (W_Q, W_K, W_V, W_O): 4 H d_h d")
        assert abs(got - want) < 1e-9 * max(1.0, want), (
            f"S={S}, R={R}, c={c}, d={d}, H={H}, d_h={d_h}: expected m = {want:.6g}, got {got:.6g}")
