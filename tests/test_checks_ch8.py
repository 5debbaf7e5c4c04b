"""Every chapter 8 checker passes the reference solution and names the misconception of wrong ones."""
import pytest
import torch

from factlib import heavy_tails, sharp_capacity
from factlib.checks import ch8


def unseen_reference(p, n):
    return float((p * (1 - p) ** n).sum())


def test_unseen_mass_checker(capsys):
    ch8.test_unseen_mass(unseen_reference)
    ch8.test_unseen_mass(heavy_tails.unseen_mass)
    assert capsys.readouterr().out.count("All tests in test_unseen_mass passed!") == 2
    for wrong, message in [
        (lambda p, n: float((p * torch.exp(-n * p)).sum()), "large-n approximation"),
        (lambda p, n: float(((1 - p) ** n).sum()), "weight each token"),
        (lambda p, n: float(((1 - p) ** n).mean()), "fraction of the tokens"),
        (lambda p, n: float((p * (1 - p) ** max(n - 1, 0)).sum()), "exponent is n"),
        (lambda p, n: 1 - float((p * (1 - p) ** n).sum()), "expected"),
        (lambda p, n: p * (1 - p) ** n, "expected a number"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch8.test_unseen_mass(wrong)


def threshold_reference(counts, keep):
    ordered = torch.sort(counts, descending=True).values
    s = 1 if keep >= int((counts > 0).sum()) else int(ordered[keep]) + 1
    return (counts >= s).double()


def test_threshold_weights_checker(capsys):
    ch8.test_threshold_weights(threshold_reference)
    ch8.test_threshold_weights(lambda counts, keep: heavy_tails.memory_weights(counts, "threshold", keep))
    assert capsys.readouterr().out.count("All tests in test_threshold_weights passed!") == 2

    def top_k(counts, keep):  # exactly keep tokens, ties broken by position
        q = torch.zeros(len(counts), dtype=torch.float64)
        q[torch.argsort(counts, descending=True, stable=True)[:keep]] = 1.0
        return q

    def any_count(counts, keep):  # the threshold may fall to 0 when there is room for every token
        ordered = torch.sort(counts, descending=True).values
        return (counts >= (int(ordered[keep]) + 1 if keep < len(counts) else 0)).double()

    def strict(counts, keep):  # n_z > s instead of n_z >= s
        return (counts > heavy_tails.keep_threshold(counts, keep)).double()

    for wrong, message in [
        (top_k, "tie"),
        (any_count, "never seen"),
        (strict, "expected q"),
        (lambda counts, keep: counts.double(), "0 or 1"),
        (lambda counts, keep: (counts > 0).double(), "at most keep"),
        (lambda counts, keep: (counts >= 0).double(), "0 or 1|never seen"),
        (lambda counts, keep: [1.0] * len(counts), "expected a tensor"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch8.test_threshold_weights(wrong)


def margin_reference(W, E, U, targets):
    gamma = (E @ W.T) @ U.T
    right = gamma.gather(1, targets[:, None]).squeeze(1)
    wrong = gamma.scatter(1, targets[:, None], float("-inf")).amax(1)
    return float((right - wrong).min() * E.shape[1] / W.norm())


def test_normalized_margin_checker(capsys):
    ch8.test_normalized_margin(margin_reference)
    ch8.test_normalized_margin(sharp_capacity.normalized_margin)
    assert capsys.readouterr().out.count("All tests in test_normalized_margin passed!") == 2

    def gaps(W, E, U, targets):
        gamma = (E @ W.T) @ U.T
        right = gamma.gather(1, targets[:, None]).squeeze(1)
        return right - gamma.scatter(1, targets[:, None], float("-inf")).amax(1)

    def with_right(W, E, U, targets):  # the best "wrong" score includes the right one
        gamma = (E @ W.T) @ U.T
        right = gamma.gather(1, targets[:, None]).squeeze(1)
        return float((right - gamma.amax(1)).min() * E.shape[1] / W.norm())

    for wrong, message in [
        (with_right, "leave the right output out"),
        (lambda W, E, U, t: float(gaps(W, E, U, t).min()), "not normalised"),
        (lambda W, E, U, t: float(gaps(W, E, U, t).min() / W.norm()), "multiply by d"),
        (lambda W, E, U, t: float(gaps(W, E, U, t).min() * E.shape[1] / torch.linalg.matrix_norm(W, ord=2)),
         "Frobenius"),
        (lambda W, E, U, t: float(gaps(W, E, U, t).mean() * E.shape[1] / W.norm()), "smallest margin"),
        (lambda W, E, U, t: gaps(W, E, U, t) * E.shape[1] / W.norm(), "expected a number"),
    ]:
        with pytest.raises(AssertionError, match=message):
            ch8.test_normalized_margin(wrong)
