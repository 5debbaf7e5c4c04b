"""factlib.constructions: the two constructions reach 100 % on every pair; the certificate is a valid bound."""
import math
from dataclasses import replace

import pytest
import torch

from factlib.constructions import (
    ConstructionConfig, answer_gap, assign_heads, attention_mlp, attention_only, certified_population, code_blocks,
    clean_population, head_load, overlap_slope, predicted_max_head_load, predicted_min_d, predicted_min_features, predicted_min_width,
    random_codes, smallest_size, verify, worst_case_margins,
)
from factlib.models import ModelConfig, block_logits
from factlib.task import TaskConfig, all_pairs, evaluate_population, fact_table, sample_batch, structured_fact_table


def _setting(S=12, R=3, D=4, T=12, **sizes):
    task = TaskConfig(S=S, R=R, D=D, T=T)
    return task, fact_table(task, 1), ModelConfig.for_task(task, **sizes)


def test_assign_heads_covers_every_subject_and_relation_once():
    for S, R, H in [(12, 3, 1), (12, 3, 2), (12, 3, 5), (3, 2, 8), (40, 40, 7)]:
        task = TaskConfig(S=S, R=R, D=2)
        heads = assign_heads(task, H)
        assert len(heads) == H
        flat = torch.cat(heads).sort().values
        assert torch.equal(flat, torch.arange(S + R))
        if H > 1:  # no head mixes subjects and relations
            assert all(bool((t < S).all()) or bool((t >= S).all()) for t in heads if len(t))
        assert head_load(task, H) == max(len(t) for t in heads)
    assert head_load(TaskConfig(S=32, R=4, D=8), 16) == 3
    with pytest.raises(ValueError, match="H"):
        assign_heads(TaskConfig(S=2, R=2, D=2), 0)


@pytest.mark.parametrize("S, R, D, d, H, d_h", [(12, 3, 4, 48, 8, 4), (16, 2, 8, 64, 6, 4), (6, 2, 2, 32, 1, 8),
                                                 (20, 4, 4, 64, 24, 2)])
def test_attention_only_is_certified_on_every_prompt(S, R, D, d, H, d_h):
    task, table, cfg = _setting(S, R, D, d=d, H=H, d_h=d_h)
    model = attention_only(task, table, cfg)
    result = verify(model, task, table)
    assert result.method == "worst-case margin" and result.all_correct and result.accuracy == 1.0
    sampled = evaluate_population(model, task, table, repeats=4)
    assert sampled.all_correct
    # the facts are in the attention block: the MLP is off and the residual alone knows nothing
    tokens, answers, *_ = sample_batch(task, table, 64, 0)
    parts = block_logits(model, tokens)
    assert torch.equal(parts["mlp"], torch.zeros_like(parts["mlp"]))
    assert (parts["attention"].argmax(1) == answers).all()


def _gaps_on_one_noise_token(model, task, table, n):
    """Logit gap (right minus best wrong) of every pair on the prompt s, r, T - 3 copies of noise n, EOS; (S, R)."""
    s, r = all_pairs(task)
    tokens = torch.cat([s[:, None], task.relation_token(r)[:, None], torch.full((len(s), task.T - 3), n),
                        torch.full((len(s), 1), task.eos)], dim=1)  # (S R, T)
    logits = model(tokens).double()
    right = table[s, r][:, None]
    gap = logits.gather(1, right).squeeze(1) - logits.scatter(1, right, -math.inf).amax(1)
    return gap.reshape(task.S, task.R)


def test_certificate_is_a_lower_bound_and_exact_for_one_head():
    task, table, cfg = _setting(6, 2, 3, T=8, d=12, H=1, d_h=8)
    model = attention_only(task, table, cfg, ConstructionConfig(beta=3.0))  # soft attention: small margins
    bound = worst_case_margins(model, task, table)  # (S, R)
    # the worst prompts are T - 3 copies of one noise token; with one head some noise token attains the bound
    worst = torch.stack([_gaps_on_one_noise_token(model, task, table, n)
                         for n in range(task.noise_offset, task.eos)])  # (n_noise, S, R)
    assert (worst >= bound - 1e-4).all()
    assert torch.allclose(worst.amin(dim=0), bound, atol=1e-3)
    tokens, answers, subj, rel = sample_batch(task, table, 2000, 3)
    logits = model(tokens).double()
    margin = logits.gather(1, answers[:, None]).squeeze(1) - logits.scatter(1, answers[:, None], -math.inf).amax(1)
    assert (margin >= bound[subj, rel] - 1e-4).all()


