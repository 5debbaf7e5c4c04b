"""Linear associative memories (factlib.memory): constructions, recall, the gradient lemma, training."""
import dataclasses

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from factlib import memory
from factlib.embeddings import gaussian_embeddings, memory_embeddings, orthogonal_embeddings
from factlib.memory import TrainConfig, train_linear_memory

FAST = settings(max_examples=30, deadline=None)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@st.composite
def instances(draw, max_n=7, max_m=7, max_d=6, dtype=torch.float64):
    """Random (E, U, targets): Gaussian embeddings (not normalised, to catch missing terms) and any targets."""
    N, M, d = draw(st.integers(1, max_n)), draw(st.integers(1, max_m)), draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 10**6))
    targets = torch.tensor(draw(st.lists(st.integers(0, M - 1), min_size=N, max_size=N)), dtype=torch.long)
    E, U = memory_embeddings(N, M, d, seed, normalize=False, dtype=dtype)
    return E, U, targets


# --- constructions ----------------------------------------------------------------------------------------

@FAST
@given(instances())
def test_hebbian_memory_is_sum_of_outer_products(inst):
    E, U, targets = inst
    d = E.shape[1]
    W = torch.zeros(d, d, dtype=E.dtype)
    for x in range(E.shape[0]):
        for i in range(d):
            for j in range(d):
                W[i, j] += U[targets[x], i] * E[x, j]
    assert torch.allclose(memory.hebbian_memory(E, U, targets), W, atol=1e-12)


@FAST
@given(instances())
def test_centred_hebbian_memory_is_sum_of_centred_outer_products(inst):
    E, U, targets = inst
    mean = sum(U[y] for y in range(U.shape[0])) / U.shape[0]
    W = sum(torch.outer(U[targets[x]] - mean, E[x]) for x in range(E.shape[0]))
    assert torch.allclose(memory.centred_hebbian_memory(E, U, targets), W, atol=1e-12)


@FAST
@given(N=st.integers(1, 12), extra_m=st.integers(0, 5), extra_d=st.integers(0, 5), data=st.data())
def test_hebbian_recalls_everything_with_one_hot_embeddings(N, extra_m, extra_d, data):
    M = N + extra_m
    d = M + extra_d
    perm = data.draw(st.permutations(range(M)))
    targets = torch.tensor(perm[:N], dtype=torch.long)  # injective
    E, U = orthogonal_embeddings(N, d), orthogonal_embeddings(M, d)
    W = memory.hebbian_memory(E, U, targets)
    assert memory.recall_accuracy(W, E, U, targets) == 1.0
    if M >= 2:
        assert (memory.margins(W, E, U, targets) == 1.0).all()


def test_hebbian_is_imperfect_with_random_embeddings_beyond_capacity():
    # the control for the test above: random (not orthogonal) embeddings with N >> d interfere
    E, U = memory_embeddings(200, 200, 8, 0)
    targets = torch.arange(200)
    assert memory.recall_accuracy(memory.hebbian_memory(E, U, targets), E, U, targets) < 0.5


# --- recall -----------------------------------------------------------------------------------------------

def _naive_accuracy(W, E, U, targets):
    correct = 0
    for x in range(E.shape[0]):
        h = [sum(U[y, i] * sum(W[i, j] * E[x, j] for j in range(E.shape[1])) for i in range(E.shape[1]))
             for y in range(U.shape[0])]
        best = max(range(len(h)), key=lambda y: h[y])
        correct += best == targets[x].item()
    return correct / E.shape[0]


@FAST
@given(instances(), st.integers(0, 10**6))
def test_recall_accuracy_matches_naive_loop(inst, wseed):
    E, U, targets = inst
    d = E.shape[1]
    W = torch.randn(d, d, generator=torch.Generator().manual_seed(wseed), dtype=E.dtype)
    got = memory.recall_accuracy(W, E, U, targets)
    assert isinstance(got, float)
    assert got == pytest.approx(_naive_accuracy(W, E, U, targets), abs=1e-7)


