"""Checkers for chapter 9 (associative memories for reasoning in context: the induction head)."""
from __future__ import annotations

import torch

from . import checker, close, number, tensor
from ..embeddings import gaussian_embeddings
from ..induction import lemma_gradient, linear_readout_loss, recall_probe


def _induction_instance(N: int = 12, T: int = 10, d: int = 24, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    E = gaussian_embeddings(N, d, gen, normalize=False)  # (N, d)
    P = gaussian_embeddings(T, d, gen, normalize=False)  # (T, d)
    U = gaussian_embeddings(N, d, gen, normalize=False)  # (N, d)
    W_OV1 = gaussian_embeddings(d, d, gen, normalize=False)  # (d, d): a random remapping
    return E, P, W_OV1, U, torch.tensor([4, 0, 7])


@checker
def test_induction_memories(induction_memories_fn) -> None:
    """``induction_memories_fn(E, P, W_OV1, U, triggers)`` must return (W_KQ1, W_KQ2, W_OV2), each (d, d):
    sum_t p_t p_{t-1}^T, sum_{k in Q} e_k (W_OV1 e_k)^T and sum_k u_k e_k^T."""
    E, P, W_OV1, U, q = _induction_instance()
    d = E.shape[1]
    out = induction_memories_fn(E, P, W_OV1, U, q)
    assert isinstance(out, (tuple, list)) and len(out) == 3, (
        f"return the three matrices (W_KQ1, W_KQ2, W_OV2) as a tuple; got {type(out).__name__}")
    kq1, kq2, ov2 = (tensor(m, (d, d), f"induction_memories_fn's {name}", f"(d, d) = ({d}, {d})")
                     for m, name in zip(out, ("W_KQ1", "W_KQ2", "W_OV2")))
    ref_kq1, ref_kq2, ref_ov2 = P[1:].T @ P[:-1], E[q].T @ (E[q] @ W_OV1.T), U.T @ E
    # misconception: the previous-token memory the wrong way round attends to the *next* position
    assert not close(kq1, ref_kq1.T), (
        "W_KQ1 is transposed: the score of query t for key s is x_t^T W_KQ1 x_s, so the query's position p_t goes "
        "on the left and the key's p_{t-1} on the right: sum_t p_t p_{t-1}^T")
    assert not close(kq1, P[1:].T @ P[1:]), "W_KQ1 must pair p_t with the previous position p_{t-1}, not itself"
    assert close(kq1, ref_kq1), "W_KQ1 differs from sum_{t=2}^T p_t p_{t-1}^T (sum over the T - 1 pairs)"
    # misconception: the second layer's key is the token itself, not its remapped copy from layer 1
    assert not close(kq2, E[q].T @ E[q]), (
        "W_KQ2 must match the *remapped* previous token e~_k = W_OV1 e_k written by the first layer, not e_k itself")
    assert not close(kq2, ref_kq2.T), "W_KQ2 is transposed: the query e_k on the left, the key e~_k on the right"
    assert not close(kq2, E.T @ (E @ W_OV1.T)), "sum W_KQ2 over the triggers k in Q only, not over every token"
    assert close(kq2, ref_kq2), "W_KQ2 differs from sum_{k in Q} e_k (W_OV1 e_k)^T"
    assert not close(ov2, ref_ov2.T), "W_OV2 is transposed: it maps e_k to u_k, so each term is u_k e_k^T"
    assert close(ov2, ref_ov2), "W_OV2 differs from sum_k u_k e_k^T (over every token)"


@checker
def test_recall_probe(recall_probe_fn) -> None:
    """``recall_probe_fn(W, inputs, candidates, targets)``: the fraction of inputs x_i whose target j = targets[i]
    has the strictly largest score c_j^T W x_i among the candidates."""
    gen = torch.Generator().manual_seed(11)
    d, M, C = 8, 20, 15
    X = gaussian_embeddings(M, d, gen, normalize=False)  # (M, d)
    Cand = gaussian_embeddings(C, d, gen, normalize=False)  # (C, d)
    targets = torch.randint(C, (M,), generator=gen)
    W = Cand[targets].T @ X  # (d, d): a memory of the M pairs, imperfect at d = 8
    got = number(recall_probe_fn(W, X, Cand, targets), "recall_probe_fn")
    ref = recall_probe(W, X, Cand, targets)
    assert got <= 1.0, f"got {got}: return the fraction of inputs (divide the count by M)"
    wrong_side = (X @ W @ Cand.T).argmax(1).eq(targets).double().mean().item()
    if abs(wrong_side - ref) > 1e-9:
        assert abs(got - wrong_side) > 1e-9, "the score of candidate j for input i is c_j^T W x_i: use W, not W^T"
    zero = number(recall_probe_fn(torch.zeros(d, d), X, Cand, targets), "recall_probe_fn")
    assert zero == 0.0, (f"at W = 0 every score ties and the probe must be 0, got {zero}: count input i only if "
                         "its target scores strictly above every other candidate (argmax alone returns index 0)")
    assert abs(got - ref) < 1e-9, f"got {got:.4f}, expected {ref:.4f}"
    perfect = number(recall_probe_fn(torch.eye(5), torch.eye(5), torch.eye(5), torch.arange(5)), "recall_probe_fn")
    assert perfect == 1.0, f"the identity memory on one-hot embeddings recalls every pair; got {perfect}"


@checker
def test_lemma_gradient(lemma_gradient_fn) -> None:
    """``lemma_gradient_fn(W, U, X, y)`` must return sum_k p(y=k) u_k (mu^_k - mu_k)^T for the empirical
    distribution of the pairs (X[i], y[i]): the gradient of the mean cross-entropy of logits U W x."""
    gen = torch.Generator().manual_seed(5)
    n, d, N = 60, 6, 5
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)  # (n, d)
    U = torch.randn(N, d, generator=gen, dtype=torch.float64)  # (N, d)
    W = 0.3 * torch.randn(d, d, generator=gen, dtype=torch.float64)  # (d, d)
    y = torch.cat([torch.arange(N), torch.randint(N, (n - N,), generator=gen)])  # every label occurs
    got = tensor(lemma_gradient_fn(W, U, X, y), (d, d), "lemma_gradient_fn", f"(d, d) = ({d}, {d})")
    Wg = W.clone().requires_grad_(True)
    truth = torch.autograd.grad(linear_readout_loss(Wg, U, X, y), Wg)[0]
    assert close(lemma_gradient(W, U, X, y), truth, rtol=1e-9, atol=1e-12)
    assert not close(got, -truth, rtol=1e-6, atol=1e-9), (
        "wrong sign: the gradient is sum_k p(y=k) u_k (mu^_k - mu_k)^T, the model's mean minus the data's")
    assert not close(got, truth.T, rtol=1e-6, atol=1e-9) or close(truth, truth.T), (
        "transposed: each term is the output vector u_k (a column) times the input direction (a row)")
    p_y = torch.bincount(y, minlength=N).double() / n  # (N,)
    p_hat = (X @ W.T @ U.T).softmax(dim=1)  # (n, N)
    mu = torch.nn.functional.one_hot(y, N).double().T @ X / (n * p_y[:, None])  # (N, d)
    mu_hat = p_hat.T @ X / (n * p_y[:, None])  # (N, d)
    assert not close(got, U.T @ (mu_hat - mu), rtol=1e-6, atol=1e-9), (
        "each term needs its weight p(y = k): without it frequent and rare labels count alike")
    assert not close(got, U.T @ (p_y[:, None] * (p_hat.T @ X / n - mu)), rtol=1e-6, atol=1e-9), (
        "mu^_k is E[p^(k | x) x] divided by p(y = k): without the division the model's side is weighted twice")
    assert close(got, truth, rtol=1e-6, atol=1e-9), (
        "your gradient differs from the autograd gradient of the mean cross-entropy; check mu^_k = "
        "E[p^(k | x) x] / p(y = k) (the softmax of the logits U W x) and mu_k = E[x | y = k]")


