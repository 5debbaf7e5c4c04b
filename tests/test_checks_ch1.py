"""Chapter 1 checkers: each passes the chapter's solution and names the misconception behind each wrong one."""
import math

import pytest
import torch

from chapter_solutions import chapter_solutions
from factlib import memory
from factlib.checks import ch1

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOLUTIONS = chapter_solutions(1)


@pytest.mark.parametrize("name", ["test_hebbian_memory", "test_recall_accuracy", "test_predicted_capacity",
                                  "test_gradient_memory"])
def test_checker_passes_the_chapters_solution(capsys, name):
    getattr(ch1, name)(SOLUTIONS[name])
    assert capsys.readouterr().out == f"All tests in {name} passed!\n"


def _hebbian(E, U, t):
    return U[t].T @ E


def _gradient(E, U, t, lr):
    return lr / len(t) * (U[t] - U.mean(0)).T @ E


def test_checkers_accept_an_independent_solution(capsys):
    # written out as a student would, not by calling the reference
    def hebbian(E, U, targets):
        return sum(torch.outer(U[t], e) for e, t in zip(E, targets))

    def accuracy(W, E, U, targets):
        correct = sum(int(torch.argmax(U @ (W @ e)) == t) for e, t in zip(E, targets))
        return correct / len(targets)

    def capacity_(params, c):
        N = 2.0  # Newton's method on f(N) = c N ln N - params
        for _ in range(100):
            N -= (c * N * math.log(N) - params) / (c * (math.log(N) + 1))
        return N

    def gradient(E, U, targets, lr):
        return lr / len(targets) * sum(torch.outer(U[t] - U.mean(0), e) for e, t in zip(E, targets))

    ch1.test_hebbian_memory(hebbian)
    ch1.test_recall_accuracy(accuracy)
    ch1.test_predicted_capacity(capacity_)
    ch1.test_gradient_memory(gradient)
    assert capsys.readouterr().out.count("passed!") == 4


def _newton(params, c):
    N = 2.0  # Newton's method on c N ln N = params
    for _ in range(100):
        N -= (c * N * math.log(N) - params) / (c * (math.log(N) + 1))
    return N


def _log2_capacity(params, c):
    # solves c N log2 N = params, i.e. c N ln N = params ln 2
    return _newton(params * math.log(2), c)


def _recall_with_transpose(W, E, U, targets):
    return (memory.scores(W.T, E, U).argmax(dim=1) == targets).float().mean().item()


def _recall_count(W, E, U, targets):
    # the usual form of this mistake: the number of correct inputs, an int
    return int((memory.scores(W, E, U).argmax(dim=1) == targets).sum())




WRONG = [
    (ch1.test_hebbian_memory, lambda E, U, t: _hebbian(E, U, t).T, "transpose"),
    (ch1.test_hebbian_memory, lambda E, U, t: U[: len(t)].T @ E, "targets"),
    (ch1.test_hebbian_memory, lambda E, U, t: _hebbian(E, U, t) / len(t), "times"),
    (ch1.test_hebbian_memory, lambda E, U, t: 3.0 * _hebbian(E, U, t), "times 3"),
    (ch1.test_recall_accuracy, _recall_with_transpose, "W^T"),
    (ch1.test_predicted_capacity, _log2_capacity, "base 2"),
    (ch1.test_predicted_capacity, lambda params, c: params / c, "keep the log"),
    (ch1.test_gradient_memory, lambda E, U, t, lr: -_gradient(E, U, t, lr), "sign"),
    (ch1.test_gradient_memory, lambda E, U, t, lr: lr / len(t) * _hebbian(E, U, t), "centring"),
    (ch1.test_gradient_memory, lambda E, U, t, lr: len(t) * _gradient(E, U, t, lr), "1/N"),
]


@pytest.mark.parametrize("checker, wrong, misconception", WRONG, ids=[w[2] for w in WRONG])
def test_checker_names_the_misconception(capsys, checker, wrong, misconception):
    with pytest.raises(AssertionError) as err:
        checker(wrong)
    assert misconception in str(err.value)
    assert "passed" not in capsys.readouterr().out


def test_misconception_messages_are_specific():
    # each wrong answer is caught by its own message, not by a generic mismatch that mentions everything
    messages = {}
    for checker, wrong, misconception in WRONG:
        with pytest.raises(AssertionError) as err:
            checker(wrong)
        messages[misconception] = str(err.value)
    assert "transpose" not in messages["targets"] and "targets" not in messages["transpose"]
    assert "centring" not in messages["1/N"] and "1/N" not in messages["centring"]
    assert "base 2" not in messages["keep the log"]


@pytest.mark.parametrize("checker, wrong", [
    (ch1.test_hebbian_memory, lambda E, U, t: _hebbian(E, U, t)[:-1]),
    (ch1.test_hebbian_memory, lambda E, U, t: _hebbian(E, U, t).numpy()),
    (ch1.test_hebbian_memory, lambda E, U, t: _hebbian(E[:-1], U, t[:-1])),
    (ch1.test_recall_accuracy, lambda W, E, U, t: memory.scores(W, E, U).argmax(1) == t),
    (ch1.test_recall_accuracy, lambda W, E, U, t: 0.5),
    (ch1.test_predicted_capacity, lambda params, c: math.sqrt(params / c)),
    (ch1.test_gradient_memory, lambda E, U, t, lr: torch.zeros(8, 8)),
    (ch1.test_gradient_memory, lambda E, U, t, lr: _gradient(E, U, t, lr)[:4]),
])
def test_checker_rejects_other_wrong_answers(capsys, checker, wrong):
    with pytest.raises(AssertionError):
        checker(wrong)
    assert "passed" not in capsys.readouterr().out


def test_recall_checker_names_count_instead_of_fraction():
    with pytest.raises(AssertionError, match="fraction"):
        ch1.test_recall_accuracy(_recall_count)


def test_recall_checker_catches_argmax_over_inputs():
    def wrong_axis(W, E, U, targets):
        return (memory.scores(W, E, U).argmax(dim=0)[: len(targets)] == targets[: U.shape[0]]).float().mean().item()

    with pytest.raises(AssertionError, match="argmax over outputs"):
        ch1.test_recall_accuracy(wrong_axis)