def test_recall_accuracy_small_hand_case():
    # W = identity, E = U = one-hot in R^3: input x recalls output x; targets [0, 2, 2] -> 2 of 3 right
    I3 = torch.eye(3)
    assert memory.recall_accuracy(I3, I3, I3, torch.tensor([0, 2, 2])) == pytest.approx(2 / 3)
    # recall reads U[y]^T W E[x]: a W that maps e_0 -> e_1 sends input 0 to output 1, not the other way
    W = torch.zeros(3, 3)
    W[1, 0] = 1.0
    W[2, 1] = 1.0
    W[0, 2] = 1.0
    assert memory.recall_accuracy(W, I3, I3, torch.tensor([1, 2, 0])) == 1.0
    assert memory.recall_accuracy(W.T, I3, I3, torch.tensor([1, 2, 0])) == 0.0


def test_scores_definition():
    E, U = memory_embeddings(4, 5, 3, 1, normalize=False, dtype=torch.float64)
    W = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gamma = memory.scores(W, E, U)
    assert gamma.shape == (4, 5)
    for x in range(4):
        for y in range(5):
            assert gamma[x, y].item() == pytest.approx((U[y] @ W @ E[x]).item(), abs=1e-12)


@FAST
@given(instances(max_n=10, max_m=6), st.integers(0, 10**6))
def test_margin_positive_iff_correct(inst, wseed):
    E, U, targets = inst
    assume(U.shape[0] >= 2)
    d = E.shape[1]
    W = torch.randn(d, d, generator=torch.Generator().manual_seed(wseed), dtype=E.dtype)
    m = memory.margins(W, E, U, targets)
    assert m.shape == (E.shape[0],)
    gamma = memory.scores(W, E, U)
    correct = gamma.argmax(dim=1) == targets
    assert torch.equal(m > 0, correct)
    # margin = right score minus the best of the others, by a loop
    for x in range(E.shape[0]):
        t = targets[x].item()
        others = max(gamma[x, y].item() for y in range(U.shape[0]) if y != t)
        assert m[x].item() == pytest.approx(gamma[x, t].item() - others, abs=1e-9)


def test_margins_need_two_outputs():
    E = torch.eye(2)
    with pytest.raises(ValueError, match="M >= 2"):
        memory.margins(torch.eye(2), E, E[:1], torch.zeros(2, dtype=torch.long))


# --- low rank ---------------------------------------------------------------------------------------------

@FAST
@given(N=st.integers(1, 12), d=st.integers(2, 10), data=st.data())
def test_low_rank_memory_has_rank_at_most_m(N, d, data):
    m = data.draw(st.integers(1, d))
    seed = data.draw(st.integers(0, 1000))
    E, U = memory_embeddings(N, N, d, seed, dtype=torch.float64)
    W = memory.low_rank_memory(E, U, torch.arange(N), m, seed)
    assert W.shape == (d, d) and W.dtype == torch.float64
    assert torch.linalg.matrix_rank(W).item() <= m


def test_low_rank_memory_is_hebbian_through_projection():
    E, U = memory_embeddings(6, 6, 5, 0, dtype=torch.float64)
    targets = torch.tensor([1, 0, 3, 2, 5, 4])
    W = memory.low_rank_memory(E, U, targets, 3, seed=9)
    # recover A from the documented construction: N(0, 1/m) draw from generator(seed)
    from factlib.config import generator
    A = torch.randn(3, 5, generator=generator(9), dtype=torch.float64) / 3**0.5
    expected = sum(torch.outer(U[targets[x]], A @ E[x]) for x in range(6)) @ A
    assert torch.allclose(W, expected, atol=1e-12)
    assert torch.linalg.matrix_rank(W).item() == 3  # generic case: the bound is attained


def test_low_rank_memory_full_rank_recalls_well():
    d, N = 128, 32
    E, U = memory_embeddings(N, N, d, 0)
    targets = torch.arange(N)
    assert memory.recall_accuracy(memory.low_rank_memory(E, U, targets, d, 0), E, U, targets) >= 0.95
    # while a rank-1 memory cannot separate 32 outputs
    assert memory.recall_accuracy(memory.low_rank_memory(E, U, targets, 1, 0), E, U, targets) < 0.5


@pytest.mark.parametrize("m", [0, 9, 2.0])
def test_low_rank_memory_bad_m(m):
    E, U = memory_embeddings(4, 4, 8, 0)
    with pytest.raises(ValueError, match=r"m must be an integer in \[1, 8\]"):
        memory.low_rank_memory(E, U, torch.arange(4), m, 0)


# --- the gradient lemma of chapter 1 ----------------------------------------------------------------------

