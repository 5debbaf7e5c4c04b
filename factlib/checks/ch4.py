"""Checkers for chapter 4 (the one-layer transformer and its constructions)."""
from __future__ import annotations

import torch

from . import checker, close, number, tensor
from ..embeddings import gaussian_embeddings
from ..models import ModelConfig, parameter_count


@checker(answers=(parameter_count,))
def test_parameter_count(parameter_count_fn) -> None:
    """``parameter_count_fn(d, H, d_h, m)`` must return the paper's count 4 H d_h d + 2 m d."""
    for d, H, d_h, m in [(32, 8, 4, 64), (64, 1, 16, 0), (16, 4, 4, 256), (128, 32, 2, 8)]:
        want = parameter_count(ModelConfig(vocab_size=2, num_answers=1, d=d, H=H, d_h=d_h, m=m))["total"]
        got = int(number(parameter_count_fn(d, H, d_h, m), "parameter_count_fn", integer=True))
        assert got != 3 * H * d_h * d + d_h * d + 2 * m * d or got == want, (
            "W_O maps all H heads back to R^d: it is (H d_h) x d, so it has H d_h d entries, not d_h d")
        assert got != want + m or m == 0, "the paper does not count the m biases b1"
        assert got != 4 * H * d_h * d + m * d or m == 0, "the MLP has two matrices, W1 (m x d) and W2 (d x m): 2 m d"
        assert got == want, f"d={d}, H={H}, d_h={d_h}, m={m}: expected {want}, got {got}"


@checker
def test_own_answer_target(own_answer_target_fn) -> None:
    """``own_answer_target_fn(U_rows)`` for k unembeddings (k, d) must return the least-norm t (d,) with
    U_rows @ t = 1 (a vote of exactly 1 for each of the k answers)."""
    U = gaussian_embeddings(40, 16, 3)  # (40, d)
    rows = U[[1, 5, 9, 20]]  # (k, d)
    ref = torch.linalg.pinv(rows.double()) @ torch.ones(4, dtype=torch.float64)
    t = tensor(own_answer_target_fn(rows), (16,), "own_answer_target_fn", "(d,) = (16,)")
    t = t.double()
    votes = rows.double() @ t
    if close(t, rows.double().sum(0)):
        raise AssertionError("the Hebbian sum of the k rows gives each answer 1 plus cross-talk u_a . u_b; "
                             "solve for the t whose votes are exactly 1")
    assert close(votes, torch.ones(4, dtype=torch.float64), atol=1e-5), (
        f"each of the k answers must get logit exactly 1; got {[round(v, 3) for v in votes.tolist()]}")
    assert close(t, ref, atol=1e-5), (
        "t satisfies the votes but is not the least-norm solution: keep t in the span of the k rows "
        "(any extra component only adds noise to the other answers' logits)")


@checker
def test_interaction_feature(interaction_feature_fn) -> None:
    """``interaction_feature_fn(a, b)`` must combine relu(+-(a + b)) and relu(+-(a - b)) into a feature with
    no main effect: f(a, b) = |a + b| - |a - b| = 2 sign(a b) min(|a|, |b|)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, generator=gen, dtype=torch.float64), torch.randn(4000, generator=gen, dtype=torch.float64)
    want = (a + b).abs() - (a - b).abs()
    f = tensor(interaction_feature_fn(a, b), what="interaction_feature_fn").double()
    assert f.shape == a.shape, f"work elementwise: expected shape {tuple(a.shape)}, got {tuple(f.shape)}"
    if close(f, torch.relu(a + b) - torch.relu(a - b)):
        raise AssertionError("relu(a + b) - relu(a - b) has a main effect: averaged over a it equals b, so the "
                             "feature leaks the relation alone; add the mirrored pair relu(-a - b) - relu(b - a)")
    if close(f, a * b):
        raise AssertionError("a * b has no main effect, but a ReLU layer cannot compute it exactly; build the "
                             "feature from the four ReLUs")
    # no main effect: for fixed b, the average over symmetric a vanishes (and the same with the roles swapped)
    grid = torch.linspace(-3, 3, 13, dtype=torch.float64)
    for x in grid:
        fx = torch.as_tensor(interaction_feature_fn(a, torch.full_like(a, x)), dtype=torch.float64)
        f_neg = torch.as_tensor(interaction_feature_fn(-a, torch.full_like(a, x)), dtype=torch.float64)
        assert close(fx, -f_neg, atol=1e-9), "the feature must be odd in a (f(-a, b) = -f(a, b)): then E_a f(a, b) = 0"
    assert close(f, want, atol=1e-9), "expected |a + b| - |a - b| = relu(a+b) + relu(-a-b) - relu(a-b) - relu(b-a)"
