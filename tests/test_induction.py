"""Chapter 9: the bigram task (factlib.bigram), the two-layer model, the induction head, probes and the lemma."""
import math

import pytest
import torch

from factlib import bigram as bg, induction as ind
from factlib.config import generator
from factlib.figures import FIGURES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STATS = bg.shakespeare_bigrams()


def test_normalise_text_keeps_the_alphabet_only():
    assert bg.normalise_text("To be,  or NOT\n\n to be: that!") == "to be, or not\nto be that"
    with pytest.raises(ValueError, match="distinct"):
        bg.normalise_text("abc", alphabet="aab c")
    with pytest.raises(ValueError, match="text must be a string"):
        bg.normalise_text(b"abc")


def test_text_bigrams_are_conditional_distributions():
    assert STATS.N == 32 and STATS.characters > 300_000
    assert torch.allclose(STATS.bigram.sum(dim=1), torch.ones(32, dtype=torch.float64))
    assert math.isclose(STATS.unigram.sum().item(), 1.0)
    assert STATS.decode(STATS.encode("the king")) == "the king"
    # 'q' is followed by 'u' in English
    assert STATS.alphabet[int(STATS.bigram[STATS.alphabet.index("q")].argmax())] == "u"
    with pytest.raises(ValueError, match="never occur"):
        bg.text_bigrams("abab", alphabet="abcd")


@pytest.mark.parametrize("kwargs, match", [({"K": 0}, "K"), ({"K": True}, "K"), ({"T": 1}, "T"),
                                           ({"noise_prob": math.nan}, "noise_prob"),
                                           ({"outputs": "zipf"}, "outputs")])
def test_task_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bg.BigramTask(**kwargs)


def test_sampled_sequences_follow_the_task():
    task = bg.BigramTask(K=3, T=48)
    batch = bg.sample_batch(task, STATS, 128, seed=4)
    q = bg.triggers(task, STATS)
    assert [STATS.alphabet[i] for i in q] == [" ", "e", "t"]
    assert batch.tokens.shape == (128, 49) and batch.in_context.any()
    # after a trigger comes the sequence's output, always; outputs are never triggers
    assert bool((batch.targets[batch.trigger] == batch.answer[batch.trigger]).all())
    assert not bool(torch.isin(batch.outputs, q).any())
    # an in-context position is a trigger seen before
    assert bool((batch.trigger | ~batch.in_context).all())
    again = bg.sample_batch(task, STATS, 128, seed=4)
    assert torch.equal(batch.tokens, again.tokens)


def test_noisy_task_replaces_outputs_by_the_noise_token():
    task = bg.BigramTask(K=3, T=64, noise_prob=0.5)
    batch = bg.sample_batch(task, STATS, 256, seed=1)
    tau = bg.noise_token(task, STATS)
    after = batch.targets[batch.trigger]
    is_noise = (after == tau).double().mean().item()
    assert 0.45 < is_noise < 0.55
    assert bool(((after == tau) | (after == batch.answer[batch.trigger])).all())


def test_config_validates():
    with pytest.raises(ValueError, match="layers"):
        ind.InductionConfig(N=8, layers=3)
    with pytest.raises(ValueError, match="trainable"):
        ind.InductionConfig(N=8, trainable=("KQ3",))
    with pytest.raises(ValueError, match="values"):
        ind.InductionConfig(N=8, values="keys")
    assert ind.InductionConfig(N=8, layers=1, ffn=True).weight_names() == ("KQ1", "OV1", "F")


def test_attention_is_causal_and_uniform_at_zero():
    model = ind.InductionTransformer(ind.InductionConfig(N=STATS.N, d=16, T=8))
    tokens = torch.randint(STATS.N, (2, 8), generator=torch.Generator().manual_seed(0))
    logits, maps = model(tokens, attention=True)
    assert logits.shape == (2, 8, STATS.N) and len(maps) == 2
    expected = torch.tril(torch.ones(8, 8)) / torch.arange(1, 9)[:, None]
    assert torch.allclose(maps[0][0, 0], expected)