@FAST
@given(instances(max_n=10, max_m=8, max_d=8), st.floats(1e-3, 100.0))
def test_gradient_step_is_scaled_centred_hebbian(inst, lr):
    E, U, targets = inst
    N = E.shape[0]
    W = memory.gradient_step_memory(E, U, targets, lr)
    expected = lr / N * memory.centred_hebbian_memory(E, U, targets)
    assert W.shape == expected.shape
    assert torch.allclose(W, expected, rtol=1e-5, atol=1e-5 * max(1.0, expected.abs().max().item()))


def test_gradient_step_float32_and_default_lr():
    E, U = memory_embeddings(20, 15, 8, 3)
    targets = torch.randint(15, (20,), generator=torch.Generator().manual_seed(0))
    W = memory.gradient_step_memory(E, U, targets)
    assert W.dtype == torch.float32
    assert torch.allclose(W, memory.centred_hebbian_memory(E, U, targets) / 20, atol=1e-5)
    # and the step lowers the loss, as a descent step should
    zero = torch.zeros(8, 8)
    assert memory.cross_entropy_loss(0.1 * W, E, U, targets) < memory.cross_entropy_loss(zero, E, U, targets)


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan")])
def test_gradient_step_bad_lr(lr):
    E = torch.eye(3)
    with pytest.raises(ValueError, match="lr"):
        memory.gradient_step_memory(E, E, torch.arange(3), lr)


def test_cross_entropy_at_zero_is_log_m():
    E, U = memory_embeddings(5, 7, 4, 0)
    loss = memory.cross_entropy_loss(torch.zeros(4, 4), E, U, torch.arange(5))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(7.0)).item(), rel=1e-6)


# --- the accuracy prediction (eq. (5)) --------------------------------------------------------------------

@pytest.mark.parametrize("N, d", [(51, 32), (204, 32)])
def test_hebbian_prediction_matches_measurement(N, d):
    accs = []
    for seed in range(3):
        E, U = memory_embeddings(N, N, d, seed)
        targets = torch.arange(N)
        accs.append(memory.recall_accuracy(memory.hebbian_memory(E, U, targets), E, U, targets))
    measured = sum(accs) / len(accs)
    assert abs(memory.hebbian_accuracy_prediction(N, d) - measured) < 0.06


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 2000), d=st.integers(1, 200))
def test_hebbian_prediction_monotone(N, d):
    p = memory.hebbian_accuracy_prediction(N, d)
    assert -1e-9 <= p <= 1 + 1e-9
    assert memory.hebbian_accuracy_prediction(N + 1, d) <= p + 1e-9
    assert memory.hebbian_accuracy_prediction(N, d + 1) >= p - 1e-9


def test_hebbian_prediction_strict_in_the_interesting_range():
    ps = [memory.hebbian_accuracy_prediction(N, 32) for N in (16, 64, 256, 1024)]
    assert all(a > b for a, b in zip(ps, ps[1:]))
    qs = [memory.hebbian_accuracy_prediction(256, d) for d in (8, 16, 32, 64)]
    assert all(a < b for a, b in zip(qs, qs[1:]))
    # a single output is always right
    assert memory.hebbian_accuracy_prediction(100, 4, M=1) == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(2, 500), d=st.integers(2, 64), data=st.data())
def test_rank_m_prediction_increases_with_m_and_stays_below_full_memory(N, d, data):
    m = data.draw(st.integers(1, d - 1))
    low, high = (memory.hebbian_accuracy_prediction(N, d, m=k) for k in (m, m + 1))
    assert low <= high + 1e-9
    assert high <= memory.hebbian_accuracy_prediction(N, d) + 1e-9


@pytest.mark.parametrize("kwargs, name", [(dict(N=0, d=4), "N"), (dict(N=3, d=0), "d"),
                                          (dict(N=3, d=4, M=0), "M"), (dict(N=2.5, d=4), "N"),
                                          (dict(N=3, d=4, m=0), "m"), (dict(N=3, d=4, m=5), "m")])
