"""The batched capacity engine (factlib.train) against the plain one-configuration loop, and CapacitySearch."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import factlib.train as train
from factlib.bench import matmul_gflops, parse_figures, trainer_gflops
from factlib.capacity import CapacitySearch
from factlib.embeddings import memory_embeddings
from factlib.figures import reproduce
from factlib.memory import TrainConfig, train_linear_memory, train_mlp_memory
from factlib.train import (CapacityProblem, linear_problem, many_to_one_targets, memory_capacities, mlp_init,
                           mlp_problem, plain_capacity, train_memories)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = settings(max_examples=60, deadline=None)


def _padded_batch(d, sizes, outs, seed=0, m=0):
    """Runs with N = sizes[r] inputs and outs[r] outputs, embeddings from one draw, padded to the largest."""
    Nmax, Mmax = max(sizes), max(outs)
    E_all, U_all = memory_embeddings(Nmax, Mmax, d, seed)
    E = torch.stack([torch.nn.functional.pad(E_all[:n], (0, 0, 0, Nmax - n)) for n in sizes])
    U = torch.stack([torch.nn.functional.pad(U_all[:o], (0, 0, 0, Mmax - o)) for o in outs])
    T = torch.stack([torch.nn.functional.pad(many_to_one_targets(n, o), (0, Nmax - n)) for n, o in zip(sizes, outs)])
    W1 = torch.stack([mlp_init(m, d, 7).float()] * len(sizes)) if m else None
    return E_all, U_all, E, U, T, W1


@pytest.mark.parametrize("chunk", [train.CHUNK_ELEMS, 50])
def test_batched_linear_runs_match_the_plain_loop(monkeypatch, chunk):
    monkeypatch.setattr(train, "CHUNK_ELEMS", chunk)  # 50: one row per block, the blocking path is exercised
    d, sizes, lrs = 8, [14, 21, 26, 30], [3.0, 1.0, 3.0, 10.0]
    E_all, U_all, E, U, T, _ = _padded_batch(d, sizes, sizes)
    cfg = TrainConfig(steps=400, patience=64)
    res = train_memories(E, U, T, torch.tensor(sizes), torch.tensor(sizes), torch.tensor(lrs), cfg)
    for r, (n, lr) in enumerate(zip(sizes, lrs)):
        ref = train_linear_memory(E_all[:n], U_all[:n], torch.arange(n), TrainConfig(lr=lr, steps=400, patience=64))
        assert bool(res.reached[r]) == ref.reached
        assert int(res.steps[r]) == ref.steps
        assert float(res.accuracy[r]) == pytest.approx(ref.accuracy, abs=1.5 / n)
    assert res.reached.any() and not res.reached.all()  # the case tests both outcomes


def test_batched_mlp_runs_match_the_plain_loop():
    d, m, sizes, outs = 8, 16, [30, 150, 120, 60], [30, 150, 8, 8]  # two one-to-one, two many-to-one (M = 8)
    E_all, U_all, E, U, T, W1 = _padded_batch(d, sizes, outs, m=m)
    cfg = TrainConfig(lr=3e-2, steps=600, patience=128)
    res = train_memories(E, U, T, torch.tensor(sizes), torch.tensor(outs), torch.full((4,), 3e-2), cfg, m=m, W1=W1)
    for r, (n, o) in enumerate(zip(sizes, outs)):
        ref = train_mlp_memory(E_all[:n], U_all[:o], many_to_one_targets(n, o), W1[0], cfg)
        assert bool(res.reached[r]) == ref.reached
        assert abs(int(res.steps[r]) - ref.steps) <= cfg.check_every  # float rounding may move a check
        assert float(res.accuracy[r]) == pytest.approx(ref.accuracy, abs=1.5 / n)
    assert res.reached.any() and not res.reached.all()


def test_group_success_stops_and_counts_for_every_member():
    d, sizes = 8, [20, 20]
    _, _, E, U, T, _ = _padded_batch(d, sizes, sizes)
    cfg = TrainConfig(steps=300, patience=None)
    alone = train_memories(E, U, T, torch.tensor(sizes), torch.tensor(sizes), torch.tensor([3.0, 1e-4]), cfg)
    assert alone.reached.tolist() == [True, False]  # a tiny learning rate gets nowhere in 300 steps
    grouped = train_memories(E, U, T, torch.tensor(sizes), torch.tensor(sizes), torch.tensor([3.0, 1e-4]), cfg,
                             group=torch.tensor([0, 0]))
    assert grouped.reached.tolist() == [True, True]
    assert grouped.steps.tolist() == [alone.steps[0]] * 2  # the slow member stopped with the winner


@pytest.mark.parametrize("kind,d,alpha", [("linear", 8, 0), ("linear", 11, 0), ("mlp", 8, 2)])
def test_capacities_no_worse_than_the_plain_loop(kind, d, alpha):
    lrs = [3.0, 1.0] if kind == "linear" else [3e-2]
    cfg = TrainConfig(steps=512 if kind == "linear" else 1024, patience=128)
    problems = [linear_problem(d, s) if kind == "linear" else mlp_problem(d, alpha * d, s) for s in (0, 1)]
    stats = {}
    fast = memory_capacities(problems, lrs, cfg, stats=stats)
    plain = [plain_capacity(p, lrs, cfg) for p in problems]
    for a, b in zip(fast, plain):
        assert a >= math.floor(b * (1 - 0.025)), (fast, plain)  # within the searches' 2 % resolution
        assert a <= math.ceil(b * 1.025) + 1, (fast, plain)
    assert stats["rounds"] <= 6 and stats["flops"] > 0


def test_capacities_are_deterministic_and_order_free():
    problems = [linear_problem(8, 0), mlp_problem(8, 8, 1, M=4), linear_problem(11, 2)]
    cfg = TrainConfig(steps=256, patience=64)
    a = memory_capacities(problems, [3e-2, 3.0], cfg)
    b = memory_capacities(problems[::-1], [3e-2, 3.0], cfg)[::-1]
    assert a == b


def test_many_to_one_targets():
    assert torch.equal(many_to_one_targets(7, 7), torch.arange(7))
    t = many_to_one_targets(100, 32)
    assert t.min() == 0 and t.max() == 31 and torch.all(t[1:] >= t[:-1])
    assert set(torch.bincount(t).tolist()) <= {3, 4}  # equal blocks, up to rounding


@pytest.mark.parametrize("kwargs,name", [
    (dict(lrs=torch.tensor([0.0])), "lrs"),
    (dict(n_inputs=torch.tensor([9])), "n_inputs"),
    (dict(n_outputs=torch.tensor([0])), "n_outputs"),
    (dict(m=4), "W1"),
    (dict(m=-1), "m"),
])
def test_train_memories_bad_args(kwargs, name):
    E, U = memory_embeddings(8, 8, 4, 0)
    args = dict(E=E[None], U=U[None], targets=torch.arange(8)[None], n_inputs=torch.tensor([8]),
                n_outputs=torch.tensor([8]), lrs=torch.tensor([1.0]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        train_memories(**args)


@pytest.mark.parametrize("kwargs,name", [
    (dict(kind="conv"), "kind"), (dict(d=1), "d"), (dict(kind="mlp", m=0), "m"), (dict(m=3), "m"),
    (dict(low=10, high=5), "high"), (dict(M=1), "M"),
])
def test_capacity_problem_bad_args(kwargs, name):
    args = dict(kind="linear", d=8, seed=0, low=8, high=32, guess=20)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        CapacityProblem(**args)


def test_memory_capacities_bad_args():
    with pytest.raises(ValueError, match="lrs"):
        memory_capacities([linear_problem(8, 0)], [])
    with pytest.raises(ValueError, match="points"):
        memory_capacities([linear_problem(8, 0)], [1.0], points=0)


def _run(search, k):
    while not search.done:
        cands = search.candidates()
        assert cands and all(search.low <= n <= search.high for n in cands)
        assert not set(cands) & set(search.tried)  # nothing is tested twice
        search.update({n: n <= k for n in cands})
        assert search.rounds < 40
    return search


@FAST
@given(k=st.integers(0, 3000), low=st.integers(1, 50), width=st.integers(0, 3000), guess=st.integers(1, 4000),
       points=st.integers(1, 6), rtol=st.sampled_from([0.0, 0.01, 0.05]))
def test_capacity_search_finds_the_threshold(k, low, width, guess, points, rtol):
    high = low + width
    s = _run(CapacitySearch(low, high, guess, points=points, rtol=rtol), k)
    truth = min(max(k, low - 1), high)
    assert s.capacity <= truth  # never above: the answer is a success
    assert s.capacity >= truth - max(1, rtol * truth) - 1e-9


def test_capacity_search_from_a_good_guess_takes_few_rounds():
    s = _run(CapacitySearch(10, 100_000, guess=5000, points=3, rtol=0.02), 5200)
    assert s.rounds <= 4 and len(s.tried) <= 12


def test_capacity_search_reconciles_non_monotone_outcomes():
    s = CapacitySearch(1, 100, guess=50, points=3)
    s.update({40: True, 50: False, 60: True})  # a lucky success above a failure does not count
    assert s.bad == 50 and s.good == 40 and s.capacity == 40


def test_reproduce_mlp_figures_on_a_tiny_override():
    for name in ("fig1-right", "fig6"):
        out = reproduce(name, d=[8], seeds=1, progress=False)
        assert {r["alpha"] for r in out["rows"]} == {1, 2, 4, 8}
        assert all(set(r) >= {"d", "m", "seed", "N"} and r["m"] == r["alpha"] * 8 for r in out["rows"])
        Ns = [r["N"] for r in sorted(out["rows"], key=lambda r: r["alpha"])]
        assert Ns == sorted(Ns)  # wider MLPs store more
        if name == "fig6":
            assert all(r["M"] == 32 for r in out["rows"])


def test_bench_parts_report_positive_rates():
    assert all(v > 0 for v in matmul_gflops(torch.device("cpu")).values())
    assert trainer_gflops(torch.device("cpu"))["gflops"] > 0
    assert parse_figures("fig6,fig1-left") == ("fig6", "fig1-left") and parse_figures("") == ()
    with pytest.raises(ValueError, match="figures"):
        parse_figures("fig5-left")
