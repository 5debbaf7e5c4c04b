"""factlib.bounds: argument checks, exact values on small cases, the shape of the Fano bound, the quantiser."""
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlib import bounds as B, constructions as C
from factlib.task import TaskConfig
from factlib.figures import FIGURES, reproduce

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BAD_NUMBERS = [float("nan"), float("inf"), -float("inf"), True, "x", None]


# ---- argument checks ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn, kwargs, name, bad", [
    (B.table_bits, {"S": 4, "R": 2, "D": 8}, "S", [0, -1, 2.5, True, float("nan")]),
    (B.table_bits, {"S": 4, "R": 2, "D": 8}, "R", [0, 1.5, False]),
    (B.table_bits, {"S": 4, "R": 2, "D": 8}, "D", [1, 0, True, float("inf")]),
    (B.fano_bits, {"S": 4, "R": 2, "D": 8, "accuracy": 0.9}, "accuracy", BAD_NUMBERS + [-0.1, 1.01]),
    (B.loss_bits, {"S": 4, "R": 2, "D": 8, "loss": 0.1}, "loss", BAD_NUMBERS + [-1e-3]),
    (B.min_parameters, {"S": 4, "R": 2, "D": 8, "p": 8}, "p", BAD_NUMBERS + [0, -2]),
    (B.binary_entropy, {"eps": 0.1}, "eps", BAD_NUMBERS + [1.5, -0.5]),
    (B.map_bits, {"N": 4, "M": 8}, "N", [0, 2.0, True]),
    (B.map_bits, {"N": 4, "M": 8}, "kind", ["bijective", 3]),
    (B.construction_parameters, {"S": 8, "R": 4, "D": 4, "construction": "attention_only"}, "construction",
     ["mlp_only", None]),
    (B.variant_bounds, {"variant": "S=R", "n": 4, "p": 8}, "variant", ["S=R^3"]),
    (B.variant_bounds, {"variant": "S=R", "n": 4, "p": 8}, "p", [0, float("nan"), True]),
])
def test_arguments_are_checked(fn, kwargs, name, bad):
    for value in bad:
        with pytest.raises(ValueError, match=name):
            fn(**{**kwargs, name: value})


def test_quantize_checks_its_arguments():
    w = torch.randn(5, 3)
    for bits in [0, B.MAX_BITS + 1, 2.5, True, float("nan")]:
        with pytest.raises(ValueError, match="bits"):
            B.quantize(w, bits)
    for tensor in [torch.arange(4), [1.0, 2.0], torch.tensor([1.0, float("nan")]), torch.tensor([float("inf")])]:
        with pytest.raises(ValueError, match="tensor"):
            B.quantize(tensor, 4)


def test_min_bits_checks_its_arguments():
    for name, kwargs in [("threshold", {"threshold": 1.5}), ("threshold", {"threshold": float("nan")}),
                         ("threshold", {"threshold": True}), ("max_bits", {"max_bits": 0}),
                         ("max_bits", {"max_bits": B.MAX_BITS + 1})]:
        with pytest.raises(ValueError, match=name):
            B.min_bits(lambda p: 1.0, **kwargs)


def test_distinct_needs_d_equal_s():
    with pytest.raises(ValueError, match="D == S"):
        B.table_bits(4, 2, 8, distinct=True)
    with pytest.raises(ValueError, match="distinct"):
        B.table_bits(4, 2, 4, distinct=1)
    with pytest.raises(ValueError, match="N <= M"):
        B.map_bits(5, 4, "injective")


# ---- exact values ------------------------------------------------------------------------------------------------

def test_counting_bound_exact_values():
    assert B.table_bits(4, 2, 8) == 24.0  # 8 facts of 3 bits
    assert B.table_bits(1, 1, 2) == 1.0
    assert B.table_bits(3, 2, 3, distinct=True) == pytest.approx(2 * math.log2(6))
    assert B.min_parameters(4, 2, 8, p=8) == 3.0
    assert B.min_parameters(16, 16, 8, p=2) == pytest.approx(16 * 16 * 3 / 2)