def test_hebbian_prediction_bad_args(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        memory.hebbian_accuracy_prediction(**kwargs)


# --- training ---------------------------------------------------------------------------------------------

def test_training_reaches_full_recall_on_easy_case_and_stops_early():
    E, U = memory_embeddings(20, 20, 16, 0)
    targets = torch.arange(20)
    config = TrainConfig()
    result = train_linear_memory(E, U, targets, config)
    assert result.reached and result.accuracy == 1.0
    assert result.steps < config.steps // 4
    assert result.W.shape == (16, 16)
    # the returned W really is the memory that achieved the accuracy
    assert memory.recall_accuracy(result.W, E, U, targets) == result.accuracy


def test_training_gives_up_on_impossible_case():
    E, U = memory_embeddings(200, 200, 4, 0)
    targets = torch.arange(200)
    config = TrainConfig(steps=1024, patience=128)
    result = train_linear_memory(E, U, targets, config)
    assert not result.reached
    assert result.accuracy < config.threshold
    assert result.steps <= 3 * config.patience < config.steps
    assert memory.recall_accuracy(result.W, E, U, targets) == pytest.approx(result.accuracy)


def test_training_without_patience_uses_the_budget():
    E, U = memory_embeddings(60, 60, 4, 0)
    result = train_linear_memory(E, U, torch.arange(60), TrainConfig(steps=40, patience=None))
    assert not result.reached and result.steps == 40


def test_training_with_sgd():
    E, U = orthogonal_embeddings(6), orthogonal_embeddings(6)
    targets = torch.tensor([3, 1, 4, 0, 5, 2])
    result = train_linear_memory(E, U, targets, TrainConfig(optimizer="sgd", lr=1.0, threshold=1.0))
    assert result.reached and result.accuracy == 1.0


@pytest.mark.parametrize("field, value", [
    ("lr", 0.0), ("lr", -1.0), ("steps", 0), ("steps", 1.5), ("optimizer", "rmsprop"),
    ("threshold", 0.0), ("threshold", 1.01), ("patience", 0), ("check_every", 0),
])
def test_train_config_validation(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        TrainConfig(**{field: value})


def test_train_config_defaults_are_valid_and_frozen():
    config = TrainConfig(threshold=1.0, patience=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 2.0  # type: ignore[misc]
    assert memory.PAPER_RECIPE.patience is None and memory.PAPER_RECIPE.lr == 1000.0


# --- argument validation ----------------------------------------------------------------------------------

def _bad_args():
    E, U = memory_embeddings(4, 5, 3, 0)
    t = torch.tensor([0, 1, 2, 4])
    return [
        ("E 1-D", (E[0], U, t), "2-D"),
        ("U 3-D", (E, U[None], t), "2-D"),
        ("mismatched d", (E, gaussian_embeddings(5, 4, 1), t), "embedding dimension d"),
        ("targets too short", (E, U, t[:3]), r"targets must have shape \(N,\)"),
        ("targets 2-D", (E, U, t[None]), r"targets must have shape \(N,\)"),
        ("target too large", (E, U, torch.tensor([0, 1, 2, 5])), r"\[0, M-1\] = \[0, 4\]"),
        ("negative target", (E, U, torch.tensor([0, -1, 2, 3])), r"\[0, M-1\]"),
        ("float targets", (E, U, t.float()), "integer tensor"),
    ]


@pytest.mark.parametrize("fn", ["hebbian_memory", "centred_hebbian_memory", "gradient_step_memory",
                                "train_linear_memory", "recall_accuracy", "margins", "low_rank_memory"])
@pytest.mark.parametrize("case", range(8))
def test_argument_validation(fn, case):
    _, (E, U, t), match = _bad_args()[case]
    call = {
        "recall_accuracy": lambda: memory.recall_accuracy(torch.eye(3), E, U, t),
        "margins": lambda: memory.margins(torch.eye(3), E, U, t),
        "low_rank_memory": lambda: memory.low_rank_memory(E, U, t, 1, 0),
    }.get(fn, lambda: getattr(memory, fn)(E, U, t))
    with pytest.raises(ValueError, match=match):
        call()


# ---- MLP memories by construction (chapter 2) ---------------------------------------------------------------------

import math  # noqa: E402

from factlib.train import many_to_one_targets, mlp_init  # noqa: E402


@pytest.mark.parametrize("k", range(12))
def test_relu_hermite_coefficient_matches_quadrature(k):
    g = torch.linspace(-14, 14, 200_001, dtype=torch.float64)
    density = torch.exp(-g**2 / 2) / math.sqrt(2 * math.pi)
    he = [torch.ones_like(g), g]  # He_{n+1} = t He_n - n He_{n-1}
    for n in range(1, k):
        he.append(g * he[n] - n * he[n - 1])
    value = torch.trapezoid(torch.relu(g) * he[k] * density, g).item() / math.sqrt(math.factorial(k))
    assert abs(memory.relu_hermite_coefficient(k) - value) < 1e-6


def test_relu_hermite_coefficients_sum_to_second_moment():
    total = sum(memory.relu_hermite_coefficient(k) ** 2 for k in range(400))
    assert abs(total - 0.5) < 2e-4 and total < 0.5
    assert memory.relu_hermite_coefficient(300) != 0  # no overflow at large k


def test_relu_hermite_bad_k():
    with pytest.raises(ValueError, match="k"):
        memory.relu_hermite_coefficient(-1)


def test_arc_cosine_kernel_is_the_hermite_series():
    # E[relu(g) relu(g')] for correlation rho, closed form (arc-cosine kernel) vs sum_k c_k^2 rho^k
    for rho in [-0.9, -0.3, 0.0, 0.4, 0.95]:
        closed = (math.sqrt(1 - rho**2) + (math.pi - math.acos(rho)) * rho) / (2 * math.pi)
        series = sum(memory.relu_hermite_coefficient(k) ** 2 * rho**k for k in range(400))
        assert abs(closed - series) < 1e-3


def test_high_activation_has_no_constant_or_linear_part():
    g = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = memory.activation("relu-high", g)
    assert abs(s.mean().item()) < 5e-3 and abs((s * g).mean().item()) < 5e-3
    with pytest.raises(ValueError, match="activation"):
        memory.activation("tanh", g)


def test_random_features_memory_is_one_gradient_step():
    N, M, d, m = 30, 6, 8, 16
    E, U = memory_embeddings(N, M, d, 1, dtype=torch.float64)
    targets = many_to_one_targets(N, M)
    W1, W2 = memory.random_features_memory(E, U, targets, m, seed=4)
    assert torch.allclose(W1, mlp_init(m, d, 4) * d**0.5)
    b1 = torch.zeros(m, dtype=torch.float64)
    V = torch.zeros(d, m, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(memory.mlp_forward(E, W1, b1, V) @ U.T, targets)
    (grad,) = torch.autograd.grad(loss, V)
    assert torch.allclose(W2, -grad)
    assert torch.allclose(memory.rf_scores(E, U, W1, W2), memory.mlp_forward(E, W1, b1, W2) @ U.T)
    _, plain = memory.random_features_memory(E, U, targets, m, seed=4, centred=False)
    assert torch.allclose(plain, U[targets].T @ torch.relu(E @ W1.T) / N)


def test_score_margins_match_linear_margins():
    E, U = memory_embeddings(20, 20, 6, 2)
    targets = torch.arange(20)
    W = memory.hebbian_memory(E, U, targets)
    assert torch.allclose(memory.score_margins(memory.scores(W, E, U), targets), memory.margins(W, E, U, targets))
    with pytest.raises(ValueError, match="gamma"):
        memory.score_margins(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def test_rf_prediction_tracks_measurement():
    d, m = 32, 128
    for N, act in [(50, "relu"), (200, "relu-high"), (800, "relu-high")]:
        accs = []
        for seed in range(3):
            E, U = memory_embeddings(N, N, d, seed, dtype=torch.float64)
            targets = torch.arange(N)
            W1, W2 = memory.random_features_memory(E, U, targets, m, 100 + seed, act=act)
            accs.append((memory.rf_scores(E, U, W1, W2, act).argmax(1) == targets).double().mean().item())
        assert abs(sum(accs) / 3 - memory.rf_accuracy_prediction(N, d, m, act=act)) < 0.12


def test_rf_noise_variance_scales_with_md():
    # the random-features part of sigma^2 (what a finite m adds) is a function of N / (m d) alone
    def finite_m_part(N, d, m):
        return memory.rf_noise_variance(N, d, m, act="relu-high")[0] - memory.rf_noise_variance(N, d, 10**12, act="relu-high")[0]

    assert finite_m_part(400, 32, 256) == pytest.approx(finite_m_part(400, 64, 128), rel=1e-6)
    assert finite_m_part(800, 32, 256) == pytest.approx(2 * finite_m_part(400, 32, 256), rel=1e-6)
    # ... but with the ReLU the linear part of the kernel sets a floor N / d^2 that m cannot remove
    wide, _ = memory.rf_noise_variance(400, 32, 10_000, act="relu")
    assert wide > 400 * 0.5 / 32**2
    assert memory.rf_noise_variance(400, 32, 64, M=16)[0] > memory.rf_noise_variance(400, 32, 64)[0]


def test_rf_noise_variance_block_term_only_for_many_to_one():
    # M = N passed explicitly is the one-to-one map: no block term, the same as M omitted
    from factlib.memory import rf_noise_variance
    assert rf_noise_variance(512, 16, 256, M=512) == rf_noise_variance(512, 16, 256)
    many = rf_noise_variance(512, 16, 256, M=32)
    assert many[0] > rf_noise_variance(512, 16, 256)[0]  # a many-to-one map adds the block term
    with pytest.raises(ValueError, match="M"):
        rf_noise_variance(512, 16, 256, M=1)


def test_package_imports_bottom_up():
    # each module imports alone in a fresh interpreter, and no `from .x import` (module or function level) closes
    # a cycle: config, embeddings -> memory, task -> models -> constructions, train, ... -> figures, CLI
    import pathlib
    import re
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1] / "factlib"
    graph = {f.stem: {m.group(1) for m in re.finditer(r"^\s*from \.(\w+) import", f.read_text(), re.M)}
             for f in root.glob("*.py")}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, seen + (n,))) for n in graph.get(start, ()))

    assert not [m for m in graph if reaches(m, m)], "import cycle among factlib modules"
    for low in ("config", "embeddings", "memory", "task"):
        assert not graph[low] & {"train", "capacity", "models", "constructions", "figures"}
    code = "; ".join(f"import factlib.{m}" for m in ("memory", "capacity", "train", "constructions"))
    for name in sorted(graph):
        if name in ("widgets", "__main__"):
            continue  # widgets needs ipywidgets; __main__ is the CLI entry point, tested in test_cli
        subprocess.run([sys.executable, "-c", f"import factlib.{name}"], check=True, cwd=root.parent)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root.parent)