def test_certificate_refuses_models_with_an_mlp():
    task, table, cfg = _setting(d=32, H=8, d_h=4, m=16)
    model = attention_mlp(task, table, cfg)
    with pytest.raises(ValueError, match="attention-only"):
        worst_case_margins(model, task, table)
    assert verify(model, task, table, repeats=2).method == "sampled"


def test_a_failing_construction_is_not_certified():
    task, table, cfg = _setting(12, 3, 4, d=32, H=8, d_h=1)  # two tokens per head, one dimension: cross-talk
    result = certified_population(attention_only(task, table, cfg), task, table)
    assert not result.all_correct and result.accuracy < 1


def test_attention_mlp_stores_the_facts_in_the_mlp():
    task, table, cfg = _setting(8, 2, 4, d=32, H=8, d_h=2)
    cfg = replace(cfg, m=2 * predicted_min_width(task, 32))
    model = attention_mlp(task, table, cfg)
    assert clean_population(model, task, table).all_correct
    assert verify(model, task, table, repeats=4).all_correct
    tokens, answers, *_ = sample_batch(task, table, 256, 0)
    parts = block_logits(model, tokens)
    assert (parts["mlp"].argmax(1) == answers).all()
    assert (parts["attention"].argmax(1) == answers).float().mean() < 0.5  # the codes alone know nothing
    # too few features: the Hebbian memory in the MLP is too noisy
    small = attention_mlp(task, table, replace(cfg, m=12))
    assert not verify(small, task, table, repeats=2).all_correct