def test_map_bits_exact_values():
    assert B.map_bits(4, 8) == 12.0
    assert B.map_bits(3, 3, "injective") == pytest.approx(math.log2(6))
    assert B.map_bits(3, 5, "injective") == pytest.approx(math.log2(60))
    assert B.map_bits(4, 2, "balanced") == pytest.approx(math.log2(6))  # two outputs used twice each: 4!/(2!2!)
    assert B.map_bits(6, 6, "balanced") == pytest.approx(B.map_bits(6, 6, "injective"))


def test_binary_entropy_values():
    assert B.binary_entropy(0.0) == 0.0 and B.binary_entropy(1.0) == 0.0
    assert B.binary_entropy(0.5) == pytest.approx(1.0)
    assert B.binary_entropy(0.11) == pytest.approx(B.binary_entropy(0.89))


def test_fano_equals_counting_at_perfect_recall_and_vanishes_at_chance():
    for S, R, D in [(4, 2, 8), (16, 16, 8), (5, 3, 2)]:
        assert B.fano_bits(S, R, D, 1.0) == pytest.approx(B.table_bits(S, R, D))
        assert B.fano_bits(S, R, D, 1.0 / D) == 0.0
        assert B.fano_bits(S, R, D, 0.0) == 0.0
    # one value by hand: S R = 1, D = 4, eps = 0.25: 2 - h2(0.25) - 0.25 log2 3
    assert B.fano_bits(1, 1, 4, 0.75) == pytest.approx(2 - 0.811278124459 - 0.25 * math.log2(3))
    assert B.fano_bits(4, 4, 4, 1.0, distinct=True) == pytest.approx(4 * math.log2(24))


def test_fano_is_monotone_in_accuracy():
    accs = torch.linspace(0, 1, 201).tolist()
    for D in (2, 8, 64):
        values = [B.fano_bits(10, 10, D, a) for a in accs]
        assert all(b >= a - 1e-9 for a, b in zip(values, values[1:]))
        assert values[-1] == pytest.approx(100 * math.log2(D))


def test_loss_bound_values():
    assert B.loss_bits(4, 2, 8, 0.0) == 24.0
    assert B.loss_bits(4, 2, 8, math.log(8)) == pytest.approx(0.0, abs=1e-12)  # chance loss: nothing stored
    assert B.loss_bits(4, 2, 8, 10.0) == 0.0
    assert B.loss_bits(4, 2, 8, math.log(2)) == pytest.approx(24 - 8)


def test_variant_bounds():
    row = B.variant_bounds("S=R^2,D=S", 16, p=8)
    assert (row["S"], row["R"], row["D"]) == (16, 4, 16)
    assert row["table_bits"] == pytest.approx(4 * math.lgamma(17) / math.log(2))
    assert row["min_parameters"] == pytest.approx(row["table_bits"] / 8)
    row = B.variant_bounds("S=R", 8, p=2, accuracy=0.99)
    assert row["facts"] == 64 and row["fano_bits"] < row["table_bits"] == 192


def test_construction_parameters_grow_with_the_facts():
    small = B.construction_parameters(16, 4, 8, "attention_only")
    large = B.construction_parameters(64, 4, 8, "attention_only")
    assert small["params"] == 4 * small["H"] * small["d_h"] * small["d"] and small["m"] == 0
    assert large["params"] > small["params"] > B.table_bits(16, 4, 8)
    mlp = B.construction_parameters(16, 4, 8, "attention_mlp")
    assert mlp["params"] == mlp["attention"] + mlp["mlp"] and mlp["m"] % 6 == 0 and mlp["m"] > 0
    assert mlp["m"] == C.predicted_min_width(TaskConfig(S=16, R=4, D=8), mlp["d"])
    # Theorem 4's memory needs no S <= d/2: a table with many subjects and few relations still gets a finite count
    crowded = B.construction_parameters(512, 2, 8, "attention_mlp")
    assert math.isfinite(crowded["params"]) and crowded["d"] < 512 * 2