def test_hermite_free_relu_has_no_low_degrees():
    g, weight = memory._gauss_grid()
    for k in (4, 6):
        f = memory.activation(f"relu-deg{k}", g)
        low = [float((weight * f * memory._hermite(j, g)).sum()) for j in range(k)]
        assert max(map(abs, low)) < 1e-6 and abs(float((weight * f * f).sum()) - 1) < 1e-6
    for bad in (3, 0, True, 4.0):
        with pytest.raises(ValueError, match="k"):
            memory.hermite_free_relu(bad)
    with pytest.raises(ValueError, match="spacing"):
        memory.hermite_free_relu(4, float("nan"))


def test_multi_input_memory_recalls_every_pair_beyond_half_d():
    # S = 48 subjects in a 16-coordinate block (not orthogonal), R = 4: exact check over all 192 pairs
    from factlib.constructions import random_codes
    gen = torch.Generator().manual_seed(0)
    S, R, D, d = 48, 4, 4, 32
    Cs, Cr = torch.zeros(S, d, dtype=torch.float64), torch.zeros(R, d, dtype=torch.float64)
    Cs[:, :16], Cr[:, 16:] = random_codes(S, 16, gen), random_codes(R, 16, gen)
    U = torch.nn.functional.normalize(torch.randn(R * D, d, generator=gen, dtype=torch.float64), dim=1)
    table = torch.randint(0, D, (S, R), generator=gen) + torch.arange(R) * D
    X = memory.pair_inputs(Cs, Cr)
    W1, W2 = memory.multi_input_memory(X, U, table, 6000, seed=0)
    assert memory.multi_input_accuracy(X, U, table, W1, W2) == 1.0
    # R = D = 2: a wrong answer outside A_r must not tie with the right one (it would under double centring)
    table2 = torch.randint(0, 2, (S, 2), generator=gen) + torch.arange(2) * 2
    X2 = memory.pair_inputs(Cs, Cr[:2])
    W1, W2 = memory.multi_input_memory(X2, U[:4], table2, 3000, seed=0)
    assert memory.multi_input_accuracy(X2, U[:4], table2, W1, W2) == 1.0
    with pytest.raises(ValueError, match="table"):
        memory.multi_input_memory(X, U, table + R * D, 10, seed=0)
    with pytest.raises(ValueError, match="m"):
        memory.multi_input_memory(X, U, table, 0, seed=0)