def test_hand_built_induction_head_reads_the_context():
    task = bg.BigramTask(K=3, T=32)
    q = bg.triggers(task, STATS)
    model = ind.InductionTransformer(ind.InductionConfig(N=STATS.N, d=128, T=32, trainable=("KQ1", "KQ2", "OV2")))
    batch = bg.sample_batch(task, STATS, 256, seed=2)
    assert ind.evaluate(model, batch)["in_context"] < 0.2
    ind.set_induction_head(model, q, 10.0, 10.0, 3.0)
    assert ind.evaluate(model, batch)["in_context"] > 0.9
    assert ind.memory_probes(model, q, bg.output_tokens(task, STATS)) == {"OV2": 1.0, "KQ2": 1.0, "KQ1": 1.0}


def test_recall_probe_counts_ties_as_misses():
    eye = torch.eye(4)
    assert ind.recall_probe(torch.zeros(4, 4), eye, eye, torch.arange(4)) == 0.0
    assert ind.recall_probe(eye, eye, eye, torch.arange(4)) == 1.0
    with pytest.raises(ValueError, match="targets"):
        ind.recall_probe(eye, eye, eye, torch.arange(3))


def test_lemma_gradient_is_the_autograd_gradient():
    gen = torch.Generator().manual_seed(0)
    X, U = torch.randn(50, 6, generator=gen, dtype=torch.float64), torch.randn(4, 6, generator=gen, dtype=torch.float64)
    y = torch.cat([torch.arange(4), torch.randint(4, (46,), generator=gen)])
    W = torch.randn(6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    truth = torch.autograd.grad(ind.linear_readout_loss(W, U, X, y), W)[0]
    assert (ind.lemma_gradient(W.detach(), U, X, y) - truth).abs().max() < 1e-12
    with pytest.raises(ValueError, match="every label"):
        ind.lemma_gradient(W.detach(), U, X, torch.zeros(50, dtype=torch.long))


def test_three_gradient_steps_recover_the_memories_in_order():
    setting = ind.StepSetting(N=16, T=6, samples=2048)
    rows = ind.gradient_steps(setting, {"OV2": 80.0, "KQ2": 120.0, "KQ1": 400.0})
    init, ov2, kq2, kq1 = rows
    # at zero only W_OV^2 has a gradient; W_KQ^1 has one only once W_KQ^2 is non-zero
    assert init["grad_KQ2"] == 0.0 and init["grad_KQ1"] == 0.0 and init["grad_OV2"] > 0
    assert ov2["grad_KQ1"] == 0.0 and ov2["grad_KQ2"] > 0
    assert ov2["probe_OV2"] == 1.0 and kq2["probe_KQ2"] == 1.0 and kq1["probe_KQ1"] == 1.0
    assert kq1["accuracy"] > init["accuracy"]


def test_truncating_the_feed_forward_layer():
    model = ind.InductionTransformer(ind.InductionConfig(N=STATS.N, d=16, T=8, ffn=True, init_scale=1.0))
    tokens = torch.randint(STATS.N, (3, 8), generator=torch.Generator().manual_seed(1))
    full = ind.truncate_ffn(model, 16)
    assert torch.allclose(full(tokens), model(tokens), atol=1e-5)
    assert torch.linalg.matrix_rank(ind.truncate_ffn(model, 3).F.detach()) == 3
    assert not ind.truncate_ffn(model, 0).F.any()
    with pytest.raises(ValueError, match="rank"):
        ind.truncate_ffn(model, 17)


def test_training_improves_in_context_accuracy():
    task = bg.BigramTask(K=3, T=32)
    model = ind.InductionTransformer(ind.InductionConfig(N=STATS.N, d=32, T=32))
    rows = ind.train(model, task, STATS, ind.TrainConfig(steps=40, batch_size=16, lr=0.02, eval_every=20,
                                                         eval_size=64))
    assert [r["step"] for r in rows] == [0, 20, 40]
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_figures_are_registered():
    for name in ("induction-layers", "induction-probes", "induction-global"):
        fig = FIGURES[name]
        assert set(fig.configs) == {"quick", "full"}
        assert fig.jobs(fig.configs["quick"])


def test_attention_probes_compare_keys_for_a_fixed_query():
    """The W_KQ probes take the argmax over keys, as attention's softmax does: a query that scores every key high
    (a query-side bias) leaves every query's preferred key unchanged, so the probe stays 1; the transposed memory
    (each query prefers the key after it) scores 0."""
    T = 8
    model = ind.InductionTransformer(ind.InductionConfig(N=4, d=16, T=T, trainable=("KQ1", "KQ2", "OV2")))
    P = torch.eye(16)[:T]  # (T, d): orthonormal positions
    with torch.no_grad():
        model.P.copy_(P)
        memory = P[1:].T @ P[:-1]  # sum_t p_t p_{t-1}^T
        model.KQ1[0] = memory + 2.0 * P[1][:, None] * P.sum(0)[None, :]  # query p_1 scores every key 2 higher
        assert ind.memory_probes(model, torch.tensor([0]))["KQ1"] == 1.0
        model.KQ1[0] = memory.T
        assert ind.memory_probes(model, torch.tensor([0]))["KQ1"] == 0.0


def test_sgd_matches_torch_optim_and_frozen_weights_wait():
    task = bg.BigramTask(K=3, T=16)
    config = ind.InductionConfig(N=STATS.N, d=16, T=16, trainable=("KQ1", "KQ2", "OV2"), init_scale=0.5)
    ours = ind.InductionTransformer(config)
    ind.train(ours, task, STATS, ind.TrainConfig(steps=3, batch_size=4, lr=0.5, optimizer="sgd", momentum=0.9,
                                                 weight_decay=0.01, eval_every=3, eval_size=4))
    reference = ind.InductionTransformer(config)
    params = [reference.KQ1, reference.KQ2, reference.OV2]
    sgd = torch.optim.SGD(params, lr=0.5, momentum=0.9, weight_decay=0.01)
    gen = generator(0)
    for _ in range(3):
        sgd.zero_grad()
        ind.training_loss(reference, bg.sample_batch(task, STATS, 4, gen)).backward()
        sgd.step()
    for a, b in zip([ours.KQ1, ours.KQ2, ours.OV2], params):
        assert torch.allclose(a, b, atol=1e-6)
    # a weight frozen until step 3 keeps its value through step 2 and moves at step 3
    held = ind.InductionTransformer(config)
    start = held.KQ1.detach().clone()
    for steps, moved in [(2, False), (3, True)]:
        held.load_state_dict(ind.InductionTransformer(config).state_dict())
        ind.train(held, task, STATS, ind.TrainConfig(steps=steps, batch_size=4, lr=0.5, optimizer="sgd",
                                                     frozen_until={"KQ1": 3}, eval_every=steps, eval_size=4))
        assert bool((held.KQ1 != start).any()) == moved
    with pytest.raises(ValueError, match="frozen_until"):
        ind.TrainConfig(steps=5, frozen_until={"KQ3": 1})
    with pytest.raises(ValueError, match="does not train"):
        ind.train(held, task, STATS, ind.TrainConfig(steps=2, frozen_until={"F": 1}))


def test_cosine_schedule_matches_torch_cosine_annealing():
    """With schedule="cosine", step t uses lr (1 + cos(pi (t - 1) / steps)) / 2: the step sizes of torch's
    CosineAnnealingLR over T_max = steps, and the weights of SGD under that scheduler."""
    config = ind.TrainConfig(steps=7, lr=0.3, schedule="cosine")
    ref = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=7)
    for t in range(1, 8):
        assert config.lr_at(t) == pytest.approx(ref.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        ref.step()
        sched.step()
    assert ind.TrainConfig(steps=7, lr=0.3).lr_at(7) == 0.3
    assert config.lr_at(7) < 0.3 * 0.06
    for bad in (0, 8, 2.0, True):
        with pytest.raises(ValueError, match="step"):
            config.lr_at(bad)
    with pytest.raises(ValueError, match="schedule"):
        ind.TrainConfig(schedule="linear")
    # training under the schedule: SGD's weights after 3 steps equal torch's SGD with the scheduler
    task = bg.BigramTask(K=2, T=12)
    cfg = ind.InductionConfig(N=STATS.N, T=12, d=16, trainable=("KQ1", "KQ2", "OV2"))
    ours = ind.InductionTransformer(cfg)
    ind.train(ours, task, STATS, ind.TrainConfig(steps=3, batch_size=4, lr=0.5, optimizer="sgd", momentum=0.9,
                                                 schedule="cosine", eval_every=3, eval_size=4))
    reference = ind.InductionTransformer(cfg)
    params = [reference.KQ1, reference.KQ2, reference.OV2]
    sgd = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, T_max=3)
    gen = generator(0)
    for _ in range(3):
        sgd.zero_grad()
        ind.training_loss(reference, bg.sample_batch(task, STATS, 4, gen)).backward()
        sgd.step()
        cosine.step()
    for a, b in zip([ours.KQ1, ours.KQ2, ours.OV2], params):
        assert torch.allclose(a, b, atol=1e-6)


