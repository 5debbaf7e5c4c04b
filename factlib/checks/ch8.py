"""Checkers for chapter 8 (associative memories under heavy-tailed data)."""
from __future__ import annotations

import math

import torch

from . import checker, close, number, passed, tensor
from ..embeddings import memory_embeddings
from ..heavy_tails import keep_threshold, unseen_mass, zipf_probabilities
from ..memory import hebbian_memory
from ..sharp_capacity import normalized_margin

#: (probabilities, n): a biased coin, a Zipf law, one sure token, and a long sample
UNSEEN_CASES = [(torch.tensor([0.7, 0.3], dtype=torch.float64), 3), (zipf_probabilities(50, 1.5), 40),
                (torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), 5), (zipf_probabilities(200, 2.0), 1000),
                (zipf_probabilities(30, 3.0), 0)]


@checker
def test_unseen_mass(unseen_mass_fn) -> None:
    """``unseen_mass_fn(p, n)``: the expected probability mass of the tokens a sample of n i.i.d. draws from p
    never shows, sum_z p(z) (1 - p(z))^n (the infinite memory's expected loss)."""
    for p, n in UNSEEN_CASES:
        got = number(unseen_mass_fn(p, n), "unseen_mass_fn")
        want = unseen_mass(p, n)
        assert -1e-12 <= got <= 1 + 1e-12, f"got {got}: a probability mass lies in [0, 1]"
        if n > 0 and p.max() < 1:
            approx = float((p * torch.exp(-n * p)).sum())
            assert not math.isclose(got, approx, rel_tol=1e-9) or math.isclose(approx, want, rel_tol=1e-9), (
                "you used e^(-n p): that is the large-n approximation of (1 - p)^n; the exact probability that "
                "none of n independent draws is z is (1 - p(z))^n")
            one_less = float((p * (1 - p) ** (n - 1)).sum())
            assert not math.isclose(got, one_less, rel_tol=1e-9) or math.isclose(one_less, want, rel_tol=1e-9), (
                "the exponent is n, one factor (1 - p(z)) per draw of the sample")
            unweighted = float(((1 - p) ** n).sum())
            assert not math.isclose(got, unweighted, rel_tol=1e-9) or math.isclose(unweighted, want, rel_tol=1e-9), (
                "weight each token by its probability: the loss counts the mass p(z) of an unseen token, not 1")
            assert not math.isclose(got, unweighted / len(p), rel_tol=1e-9) or math.isclose(
                unweighted / len(p), want, rel_tol=1e-9), (
                "that is the fraction of the tokens left unseen; the loss weights each one by p(z)")
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12), (
            f"n = {n}, {len(p)} tokens: expected {want:.6g}, got {got:.6g}")
    passed("test_unseen_mass")


#: counts with ties at the boundary, more room than seen tokens, no room, and a plain case
THRESHOLD_CASES = [(torch.tensor([9, 5, 5, 5, 2, 0, 1]), 3), (torch.tensor([3, 0, 1, 0]), 10),
                   (torch.tensor([4, 2, 2]), 0), (torch.tensor([7, 6, 5, 4, 3, 2, 1, 0]), 4)]


@checker
def test_threshold_weights(threshold_weights_fn) -> None:
    """``threshold_weights_fn(counts, keep)``: q(z) = 1{n_z >= s} as floats, with s >= 1 the smallest count
    threshold that keeps at most ``keep`` tokens (the "threshold" scheme of chapter 8)."""
    for counts, keep in THRESHOLD_CASES:
        q = tensor(threshold_weights_fn(counts.clone(), keep), (len(counts),), "threshold_weights_fn")
        s = keep_threshold(counts, keep)
        want = (counts >= s).double()
        assert bool(((q == 0) | (q == 1)).all()), "q must hold 0 or 1 for each token (stored or not), not counts"
        assert not bool((q[counts == 0] != 0).any()), (
            "a token never seen has no association to store: the threshold s is at least 1")
        assert int(q.sum()) <= keep or not bool((q != want).any()), (
            f"you kept {int(q.sum())} tokens with keep = {keep}: the threshold must keep at most keep tokens")
        if int(q.sum()) == keep and int(want.sum()) < keep:
            raise AssertionError(
                "you kept exactly keep tokens by breaking a tie between equal counts: a threshold on the counts "
                "keeps every token seen at least s times, so a tie at the boundary is dropped whole")
        assert not bool((q != want).any()), (
            f"counts {counts.tolist()}, keep {keep}: expected q = {want.int().tolist()}, got {q.int().tolist()} "
            "(s is the smallest count with at most keep tokens seen s times or more)")
    passed("test_threshold_weights")


def _margin_case(N: int, d: int, seed: int, scale: float):
    E, U = memory_embeddings(N, N, d, seed, dtype=torch.float64)  # (N, d) each
    targets = torch.arange(N)
    return scale * hebbian_memory(E, U, targets), E, U, targets


@checker
def test_normalized_margin(normalized_margin_fn) -> None:
    """``normalized_margin_fn(W, E, U, targets)``: min over x of the right score minus the best wrong score,
    times d / ||W||_F (Frobenius norm); a Python float."""
    for N, d, seed, scale in [(12, 16, 3, 1.0), (40, 16, 4, 0.37), (6, 32, 5, 5.0), (30, 8, 6, 1.0)]:
        W, E, U, targets = _margin_case(N, d, seed, scale)
        got = number(normalized_margin_fn(W, E, U, targets), "normalized_margin_fn")
        want = normalized_margin(W, E, U, targets)
        gamma = (E @ W.T) @ U.T  # (N, N)
        right = gamma.gather(1, targets[:, None]).squeeze(1)
        gap = right - gamma.scatter(1, targets[:, None], float("-inf")).amax(1)  # (N,)
        assert abs(got) > 1e-12 or abs(want) < 1e-12, (
            "got 0: the best wrong score must leave the right output out (otherwise the margin is never positive)")
        assert not math.isclose(got, float(gap.min()), rel_tol=1e-6) or math.isclose(want, float(gap.min()), rel_tol=1e-6), (
            "the margin is not normalised: multiply by d / ||W||_F, so that rescaling W does not change it")
        assert not math.isclose(got, float(gap.min()) / float(W.norm()), rel_tol=1e-6), (
            "divide by ||W||_F / d, the spread of a competing score, not by ||W||_F alone: multiply by d")
        spectral = float(torch.linalg.matrix_norm(W, ord=2))
        assert not math.isclose(got, float(gap.min()) * d / spectral, rel_tol=1e-6), (
            "use the Frobenius norm ||W||_F (the square root of the sum of squared entries), not the spectral norm")
        assert not math.isclose(got, float(gap.mean()) * d / float(W.norm()), rel_tol=1e-6), (
            "the criterion needs every association separated: take the smallest margin, not the mean")
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), (
            f"N = {N}, d = {d}: expected {want:.6f}, got {got:.6f}")
        doubled = number(normalized_margin_fn(2 * W, E, U, targets), "normalized_margin_fn")
        assert close(doubled, got), "doubling W must not change the normalised margin"
    passed("test_normalized_margin")
