"""Chapter 8's heavy-tailed memories: Zipf probabilities, the estimators q(z), their loss and the bounds."""
import math

import pytest
import torch

from factlib import heavy_tails as ht
from factlib.memory import margins


def test_zipf_probabilities_are_normalised_and_decreasing():
    p = ht.zipf_probabilities(100, 1.5)
    assert p.dtype == torch.float64 and p.shape == (100,)
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
    assert bool((p[1:] < p[:-1]).all())
    assert math.isclose(float(p[0] / p[3]), 4**1.5, rel_tol=1e-12)  # ranks 1 and 4


@pytest.mark.parametrize("bad", [0, -3, 2**21, 2.5, True, "10"])
def test_zipf_probabilities_reject_bad_sizes(bad):
    with pytest.raises(ValueError, match="N must be an integer"):
        ht.zipf_probabilities(bad, 1.5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, True, 1.0])
def test_problem_rejects_bad_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        ht.HeavyTailProblem(64, 4, 16, bad)


def test_problem_checks_sizes_before_allocating():
    with pytest.raises(ValueError, match="N d"):
        ht.HeavyTailProblem(2**20, 4, 4096, 2.0)
    with pytest.raises(ValueError, match="M must be"):
        ht.HeavyTailProblem(8, 9, 16, 2.0)


def test_unseen_mass_matches_sampling():
    p = ht.zipf_probabilities(50, 2.0)
    n = 30
    draws = [float((p * (ht.sample_counts(p, n, seed) == 0).double()).sum()) for seed in range(3000)]
    mean = sum(draws) / len(draws)
    sd = (sum((x - mean) ** 2 for x in draws) / (len(draws) - 1)) ** 0.5
    assert abs(mean - ht.unseen_mass(p, n)) < 4 * sd / len(draws) ** 0.5
    assert ht.unseen_mass(p, 0) == pytest.approx(1.0)


def test_unseen_mass_follows_hutters_rate_between_the_bounds():
    # Theorem "infinite memory": c n^(-(a-1)/a) <= E L <= C n^(-(a-1)/a) while the vocabulary is large enough
    for alpha in (1.5, 2.0, 3.0):
        p = ht.zipf_probabilities(2**16, alpha)
        for n in (2**6, 2**10, 2**14):
            low, high = ht.infinite_memory_bounds(alpha, n, 2**16)
            assert 0 < low <= ht.unseen_mass(p, n) <= high
    values = {n: ht.unseen_mass(ht.zipf_probabilities(2**16, 2.0), n) for n in (2**8, 2**12)}
    assert math.log(values[2**12] / values[2**8]) / math.log(2**4) == pytest.approx(-0.5, abs=0.05)
    assert ht.infinite_memory_bounds(2.0, 2**20, 64)[0] == 0.0  # the sample sees every token: no lower bound


def test_keep_threshold_keeps_whole_count_classes():
    counts = torch.tensor([9, 5, 5, 5, 2, 0, 1])
    assert ht.keep_threshold(counts, 3) == 6  # the tie at 5 would make four
    assert ht.keep_threshold(counts, 4) == 3
    assert ht.keep_threshold(counts, 100) == 1
    q = ht.memory_weights(counts, "threshold", keep=4)
    assert q.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert ht.memory_weights(counts, "seen").tolist() == [1.0, 1, 1, 1, 1, 0, 1]
    assert ht.memory_weights(counts, "counts").sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="keep"):
        ht.memory_weights(counts, "threshold")
    with pytest.raises(ValueError, match="scheme must be one of"):
        ht.memory_weights(counts, "top")
    with pytest.raises(ValueError, match="counts"):
        ht.memory_weights(counts.double(), "seen")


def test_recalled_matches_the_explicit_memory():
    problem = ht.HeavyTailProblem(300, 5, 24, 1.5, seed=3)
    E, U = problem.embeddings()
    f = problem.answers()
    counts = ht.sample_counts(problem.probabilities, 500, seed=1)
    for scheme in ht.SCHEMES:
        q = ht.memory_weights(counts, scheme, keep=6)
        W = (q[:, None].float() * U[f]).T @ E  # (d, d): sum_z q(z) u_{f(z)} e_z^T
        assert torch.equal(ht.recalled(problem, q), margins(W, E, U, f) > 0)
        loss = ht.memory_loss(problem, q)
        assert loss == pytest.approx(float((problem.probabilities * (margins(W, E, U, f) <= 0).double()).sum()),
                                     abs=1e-6)