def test_kernel_part_of_the_noise_falls_like_d_to_the_k_plus_one():
    # the m-independent (kernel) part of sigma^2: N c_2^4 2 / d^3 for relu-high, N a_4^4 96 / d^5 for relu-deg4
    def kernel(N, d, act):
        return memory.rf_noise_variance(N, d, 10**15, act=act)[0] - 1 / d
    assert [memory.kernel_overlap_variance(j) for j in (1, 2, 3, 4)] == [1, 2, 15, 96]
    assert 7 < kernel(1000, 32, "relu-high") / kernel(1000, 64, "relu-high") < 9
    assert 30 < kernel(1000, 32, "relu-deg4") / kernel(1000, 64, "relu-deg4") < 40  # 2^5, and degree 6 falls faster
    assert kernel(1000, 24, "relu-deg4") < kernel(1000, 24, "relu-high") / 100


def test_hermite_free_coefficients():
    for k in (4, 6):
        a = memory.hermite_free_coefficients(k)
        assert a[:k].abs().max() < 1e-6 and a[1::2].abs().max() < 1e-6  # no degree below k, no odd degree
        assert abs(a[k]) > 0.1 and 0.5 < float((a**2).sum()) <= 1.0  # E g_k^2 = 1, partly beyond degree 40
    # the kernel at rho = 1/2 from the coefficients against a Monte Carlo of E g(a) g(b), corr(a, b) = 1/2
    gen = torch.Generator().manual_seed(0)
    x, z = torch.randn(2, 1_000_000, generator=gen, dtype=torch.float64)
    mc = (memory.activation("relu-deg4", x) * memory.activation("relu-deg4", x / 2 + 0.75**0.5 * z)).mean()
    series = (memory.hermite_free_coefficients(4) ** 2 * 0.5 ** torch.arange(41)).sum()
    assert abs(float(mc - series)) < 3e-3
    with pytest.raises(ValueError, match="k"):
        memory.hermite_free_coefficients(5)