# ---- quantiser ---------------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 12), seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3))
def test_quantize_properties(bits, seed, scale):
    w = torch.randn(64, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    q = B.quantize(w, bits)
    amax = w.abs().max()
    assert q.dtype == w.dtype and q.shape == w.shape
    assert len(torch.unique(q)) <= 2**bits  # p bits: at most 2^p levels
    assert bool(((q - w).abs() <= amax / 2**bits * (1 + 1e-9)).all())  # error at most half a step
    assert bool((q.abs() <= amax).all())
    assert torch.allclose(B.quantize(-w, bits), -q)  # symmetric (ties have probability zero)
    assert torch.allclose(B.quantize(w, bits), q)  # deterministic


def test_quantize_small_cases():
    w = torch.tensor([-1.0, -0.3, 0.2, 1.0])
    assert B.quantize(w, 1).tolist() == [-0.5, -0.5, 0.5, 0.5]  # signs, times max / 2
    assert B.quantize(w, 2).tolist() == [-0.75, -0.25, 0.25, 0.75]
    assert B.quantize(torch.zeros(3), 4).tolist() == [0.0, 0.0, 0.0]
    w = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    errors = [(B.quantize(w, p) - w).abs().max().item() for p in range(1, 12)]
    assert all(b < a for a, b in zip(errors, errors[1:]))  # more bits, smaller error


def test_min_bits_takes_the_stable_smallest_precision():
    curve = {1: 0.1, 2: 0.995, 3: 0.5, 4: 0.99, 5: 1.0, 6: 0.999}
    p_min, accs = B.min_bits(lambda p: curve.get(p, 1.0), 0.99, 8)
    assert p_min == 4 and accs[:6] == [0.1, 0.995, 0.5, 0.99, 1.0, 0.999] and len(accs) == 8
    assert B.min_bits(lambda p: 0.5, 0.99, 8)[0] is None
    assert B.min_bits(lambda p: 1.0, 0.99, 8)[0] == 1
    assert B.min_bits(lambda p: 1.0 if p < 8 else 0.0, 0.99, 8)[0] is None  # the top precision must pass


def test_budget_bits():
    assert B.budget_bits(1000, 8, 3) == 8000 + 3 * 32
    with pytest.raises(ValueError, match="p"):
        B.budget_bits(1000, 0)


# ---- the reproduce figure ------------------------------------------------------------------------------------------

def test_bounds_figure_is_registered_and_runs_tiny(monkeypatch):
    fig = FIGURES["bounds"]
    assert len(fig.jobs(fig.configs["quick"])) == 3 and len(fig.jobs(fig.configs["full"])) == 6
    tiny = {**fig.configs["quick"], "linear": [{"d": 8, "N": 12, "seed": 0}], "mlp": [{"d": 8, "m": 8, "N": 16, "seed": 0}],
            "transformer": [{"S": 4, "R": 4, "D": 4, "d": 16, "H": 4, "d_h": 2, "m": 16, "lr": 1e-2, "seed": 0}],
            "targets": [0.9], "max_bits": 10, "repeats": 2}
    monkeypatch.setitem(fig.configs, "quick", tiny)
    result = reproduce("bounds", "quick", device="cpu", progress=False)
    rows = result["rows"]
    assert [r["model"] for r in rows] == ["linear", "mlp", "transformer"]
    assert result["provenance"]["config"]["targets"] == [0.9]
    for row in rows:
        assert len(row["curve"]) == 10 and row["params"] > 0
        if row["p_min"] is not None:
            assert row["curve"][row["p_min"] - 1] >= row["threshold"]
            assert row["budget_fraction"] == pytest.approx(row["bits"] / B.budget_bits(row["params"], row["p_min"],
                                                                                         row["tensors"]))
    assert rows[0]["params"] == 64 and rows[1]["params"] == 2 * 8 * 8 + 8
    assert rows[0]["bits"] == pytest.approx(math.log2(math.factorial(12)))
    t = rows[2]
    assert t["fano_bits"] == pytest.approx(B.fano_bits(4, 4, 4, t["accuracy"]))
    assert t["params"] == t["params_paper"] + 16


def test_head_loads_match_the_constructions_split():
    from factlib.constructions import head_load
    from factlib.task import TaskConfig

    for S, R in [(8, 3), (16, 4), (5, 9), (1, 1)]:
        loads = B.head_loads(S, R)
        assert len(loads) == S + R + 1
        assert all(loads[H] == head_load(TaskConfig(S=S, R=R, D=4), H) for H in range(1, S + R + 1))


def test_memories_of_the_bounds_figure_sit_at_the_stated_fraction_of_their_stored_capacity():
    # chapter 7 compares the budgets of models at the same fraction of their measured capacity: the memories' N are
    # CAPACITY_FRACTION of the capacities of seed 0 stored in the full profiles of Figure 1
    data = Path(__file__).resolve().parent.parent / "book" / "data"
    stored = {name: json.loads((data / f"{name}.json").read_text())["rows"]
              for name in ("fig1-left-full", "fig1-right-full")}
    for profile in (B.BOUNDS_QUICK, B.BOUNDS_FULL):
        for job in profile["linear"]:
            (capacity,) = [r["N"] for r in stored["fig1-left-full"] if r["d"] == job["d"] and r["seed"] == job["seed"]]
            assert job["N"] == round(B.CAPACITY_FRACTION * capacity)
        for job in profile["mlp"]:
            (capacity,) = [r["N"] for r in stored["fig1-right-full"]
                           if (r["d"], r["m"], r["seed"]) == (job["d"], job["m"], job["seed"])]
            assert job["N"] == round(B.CAPACITY_FRACTION * capacity)


def test_frozen_numbers_count_the_embedding_tables():
    assert B.frozen_numbers({"N": 100, "d": 32}) == 2 * 100 * 32  # f*(x) = x: N inputs, N outputs
    assert B.frozen_numbers({"N": 100, "M": 32, "d": 16}) == (100 + 32) * 16
    # S = R = 35, D = 8 at d = 32: a vocabulary of 35 + 35 + 70 + 1 tokens and 280 answers, 13,472 numbers
    assert B.frozen_numbers({"S": 35, "R": 35, "D": 8, "d": 32}) == 13_472
    for bad in [{"d": 4}, {"N": 3}, [1, 2], {"N": 0, "d": 4}]:
        with pytest.raises(ValueError):
            B.frozen_numbers(bad)


def test_stored_capacity_finds_the_models_own_size():
    stored = {
        "fig1-left-full": {"rows": [{"d": 32, "seed": 0, "N": 192}, {"d": 32, "seed": 1, "N": 185},
                                    {"d": 16, "seed": 0, "N": 64}]},
        "fig1-right-full": {"rows": [{"d": 16, "m": 32, "seed": 0, "N": 284}, {"d": 16, "m": 16, "seed": 0, "N": 150}]},
        "fig4-left-quick": {"rows": [{"d": 16, "d_h": 2, "m": 16, "facts": f} for f in (144, 121, 169)]
                            + [{"d": 16, "d_h": 8, "m": 4, "facts": 225}]},
    }
    assert B.stored_capacity({"model": "linear", "d": 32, "m": 0, "seed": 0}, stored) == 192
    assert B.stored_capacity({"model": "mlp", "d": 16, "m": 32, "seed": 0}, stored) == 284
    # the transformer's split, not another split with the same d: the median over the seeds
    assert B.stored_capacity({"model": "transformer", "d": 16, "d_h": 2, "m": 16}, stored) == 144
    with pytest.raises(ValueError, match="no capacity"):
        B.stored_capacity({"model": "linear", "d": 64, "m": 0, "seed": 0}, stored)
    with pytest.raises(ValueError, match="model"):
        B.stored_capacity({"model": "hopfield"}, stored)
    with pytest.raises(ValueError, match="fig4-left-quick"):
        B.stored_capacity({"model": "transformer", "d": 16, "d_h": 2, "m": 16}, {})
