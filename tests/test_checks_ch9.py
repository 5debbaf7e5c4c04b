"""Chapter 9 checkers: each passes the reference solution and names the misconception behind each wrong one."""
import pytest
import torch

from factlib import induction
from factlib.checks import ch9

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _memories(E, P, W_OV1, U, q):
    return P[1:].T @ P[:-1], E[q].T @ (E[q] @ W_OV1.T), U.T @ E


def _truncate(W, r):
    U_, S_, Vh = torch.linalg.svd(W)
    return (U_[:, :r] * S_[:r]) @ Vh[:r]


REFERENCE = [
    (ch9.test_induction_memories, _memories, "test_induction_memories"),
    (ch9.test_recall_probe, induction.recall_probe, "test_recall_probe"),
    (ch9.test_lemma_gradient, induction.lemma_gradient, "test_lemma_gradient"),
    (ch9.test_truncate, _truncate, "test_truncate"),
]


@pytest.mark.parametrize("checker, solution, name", REFERENCE, ids=[r[2] for r in REFERENCE])
def test_checker_passes_reference(capsys, checker, solution, name):
    checker(solution)
    assert capsys.readouterr().out == f"All tests in {name} passed!\n"


def test_checkers_accept_an_independent_solution(capsys):
    # written out as a student would, loop by loop, not by calling the reference
    def memories(E, P, W_OV1, U, q):
        kq1 = sum(torch.outer(P[t], P[t - 1]) for t in range(1, len(P)))
        kq2 = sum(torch.outer(E[k], W_OV1 @ E[k]) for k in q.tolist())
        ov2 = sum(torch.outer(U[k], E[k]) for k in range(len(E)))
        return kq1, kq2, ov2

    def probe(W, X, C, targets):
        hits = 0
        for x, j in zip(X, targets.tolist()):
            s = C @ (W @ x)
            hits += int(all(s[j] > s[i] for i in range(len(C)) if i != j))
        return hits / len(X)

    def gradient(W, U, X, y):
        n, N = len(X), len(U)
        grad = torch.zeros_like(W)
        p_hat = torch.softmax(X @ W.T @ U.T, dim=1)
        for k in range(N):
            p_k = float((y == k).sum()) / n
            mu_k = X[y == k].mean(0)
            mu_hat_k = (p_hat[:, k:k + 1] * X).mean(0) / p_k
            grad += p_k * torch.outer(U[k], mu_hat_k - mu_k)
        return grad

    ch9.test_induction_memories(memories)
    ch9.test_recall_probe(probe)
    ch9.test_lemma_gradient(gradient)
    ch9.test_truncate(lambda W, r: _truncate(W, r).clone())
    assert capsys.readouterr().out.count("passed!") == 4


def _lemma_parts(W, U, X, y):
    n, N = len(X), len(U)
    p_y = torch.bincount(y, minlength=N).double() / n
    p_hat = (X @ W.T @ U.T).softmax(dim=1)
    mu = torch.nn.functional.one_hot(y, N).double().T @ X / (n * p_y[:, None])
    return p_y, p_hat, mu


def _unweighted(W, U, X, y):
    p_y, p_hat, mu = _lemma_parts(W, U, X, y)
    return U.T @ (p_hat.T @ X / (len(X) * p_y[:, None]) - mu)


def _undivided(W, U, X, y):
    p_y, p_hat, mu = _lemma_parts(W, U, X, y)
    return U.T @ (p_y[:, None] * (p_hat.T @ X / len(X) - mu))


def _smallest(W, r):
    U_, S_, Vh = torch.linalg.svd(W)
    n = len(S_)
    return (U_[:, n - r:] * S_[n - r:]) @ Vh[n - r:]


def _probe_argmax(W, X, C, targets):
    # counts ties as hits: at W = 0 argmax returns index 0
    return ((X @ W.T @ C.T).argmax(1) == targets).double().mean().item()


WRONG = [
    (ch9.test_induction_memories, lambda E, P, W, U, q: tuple(m.T if i == 0 else m
                                                              for i, m in enumerate(_memories(E, P, W, U, q))),
     "W_KQ1 is transposed"),
    (ch9.test_induction_memories, lambda E, P, W, U, q: (_memories(E, P, W, U, q)[0], E[q].T @ E[q],
                                                         _memories(E, P, W, U, q)[2]), "remapped"),
    (ch9.test_induction_memories, lambda E, P, W, U, q: (_memories(E, P, W, U, q)[0], E.T @ (E @ W.T),
                                                         _memories(E, P, W, U, q)[2]), "triggers k in Q only"),
    (ch9.test_induction_memories, lambda E, P, W, U, q: (*_memories(E, P, W, U, q)[:2], E.T @ U),
     "W_OV2 is transposed"),
    (ch9.test_recall_probe, lambda W, X, C, t: induction.recall_probe(W.T, X, C, t), "not W^T"),
    (ch9.test_recall_probe, _probe_argmax, "strictly above"),
    (ch9.test_recall_probe, lambda W, X, C, t: induction.recall_probe(W, X, C, t) * len(X), "fraction"),
    (ch9.test_lemma_gradient, lambda W, U, X, y: -induction.lemma_gradient(W, U, X, y), "wrong sign"),
    (ch9.test_lemma_gradient, _unweighted, "weight p(y = k)"),
    (ch9.test_lemma_gradient, _undivided, "divided by p(y = k)"),
    (ch9.test_truncate, _smallest, "r smallest"),
    (ch9.test_truncate, lambda W, r: _truncate(W, min(r + 1, 7)), "exactly r"),
]


@pytest.mark.parametrize("checker, wrong, misconception", WRONG, ids=[w[2] for w in WRONG])
def test_checker_names_the_misconception(capsys, checker, wrong, misconception):
    with pytest.raises(AssertionError) as err:
        checker(wrong)
    assert misconception in str(err.value)
    assert "passed" not in capsys.readouterr().out


@pytest.mark.parametrize("checker, wrong", [
    (ch9.test_induction_memories, lambda E, P, W, U, q: _memories(E, P, W, U, q)[:2]),
    (ch9.test_induction_memories, lambda E, P, W, U, q: tuple(m[:-1] for m in _memories(E, P, W, U, q))),
    (ch9.test_recall_probe, lambda W, X, C, t: 0.5),
    (ch9.test_lemma_gradient, lambda W, U, X, y: torch.zeros_like(W)),
    (ch9.test_truncate, lambda W, r: W),
])
def test_checker_rejects_other_wrong_answers(capsys, checker, wrong):
    with pytest.raises(AssertionError):
        checker(wrong)
    assert "passed" not in capsys.readouterr().out


def test_checker_needs_a_function():
    with pytest.raises(TypeError, match="pass your function itself"):
        ch9.test_truncate(torch.eye(3))
