"""factlib.task: layout, fact tables, the sampler's exact marginals, the population evaluator."""
import itertools
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.stats import chisquare

from factlib.task import (
    TaskConfig, all_pairs, answer_name, evaluate_population, fact_table, information_bits, pair_probabilities,
    prompt_probability, prompts_for_pairs, sample_batch, sample_pairs, structured_fact_table,
    subject_probabilities, token_names,
)

P_MIN = 1e-3  # chi-square tests use fixed seeds, so they are deterministic; this only sets how strict they are


def test_layout_matches_the_shared_convention():
    cfg = TaskConfig(S=5, R=3, D=4)
    assert cfg.n_noise == 8 and cfg.T == 32
    assert cfg.noise_offset == 8 and cfg.eos == 16 and cfg.vocab_size == 17
    assert cfg.num_answers == 12 and cfg.num_facts == 15
    assert cfg.relation_token(2) == 7
    assert TaskConfig(S=5, R=3, D=4, n_noise=2).vocab_size == 11


@pytest.mark.parametrize("kwargs, name", [
    (dict(S=0, R=1, D=1), "S"), (dict(S=1, R=0, D=1), "R"), (dict(S=1, R=1, D=0), "D"),
    (dict(S=2, R=2, D=2, T=2), "T"), (dict(S=2, R=2, D=2, n_noise=0), "n_noise"),
    (dict(S=2, R=2, D=2, subjects="pareto"), "subjects"), (dict(S=2, R=2, D=2, zipf_exponent=-1), "zipf_exponent"),
    (dict(S=3, R=2, D=2, distinct_answers=True), "distinct_answers"),
    (dict(S=3, R=2, D=3, distinct_answers=1), "distinct_answers"),
])
def test_config_validation_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TaskConfig(**kwargs)


def test_no_noise_needed_when_T_is_3():
    cfg = TaskConfig(S=2, R=2, D=2, T=3, n_noise=0)
    tokens, *_ = sample_batch(cfg, fact_table(cfg, 0), 50, 0)
    assert set(tokens[:, :2].flatten().tolist()) <= set(range(4))