@checker
def test_truncate(truncate_fn) -> None:
    """``truncate_fn(W, r)`` must return the best rank-r approximation of W (same shape): keep the r largest
    singular values and their singular vectors."""
    gen = torch.Generator().manual_seed(9)
    W = torch.randn(7, 7, generator=gen, dtype=torch.float64)  # (7, 7)
    U_, S_, Vh = torch.linalg.svd(W)
    for r in (1, 3, 0, 7):
        got = tensor(truncate_fn(W.clone(), r), (7, 7), "truncate_fn", "(7, 7), the shape of W")
        ref = (U_[:, :r] * S_[:r]) @ Vh[:r]
        smallest = (U_[:, 7 - r:] * S_[7 - r:]) @ Vh[7 - r:]
        if 0 < r < 7:
            assert not close(got, smallest), "you kept the r smallest singular values; keep the r largest"
            off = (U_[:, :r + 1] * S_[:r + 1]) @ Vh[:r + 1]
            assert not close(got, off), f"rank {r + 1} returned for r = {r}: keep exactly r singular directions"
        assert close(got, ref, rtol=1e-6, atol=1e-9), (
            f"r = {r}: the result differs from U[:, :r] diag(S[:r]) Vh[:r] (torch.linalg.svd); rank 0 is the zero "
            "matrix and rank 7 is W itself")
