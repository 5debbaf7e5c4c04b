"""Checkers for chapter 1 (linear associative memories)."""
from __future__ import annotations

import math

import torch

from . import checker, close, number, tensor
from ..capacity import predicted_capacity
from ..embeddings import memory_embeddings, orthogonal_embeddings
from ..memory import centred_hebbian_memory, gradient_step_memory, hebbian_memory, recall_accuracy, scores


def _instance(N: int = 24, M: int = 24, d: int = 8, seed: int = 7):
    E, U = memory_embeddings(N, M, d, seed)  # (N, d), (M, d)
    targets = torch.randperm(M, generator=torch.Generator().manual_seed(seed))[:N] if N <= M else \
        torch.randint(M, (N,), generator=torch.Generator().manual_seed(seed))
    return E, U, targets


@checker(answers=(hebbian_memory,))
def test_hebbian_memory(hebbian_memory_fn) -> None:
    """``hebbian_memory_fn(E, U, targets)`` must return W = sum_x U[targets[x]] E[x]^T, shape (d, d)."""
    E, U, targets = _instance()
    ref = hebbian_memory(E, U, targets)
    W = hebbian_memory_fn(E, U, targets)
    tensor(W, (E.shape[1], E.shape[1]), "hebbian_memory_fn", f"(d, d) = {(E.shape[1],) * 2}")
    # misconception: the outer product the wrong way round (input times output transposed)
    assert not close(W, ref.T) or close(W, ref), (
        "W is the transpose of the memory: each term must be u_{f(x)} e_x^T (output column times input row), "
        "so that W e_x points towards u_{f(x)}.")
    # misconception: pairing input x with U[x] instead of its target U[f(x)]
    assert not close(W, U[: len(targets)].T @ E), (
        "each input x must be paired with the unembedding of its target, U[targets[x]], not with U[x].")
    if not close(W, ref):
        ratio = (W * ref).sum() / (ref * ref).sum()
        assert not close(W, ratio * ref), (
            f"W is the memory times {ratio.item():.4g}: the argmax would not change, but the exercise asks for "
            "the plain sum over x (no averaging or normalising).")
        raise AssertionError("W differs from sum_x U[targets[x]] E[x]^T; check that you sum over all N inputs.")


@checker(answers=(recall_accuracy,))
def test_recall_accuracy(recall_accuracy_fn) -> None:
    """``recall_accuracy_fn(W, E, U, targets)`` must return the fraction of x with argmax_y U[y]^T W E[x] = f(x)."""
    E, U, targets = _instance(N=40, M=30, d=16)
    W = hebbian_memory(E, U, targets)  # recalls 22 of the 40 inputs: wrong answers give other fractions
    ref = recall_accuracy(W, E, U, targets)
    got = recall_accuracy_fn(W, E, U, targets)
    assert not (isinstance(got, torch.Tensor) and got.numel() > 1), (
        "return a single number (a Python float), not a vector of per-input results")
    got = number(got, "recall_accuracy_fn")
    assert got <= 1.0, f"got {got}: return the fraction of correct inputs (divide the count by N)"
    transposed = (scores(W.T, E, U).argmax(dim=1) == targets).float().mean().item()
    if abs(transposed - ref) > 1e-6:
        assert abs(got - transposed) > 1e-6, "you used W^T: the score of output y for input x is U[y]^T W E[x]"
    wrong_axis = (scores(W, E, U).argmax(dim=0)[: len(targets)] == targets[: U.shape[0]]).float().mean().item()
    assert not (abs(got - wrong_axis) < 1e-6 and abs(wrong_axis - ref) > 1e-6), (
        "take the argmax over outputs y (one per input x, along dim=1 of the (N, M) score matrix), not over inputs")
    assert abs(got - ref) < 1e-6, f"got {got:.4f}, expected {ref:.4f}"
    one_hot = orthogonal_embeddings(5)
    perfect = number(recall_accuracy_fn(torch.eye(5), one_hot, one_hot, torch.arange(5)), "recall_accuracy_fn")
    assert perfect == 1.0, f"the identity memory with one-hot embeddings recalls everything; got {perfect}"


@checker(answers=(predicted_capacity,))
def test_predicted_capacity(predicted_capacity_fn) -> None:
    """``predicted_capacity_fn(params, c)`` must return the N solving params = c N ln N (natural log)."""
    for params, c in [(64.0, 1.0), (4096.0, 1.3), (1e6, 0.35), (250.0, 2.0)]:
        ref = predicted_capacity(params, c)
        N = number(predicted_capacity_fn(params, c), "predicted_capacity_fn")
        assert N > 1, f"N must be > 1; got {N} for params={params}, c={c}"
        if abs(c * N * math.log2(N) - params) < 1e-3 * params:
            raise AssertionError("you used log base 2: the guide lines of Figure 1 use the natural log, N ln N")
        assert abs(N - params / c) > 1e-6 * params, "N ln N = params / c, not N = params / c: keep the log"
        assert abs(c * N * math.log(N) - params) < 1e-3 * params, (
            f"c N ln N should equal params = {params}; got {c * N * math.log(N):.4g} for N = {N:.4g}")
        assert abs(N - ref) < 1e-3 * N, f"params={params}, c={c}: expected N = {ref:.6g}, got {N:.6g}"


@checker(answers=(gradient_step_memory, centred_hebbian_memory))
def test_gradient_memory(gradient_memory_fn) -> None:
    """``gradient_memory_fn(E, U, targets, lr)``: the memory after one gradient step from W = 0, in closed form."""
    E, U, targets = _instance(N=30, M=12, d=8)
    lr = 2.5
    ref = lr / len(targets) * centred_hebbian_memory(E, U, targets)
    W = tensor(gradient_memory_fn(E, U, targets, lr), what="gradient_memory_fn")
    assert tuple(W.shape) == (8, 8), f"W must have shape (d, d) = (8, 8); got {tuple(W.shape)}"
    assert not close(W, -ref), "wrong sign: a gradient *descent* step moves W along minus the gradient"
    assert not close(W, lr / len(targets) * hebbian_memory(E, U, targets)), (
        "missing the centring: at W = 0 the softmax is uniform, so the gradient also carries "
        "-(1/M) sum_y u_y for every input; subtract the mean unembedding from each U[f(x)]")
    assert not close(W, lr * centred_hebbian_memory(E, U, targets)), (
        "missing the 1/N: the loss averages over the N inputs")
    assert close(W, ref), "W differs from (lr / N) sum_x (U[f(x)] - mean_y U[y]) E[x]^T"
