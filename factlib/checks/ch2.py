"""Checkers for chapter 2 (MLP associative memories)."""
from __future__ import annotations

import math

import torch

from . import checker, close, number, tensor
from ..embeddings import memory_embeddings
from ..memory import mlp_forward, random_features_memory, relu_hermite_coefficient
from ..train import many_to_one_targets


@checker(answers=(mlp_forward,))
def test_mlp_forward(mlp_forward_fn) -> None:
    """``mlp_forward_fn(E, W1, b1, W2)`` must return F(e_x) = W2 relu(W1 e_x + b1) for every row of E: (N, d)."""
    N, d, m = 12, 6, 10
    gen = torch.Generator().manual_seed(3)
    E = torch.randn(N, d, generator=gen, dtype=torch.float64)  # (N, d)
    W1 = torch.randn(m, d, generator=gen, dtype=torch.float64)  # (m, d)
    b1 = torch.randn(m, generator=gen, dtype=torch.float64)  # (m,)
    W2 = torch.randn(d, m, generator=gen, dtype=torch.float64)  # (d, m)
    ref = mlp_forward(E, W1, b1, W2)
    out = tensor(mlp_forward_fn(E, W1, b1, W2), what="mlp_forward_fn")
    assert tuple(out.shape) == (N, d), (
        f"F must map each of the N = {N} inputs to R^d: expected shape ({N}, {d}), got {tuple(out.shape)}")
    pre = E @ W1.T  # (N, m)
    # misconception: no nonlinearity (then the MLP is a rank-m linear memory, chapter 1)
    assert not close(out, (pre + b1) @ W2.T), (
        "no nonlinearity: without relu the MLP collapses to the linear memory W2 W1 e (chapter 1); apply relu to "
        "the hidden layer W1 e + b1")
    # misconception: bias outside the relu, or forgotten
    assert not close(out, torch.relu(pre) @ W2.T) or close(out, ref), (
        "the bias b1 is missing: the hidden layer is relu(W1 e + b1)")
    assert not close(out, (torch.relu(pre) + b1) @ W2.T), (
        "the bias is added after the relu: it belongs inside, relu(W1 e + b1)")
    # misconception: relu on the output instead of the hidden layer
    assert not close(out, torch.relu((pre + b1) @ W2.T)), (
        "relu is applied to the output: it acts on the hidden layer, and the output W2 h is linear")
    assert close(out, ref), "F(e) differs from W2 relu(W1 e + b1); check the order of the matrix products"


@checker(answers=(relu_hermite_coefficient,))
def test_relu_hermite(hermite_fn) -> None:
    """``hermite_fn(k)`` must return c_k = E[relu(g) He_k(g)] / sqrt(k!), g ~ N(0, 1) (normalised, probabilists')."""
    ref = {k: relu_hermite_coefficient(k) for k in range(7)}
    got = {k: number(hermite_fn(k), f"hermite_fn({k})") for k in range(7)}
    tol = 2e-3
    assert abs(got[0] - ref[0]) < tol, (
        f"c_0 = E[relu(g)] = 1/sqrt(2 pi) = {ref[0]:.4f}; got {got[0]:.4f}")
    # misconception: physicists' Hermite polynomials H_k (H_1 = 2t) instead of He_k (He_1 = t)
    assert abs(got[1] - 1.0) > tol, (
        "c_1 came out as 1: you used the physicists' Hermite polynomials H_k (H_1(t) = 2t); the expansion of the "
        "Gaussian kernel uses the probabilists' He_k (He_1(t) = t, He_2(t) = t^2 - 1), numpy.polynomial.hermite_e")
    assert abs(got[1] - ref[1]) < tol, f"c_1 = E[relu(g) g] = 1/2; got {got[1]:.4f}"
    # misconception: no normalisation, or k! instead of sqrt(k!)
    raw = ref[2] * math.sqrt(2)
    assert abs(got[2] - raw) > tol, (
        "c_2 is not normalised: divide E[relu(g) He_k(g)] by sqrt(k!), since E[He_k(g)^2] = k!")
    assert abs(got[2] - raw / 2) > tol, "you divided by k!: the normalisation is sqrt(k!) (E[He_k(g)^2] = k!)"
    for k in range(2, 7):
        assert abs(got[k] - ref[k]) < tol, f"c_{k} should be {ref[k]:.4f}; got {got[k]:.4f}"
    assert sum(c * c for c in got.values()) <= 0.5 + tol, "the squares of the c_k sum to E[relu(g)^2] = 1/2 at most"


@checker(answers=(random_features_memory,))
def test_random_features_memory(second_layer_fn) -> None:
    """``second_layer_fn(E, U, targets, W1)`` must return W2 = (1/N) sum_x (U[f(x)] - mean_y U[y]) relu(W1 e_x)^T,
    shape (d, m): one gradient step of size 1 on the cross-entropy from W2 = 0, the first layer W1 fixed."""
    N, M, d, m = 48, 8, 8, 24
    E, U = memory_embeddings(N, M, d, seed=5, dtype=torch.float64)  # (N, d), (M, d)
    targets = many_to_one_targets(N, M)  # (N,) six inputs per output
    W1, ref = random_features_memory(E, U, targets, m, seed=6)  # (m, d), (d, m)
    W2 = tensor(second_layer_fn(E, U, targets, W1), what="second_layer_fn")
    assert tuple(W2.shape) != (m, d), (
        f"W2 has shape (m, d) = ({m}, {d}): the second layer maps the m features back to R^d, shape (d, m)")
    assert tuple(W2.shape) == (d, m), f"W2 must have shape (d, m) = ({d}, {m}); got {tuple(W2.shape)}"
    features = torch.relu(E @ W1.T)  # (N, m)
    assert not close(W2, (U[targets] - U.mean(dim=0)).T @ (E @ W1.T) / N), (
        "the features are relu(W1 e_x): without the relu this is the rank-m linear memory of chapter 1")
    assert not close(W2, U[targets].T @ features / N), (
        "missing the centring: at W2 = 0 the softmax is uniform, so each input also pulls W2 by -(1/M) sum_y u_y; "
        "subtract the mean unembedding from U[f(x)]")
    assert not close(W2, -ref), "wrong sign: a gradient descent step moves W2 along minus the gradient"
    assert not close(W2, ref * N), "missing the 1/N: the loss averages over the N inputs"
    assert close(W2, ref), "W2 differs from (1/N) sum_x (U[f(x)] - mean_y U[y]) relu(W1 e_x)^T"
