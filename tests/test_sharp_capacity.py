"""Chapter 8's sharp capacity constant: normalised margins, the max-margin memory and the capacity searches."""
import math

import pytest
import torch

from factlib import sharp_capacity as sc
from factlib.capacity import linear_memory_capacity, linearly_separable
from factlib.embeddings import memory_embeddings
from factlib.memory import hebbian_memory


def draw(N, d, seed=0):
    E, U = memory_embeddings(N, N, d, seed, dtype=torch.float64)
    return E, U, torch.arange(N)


def test_normalized_margin_is_scale_free_and_minus_inf_at_zero():
    E, U, t = draw(10, 16)
    W = hebbian_memory(E, U, t)
    assert sc.normalized_margin(3.7 * W, E, U, t) == pytest.approx(sc.normalized_margin(W, E, U, t))
    assert sc.normalized_margin(torch.zeros(16, 16, dtype=torch.float64), E, U, t) == -math.inf


def test_max_margin_bracket_is_tight_and_beats_every_other_memory():
    E, U, t = draw(14, 8, seed=1)
    W, low, high = sc.max_margin_memory(E, U, t)
    assert 0 < low <= high + 1e-9 and high - low < 1e-3 * high
    assert sc.normalized_margin(W, E, U, t) == pytest.approx(low)
    for other in (hebbian_memory(E, U, t), sc.gd_memory(E, U, t, 1.0, 300)):
        assert sc.normalized_margin(other, E, U, t) <= high + 1e-9


def test_max_margin_upper_bound_certifies_a_non_separable_draw():
    E, U, t = draw(40, 6, seed=2)  # 40 pairs in a 6 x 6 memory: far above its capacity
    assert not linearly_separable(E, U, t)
    _, low, high = sc.max_margin_memory(E, U, t)
    assert low < 0 and high < 0.05


def test_optimal_argmax_capacity_is_chapter_ones_exact_capacity():
    assert sc.learner_capacity(6, 0, "optimal", 0.0) == linear_memory_capacity(6, 0, "separable", rtol=0)


def test_capacities_are_ordered_by_learner_and_margin():
    gd = {"lr": 1.0, "steps": 300}
    optimal = sc.learner_capacity(8, 1, "optimal", 1.0)
    assert sc.learner_capacity(8, 1, "hebbian", 1.0) <= sc.learner_capacity(8, 1, "gd", 1.0, gd) <= optimal
    assert optimal < sc.learner_capacity(8, 1, "optimal", 0.0)
    assert sc.learner_capacity(8, 1, "hebbian", 1.0) <= sc.learner_capacity(8, 1, "hebbian", 0.0)


def test_extreme_value_heuristic_moves_towards_its_limits():
    for learner, limit in (("optimal", 0.5), ("hebbian", 0.125)):
        small, large = sc.extreme_value_constant(16, learner), sc.extreme_value_constant(256, learner)
        assert large < small and abs(large - limit) < abs(small - limit)
    assert sc.extreme_value_constant(16, "optimal", 1.0) < sc.extreme_value_constant(256, "optimal", 1.0) < 0.5
    mean, second = sc.expected_max_moments(1)
    assert mean == pytest.approx(0.0, abs=1e-6) and second == pytest.approx(1.0, abs=1e-6)
    assert sc.expected_max_moments(2)[0] == pytest.approx(1 / math.sqrt(math.pi), abs=1e-6)


@pytest.mark.parametrize("kwargs, match", [({"learner": "lp"}, "learner must be one of"),
                                           ({"kappa": -0.1}, "kappa must be"), ({"kappa": float("inf")}, "kappa")])
def test_separated_rejects_bad_arguments(kwargs, match):
    E, U, _ = draw(4, 4)
    with pytest.raises(ValueError, match=match):
        sc.separated(E, U, **({"learner": "hebbian", "kappa": 0.0} | kwargs))


def test_sharp_jobs_refuse_a_d_override():
    config = {"seeds": [0, 1], "gd": {"lr": 1.0, "steps": 10},
              "series": [{"learner": "hebbian", "kappas": [0.0, 1.0], "d": [8, 11]}]}
    jobs = sc.sharp_jobs(config)
    assert len(jobs) == 4 and jobs[0]["kappas"] == [0.0, 1.0]
    rows = sc.sharp_job(jobs[0], torch.device("cpu"))
    assert [r["kappa"] for r in rows] == [0.0, 1.0] and rows[0]["N"] >= rows[1]["N"]
    with pytest.raises(ValueError, match="d does not apply"):
        sc.sharp_jobs(config | {"d": [8]})