def test_degree_four_memory_stores_more_than_d_squared():
    # N = 2 d^2 associations at d = 16: the degree-4 features store them, the ReLU less degrees 0, 1 does not
    assert memory.rf_recall(512, 16, 3000, seed=0) >= 0.99
    assert memory.rf_recall(512, 16, 3000, seed=0, act="relu-high") < 0.5


def test_kernel_constant_is_the_lowest_degree_of_the_kernel():
    # the ReLU's linear part: c_1^4 / S^2 with c_1 = 1/2, S = 1/2 - 1/(2 pi) (chapter 2, eq. rf-relu)
    k, C = memory.kernel_constant("relu")
    assert k == 1 and C == pytest.approx(0.0625 / (0.5 - 1 / (2 * math.pi)) ** 2, rel=1e-6)
    assert [memory.kernel_constant(a)[0] for a in ("relu-high", "relu-deg4", "relu-deg6")] == [2, 4, 6]
    # the degree-4 features: v_4 a_4^4 with a_4 the top coefficient of the normalised g_4
    a4 = float(memory.hermite_free_coefficients(4)[4])
    assert memory.kernel_constant("relu-deg4")[1] == pytest.approx(96 * a4**4, rel=1e-6)
    with pytest.raises(ValueError, match="act"):
        memory.kernel_constant("tanh")


def test_rf_recall_of_a_many_to_one_map_loses_to_the_block_term():
    # N = 512 inputs at d = 32, m = 1200: with M = N (or M = d) the degree-4 memory recalls them all, with M = 2
    # outputs the 256 inputs of each output add their kernel fluctuations (Theorem 2's m min(d, M) condition)
    assert memory.rf_recall(512, 32, 1200, M=512, seed=0) == memory.rf_recall(512, 32, 1200, seed=0) == 1.0
    assert memory.rf_recall(512, 32, 1200, M=32, seed=0) == 1.0
    assert memory.rf_recall(512, 32, 1200, M=2, seed=0) < 0.95
    with pytest.raises(ValueError, match="M"):
        memory.rf_recall(512, 16, 100, M=1024)


def test_right_score_has_no_overlap_term():
    # tau^2 - sigma^2 is the features' fluctuation less the wrong output's own overlap 1/d
    sigma2, tau2 = memory.rf_noise_variance(1000, 32, 10**12, act="relu-deg4")
    assert tau2 == pytest.approx(sigma2 - 1 / 32, abs=1e-9)
