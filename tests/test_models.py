"""factlib.models: the one-layer transformer, its parameter count and its block decomposition."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlib.models import ModelConfig, OneLayerTransformer, block_logits, parameter_count
from factlib.task import TaskConfig, fact_table, sample_batch


def _random_model(cfg: ModelConfig, seed: int = 0) -> OneLayerTransformer:
    model = OneLayerTransformer(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


TASK = TaskConfig(S=6, R=3, D=4, T=10)
CFG = ModelConfig.for_task(TASK, d=16, H=2, d_h=4, m=8)


def test_for_task_and_validation():
    assert CFG.vocab_size == TASK.vocab_size and CFG.num_answers == 12
    for name, value in [("d", 0), ("H", 0), ("d_h", 0), ("m", -1), ("seed", -1), ("vocab_size", 1),
                        ("num_answers", 0)]:
        with pytest.raises(ValueError, match=name):
            ModelConfig(**{"vocab_size": 10, "num_answers": 4, name: value})


@given(d=st.integers(1, 64), H=st.integers(1, 8), d_h=st.integers(1, 16), m=st.integers(0, 64))
@settings(max_examples=30, deadline=None)
def test_parameter_count_is_the_papers(d, H, d_h, m):
    cfg = ModelConfig(vocab_size=5, num_answers=3, d=d, H=H, d_h=d_h, m=m)
    count = parameter_count(cfg)
    assert count == {"attention": 4 * H * d_h * d, "mlp": 2 * m * d, "total": 4 * H * d_h * d + 2 * m * d}
    model = OneLayerTransformer(cfg)
    trainable = sum(p.numel() for name, p in model.named_parameters() if name != "b1")
    assert trainable == count["total"]  # the paper does not count the MLP bias, nor the frozen embeddings


def test_embeddings_are_frozen_buffers_and_seeded():
    model = OneLayerTransformer(CFG)
    names = {name for name, _ in model.named_parameters()}
    assert names == {"W_Q", "W_K", "W_V", "W_O", "W1", "b1", "W2"}
    assert model.E.shape == (TASK.vocab_size, 16) and model.U.shape == (12, 16)
    assert torch.allclose(model.E.norm(dim=1), torch.ones(TASK.vocab_size))
    again = OneLayerTransformer(CFG)
    assert torch.equal(model.E, again.E) and torch.equal(model.U, again.U)
    other = OneLayerTransformer(ModelConfig.for_task(TASK, d=16, H=2, d_h=4, m=8, seed=1))
    assert not torch.equal(model.E, other.E)
    raw = OneLayerTransformer(ModelConfig.for_task(TASK, d=16, normalize=False))
    assert not torch.allclose(raw.E.norm(dim=1), torch.ones(TASK.vocab_size))


def test_zero_model_gives_the_eos_logits():
    model = OneLayerTransformer(CFG)
    tokens, *_ = sample_batch(TASK, fact_table(TASK, 0), 5, 0)
    assert torch.allclose(model(tokens), (model.E[TASK.eos] @ model.U.T).expand(5, -1))


def test_forward_shapes_blocks_and_order_invariance():
    model = _random_model(CFG)
    tokens, *_ = sample_batch(TASK, fact_table(TASK, 0), 7, 1)
    logits = model(tokens)
    assert logits.shape == (7, 12)
    parts = block_logits(model, tokens)
    assert set(parts) == {"residual", "attention", "mlp"}
    assert torch.allclose(sum(parts.values()), logits, atol=1e-5)
    _, weights = model.attention(model.E[tokens])
    assert weights.shape == (7, 2, TASK.T) and torch.allclose(weights.sum(-1), torch.ones(7, 2))
    # no positional embeddings: shuffling the first T - 1 tokens changes nothing
    perm = torch.randperm(TASK.T - 1, generator=torch.Generator().manual_seed(0))
    shuffled = torch.cat([tokens[:, perm], tokens[:, -1:]], dim=1)
    assert torch.allclose(model(shuffled), logits, atol=1e-5)


def test_attention_matches_a_per_head_loop():
    model = _random_model(ModelConfig.for_task(TASK, d=8, H=3, d_h=2, m=0), seed=4)
    tokens, *_ = sample_batch(TASK, fact_table(TASK, 0), 2, 2)
    x = model.E[tokens]
    out, _ = model.attention(x)
    for b in range(2):
        total = torch.zeros(8)
        for h in range(3):
            q = model.W_Q[h].T @ x[b, -1]
            k = x[b] @ model.W_K[h]
            a = torch.softmax(k @ q / 2 ** 0.5, dim=0)
            total = total + model.W_O[h].T @ (a @ (x[b] @ model.W_V[h]))
        assert torch.allclose(out[b], total, atol=1e-5)


def test_without_mlp_the_mlp_block_is_zero():
    model = _random_model(ModelConfig.for_task(TASK, d=8, H=1, d_h=2, m=0))
    tokens, *_ = sample_batch(TASK, fact_table(TASK, 0), 3, 0)
    assert torch.equal(block_logits(model, tokens)["mlp"], torch.zeros(3, 12))


def test_unreachable_answers_are_those_inside_the_hull():
    from factlib.embeddings import gaussian_embeddings
    from factlib.models import unreachable_answers

    U = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.2, 0.1]])  # the last is inside
    assert unreachable_answers(U) == [4]
    sphere = gaussian_embeddings(64, 8, 0, normalize=True)
    assert unreachable_answers(sphere) == []
    assert len(unreachable_answers(gaussian_embeddings(96, 8, 0, normalize=False))) > 0
    with pytest.raises(ValueError, match="U must be"):
        unreachable_answers(torch.zeros(5))
