"""factlib.dynamics and factlib.stages (chapter 6): the models, the exact population, the theory, stage detection,
and the fig5-left / fig5-right entries of ``python -m factlib reproduce``."""
import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from scipy.special import expit

from factlib import dynamics as dyn
from factlib.__main__ import main
from factlib.figures import FIGURES
from factlib.stages import find_stages, name_level
from factlib.task import sample_batch, structured_fact_table

FAST = settings(max_examples=25, deadline=None)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dyn.DynamicsConfig(S=2, R=2, D=2, n_noise=2, T=5)  # 192 prompts: small enough to enumerate


def _all_prompts(cfg: dyn.DynamicsConfig):
    """Every prompt of the task with its probability: tokens (N, T), answers (N,), probabilities (N,)."""
    task = cfg.task()
    table = structured_fact_table(task)
    noise = range(task.noise_offset, task.eos)
    tokens, answers = [], []
    for s, r in itertools.product(range(task.S), range(task.R)):
        for i, j in itertools.permutations(range(task.T - 1), 2):
            for fill in itertools.product(noise, repeat=task.T - 3):
                z = list(fill)
                for pos in sorted((i, j)):
                    z.insert(pos, s if pos == i else task.relation_token(r))
                tokens.append(z + [task.eos])
                answers.append(int(table[s, r]))
    tokens, answers = torch.tensor(tokens), torch.tensor(answers)
    return tokens, answers, torch.full((len(answers),), 1.0 / len(answers), dtype=torch.float64)


def _random_model(cfg, seed, tie_noise=False, attention="linear", d=None):
    gen = torch.Generator().manual_seed(seed)
    task = cfg.task()
    E = None if d is None else torch.randn(task.vocab_size, d, generator=gen, dtype=torch.float64) / d**0.5
    dim = task.vocab_size if d is None else d
    A = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    V = torch.randn(dim, task.num_answers, generator=gen, dtype=torch.float64)
    if tie_noise:
        noise = slice(task.noise_offset, task.eos)
        A[task.eos, noise] = A[task.eos, task.noise_offset]
        V[noise] = V[task.noise_offset]
    return dyn.AttentionModel(E, A, V, task.eos, attention)


def _brute_force(model, tokens, answers, probs):
    """Expected loss over explicit prompts through the paper's position-by-position formula, with autograd."""
    A = model.A.clone().requires_grad_(True)
    V = model.V.clone().requires_grad_(True)
    E = torch.eye(model.vocab_size, dtype=torch.float64) if model.E is None else model.E
    X = E[tokens]  # (N, T, d)
    logits = dyn.attention_logits(X, A, V, model.attention)  # (N, M)
    loss = (probs * F.cross_entropy(logits, answers, reduction="none")).sum()
    gA, gV = torch.autograd.grad(loss, (A, V))
    return loss.item(), gA, gV


# --- models -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attention, d", [("linear", None), ("linear", 7), ("softmax", None), ("softmax", 7)])
def test_bag_of_tokens_equals_the_positional_formula(attention, d):
    cfg = dyn.DynamicsConfig(S=6, R=3, D=2, n_noise=5, T=9)
    task = cfg.task()
    model = _random_model(cfg, 0, attention=attention, d=d)
    tokens, _, _, _ = sample_batch(task, structured_fact_table(task), 50, seed=1)  # (50, T)
    E = torch.eye(task.vocab_size, dtype=torch.float64) if d is None else model.E
    literal = dyn.attention_logits(E[tokens], model.A, model.V, attention)  # (50, M)
    assert torch.allclose(model.logits(tokens), literal, atol=1e-10)


def test_token_counts_are_a_bag():
    cfg = dyn.DynamicsConfig()
    task = cfg.task()
    tokens, _, s, r = sample_batch(task, structured_fact_table(task), 64, seed=0)
    c = dyn.token_counts(tokens, task.vocab_size)  # (64, vocab)
    assert torch.all(c.sum(1) == task.T)
    assert torch.all(c[torch.arange(64), s] == 1) and torch.all(c[torch.arange(64), task.S + r] == 1)
    assert torch.all(c[:, task.noise_offset:task.eos].sum(1) == task.T - 3) and torch.all(c[:, task.eos] == 1)


