"""Capacity: the N ln N prediction, the monotone search, exact separability and measured capacities."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlib import capacity
from factlib.capacity import find_capacity, fitted_constant, linear_memory_capacity, predicted_capacity
from factlib.embeddings import memory_embeddings, orthogonal_embeddings
from factlib.figures import LINEAR_RECIPE
from factlib.memory import TrainConfig, hebbian_accuracy_prediction, train_linear_memory

FAST = settings(max_examples=60, deadline=None)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
consts = st.floats(0.05, 20.0)


# --- the prediction params = c N ln N ---------------------------------------------------------------------

@FAST
@given(x=st.floats(math.e * 1.0001, 1e9), c=consts)
def test_predicted_capacity_solves_c_n_ln_n(x, c):
    params = x * c
    N = predicted_capacity(params, c)
    assert N > 1
    assert c * N * math.log(N) == pytest.approx(params, rel=1e-9)


@FAST
@given(x=st.floats(1e-3, math.e * 0.999), c=consts)
def test_predicted_capacity_below_e(x, c):
    # N ln N is increasing for N >= 1 and covers (0, e] on (1, e]: the equation has a solution there too
    N = predicted_capacity(x * c, c)
    assert c * N * math.log(N) == pytest.approx(x * c, rel=1e-9)



@FAST
@given(a=st.floats(3.0, 1e8), b=st.floats(3.0, 1e8), c=consts)
def test_predicted_capacity_increasing_in_params(a, b, c):
    lo, hi = sorted((a, b))
    if hi > lo * (1 + 1e-9):
        assert predicted_capacity(hi * c, c) > predicted_capacity(lo * c, c)
        assert predicted_capacity(1.5 * hi * c, c) > predicted_capacity(1.5 * hi * c, 1.5 * c)


def test_predicted_capacity_hand_case():
    # e^2 ln(e^2) = 2 e^2, so params = 2 e^2, c = 1 gives N = e^2; and 2 ln 2 ... gives N = 2
    assert predicted_capacity(2 * math.e**2, 1.0) == pytest.approx(math.e**2, rel=1e-12)
    assert predicted_capacity(8 * math.log(8) * 3.0, 3.0) == pytest.approx(8.0, rel=1e-12)


@pytest.mark.parametrize("params, c, name", [(0, 1, "params"), (-5, 1, "params"), (10, 0, "c"),
                                             (10, -1, "c"), (float("nan"), 1, "params"),
                                             (float("inf"), 1, "params"), ("many", 1, "params")])
def test_predicted_capacity_bad_args(params, c, name):
    with pytest.raises(ValueError, match=rf"^{name} must be a number > 0"):
        predicted_capacity(params, c)


@FAST
@given(st.lists(st.tuples(st.floats(10.0, 1e7), consts), min_size=1, max_size=5))
def test_fitted_constant_inverts_prediction(pairs):
    params = [p * c for p, c in pairs]
    N = [predicted_capacity(p, c) for p, (_, c) in zip(params, pairs)]
    got = fitted_constant(params, N)
    assert isinstance(got, np.ndarray) and got.shape == (len(pairs),)
    assert np.allclose(got, [c for _, c in pairs], rtol=1e-9)


def test_fitted_constant_hand_case():
    assert fitted_constant([64.0], [math.e])[0] == pytest.approx(64 / math.e)
    assert fitted_constant([10.0, 20.0], [2.0, 4.0]) == pytest.approx([10 / (2 * math.log(2)),
                                                                        20 / (4 * math.log(4))])


@pytest.mark.parametrize("params, N, message", [
    ([1.0, 2.0], [3.0], "params and N must have the same length"), ([], [], "params and N must have the same length"),
    ([1.0], [1.0], "N must be >= 2"), ([4.0, 4.0], [3.0, 0.5], "N must be >= 2"), ([-1.0], [3.0], "params must be > 0"),
    ([math.inf], [3.0], "params must hold finite"), ([1.0], [math.nan], "N must hold finite"),
    ("12", "34", "params must be a 1-D sequence"), ([True], [3.0], "params must be a 1-D sequence"),
])
def test_fitted_constant_bad_args(params, N, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        fitted_constant(params, N)


# --- the monotone search ----------------------------------------------------------------------------------

def _counting(k):
    calls = []

    def succeeds(n):
        calls.append(n)
        return n <= k
    return succeeds, calls


search_args = dict(
    k=st.integers(-5, 400),
    low=st.integers(1, 60),
    width=st.integers(0, 300),
    guess=st.one_of(st.none(), st.integers(-20, 500)),
    growth=st.floats(1.01, 4.0),
)


@settings(max_examples=300, deadline=None)
@given(**search_args)
def test_find_capacity_exact(k, low, width, guess, growth):
    high = low + width
    succeeds, calls = _counting(k)
    got, tried = find_capacity(succeeds, low, high, guess, growth=growth)
    assert got == min(max(k, low - 1), high)
    assert len(calls) == len(set(calls)), f"predicate called twice on some n: {calls}"
    assert tried == {n: n <= k for n in calls}
    assert all(low <= n <= high for n in calls)


@settings(max_examples=300, deadline=None)
@given(rtol=st.floats(0.001, 1.0), **search_args)
def test_find_capacity_with_tolerance(k, low, width, guess, growth, rtol):
    high = low + width
    succeeds, calls = _counting(k)
    got, tried = find_capacity(succeeds, low, high, guess, growth=growth, rtol=rtol)
    assert len(calls) == len(set(calls))
    truth = min(max(k, low - 1), high)
    assert got <= truth, "the answer must be a lower bound"
    assert got * (1 + rtol) >= truth, "the answer must be within a factor 1 + rtol of the capacity"
    if got >= low:
        assert tried[got] is True  # the returned n was actually tested and succeeded
    if low - 1 < got < high:
        assert any(tried[n] is False and n <= got * (1 + rtol) + 1 for n in tried)


def test_find_capacity_tolerance_saves_calls():
    exact = _counting(5000)
    find_capacity(exact[0], 1, 100_000, 10)
    loose = _counting(5000)
    find_capacity(loose[0], 1, 100_000, 10, rtol=0.1)
    assert len(loose[1]) < len(exact[1])


def test_find_capacity_good_guess_is_cheap():
    succeeds, calls = _counting(1000)
    assert find_capacity(succeeds, 1, 10**6, guess=1000)[0] == 1000
    # guess succeeds, one step up (x 1.15) fails, then bisection of a gap of 150
    assert len(calls) <= 2 + math.ceil(math.log2(150))
    far, far_calls = _counting(1000)
    assert find_capacity(far, 1, 10**6, guess=1)[0] == 1000
    assert len(far_calls) > len(calls)


@pytest.mark.parametrize("kwargs, name", [
    (dict(low=0, high=5), "low"), (dict(low=5, high=4), "high"), (dict(low=1, high=5, growth=1.0), "growth"),
    (dict(low=1, high=5, rtol=-0.1), "rtol"), (dict(low=1, high=5, rtol=1.5), "rtol"),
    (dict(low=1.5, high=5), "low"),
])
def test_find_capacity_bad_args(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        find_capacity(lambda n: True, **kwargs)


@pytest.mark.parametrize("d, accuracy", [(8, 0.5), (16, 0.99), (32, 0.9), (32, 0.99)])
def test_predicted_hebbian_capacity_is_the_last_n_above_the_accuracy(d, accuracy):
    N = capacity.predicted_hebbian_capacity(d, accuracy)
    if N >= 2:
        assert hebbian_accuracy_prediction(N, d) >= accuracy
    assert hebbian_accuracy_prediction(N + 1, d) < accuracy


def test_predicted_hebbian_capacity_grows_with_d_and_falls_with_accuracy():
    caps = [capacity.predicted_hebbian_capacity(d) for d in (16, 32, 64)]
    assert caps[0] < caps[1] < caps[2]
    assert capacity.predicted_hebbian_capacity(32, 0.5) > capacity.predicted_hebbian_capacity(32, 0.99)


# --- exact separability -----------------------------------------------------------------------------------

@pytest.mark.parametrize("N, M", [(1, 1), (3, 1), (4, 4), (5, 7)])
def test_one_hot_embeddings_are_separable(N, M):
    d = max(N, M)
    E, U = orthogonal_embeddings(N, d), orthogonal_embeddings(M, d)
    targets = torch.arange(N) % M
    assert capacity.linearly_separable(E, U, targets)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_dimension_with_many_outputs_is_not_separable(seed):
    # d = 2: W E[x] is a point in the plane and U has 8 random unit vectors; argmax_y U[y] . h only ever
    # selects outputs on the convex hull of U, and d^2 = 4 parameters cannot route 8 inputs anyway
    E, U = memory_embeddings(8, 8, 2, seed)
    targets = torch.arange(8)
    assert not capacity.linearly_separable(E, U, targets)
    result = train_linear_memory(E, U, targets, TrainConfig(lr=3.0, steps=512, threshold=1.0))
    assert not result.reached


def test_separability_agrees_with_training():
    # a memory that training finds is a witness of separability; an infeasible LP means training must fail
    E_all, U_all = memory_embeddings(40, 40, 6, 0)
    for N in (6, 12, 40):
        E, U, targets = E_all[:N], U_all[:N], torch.arange(N)
        separable = capacity.linearly_separable(E, U, targets)
        trained = train_linear_memory(E, U, targets, TrainConfig(lr=3.0, steps=512, threshold=1.0)).reached
        if trained:
            assert separable
        if not separable:
            assert not trained
    assert capacity.linearly_separable(E_all[:6], U_all[:6], torch.arange(6))
    assert not capacity.linearly_separable(E_all, U_all, torch.arange(40))


# --- measured capacities ----------------------------------------------------------------------------------

def test_trained_capacity_matches_exact_separability_capacity():
    recipe = [TrainConfig(lr=lr, steps=LINEAR_RECIPE["steps"], patience=LINEAR_RECIPE["patience"])
              for lr in LINEAR_RECIPE["lrs"]]
    exact = linear_memory_capacity(8, seed=0, method="separable", rtol=0)
    trained = linear_memory_capacity(8, seed=0, method="train", config=recipe, rtol=0)
    assert 8 <= exact <= 32
    assert abs(trained - exact) <= 2


def test_hebbian_capacity_is_below_trained_capacity():
    hebbian = linear_memory_capacity(16, seed=0, method="hebbian")
    trained = linear_memory_capacity(16, seed=0, method="train", config=TrainConfig(lr=3.0))
    assert 2 <= hebbian < trained
    # the Hebbian capacity is the largest N at which the Hebbian memory stores everything
    E, U = memory_embeddings(128, 128, 16, 0)
    from factlib.memory import hebbian_memory, recall_accuracy
    t = torch.arange(hebbian)
    assert recall_accuracy(hebbian_memory(E[:hebbian], U[:hebbian], t), E[:hebbian], U[:hebbian], t) >= 0.99


@pytest.mark.parametrize("kwargs, name", [(dict(d=1), "d"), (dict(d=4, method="exact"), "method"),
                                          (dict(d=4, threshold=0.0), "threshold"),
                                          (dict(d=4, threshold=1.5), "threshold"), (dict(d=4.0), "d")])
def test_linear_memory_capacity_bad_args(kwargs, name):
    kwargs.setdefault("seed", 0)
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        linear_memory_capacity(**kwargs)
