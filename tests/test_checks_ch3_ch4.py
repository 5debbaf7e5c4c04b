"""Every chapter 3 and 4 checker passes the chapter's solution and names the misconception of wrong ones."""
import math

import pytest
import torch

from chapter_solutions import chapter_solutions
from factlib.checks import ch3, ch4
from factlib.task import subject_probabilities


@pytest.mark.parametrize("chapter, checks, name", [
    (3, ch3, "test_sample_prompt"), (3, ch3, "test_information_bits"), (3, ch3, "test_relation_only_accuracy"),
    (4, ch4, "test_parameter_count"), (4, ch4, "test_own_answer_target"), (4, ch4, "test_interaction_feature"),
])
def test_checker_passes_the_chapters_solution(capsys, chapter, checks, name):
    getattr(checks, name)(chapter_solutions(chapter)[name])
    assert capsys.readouterr().out == f"All tests in {name} passed!\n"


# chapter 3 ----------------------------------------------------------------------------------------------------

def sample_prompt(task, s, r, gen):
    # positions by rejection, noise drawn one token at a time: another route to the same distribution
    L = task.T - 1
    i = int(torch.randint(L, (1,), generator=gen))
    j = i
    while j == i:
        j = int(torch.randint(L, (1,), generator=gen))
    z = [task.noise_offset + int(torch.randint(task.n_noise, (1,), generator=gen)) for _ in range(L)]
    z[i], z[j] = s, task.relation_token(r)
    return torch.tensor(z + [task.eos])


def sample_prompt_relation_as_r(task, s, r, gen):
    z = sample_prompt(task, s, r, gen)
    return torch.where(z == task.relation_token(r), torch.tensor(r), z)


def sample_prompt_sorted(task, s, r, gen):
    i, j = sorted(torch.randperm(task.T - 1, generator=gen)[:2].tolist())
    z = task.noise_offset + torch.randint(task.n_noise, (task.T,), generator=gen)
    z[i], z[j], z[-1] = s, task.relation_token(r), task.eos
    return z


def sample_prompt_noise_from_zero(task, s, r, gen):
    z = sample_prompt(task, s, r, gen)
    noise = (z >= task.noise_offset) & (z < task.eos)
    return torch.where(noise, z - task.noise_offset, z)


def sample_prompt_no_eos(task, s, r, gen):
    z = sample_prompt(task, s, r, gen)
    z[-1] = task.noise_offset
    return z


def sample_prompt_one_noise(task, s, r, gen):
    z = sample_prompt(task, s, r, gen)
    return torch.where((z >= task.noise_offset) & (z < task.eos), torch.tensor(task.noise_offset), z)


def test_sample_prompt_checker(capsys):
    ch3.test_sample_prompt(sample_prompt)
    assert "All tests in test_sample_prompt passed!" in capsys.readouterr().out
    for wrong, message in [(sample_prompt_relation_as_r, "S \\+ r"), (sample_prompt_sorted, "not sorted"),
                           (sample_prompt_noise_from_zero, "noise tokens are ids"), (sample_prompt_no_eos, "EOS"),
                           (sample_prompt_one_noise, "uniformly"),
                           (lambda task, s, r, gen: sample_prompt(task, s, r, gen)[:-1], "T = 6"),
                           (lambda task, s, r, gen: [0] * task.T, "torch.Tensor")]:
        with pytest.raises(AssertionError, match=message):
            ch3.test_sample_prompt(wrong)


def test_information_bits_checker(capsys):
    ch3.test_information_bits(lambda S, R, D: S * R * math.log2(D))
    assert "passed" in capsys.readouterr().out
    for wrong, message in [(lambda S, R, D: S * R * math.log(D), "base 2"),
                           (lambda S, R, D: S * R * math.log2(R * D), "log2 D bits, not log2\\(R D\\)"),
                           (lambda S, R, D: S * R * D, "not D"),
                           (lambda S, R, D: S * math.log2(D), "expected")]:
        with pytest.raises(AssertionError, match=message):
            ch3.test_information_bits(wrong)


def relation_only_accuracy(task, table):
    p = subject_probabilities(task)
    best = [torch.zeros(task.num_answers, dtype=torch.float64).index_add_(0, table[:, r], p).max() for r in range(task.R)]
    return float(sum(best) / task.R)


def relation_only_unweighted(task, table):
    return float(sum(torch.bincount(table[:, r]).max() / task.S for r in range(task.R)) / task.R)


def test_relation_only_accuracy_checker(capsys):
    ch3.test_relation_only_accuracy(relation_only_accuracy)
    assert "passed" in capsys.readouterr().out
    for wrong, message in [(lambda task, table: 1 / task.D, "1/D"),
                           (relation_only_unweighted, "p\\(s\\)"),
                           (lambda task, table: relation_only_accuracy(task, table) / 2, "expected")]:
        with pytest.raises(AssertionError, match=message):
            ch3.test_relation_only_accuracy(wrong)


# chapter 4 ----------------------------------------------------------------------------------------------------

def test_parameter_count_checker(capsys):
    ch4.test_parameter_count(lambda d, H, d_h, m: 4 * H * d_h * d + 2 * m * d)
    assert "passed" in capsys.readouterr().out
    for wrong, message in [(lambda d, H, d_h, m: 3 * H * d_h * d + d_h * d + 2 * m * d, "H d_h d entries"),
                           (lambda d, H, d_h, m: 4 * H * d_h * d + 2 * m * d + m, "biases"),
                           (lambda d, H, d_h, m: 4 * H * d_h * d + m * d, "two matrices"),
                           (lambda d, H, d_h, m: 4 * H * d_h * d, "expected")]:
        with pytest.raises(AssertionError, match=message):
            ch4.test_parameter_count(wrong)


def test_own_answer_target_checker(capsys):
    ch4.test_own_answer_target(lambda rows: torch.linalg.pinv(rows) @ torch.ones(rows.shape[0]))
    assert "passed" in capsys.readouterr().out

    def not_least_norm(rows):
        t = torch.linalg.pinv(rows) @ torch.ones(rows.shape[0])
        extra = torch.linalg.svd(rows)[2][-1]  # a direction orthogonal to the rows
        return t + extra

    for wrong, message in [(lambda rows: rows.sum(0), "Hebbian"),
                           (lambda rows: rows.sum(0) / rows.shape[0], "exactly 1"),
                           (not_least_norm, "least-norm"),
                           (lambda rows: torch.ones(rows.shape[0]), "shape")]:
        with pytest.raises(AssertionError, match=message):
            ch4.test_own_answer_target(wrong)


def test_interaction_feature_checker(capsys):
    relu = torch.relu
    ch4.test_interaction_feature(lambda a, b: relu(a + b) + relu(-a - b) - relu(a - b) - relu(b - a))
    assert "passed" in capsys.readouterr().out
    for wrong, message in [(lambda a, b: relu(a + b) - relu(a - b), "main effect"),
                           (lambda a, b: a * b, "cannot compute"),
                           (lambda a, b: relu(a + b) + relu(-a - b), "odd in a"),
                           (lambda a, b: 2 * ((a + b).abs() - (a - b).abs()), "expected"),
                           (lambda a, b: (a + b).abs()[:10], "elementwise")]:
        with pytest.raises(AssertionError, match=message):
            ch4.test_interaction_feature(wrong)