def test_initialisation_is_the_papers():
    cfg = dyn.DynamicsConfig()
    m = dyn.init_model(cfg)
    assert m.E is None and m.A.shape == (41, 41) and m.V.shape == (41, 32)
    assert torch.all(m.A == 1e-5) and torch.all(m.V == 1e-5)
    soft = dyn.init_model(replace(cfg, model="softmax", d=16, seed=3))
    again = dyn.init_model(replace(cfg, model="softmax", d=16, seed=3))
    assert soft.E.shape == (41, 16) and torch.equal(soft.E, again.E)
    assert torch.allclose(soft.E.norm(dim=1), torch.ones(41, dtype=torch.float64))


# --- the exact population ---------------------------------------------------------------------------------

@pytest.mark.parametrize("attention, d", [("linear", None), ("linear", 5), ("softmax", 5)])
def test_enumerated_population_matches_every_prompt_with_autograd(attention, d):
    tokens, answers, probs = _all_prompts(TINY)
    assert len(answers) == 4 * 12 * 4
    model = _random_model(TINY, 1, attention=attention, d=d)
    loss, gA, gV = dyn.loss_and_grad(model, dyn.population(TINY, noise="enumerate"))
    ref_loss, ref_gA, ref_gV = _brute_force(model, tokens, answers, probs)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert torch.allclose(gA, ref_gA, atol=1e-12) and torch.allclose(gV, ref_gV, atol=1e-12)


def test_mean_design_is_exact_iff_noise_weights_are_tied():
    tokens, answers, probs = _all_prompts(TINY)
    mean = dyn.population(TINY, noise="mean")
    tied = _random_model(TINY, 2, tie_noise=True)
    loss, gA, gV = dyn.loss_and_grad(tied, mean)
    ref_loss, ref_gA, ref_gV = _brute_force(tied, tokens, answers, probs)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    # the gradient of each noise token is exact too: equal counts in expectation, tied weights
    assert torch.allclose(gA, ref_gA, atol=1e-12) and torch.allclose(gV, ref_gV, atol=1e-12)
    untied = _random_model(TINY, 2)
    assert abs(dyn.loss_and_grad(untied, mean)[0] - _brute_force(untied, tokens, answers, probs)[0]) > 1e-3


def test_population_loss_matches_a_monte_carlo_average_at_paper_size():
    cfg = dyn.DynamicsConfig(steps=200, lr=5.0, init_scale=0.3)  # a model away from the uniform start
    curve = dyn.train(cfg, "population")
    model = curve.model
    exact = dyn.evaluate(model, dyn.population(cfg, noise="mean"))
    task = cfg.task()
    tokens, answers, _, _ = sample_batch(task, structured_fact_table(task), 20000, seed=5)
    per_prompt = F.cross_entropy(model.logits(tokens), answers, reduction="none")  # (20000,)
    se = per_prompt.std().item() / math.sqrt(len(per_prompt))
    # 4 standard errors, with a floor for rounding: when every prompt's loss is the same, se is ~1e-18 while the
    # mean of 20000 terms and the population loss are summed in different orders (~1e-16 relative apart)
    assert abs(per_prompt.mean().item() - exact.total) < 4 * se + 1e-9 * max(1.0, abs(exact.total))
    # a stratified sample (every pair equally often) reproduces it exactly: the noise weights are tied
    assert dyn.evaluate(model, dyn.population(cfg, noise="sample", repeats=3, seed=1)).total == \
        pytest.approx(exact.total, rel=1e-10)


