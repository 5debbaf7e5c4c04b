"""Every chapter 5 checker passes the chapter's solution and names the misconception of wrong ones."""
import math

import numpy as np
import pytest
import torch

from chapter_solutions import chapter_solutions
from factlib.checks import ch5


@pytest.mark.parametrize("name", ["test_fit_scaling", "test_bits_per_parameter", "test_iso_parameter_width",
                                  "test_capacity_from_outcomes"])
def test_checker_passes_the_chapters_solution(capsys, name):
    getattr(ch5, name)(chapter_solutions(5)[name])
    assert capsys.readouterr().out == f"All tests in {name} passed!\n"


def fit(params, facts):
    slope = np.polyfit(np.log(params), np.log(facts), 1)[0]
    return slope, float(np.median(np.asarray(facts) / np.asarray(params)))


def test_fit_scaling_checker(capsys):
    ch5.test_fit_scaling(fit)
    assert "All tests in test_fit_scaling passed!" in capsys.readouterr().out
    for wrong, message in [
        (lambda p, f: (np.polyfit(np.log(f), np.log(p), 1)[0], fit(p, f)[1]), "log facts \\(y\\) on log params"),
        (lambda p, f: (np.polyfit(p, f, 1)[0], fit(p, f)[1]), "log-log axes"),
        (lambda p, f: (fit(p, f)[0], float(np.mean(np.asarray(f) / np.asarray(p)))), "median"),
        (lambda p, f: (fit(p, f)[0], float(np.median(np.asarray(p) / np.asarray(f)))), "not params per fact"),
        (lambda p, f: (1.0, fit(p, f)[1]), "expected the log-log slope"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch5.test_fit_scaling(wrong)


def masked_ce(logits, answers, num_answers):
    A = logits.shape[2]
    pad = torch.arange(A)[None, :] >= num_answers[:, None]  # (n, A)
    logp = logits.masked_fill(pad[:, None, :], float("-inf")).log_softmax(dim=2)
    return -logp.gather(2, answers[..., None]).squeeze(2).mean(dim=1)


def test_masked_cross_entropy_checker(capsys):
    ch5.test_masked_cross_entropy(masked_ce)
    assert "passed" in capsys.readouterr().out

    def unmasked(logits, answers, num):
        return -logits.log_softmax(2).gather(2, answers[..., None]).squeeze(2).mean(1)

    def zero_pad(logits, answers, num):
        pad = torch.arange(logits.shape[2])[None, :] >= num[:, None]
        return unmasked(logits.masked_fill(pad[:, None, :], 0.0), answers, num)

    for wrong, message in [(unmasked, "-inf before the log-softmax"), (zero_pad, "use -inf"),
                           (lambda l, a, k: masked_ce(l, a, k).mean().expand(3), "one loss per run"),
                           (lambda l, a, k: masked_ce(l, a, k).mean(), "shape \\(n,\\)"),
                           (lambda l, a, k: 2 * masked_ce(l, a, k), "expected")]:
        with pytest.raises(AssertionError, match=message):
            ch5.test_masked_cross_entropy(wrong)


def adam(w, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    m_hat, v_hat = m / (1 - beta1 ** step), v / (1 - beta2 ** step)
    lr = lr.view((-1,) + (1,) * (w.ndim - 1))
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


def test_adam_step_checker(capsys):
    ch5.test_adam_step(adam)
    assert "passed" in capsys.readouterr().out

    def mean_lr(w, g, m, v, step, lr):
        return adam(w, g, m, v, step, lr.mean().expand(len(lr)))

    def no_correction(w, g, m, v, step, lr):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
        return w - lr.view(-1, 1, 1) * m / (v.sqrt() + 1e-8), m, v

    def eps_inside(w, g, m, v, step, lr):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
        mh, vh = m / (1 - 0.9 ** step), v / (1 - 0.999 ** step)
        return w - lr.view(-1, 1, 1) * mh / (vh + 1e-8).sqrt(), m, v

    def ascent(w, g, m, v, step, lr):
        w2, m, v = adam(w, g, m, v, step, lr)
        return 2 * w - w2, m, v

    def abs_grad(w, g, m, v, step, lr):
        return adam(w, g, m, v, step, lr)[0], 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g

    for wrong, message in [(mean_lr, "own learning rate"), (no_correction, "bias correction"),
                           (eps_inside, "outside the square root"), (ascent, "descend"),
                           (abs_grad, "squared gradient"),
                           (lambda w, g, m, v, step, lr: adam(w, g, m, v, step, lr)[0], "tuple")]:
        with pytest.raises(AssertionError, match=message):
            ch5.test_adam_step(wrong)


def capacity(outcomes):
    fails = [n for n, ok in outcomes.items() if not ok]
    bad = min(fails) if fails else None
    wins = [n for n, ok in outcomes.items() if ok and (bad is None or n < bad)]
    return max(wins) if wins else 0


def test_capacity_from_outcomes_checker(capsys):
    ch5.test_capacity_from_outcomes(capacity)
    assert "passed" in capsys.readouterr().out
    for wrong, message in [(lambda o: max([n for n, ok in o.items() if ok], default=0), "monotone"),
                           (lambda o: capacity(o) or None, "not None"),
                           (lambda o: capacity(o) + 1, "expected")]:
        with pytest.raises(AssertionError, match=message):
            ch5.test_capacity_from_outcomes(wrong)


def bits_per_parameter(S, R, D, params, distinct=False):
    bits = R * math.lgamma(S + 1) / math.log(2) if distinct else S * R * math.log2(D)
    return bits / params


def test_bits_per_parameter_checker(capsys):
    ch5.test_bits_per_parameter(bits_per_parameter)
    assert "All tests in test_bits_per_parameter passed!" in capsys.readouterr().out
    for wrong, message in [
        (lambda S, R, D, P, distinct=False: S * R * math.log(D) / P, "math.log2"),
        (lambda S, R, D, P, distinct=False: S * R / P, "facts per parameter"),
        (lambda S, R, D, P, distinct=False: P / (S * R * math.log2(D)), "not params / bits"),
        (lambda S, R, D, P, distinct=False: S * R * math.log2(D) / P, "R log2\\(S!\\) bits, less than"),
        (lambda S, R, D, P, distinct=False: bits_per_parameter(S, 1, D, P, distinct) * (1 if distinct else R),
         "its own permutation"),
        (lambda S, R, D, P, distinct=False: (R * math.lgamma(S + 1) / P) if distinct else S * R * math.log2(D) / P,
         "divide by ln 2"),
        (lambda S, R, D, P, distinct=False: 1.0, "expected"),
        (lambda S, R, D, P, distinct=False: None, "returned None"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch5.test_bits_per_parameter(wrong)


def iso_parameter_width(S, R, c, d, H, d_h):
    return max(0.0, (S * R / c - 4 * H * d_h * d) / (2 * d))


def test_iso_parameter_width_checker(capsys):
    ch5.test_iso_parameter_width(iso_parameter_width)
    assert "All tests in test_iso_parameter_width passed!" in capsys.readouterr().out
    for wrong, message in [
        (lambda S, R, c, d, H, d_h: (S * R / c - 4 * H * d_h * d) / (2 * d), "not a negative width"),
        (lambda S, R, c, d, H, d_h: max(0.0, (S * R / c - 4 * H * d_h * d) / d), "2 m d"),
        (lambda S, R, c, d, H, d_h: max(0.0, (S * R * c - 4 * H * d_h * d) / (2 * d)), "not S R c"),
        (lambda S, R, c, d, H, d_h: max(0.0, (S * R / c - 3 * H * d_h * d) / (2 * d)), "four d x d_h maps"),
        (lambda S, R, c, d, H, d_h: 7.0, "expected m"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch5.test_iso_parameter_width(wrong)