def test_attention_summary_names_previous_token_and_induction_heads():
    tokens = torch.tensor([0, 5, 1, 0, 6])  # trigger 0 at 0 and 3, followed by 5 at 1
    T = 5
    previous = torch.zeros(T, T)
    previous[0, 0] = 1.0
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    assert ind.attention_summary(previous, tokens, torch.tensor([0])) == {"previous": 1.0, "induction": 0.0}
    induction = torch.eye(T)
    induction[3] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])  # the query at 3 (trigger 0) reads position 1
    summary = ind.attention_summary(induction, tokens, torch.tensor([0]))
    assert summary == {"previous": 0.0, "induction": 1.0}
    assert math.isnan(ind.attention_summary(induction, tokens, torch.tensor([6]))["induction"])
    with pytest.raises(ValueError, match="tokens"):
        ind.attention_summary(induction, tokens[:3], torch.tensor([0]))


def test_first_step_from_which_a_level_holds():
    rows = [{"step": s, "a": a} for s, a in [(0, 0.0), (10, 0.95), (20, 0.8), (30, 0.92), (40, 0.99)]]
    assert ind.first_step(rows, "a", 0.9) == 30
    assert ind.first_step(rows, "a", 0.9, stay=False) == 10
    assert ind.first_step(rows, "a", 1.0) is None
    with pytest.raises(ValueError, match="sorted"):
        ind.first_step(rows[::-1], "a", 0.9)