def test_population_designs_are_distributions():
    for noise in ("mean", "enumerate", "sample"):
        pop = dyn.population(TINY, noise=noise, repeats=3, seed=0)
        assert float(pop.weights.sum()) == pytest.approx(1.0)
        assert torch.allclose(pop.counts.sum(1), torch.full((len(pop.answers),), 5.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_rows"):
        dyn.population(dyn.DynamicsConfig(), noise="enumerate")
    with pytest.raises(ValueError, match="noise"):
        dyn.population(TINY, noise="exact")


@FAST
@given(seed=st.integers(0, 10**6), d=st.sampled_from([None, 4, 9]))
def test_linear_gradient_formula_matches_autograd(seed, d):
    cfg = dyn.DynamicsConfig(S=4, R=2, D=2, n_noise=3, T=7)
    model = _random_model(cfg, seed, d=d)
    pop = dyn.population(cfg, noise="sample", repeats=2, seed=seed)
    loss, gA, gV = dyn.loss_and_grad(model, pop)
    A, V = model.A.clone().requires_grad_(True), model.V.clone().requires_grad_(True)
    logp = torch.log_softmax(replace(model, A=A, V=V).logits_from_counts(pop.counts), -1)
    ref = -(pop.weights * logp[torch.arange(len(pop.answers)), pop.answers]).sum()
    ref_gA, ref_gV = torch.autograd.grad(ref, (A, V))
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(gA, ref_gA, atol=1e-12) and torch.allclose(gV, ref_gV, atol=1e-12)


# --- losses -----------------------------------------------------------------------------------------------

def test_partial_losses_at_the_uniform_start_and_their_order():
    R, D = 4, 8
    answers = torch.tensor([0, 9, 31])
    total, rel, sub = dyn.partial_log_probs(torch.zeros(3, R * D), answers, D)
    assert torch.allclose(-total, torch.full((3,), math.log(R * D)))
    assert torch.allclose(-rel, torch.full((3,), math.log(R))) and torch.allclose(-sub, torch.full((3,), math.log(D)))
    logits = torch.randn(3, R * D, generator=torch.Generator().manual_seed(0))
    total, rel, sub = dyn.partial_log_probs(logits, answers, D)
    assert torch.all(rel >= total) and torch.all(sub >= total) and torch.all(rel <= 0) and torch.all(sub <= 0)
    p = torch.softmax(logits, -1).reshape(3, R, D)
    assert torch.allclose(rel.exp(), p[torch.arange(3), answers // D].sum(-1))
    assert torch.allclose(sub.exp(), p[torch.arange(3), :, answers % D].sum(-1))


def test_tie_aware_accuracy_shares_ties():
    logits = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 2.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    acc = dyn.tie_aware_accuracy(logits, torch.tensor([0, 1, 1]))
    assert torch.allclose(acc, torch.tensor([1 / 3, 1.0, 0.0]))


# --- training ---------------------------------------------------------------------------------------------

SMALL = dyn.DynamicsConfig(S=8, R=2, D=4, n_noise=4, T=8, init_scale=1e-3, lr=0.2, steps=1500, batch_size=512,
                           eval_every=50, eval_repeats=8)


@pytest.fixture(scope="module")
def small_runs():
    return dyn.train(SMALL, "population"), dyn.train(SMALL, "minibatch")


def test_population_training_decouples_and_follows_the_reduced_flow(small_runs):
    exact, _ = small_runs
    # symmetric model: total = relation-only + subject-only, exactly
    assert np.allclose(exact.total_loss, exact.relation_loss + exact.subject_loss, atol=1e-9)
    pred = dyn.predicted_curve(SMALL, exact.steps)
    # gradient descent lags gradient flow by a relative O(lr c) in time, so compare with a tolerance
    assert np.max(np.abs(pred["total_loss"] - exact.total_loss)) < 0.05
    predicted = dyn.predicted_escape_steps(SMALL)
    for name in ("relation", "subject"):
        escapes = find_stages(exact.steps, getattr(exact, f"{name}_loss")).escapes
        assert escapes[0] == pytest.approx(predicted[name], rel=0.03)
    assert exact.total_loss[0] == pytest.approx(math.log(SMALL.R * SMALL.D))


def test_minibatch_training_agrees_with_the_exact_gradient_and_is_seeded(small_runs):
    exact, mini = small_runs
    assert np.max(np.abs(exact.total_loss - mini.total_loss)) < 0.05
    again = dyn.train(replace(SMALL, steps=100), "minibatch")
    assert np.array_equal(again.total_loss, mini.total_loss[: len(again.total_loss)])
    assert mini.steps[-1] == SMALL.steps and mini.rows()[0].keys() >= {
        "step", "total_loss", "relation_loss", "subject_loss", "accuracy"}


def test_snapshots_are_copies():
    curve = dyn.train(replace(SMALL, steps=20), "population", keep=(0, 10))
    assert set(curve.snapshots) == {0, 10}
    assert torch.all(curve.snapshots[0].A == SMALL.init_scale) and not torch.equal(curve.snapshots[10].V,
                                                                                    curve.model.V)


# --- theory -----------------------------------------------------------------------------------------------

def test_growth_rates_and_the_order_condition():
    rates = dyn.growth_rates(16, 4, 8)
    assert rates["relation"] == pytest.approx(math.sqrt(3 / 32) / 4)
    assert rates["subject"] == pytest.approx(math.sqrt(7 / 32) / 16)
    assert dyn.relation_first(16, 4, 8) and not dyn.relation_first(8, 16, 8)
    levels = dyn.plateau_levels(8, 16, 8)
    assert levels["first"] == "subject" and levels["intermediate"] == pytest.approx(math.log(16))


@FAST
@given(S=st.integers(2, 40), R=st.integers(2, 12), D=st.integers(2, 12))
def test_order_condition_is_the_rate_comparison(S, R, D):
    rates = dyn.growth_rates(S, R, D)
    if not math.isclose(rates["relation"], rates["subject"], rel_tol=1e-12):
        assert dyn.relation_first(S, R, D) == (rates["relation"] > rates["subject"])


@FAST
@given(eps=st.floats(1e-8, 1e-2), k=st.sampled_from([(16, 4, 8), (8, 2, 4), (12, 3, 3)]))
def test_escape_time_is_leading_order_plus_a_constant(eps, k):
    S, R, D = k
    for name, dr in dyn.directions(S, R, D).items():
        t = dyn.escape_time(S, R, D, eps, name)
        lead = dyn.leading_escape_time(S, R, D, eps, name)
        # t* = ln(1/eps)/c + (ln(4 x*/kappa)/2 + J/k)/c, with 0 < J < x* e^{x*}
        correction = (t - lead) * dr.rate - 0.5 * math.log(4 * dr.half_gap() / dr.kappa)
        assert 0 < correction < dr.half_gap() * math.exp(dr.half_gap()) / dr.k
        assert dyn.escape_time(S, R, D, eps / 10, name) > t


def test_escape_time_puts_the_flow_at_half_the_plateau():
    t = dyn.escape_time(16, 4, 8, 1e-5, "subject")
    flow = dyn.reduced_flow(16, 4, 8, 1e-5, [t])
    assert flow["subject_loss"][0] == pytest.approx(math.log(8) / 2, rel=1e-6)


def test_predicted_escape_steps_of_the_paper_protocol():
    cfg = dyn.DynamicsConfig()
    steps = dyn.predicted_escape_steps(cfg)
    assert steps["relation"] == pytest.approx(1683.6, abs=0.1) and steps["subject"] == pytest.approx(4375.3, abs=0.1)
    cosine = dyn.predicted_escape_steps(replace(cfg, schedule="cosine"))
    assert cosine["subject"] is None and cosine["relation"] > steps["relation"]


@FAST
@given(lr=st.floats(1e-3, 10), steps=st.integers(1, 3000))
def test_cosine_schedule_covers_lr_times_steps_plus_one_over_two(lr, steps):
    cfg = dyn.DynamicsConfig(lr=lr, steps=steps, schedule="cosine")
    assert dyn.elapsed_time(cfg)[-1] == pytest.approx(lr * (steps + 1) / 2, rel=1e-9)
    assert dyn.time_to_step(cfg, lr * (steps + 1) / 2 * 1.01) is None


def test_reduced_flow_needs_D_to_divide_S():
    with pytest.raises(ValueError, match="divide"):
        dyn.reduced_flow(10, 2, 4, 1e-3, [0.0, 1.0])
    with pytest.raises(ValueError, match="times"):
        dyn.reduced_flow(8, 2, 4, 1e-3, [2.0, 1.0])


# --- stage detection --------------------------------------------------------------------------------------

def _staircase(levels, centres, width, steps):
    loss = np.full_like(steps, levels[-1], dtype=float)
    for hi, lo, c in zip(levels[:-1], levels[1:], centres):
        loss += (hi - lo) * expit((c - steps) / width)
    return loss


@FAST
@given(drops=st.lists(st.floats(0.3, 1.5), min_size=1, max_size=3), final=st.floats(0.3, 1.0),
       width=st.floats(5, 40))
def test_find_stages_recovers_a_staircase(drops, final, width):
    steps = np.arange(0, 8001, 16.0)
    centres = [2000.0 * (i + 1) for i in range(len(drops))]
    levels = [final + sum(drops[i:]) for i in range(len(drops))] + [final]
    stages = find_stages(steps, _staircase(levels, centres, width, steps))
    assert len(stages.plateaus) == len(levels)
    for p, level in zip(stages.plateaus, levels):
        assert p.level == pytest.approx(level, abs=0.02)
    for e, c in zip(stages.escapes, centres):
        assert e == pytest.approx(c, abs=2 * width + 16)
    assert stages.escapes[-1] is None and len(stages.intermediate()) == len(drops)


def test_find_stages_on_the_exact_gradient_curve():
    cfg = dyn.DynamicsConfig()
    steps = np.arange(0, cfg.steps + 1, 64)
    stages = find_stages(steps, dyn.predicted_curve(cfg, steps)["total_loss"])
    assert [round(p.level, 2) for p in stages.plateaus] == [3.47, 2.09]
    assert stages.escapes[0] == pytest.approx(1683.8, abs=5) and stages.escapes[1] == pytest.approx(4374, abs=5)
    assert "hallucination" in name_level(stages.plateaus[1].level, 4, 8)


def test_find_stages_edge_cases_and_validation():
    flat = find_stages([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0])
    assert len(flat.plateaus) == 1 and flat.escapes == (None,)
    steadily = find_stages(np.arange(100), np.exp(-np.arange(100) / 30))
    # no staircase: nothing is escaped, and a flat stretch, if any, is the slow tail at the final level
    assert all(e is None for e in steadily.escapes)
    assert all(abs(p.level - steadily.final_loss) < 0.1 for p in steadily.plateaus)
    for steps, loss, match in [([0, 1], [1, 1], "length"), ([0, 2, 1], [1, 1, 1], "increasing"),
                               ([0, 1, 2], [1, np.nan, 1], "finite"), ([0, 1, 2], [1, 1], "length")]:
        with pytest.raises(ValueError, match=match):
            find_stages(steps, loss)
    with pytest.raises(ValueError, match="flat_tol"):
        find_stages([0, 1, 2], [1, 1, 1], flat_tol=0)
    assert name_level(math.log(32), 4, 8) == "log(RD), uniform" and name_level(0.5, 4, 8) == "other"
    assert name_level(math.log(4), 4, 8) == "log R, subject first"


# --- validation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    (dict(S=0), "S"), (dict(D=0), "D"), (dict(T=2), "T"), (dict(model="gru"), "model"), (dict(d=0), "d"),
    (dict(init_scale=0.0), "init_scale"), (dict(lr=-1), "lr"), (dict(schedule="linear"), "schedule"),
    (dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"), (dict(eval_every=0), "eval_every"),
    (dict(eval_repeats=0), "eval_repeats"), (dict(seed=-1), "seed"),
])
def test_config_validation_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        dyn.DynamicsConfig(**kwargs)


def test_function_arguments_are_validated():
    with pytest.raises(ValueError, match="method"):
        dyn.train(TINY, "adam")
    with pytest.raises(ValueError, match="direction"):
        dyn.escape_time(16, 4, 8, 1e-5, "noise")
    with pytest.raises(ValueError, match="R"):
        dyn.growth_rates(16, 1, 8)
    with pytest.raises(ValueError, match="steps"):
        dyn.predicted_curve(dyn.DynamicsConfig(steps=10), [0, 11])
    with pytest.raises(ValueError, match="attention"):
        dyn.attention_logits(torch.zeros(1, 3, 2), torch.zeros(2, 2), torch.zeros(2, 2), "relu")


# --- the reproduce entries --------------------------------------------------------------------------------

def test_fig5_jobs_of_the_full_profiles():
    left = FIGURES["fig5-left"]
    jobs = left.jobs(left.configs["full"])
    assert len(jobs) == 12 and {j["method"] for j in jobs} == {"population", "minibatch"}
    right = FIGURES["fig5-right"]
    assert [j["d"] for j in right.jobs(right.configs["full"])] == [512, 512, 512]
    assert all(j["method"] == "minibatch" for j in right.jobs(right.configs["quick"]))


@pytest.mark.parametrize("figure, protocol", [
    ("fig5-left", {"model": "linear", "S": 4, "R": 2, "D": 2, "n_noise": 3, "T": 6, "steps": 40, "eval_every": 20}),
    ("fig5-right", {"model": "softmax", "d": 8, "S": 4, "R": 2, "D": 2, "n_noise": 3, "T": 6, "steps": 40,
                    "batch_size": 32, "eval_every": 20, "eval_repeats": 2}),
])
def test_reproduce_writes_curve_rows(figure, protocol, tmp_path, monkeypatch, capsys):
    quick = {**FIGURES[figure].configs["quick"], "protocol": protocol}
    monkeypatch.setitem(FIGURES[figure].configs, "quick", quick)
    out = tmp_path / "fig5.json"
    assert main(["reproduce", figure, "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    methods = {"fig5-left": {"population", "minibatch"}, "fig5-right": {"minibatch"}}[figure]
    assert {r["method"] for r in rows} == methods and len(rows) == 3 * len(methods)
    for r in rows:
        assert r.keys() >= {"step", "total_loss", "relation_loss", "subject_loss", "accuracy"}
    assert rows[0]["total_loss"] == pytest.approx(math.log(4))


def test_reproduce_rejects_d_for_fig5_left(capsys):
    assert main(["reproduce", "fig5-left", "--d", "16", "--no-progress"]) == 2
    assert "d is not used by figure fig5-left" in capsys.readouterr().err