@given(S=st.integers(1, 12), R=st.integers(1, 6), D=st.integers(1, 9), seed=st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_fact_table_answers_lie_in_their_relation_set(S, R, D, seed):
    cfg = TaskConfig(S=S, R=R, D=D)
    for table in (fact_table(cfg, seed), structured_fact_table(cfg)):
        assert table.shape == (S, R) and table.dtype == torch.long
        assert torch.equal(table // D, torch.arange(R).expand(S, R))


def test_fact_table_is_seeded_and_uniform():
    cfg = TaskConfig(S=400, R=5, D=8)
    assert torch.equal(fact_table(cfg, 3), fact_table(cfg, 3))
    assert not torch.equal(fact_table(cfg, 3), fact_table(cfg, 4))
    counts = torch.bincount((fact_table(cfg, 3) % cfg.D).flatten(), minlength=cfg.D)
    assert chisquare(counts.numpy()).pvalue > P_MIN


def test_distinct_answers_are_bijections():
    cfg = TaskConfig(S=7, R=3, D=7, distinct_answers=True)
    table = fact_table(cfg, 0)
    for r in range(3):
        assert sorted(table[:, r].tolist()) == list(range(7 * r, 7 * r + 7))
    assert information_bits(cfg) == pytest.approx(3 * math.log2(math.factorial(7)))


def test_structured_table_of_the_dynamics_section():
    table = structured_fact_table(TaskConfig(S=16, R=4, D=8))
    assert table[0, 0] == 0 and table[15, 3] == 31 and table[2, 1] == 9
    assert torch.equal(table % 8, (torch.arange(16) // 2)[:, None].expand(16, 4))


def test_information_bits():
    assert information_bits(TaskConfig(S=32, R=32, D=8)) == pytest.approx(32 * 32 * 3)
    assert information_bits(TaskConfig(S=4, R=4, D=1)) == 0


def test_subject_probabilities():
    assert torch.allclose(subject_probabilities(TaskConfig(4, 2, 2)), torch.full((4,), 0.25, dtype=torch.float64))
    p = subject_probabilities(TaskConfig(3, 2, 2, subjects="zipf", zipf_exponent=1.0))
    assert torch.allclose(p, torch.tensor([1, 1 / 2, 1 / 3], dtype=torch.float64) / (11 / 6))
    assert pair_probabilities(TaskConfig(3, 2, 2)).sum().item() == pytest.approx(1.0)


def _enumerate(cfg):
    """Every well-formed prompt of a tiny task, as a (K, T) tensor."""
    L = cfg.T - 1
    noise = range(cfg.noise_offset, cfg.eos)
    rows = []
    for s, r, i, j in itertools.product(range(cfg.S), range(cfg.R), range(L), range(L)):
        if i == j:
            continue
        for fill in itertools.product(noise, repeat=L - 2):
            body = list(fill)
            for pos, tok in sorted([(i, s), (j, cfg.relation_token(r))]):
                body.insert(pos, tok)
            rows.append(body + [cfg.eos])
    return torch.tensor(rows)


@pytest.mark.parametrize("subjects", ["uniform", "zipf"])
def test_sampler_matches_the_exact_distribution(subjects):
    # tiny task: every prompt enumerated; the exact probabilities sum to one and the sampler matches them
    cfg = TaskConfig(S=3, R=2, D=2, T=5, n_noise=2, subjects=subjects, zipf_exponent=1.5)
    prompts = _enumerate(cfg)  # (K, T) with K = S R (T-1)(T-2) n_noise^(T-3) = 6 * 12 * 4
    assert prompts.shape[0] == 288 and len(set(map(tuple, prompts.tolist()))) == 288
    probs = prompt_probability(cfg, prompts)  # (K,)
    assert probs.sum().item() == pytest.approx(1.0)
    tokens, answers, s, r = sample_batch(cfg, fact_table(cfg, 0), 100_000, 11)
    index = {tuple(p): k for k, p in enumerate(prompts.tolist())}
    counts = torch.bincount(torch.tensor([index[tuple(t)] for t in tokens.tolist()]), minlength=len(index))
    assert chisquare(counts.numpy(), (probs * 100_000).numpy()).pvalue > P_MIN


def test_prompt_probability_of_malformed_prompts_is_zero():
    cfg = TaskConfig(S=3, R=2, D=2, T=5, n_noise=2)
    bad = torch.tensor([[0, 1, 5, 6, 7],   # two subjects
                        [0, 3, 5, 6, 6],   # no EOS at the end
                        [0, 3, 7, 6, 7]])  # EOS inside the prompt
    assert torch.equal(prompt_probability(cfg, bad), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="tokens"):
        prompt_probability(cfg, bad[:, :4])


def test_sampler_marginals_at_paper_length():
    cfg = TaskConfig(S=6, R=3, D=4, T=32, subjects="zipf", zipf_exponent=1.0)
    table = fact_table(cfg, 1)
    B = 60_000
    tokens, answers, subjects, relations = sample_batch(cfg, table, B, 5)
    assert tokens.shape == (B, 32) and (tokens[:, -1] == cfg.eos).all()
    body = tokens[:, :-1]  # (B, T-1)
    assert ((body < cfg.S).sum(1) == 1).all()
    is_rel = (body >= cfg.S) & (body < cfg.noise_offset)
    assert (is_rel.sum(1) == 1).all()
    # the prompt holds the returned subject and relation, and the answer is the table's
    pos_s, pos_r = (body < cfg.S).float().argmax(1), is_rel.float().argmax(1)
    assert torch.equal(body.gather(1, pos_s[:, None]).squeeze(1), subjects)
    assert torch.equal(body.gather(1, pos_r[:, None]).squeeze(1) - cfg.S, relations)
    assert torch.equal(answers, table[subjects, relations])
    # subject ~ Zipf, relation uniform, positions: i uniform, (i, j) uniform over ordered distinct pairs
    expected_s = subject_probabilities(cfg) * B
    assert chisquare(torch.bincount(subjects, minlength=cfg.S).numpy(), expected_s.numpy()).pvalue > P_MIN
    assert chisquare(torch.bincount(relations, minlength=cfg.R).numpy()).pvalue > P_MIN
    assert chisquare(torch.bincount(pos_s, minlength=31).numpy()).pvalue > P_MIN
    pair_counts = torch.bincount(pos_s * 31 + pos_r, minlength=31 * 31).reshape(31, 31)
    assert pair_counts.diagonal().sum() == 0
    off = pair_counts[~torch.eye(31, dtype=torch.bool)]
    assert chisquare(off.numpy()).pvalue > P_MIN
    noise = body[(body >= cfg.noise_offset)] - cfg.noise_offset
    assert chisquare(torch.bincount(noise, minlength=cfg.n_noise).numpy()).pvalue > P_MIN
    # subject and relation are independent
    joint = torch.bincount(subjects * cfg.R + relations, minlength=cfg.num_facts).double()
    expected = (pair_probabilities(cfg) * B).flatten()
    assert chisquare(joint.numpy(), expected.numpy()).pvalue > P_MIN


def test_sample_batch_is_seeded_and_device_independent():
    cfg = TaskConfig(S=4, R=2, D=3, T=10)
    table = fact_table(cfg, 0)
    a = sample_batch(cfg, table, 64, 9)
    b = sample_batch(cfg, table, 64, torch.Generator().manual_seed(9))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    gen = torch.Generator().manual_seed(9)
    first, second = sample_batch(cfg, table, 64, gen), sample_batch(cfg, table, 64, gen)
    assert not torch.equal(first[0], second[0])  # a generator advances


def test_sample_batch_validates():
    cfg = TaskConfig(S=4, R=2, D=3)
    table = fact_table(cfg, 0)
    with pytest.raises(ValueError, match="batch_size"):
        sample_batch(cfg, table, 0, 0)
    with pytest.raises(ValueError, match="seed"):
        sample_batch(cfg, table, 4, -1)
    with pytest.raises(ValueError, match="table"):
        sample_batch(cfg, table[:3], 4, 0)
    with pytest.raises(ValueError, match="A_r"):
        sample_batch(cfg, table.flip(1), 4, 0)
    with pytest.raises(ValueError, match="integer"):
        sample_batch(cfg, table.float(), 4, 0)
    with pytest.raises(ValueError, match="subjects"):
        prompts_for_pairs(cfg, torch.tensor([4]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="relations"):
        prompts_for_pairs(cfg, torch.tensor([0]), torch.tensor([2]), 0)
    with pytest.raises(ValueError, match="1-D"):
        prompts_for_pairs(cfg, torch.tensor([0, 1]), torch.tensor([0]), 0)


def test_sample_pairs_zipf_is_seeded():
    cfg = TaskConfig(S=5, R=2, D=2, subjects="zipf")
    assert all(torch.equal(x, y) for x, y in zip(sample_pairs(cfg, 30, 2), sample_pairs(cfg, 30, 2)))


def _oracle(cfg, table):
    """A perfect model: reads s and r off the prompt and looks the answer up."""
    def model(tokens):
        body = tokens[:, :-1]
        s = torch.where(body < cfg.S, body, 0).sum(1)
        is_rel = (body >= cfg.S) & (body < cfg.noise_offset)
        r = torch.where(is_rel, body - cfg.S, 0).sum(1)
        return torch.nn.functional.one_hot(table[s, r], cfg.num_answers).float()
    return model


def test_population_evaluator_covers_every_pair():
    cfg = TaskConfig(S=5, R=3, D=4, T=12)
    table = fact_table(cfg, 0)
    result = evaluate_population(_oracle(cfg, table), cfg, table, repeats=4, batch_size=7)
    assert result.all_correct and result.accuracy == pytest.approx(1.0) and result.worst_pair == 1.0
    assert result.pair_accuracy.shape == (5, 3) and result.method == "sampled" and result.repeats == 4
    # one wrong fact shows up at exactly that pair
    wrong = table.clone()
    wrong[2, 1] = wrong[2, 1] - wrong[2, 1] % 4 + (wrong[2, 1] + 1) % 4
    result = evaluate_population(_oracle(cfg, wrong), cfg, table, repeats=4)
    assert not result.all_correct and result.worst_pair == 0.0
    assert result.pair_accuracy.sum().item() == 14 and result.pair_accuracy[2, 1] == 0
    assert result.accuracy == pytest.approx(14 / 15)


def test_population_accuracy_is_weighted_by_p():
    cfg = TaskConfig(S=3, R=1, D=3, T=6, subjects="zipf", zipf_exponent=1.0)
    table = fact_table(cfg, 0)
    wrong = table.clone()
    wrong[0, 0] = (wrong[0, 0] + 1) % 3
    result = evaluate_population(_oracle(cfg, wrong), cfg, table, repeats=2)
    assert result.accuracy == pytest.approx(1 - subject_probabilities(cfg)[0].item())


def test_population_evaluator_validates():
    cfg = TaskConfig(S=2, R=2, D=2)
    table = fact_table(cfg, 0)
    with pytest.raises(ValueError, match="repeats"):
        evaluate_population(_oracle(cfg, table), cfg, table, repeats=0)
    with pytest.raises(ValueError, match="logits"):
        evaluate_population(lambda t: torch.zeros(t.shape[0], 3), cfg, table)


def test_all_pairs_and_names():
    cfg = TaskConfig(S=3, R=2, D=5, T=6, n_noise=4)
    s, r = all_pairs(cfg)
    assert s.tolist() == [0, 0, 1, 1, 2, 2] and r.tolist() == [0, 1, 0, 1, 0, 1]
    assert token_names(cfg, torch.tensor([2, 3, 5, 8, 9])) == ["s2", "r0", "n0", "n3", "EOS"]
    assert answer_name(cfg, 7) == "a1.2"
    with pytest.raises(ValueError, match="token"):
        token_names(cfg, torch.tensor([10]))
    with pytest.raises(ValueError, match="answer"):
        answer_name(cfg, 10)
