"""Chapter 2 checkers: each passes the chapter's solution and names the misconception behind each wrong one."""
import math

import numpy as np
import pytest
import torch

from chapter_solutions import chapter_solutions
from factlib.checks import ch2

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOLUTIONS = chapter_solutions(2)


def _reference_second_layer(E, U, targets, W1):
    return (U[targets] - U.mean(dim=0)).T @ torch.relu(E @ W1.T) / len(targets)


def _forward(E, W1, b1, W2):
    return torch.relu(E @ W1.T + b1) @ W2.T


def _hermite(k):
    g = np.linspace(-12, 12, 200_001)
    he = np.polynomial.hermite_e.hermeval(g, [0] * k + [1])
    density = np.exp(-g**2 / 2) / math.sqrt(2 * math.pi)
    return np.trapezoid(np.maximum(g, 0) * he * density, g) / math.sqrt(math.factorial(k))


@pytest.mark.parametrize("name", ["test_mlp_forward", "test_relu_hermite", "test_random_features_memory"])
def test_checker_passes_the_chapters_solution(capsys, name):
    getattr(ch2, name)(SOLUTIONS[name])
    assert capsys.readouterr().out == f"All tests in {name} passed!\n"


def test_checkers_accept_an_independent_solution(capsys):
    # written out as a student would: loops, numpy quadrature, autograd
    def forward(E, W1, b1, W2):
        return torch.stack([W2 @ torch.clamp(W1 @ e + b1, min=0) for e in E])

    def second_layer(E, U, targets, W1):
        W2 = torch.zeros(E.shape[1], W1.shape[0], dtype=E.dtype, requires_grad=True)
        logits = torch.relu(E @ W1.T) @ W2.T @ U.T
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, targets), W2)
        return -grad

    ch2.test_mlp_forward(forward)
    ch2.test_relu_hermite(_hermite)
    ch2.test_random_features_memory(second_layer)
    assert capsys.readouterr().out.count("passed!") == 3


def _physicists(k):
    # the slip: numpy.polynomial.hermite (physicists' H_k, H_1 = 2t) instead of hermite_e
    g = np.linspace(-12, 12, 200_001)
    h = np.polynomial.hermite.hermval(g, [0] * k + [1])
    density = np.exp(-g**2 / 2) / math.sqrt(2 * math.pi)
    return np.trapezoid(np.maximum(g, 0) * h * density, g) / math.sqrt(math.factorial(k))


WRONG = [
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: (E @ W1.T + b1) @ W2.T, "no nonlinearity"),
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: torch.relu(E @ W1.T) @ W2.T, "bias b1 is missing"),
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: (torch.relu(E @ W1.T) + b1) @ W2.T, "after the relu"),
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: torch.relu((E @ W1.T + b1) @ W2.T), "applied to the output"),
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: _forward(E, W1, b1, W2).T, "expected shape"),
    (ch2.test_relu_hermite, _physicists, "physicists"),
    (ch2.test_relu_hermite, lambda k: _hermite(k) * math.sqrt(math.factorial(k)), "not normalised"),
    (ch2.test_relu_hermite, lambda k: _hermite(k) / math.sqrt(math.factorial(k)), "k!"),
    (ch2.test_random_features_memory, lambda E, U, t, W1: _reference_second_layer(E, U, t, W1).T, "shape (m, d)"),
    (ch2.test_random_features_memory, lambda E, U, t, W1: U[t].T @ torch.relu(E @ W1.T) / len(t), "centring"),
    (ch2.test_random_features_memory,
     lambda E, U, t, W1: (U[t] - U.mean(0)).T @ (E @ W1.T) / len(t), "without the relu"),
    (ch2.test_random_features_memory, lambda E, U, t, W1: -_reference_second_layer(E, U, t, W1), "sign"),
    (ch2.test_random_features_memory, lambda E, U, t, W1: len(t) * _reference_second_layer(E, U, t, W1), "1/N"),
]


@pytest.mark.parametrize("checker, wrong, misconception", WRONG, ids=[w[2] for w in WRONG])
def test_checker_names_the_misconception(capsys, checker, wrong, misconception):
    with pytest.raises(AssertionError) as err:
        checker(wrong)
    assert misconception in str(err.value)
    assert "passed" not in capsys.readouterr().out


@pytest.mark.parametrize("checker, wrong", [
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: torch.zeros(E.shape[0], E.shape[1], dtype=E.dtype)),
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: _forward(E, W1, b1, W2).numpy()),
    (ch2.test_mlp_forward, lambda E, W1, b1, W2: torch.tanh(E @ W1.T + b1) @ W2.T),
    (ch2.test_relu_hermite, lambda k: 0.0),
    (ch2.test_relu_hermite, lambda k: _hermite(k) if k < 3 else 0.1),
    (ch2.test_random_features_memory, lambda E, U, t, W1: torch.zeros(E.shape[1], W1.shape[0], dtype=E.dtype)),
    (ch2.test_random_features_memory, lambda E, U, t, W1: _reference_second_layer(E, U, t, W1)[:, :-1]),
])
def test_checker_rejects_other_wrong_answers(capsys, checker, wrong):
    with pytest.raises(AssertionError):
        checker(wrong)
    assert "passed" not in capsys.readouterr().out
