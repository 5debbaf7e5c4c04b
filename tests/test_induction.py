"""Chapter 9: the bigram task (factlib.bigram), the two-layer model, the induction head, probes and the lemma."""
import math

import pytest
import torch

from factlib import bigram as bg, induction as ind
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