TINY = {"induction-layers": {"model": {"d": 16, "ffn": True}, "train": {"steps": 4, "batch_size": 4, "lr": 0.01,
                                                                         "eval_every": 2, "eval_size": 8},
                             "layers": 2},
        "induction-probes": {"model": {"d": 16}, "train": {"steps": 4, "batch_size": 4, "lr": 1.0, "optimizer": "sgd",
                                                            "loss": "in_context", "eval_every": 2, "eval_size": 8,
                                                            "frozen_until": {"KQ1": 2}},
                             "mode": "KQ1 late"},
        "induction-global": {"model": {"d": 16}, "train": {"steps": 4, "batch_size": 4, "lr": 0.01,
                                                            "loss": "in_context", "eval_every": 2, "eval_size": 8},
                             "ranks": [0, 4, 32]}}


@pytest.mark.parametrize("name", sorted(TINY))
def test_figure_rows_fit_their_row_check(name):
    """A small job of each figure makes rows that pass its RowSpec; a changed row does not."""
    fig = FIGURES[name]
    task = {"K": 3, "T": 16, **({"noise_prob": 0.5} if name == "induction-global" else {})}
    job = {"task": task, "seed": 0, **TINY[name]}
    rows = fig.run_job(job, torch.device("cpu"))
    spec = fig.rows(job)
    assert spec.problem(rows) is None
    assert len(spec.fixed) == len(rows)
    bad = [dict(r) for r in rows]
    bad[1]["in_context"] = 1.5
    assert "in_context" in spec.problem(bad)
    assert "row" in spec.problem(rows[:-1])


def test_explorer_states_differ_by_every_control():
    from factlib import induction_explorer, plots

    plots.use_style()
    task = bg.BigramTask(K=3, T=12)
    model = ind.InductionTransformer(ind.InductionConfig(N=STATS.N, d=16, T=12, heads=2, ffn=True, init_scale=0.5))
    snaps, rows = induction_explorer.train_with_snapshots(
        model, task, STATS, ind.TrainConfig(steps=4, batch_size=4, lr=0.02, eval_every=2, eval_size=8), keep=(0, 4))
    assert sorted(snaps) == [0, 4] and [r["step"] for r in rows] == [0, 2, 4]
    explorer = induction_explorer.attention_explorer(model, snaps, task, STATS, sequences=2)
    base = {"sequence": 0, "layer": 2, "head": 0, "step": 4}
    first, _ = explorer._draw(base)
    reference = plots.png(first[0])[0]
    for control, value in [("sequence", 1), ("layer", 1), ("head", 1), ("step", 0)]:
        figs, _ = explorer._draw({**base, control: value})
        assert plots.png(figs[0])[0] != reference, control
    with pytest.raises(ValueError, match="keep"):
        induction_explorer.train_with_snapshots(model, task, STATS, ind.TrainConfig(steps=4, eval_every=2),
                                                keep=(3,))