def test_nothing_stored_recalls_nothing():
    problem = ht.HeavyTailProblem(50, 3, 8, 2.0)
    assert ht.memory_loss(problem, torch.zeros(50, dtype=torch.float64)) == pytest.approx(1.0)


def test_a_wide_memory_of_the_seen_tokens_is_the_infinite_memory():
    # q = 1{seen} with d >> number of seen tokens recalls every seen token (Theorem "seen"); an unseen one only
    # by chance, when its cross-talk happens to favour its answer (about one in M)
    problem = ht.HeavyTailProblem(400, 4, 1024, 2.0, seed=1)
    counts = ht.sample_counts(problem.probabilities, 100, seed=2)
    hit = ht.recalled(problem, ht.memory_weights(counts, "seen"))
    assert bool(hit[counts > 0].all())
    assert 0.1 < float(hit[counts == 0].double().mean()) < 0.4


def test_counts_bound_holds_on_draws():
    alpha, n, d, M = 2.0, 4096, 256, 4
    losses = []
    for seed in range(3):
        problem = ht.HeavyTailProblem(2048, M, d, alpha, seed)
        counts = ht.sample_counts(problem.probabilities, n, seed + 10)
        losses.append(ht.memory_loss(problem, ht.memory_weights(counts, "counts")))
    assert sum(losses) / 3 <= ht.counts_bound(alpha, n, d, M)


def test_arrangement_regions_counts_small_cases():
    # m lines through the origin of the plane make 2 m regions; m planes of R^3 in general position m^2 - m + 2
    assert math.exp(ht.arrangement_regions(5, 2)) == pytest.approx(10)
    assert math.exp(ht.arrangement_regions(4, 3)) == pytest.approx(14)
    assert math.exp(ht.arrangement_regions(3, 5)) == pytest.approx(8)  # m <= D: every sign pattern


def test_approximation_lower_bound_is_below_what_memories_reach():
    p = ht.zipf_probabilities(4096, 2.0)
    K, bound = ht.approximation_lower_bound(p, M=4, d=16, delta=0.01)
    assert 0 < K < 4096 and 0 < bound < 0.5
    assert bound == pytest.approx(0.75 * ht.tail_mass(p, K) / 2)
    # the threshold memory of the top tokens, which any memory bound must not exceed
    problem = ht.HeavyTailProblem(4096, 4, 16, 2.0, seed=0)
    counts = ht.sample_counts(problem.probabilities, 2**16, 1)
    assert ht.memory_loss(problem, ht.memory_weights(counts, "threshold", keep=4)) >= bound


def test_fit_exponents_recovers_a_power_law():
    rows = [{"sweep": "n", "alpha": 2.0, "seed": s, "n": n, "seen": 3.0 * n ** -0.5 * (1 + 0.01 * s)}
            for s in range(4) for n in (10, 100, 1000)]
    fit = ht.fit_exponents(rows, "n", "seen", 2.0)
    assert fit["mean"] == pytest.approx(-0.5) and fit["low"] <= -0.5 <= fit["high"] and fit["points"] == 3
    with pytest.raises(ValueError, match="no seed"):
        ht.fit_exponents(rows, "n", "seen", 2.0, where=lambda r: r["n"] > 500)


def test_scaling_job_rows_and_the_d_override_is_refused():
    job = {"N": 256, "M": 4, "keep_per_d": 0.25, "seeds": [0, 1], "alpha": 2.0, "sweep": "d", "n": 200, "d": 32}
    rows = ht.scaling_job(job, torch.device("cpu"))
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        assert r["keep"] == 8 and 0 <= r["threshold"] <= 1 and r["seen_tokens"] <= 200
        assert set(ht.SCHEMES) <= set(r)
    with pytest.raises(ValueError, match="d does not apply"):
        ht.scaling_jobs({"d": [8], "N": 8, "M": 2, "keep_per_d": 1, "seeds": [0], "alpha": [2.0],
                         "n_sweep": {"d": 8, "n": [4]}, "d_sweep": {"n": 4, "d": [8]}})


def test_a_tie_is_an_error():
    # orthonormal embeddings: a token not stored has every score exactly 0, a tie, which must count as an error
    problem = ht.HeavyTailProblem(8, 2, 16, 2.0)
    E, U = torch.eye(8, 16), torch.eye(16)[8:10]  # (8, 16), (2, 16)
    f = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    q = torch.zeros(8, dtype=torch.float64)
    q[0] = 1.0
    hit = ht.recalled(problem, q, E=E, U=U, f=f)
    assert hit.tolist() == [True] + [False] * 7
    assert ht.memory_loss(problem, q, E=E, U=U, f=f) == pytest.approx(1 - float(problem.probabilities[0]))
