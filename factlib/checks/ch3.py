"""Checkers for chapter 3 (the factual recall task)."""
from __future__ import annotations

import math

import torch
from scipy.stats import chisquare

from . import checker, number, tensor
from ..bounds import table_bits
from ..task import TaskConfig, fact_table, information_bits, prompts_for_pairs, sample_batch, subject_probabilities


def _prompts(sample_prompt_fn, task: TaskConfig, s: int, r: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(n):
        z = tensor(sample_prompt_fn(task, s, r, gen), what="sample_prompt_fn")
        rows.append(z.long().reshape(-1))
    lengths = {len(z) for z in rows}
    assert lengths == {task.T}, f"a prompt has T = {task.T} tokens (EOS included, the answer excluded); got {lengths}"
    return torch.stack(rows)  # (n, T)


@checker(answers=(prompts_for_pairs, sample_batch))
def test_sample_prompt(sample_prompt_fn) -> None:
    """``sample_prompt_fn(task, s, r, gen)`` must return one prompt (T,) for subject s and relation r."""
    task = TaskConfig(S=5, R=3, D=2, T=6, n_noise=4)
    s, r = 2, 1
    z = _prompts(sample_prompt_fn, task, s, r, 3000)  # (n, T)
    assert (z[:, -1] == task.eos).all(), f"the last token must be EOS = S + R + n_noise = {task.eos}"
    body = z[:, :-1]  # (n, T-1)
    # misconception: relation r written as token r (which is a subject id)
    assert not ((body == r).sum(1) == 1).all() or r == s, (
        f"relation r is token S + r = {task.relation_token(r)}, not r: ids below S = {task.S} are subjects")
    others = body[(body != s) & (body != task.relation_token(r))]
    assert ((others >= task.noise_offset) & (others < task.eos)).all(), (
        f"noise tokens are ids S + R .. S + R + n_noise - 1 = {task.noise_offset} .. {task.eos - 1}; "
        f"got ids {sorted(set(others.tolist()) - set(range(task.noise_offset, task.eos)))[:5]}")
    assert ((body == s).sum(1) == 1).all(), f"subject s = {s} must appear exactly once among the first T - 1 tokens"
    assert ((body == task.relation_token(r)).sum(1) == 1).all(), (
        f"relation token S + r = {task.relation_token(r)} must appear exactly once among the first T - 1 tokens")
    pos_s, pos_r = (body == s).float().argmax(1), (body == task.relation_token(r)).float().argmax(1)
    assert (pos_s > pos_r).any() and (pos_s < pos_r).any(), (
        "the subject must come before the relation in some prompts and after it in others: i and j are two "
        "distinct positions drawn uniformly, not sorted")
    L = task.T - 1
    counts = torch.bincount(pos_s * L + pos_r, minlength=L * L).reshape(L, L)
    off = counts[~torch.eye(L, dtype=torch.bool)]
    assert chisquare(off.numpy()).pvalue > 1e-4, (
        "the pair of positions (i, j) must be uniform over the (T-1)(T-2) ordered pairs of distinct positions")
    noise = torch.bincount(others - task.noise_offset, minlength=task.n_noise)
    assert chisquare(noise.numpy()).pvalue > 1e-4, "each noise token must be drawn uniformly from the n_noise of them"


@checker(answers=(information_bits, table_bits))
def test_information_bits(information_bits_fn) -> None:
    """``information_bits_fn(S, R, D)`` must return log2 of the number of fact tables, S R log2 D."""
    for S, R, D in [(32, 16, 8), (10, 3, 5), (7, 2, 1), (100, 4, 16)]:
        want = S * R * math.log2(D)
        got = number(information_bits_fn(S, R, D), "information_bits_fn")
        if D > 1:
            assert abs(got - S * R * math.log(D)) > 1e-6 * want, "use log base 2: the information is counted in bits"
            assert abs(got - S * R * math.log2(R * D)) > 1e-6, (
                "the relation is in the prompt, so the answer is one of the D answers of A_r: each fact carries "
                "log2 D bits, not log2(R D)")
            assert abs(got - S * R * D) > 1e-6, "a fact is one choice among D answers: log2 D bits, not D"
        assert abs(got - want) <= 1e-6 * max(1.0, want), f"S={S}, R={R}, D={D}: expected {want:.4g} bits, got {got:.4g}"


def _relation_only_reference(task: TaskConfig, table: torch.Tensor) -> float:
    p = subject_probabilities(task)  # (S,)
    total = 0.0
    for r in range(task.R):
        mass = torch.zeros(task.num_answers, dtype=torch.float64).index_add_(0, table[:, r], p)  # (R D,)
        total += mass.max().item() / task.R
    return total


@checker(answers=(_relation_only_reference,))
def test_relation_only_accuracy(relation_only_accuracy_fn) -> None:
    """``relation_only_accuracy_fn(task, table)`` must return the best accuracy of a predictor that sees the
    relation but not the subject: sum_r p(r) max_a P(a*(s, r) = a | r), with s ~ p(s)."""
    for task, seed in [(TaskConfig(S=12, R=3, D=4), 0), (TaskConfig(S=9, R=2, D=3, subjects="zipf"), 1),
                       (TaskConfig(S=8, R=4, D=8), 2)]:
        table = fact_table(task, seed)
        want = _relation_only_reference(task, table)
        got = number(relation_only_accuracy_fn(task, table), "relation_only_accuracy_fn")
        assert abs(got - 1 / task.D) > 1e-6 or abs(want - 1 / task.D) < 1e-6, (
            "1/D is what a uniform guess inside A_r gets; the best guess is the most frequent answer of the "
            "relation, which depends on the table")
        if task.subjects == "zipf":
            flat = TaskConfig(S=task.S, R=task.R, D=task.D)
            assert abs(got - _relation_only_reference(flat, table)) > 1e-6, (
                "weight each subject by p(s): with Zipf subjects the frequent subjects count more")
        assert abs(got - want) < 1e-6, f"expected {want:.4f}, got {got:.4f}"