def test_attention_mlp_beyond_half_d():
    # S = 96 subjects, d = 64: 96 codes in the 32 subject coordinates (superposition); every pair, clean prompts
    task, table, cfg = _setting(96, 4, 8, T=16, d=64, H=100, d_h=1)
    model = attention_mlp(task, table, replace(cfg, m=2 * predicted_min_width(task, 64)))
    result = clean_population(model, task, table)
    assert result.method == "clean" and result.all_correct
    assert verify(model, task, table, repeats=2).all_correct
    small = attention_mlp(task, table, replace(cfg, m=predicted_min_width(task, 64) // 8))
    assert not clean_population(small, task, table).all_correct


def test_attention_mlp_with_one_head_and_structured_table():
    task = TaskConfig(S=4, R=2, D=4, T=8)
    table = structured_fact_table(task)
    model = attention_mlp(task, table, ModelConfig.for_task(task, d=32, H=1, d_h=8, m=1024))
    assert verify(model, task, table, repeats=4).all_correct


def test_attention_mlp_with_one_answer_per_relation():
    # D = 1: the answer is fixed by the relation; the memory must not centre that signal away
    task, table, cfg = _setting(8, 3, 1, d=32, H=8, d_h=2, m=600)
    assert verify(attention_mlp(task, table, cfg), task, table, repeats=2).all_correct


def test_construction_validation():
    task, table, cfg = _setting(d=32, H=8, d_h=4, m=0)
    with pytest.raises(ValueError, match="m >= feature_degree"):
        attention_mlp(task, table, cfg)
    with pytest.raises(ValueError, match="model_cfg"):
        attention_only(task, table, ModelConfig(vocab_size=5, num_answers=3))
    with pytest.raises(ValueError, match="table"):
        attention_only(task, table[:2], cfg)
    for name, value in [("beta", 0.0), ("sink", 1.5), ("scale", -1.0), ("code_scale", 0.0),
                        ("subject_share", 0.0), ("seed", -1), ("feature_degree", 5)]:
        with pytest.raises(ValueError, match=name):
            ConstructionConfig(**{name: value})
    with pytest.raises(ValueError, match="construction"):
        smallest_size(task, table, "mlp_only", cfg, "d_h", 1, 4)
    with pytest.raises(ValueError, match="size"):
        smallest_size(task, table, "attention_only", cfg, "T", 1, 4)


def test_construction_is_seeded():
    task, table, cfg = _setting(d=32, H=8, d_h=4, m=64)
    a, b = attention_mlp(task, table, cfg), attention_mlp(task, table, cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = attention_mlp(task, table, cfg, ConstructionConfig(seed=1))
    assert not torch.equal(a.W1, c.W1)


def test_smallest_d_h_is_the_head_load():
    task, table, cfg = _setting(12, 3, 4, d=64, H=6, d_h=1)
    smallest, tried = smallest_size(task, table, "attention_only", cfg, "d_h", 1, 16)
    assert smallest == head_load(task, 6) == 3
    assert tried[smallest] and not tried[smallest - 1]


def test_codes_and_blocks():
    gen = torch.Generator().manual_seed(0)
    few, many = random_codes(3, 5, gen), random_codes(9, 4, gen)
    assert torch.allclose(few @ few.T, torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(many.norm(dim=1), torch.ones(9, dtype=torch.float64))
    assert code_blocks(10) == (slice(0, 5), slice(5, 10))
    assert code_blocks(10, 0.99) == (slice(0, 9), slice(9, 10))
    with pytest.raises(ValueError, match="d"):
        code_blocks(1)


def test_predictions_move_the_right_way():
    task = TaskConfig(S=32, R=4, D=8)
    assert predicted_max_head_load(task, 128, 16) > predicted_max_head_load(task, 64, 16)
    assert predicted_min_d(TaskConfig(S=32, R=8, D=8)) > predicted_min_d(task)
    assert predicted_min_features(TaskConfig(S=64, R=4, D=8), 128) > predicted_min_features(task, 128)
    assert predicted_min_features(task, 256) < predicted_min_features(task, 128)
    # finite beyond S = d/2 (codes in superposition) until the overlap floor leaves no room; m = (k + 2) ceil(m')
    crowded = TaskConfig(S=128, R=8, D=8)
    assert predicted_min_features(crowded, 64) > predicted_min_features(TaskConfig(S=64, R=16, D=8), 64)
    assert predicted_min_features(TaskConfig(S=8192, R=8, D=8), 64) == math.inf
    assert math.isfinite(predicted_min_features(TaskConfig(S=8192, R=8, D=8), 64, ConstructionConfig(feature_degree=6)))
    assert 0.07 < overlap_slope(4) < 0.08 and overlap_slope(6) < 0.005
    assert math.isfinite(predicted_min_features(crowded, 64))
    assert predicted_min_width(crowded, 64) == 6 * math.ceil(predicted_min_features(crowded, 64))
    six = ConstructionConfig(feature_degree=6)
    assert predicted_min_width(crowded, 64, six) == 8 * math.ceil(predicted_min_features(crowded, 64, six))
    assert predicted_min_width(TaskConfig(S=8192, R=8, D=8), 64) == math.inf


def test_answer_gap_is_the_tables_worst_pair():
    task = TaskConfig(S=8, R=2, D=4)
    assert answer_gap(task) == 0.75  # the average share 1/D
    table = torch.tensor([[0, 4]] * 6 + [[1, 5], [2, 6]])  # relation 0 gives answer 0 to 6 of its 8 subjects
    assert answer_gap(task, table) == pytest.approx(1 - 6 / 8)
    even = torch.tensor([[k % 4, 4 + k % 4] for k in range(8)])  # every answer twice: the average share
    assert answer_gap(task, even) == pytest.approx(0.75)
    same = torch.tensor([[0, 4 + k % 4] for k in range(8)])  # relation 0 uncentred: only relation 1 counts
    assert answer_gap(task, same) == pytest.approx(0.75)
    assert answer_gap(task, torch.tensor([[0, 4]] * 8)) == 1.0
    # a smaller gap asks for a wider MLP, by the square of the ratio of gaps up to the ceiling
    assert predicted_min_features(task, 32, table=table) == pytest.approx(
        predicted_min_features(task, 32) * (0.75 / 0.25) ** 2)
    assert predicted_min_width(task, 32, table=table) > predicted_min_width(task, 32)
    with pytest.raises(ValueError, match="table must lie in A_r|A_r"):
        answer_gap(task, torch.zeros(8, 2, dtype=torch.long))
