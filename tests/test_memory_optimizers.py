"""Chapter 8's optimiser experiments: the weights each method writes and the margins over training."""
import math

import pytest
import torch

from factlib import memory_optimizers as mo
from factlib.embeddings import orthogonal_embeddings
from factlib.heavy_tails import zipf_probabilities
from factlib.memory import cross_entropy_loss, scores


def orthonormal(N, M):
    E = orthogonal_embeddings(N, N + M, dtype=torch.float64)  # (N, N + M)
    U = torch.eye(N + M, dtype=torch.float64)[N:]  # (M, N + M)
    return E, U


def test_weighted_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    E, U = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    targets, w = torch.tensor([0, 1, 2, 0, 1, 2, 0]), torch.rand(7, generator=g, dtype=torch.float64)
    W = torch.randn(5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    loss = (torch.nn.functional.cross_entropy(scores(W, E, U), targets, reduction="none") * w).sum()
    (grad,) = torch.autograd.grad(loss, W)
    assert torch.allclose(mo.weighted_gradient(W.detach(), E, U, targets, w), grad)


def test_one_step_writes_the_counts_and_sgd_a_constant():
    N, M = 20, 3
    E, U = orthonormal(N, M)
    targets = torch.arange(N) % M
    sample = torch.tensor([0] * 9 + [1] * 4 + [2] * 2 + [5])
    counts = torch.bincount(sample, minlength=N).double()
    q = mo.learned_weights(mo.fit_memory(E, U, targets, sample, "one-step", lr=2.0), E, U, targets)
    # one step from W = 0 (chapter 1's gradient lemma): right score lr phat (1 - 1/M), wrong ones -lr phat / M
    assert torch.allclose(q, 2.0 * counts / len(sample))
    eta = 30.0
    q = mo.learned_weights(mo.fit_memory(E, U, targets, sample, "sgd", lr=eta), E, U, targets)
    seen = counts > 0
    # Proposition "one sample at a time": eta <= q(z) <= eta + (k - 1) eta M / (e^eta + M - 1) after k visits
    assert bool((q[seen] >= eta - 1e-9).all()) and bool((q[seen] <= eta + 8 * eta * M / math.exp(eta) + 1e-9).all())
    assert torch.all(q[~seen] == 0)


def test_gradient_descent_with_orthonormal_embeddings_follows_the_recursion():
    N, M, lr, steps = 12, 4, 5.0, 60
    E, U = orthonormal(N, M)
    targets = torch.arange(N) % M
    p = zipf_probabilities(N, 1.5)
    sample = torch.multinomial(p, 4000, replacement=True, generator=torch.Generator().manual_seed(1))
    phat = torch.bincount(sample, minlength=N).double() / len(sample)
    W = mo.fit_memory(E, U, targets, sample, "gd", lr=lr, steps=steps)
    m = mo.orthogonal_margins(phat, lr, steps, M)[-1]
    gamma = scores(W, E, U)
    right = gamma.gather(1, targets[:, None]).squeeze(1)
    wrong = gamma.scatter(1, targets[:, None], float("-inf")).amax(1)
    assert torch.allclose(right - wrong, m)


def test_orthogonal_margins_grow_like_the_log_of_time():
    p, lr, M = torch.tensor([0.5, 0.05], dtype=torch.float64), 10.0, 4
    m = mo.orthogonal_margins(p, lr, 20000, M)
    t = torch.arange(20001, dtype=torch.float64)[:, None]
    assert bool((m >= torch.log1p(lr * p * t) - 1e-9).all())  # the lower bound of the proposition
    assert bool((m[1:] > m[:-1]).all())  # increasing, never oscillating
    limit = torch.log(lr * p * M)  # m_t - ln t -> ln(lr p M)
    assert torch.allclose(m[-1] - math.log(20000), limit, atol=0.02)


def test_adam_is_insensitive_to_frequency_with_orthonormal_embeddings():
    N, M = 16, 2
    E, U = orthonormal(N, M)
    targets = torch.arange(N) % M
    p = zipf_probabilities(N, 2.0)
    sample = torch.multinomial(p, 3000, replacement=True, generator=torch.Generator().manual_seed(2))
    seen = torch.bincount(sample, minlength=N) > 0
    q = mo.learned_weights(mo.fit_memory(E, U, targets, sample, "adam", lr=1e-2, steps=50), E, U, targets)
    assert float(q[seen].max() / q[seen].min()) < 1.01


def test_two_token_margins_oscillate_only_when_correlated():
    flat = mo.two_token_margins(0.0, 0.9, 30.0, 300)
    assert bool((flat[1:] >= flat[:-1] - 1e-12).all())
    bent = mo.two_token_margins(0.99, 0.9, 30.0, 300)
    changes = (torch.diff(torch.sign(bent[1:, 1])) != 0).sum()
    assert int(changes) >= 2


def test_recall_curve_and_first_full_recall():
    curve = mo.recall_curve(10, 3, 8, 1.5, 0, 30.0, 500)
    assert curve.shape == (501,) and float(curve[0]) == 0.0  # W = 0: every score ties, a tie is an error
    first = mo.first_full_recall(curve)
    assert first is not None and float(curve[first]) == pytest.approx(1.0)
    assert mo.first_full_recall(torch.tensor([0.2, 0.5])) is None


@pytest.mark.parametrize("kwargs, match", [({"method": "newton"}, "method must be one of"),
                                           ({"lr": -1.0}, "lr must be"), ({"lr": float("nan")}, "lr must be"),
                                           ({"steps": 0}, "steps must be"), ({"sample": torch.tensor([3.0])}, "sample"),
                                           ({"sample": torch.tensor([99])}, "sample")])
def test_fit_memory_rejects_bad_arguments(kwargs, match):
    E, U = orthonormal(4, 2)
    args = {"E": E, "U": U, "targets": torch.tensor([0, 1, 0, 1]), "sample": torch.tensor([0, 1]), "method": "gd",
            "lr": 1.0, "steps": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        mo.fit_memory(**args)


def test_weights_and_margins_jobs():
    job = {"N": 16, "M": 2, "d": 32, "alpha": 1.5, "n": 50, "embeddings": "random", "seed": 0,
           "methods": {"one step": {"method": "one-step", "lr": 1.0}, "GD": {"method": "gd", "lr": 5.0, "steps": 5}}}
    rows = mo.weights_job(job, torch.device("cpu"))
    assert len(rows) == 2 * 17 and sum(r["token"] is None for r in rows) == 2
    out = mo.margins_job({"kind": "separable", "N": 6, "M": 2, "d": 4, "alpha": 1.5, "steps": 50, "lr": 3.0,
                          "seed": 0}, torch.device("cpu"))
    assert out["curve"][0] == [0, 0.0] and len(out["curve"]) <= 202
    with pytest.raises(ValueError, match="do not apply"):
        mo.margins_jobs({"seeds": [0], "two_token": {}, "separable": {}, "under": {}})
    assert cross_entropy_loss  # the chapter's loss, imported here to keep the reference in view
