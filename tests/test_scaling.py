"""factlib.scaling: the batched trainer is the per-model transformer, batch composition does not change a run,
the vectorised sampler draws the task's distribution, capacity searches are plausible and deterministic."""
from dataclasses import replace

import pytest
import torch

from factlib import batched, figures
from factlib.batched import RunGroup, init_weights, unflatten
from factlib.models import OneLayerTransformer
from factlib.scaling_figures import SCALING_FIGURES
from factlib.searches import SearchSpec, capacity_sweep, fit_scaling, head_sizes, variant_task
from factlib.streams import below, draws, hash32_, mix64, subkeys
from factlib.task import TaskConfig, fact_table, prompt_probability, sample_batch
from factlib.train import ADAM_BETAS, ADAM_EPS, adam_update_
from factlib.trainer import Protocol, Run, replay_stopping, train_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = Protocol(steps=384, batch_size=128, eval_every=64, eval_size=256, patience=192)


def mixed_runs(m=6):
    """Runs of one shape whose tasks differ in S, R, D, noise and answer layout (padding is exercised)."""
    tasks = [TaskConfig(S=5, R=3, D=4), TaskConfig(S=8, R=8, D=8, distinct_answers=True),
             TaskConfig(S=3, R=6, D=2, n_noise=11)]
    return [Run(task, d=12, H=3, d_h=4, m=m, lr=1e-2, seed=seed) for seed, task in enumerate(tasks)]


@pytest.mark.parametrize("m,eos_residual,init", [(0, False, "release"), (6, False, "release"), (6, True, "ours")])
def test_batched_forward_is_the_per_model_forward(m, eos_residual, init):
    runs = mixed_runs(m)
    group = RunGroup(runs, init=init, eos_residual=eos_residual)
    tokens, answers = group.tasks.sample_tokens(step=5, batch_size=50)  # (n, B, T), (n, B)
    logits = group.forward_tokens(tokens)  # (n, B, A)
    for i, run in enumerate(runs):
        # the same frozen embeddings, by construction (rows in the group's vocabulary layout)
        model = OneLayerTransformer(replace(run.model_config(), eos_residual=eos_residual))
        assert torch.equal(model.E, group.tasks.E[i, group.tasks.layout(run.task)])
        assert torch.equal(model.U, group.tasks.U[i, :run.task.num_answers])
        with torch.no_grad():
            for name, value in init_weights(run, init=init).items():
                getattr(model, name).copy_(value.float())
            want = model(tokens[i])  # (B, R D)
        A = run.task.num_answers
        torch.testing.assert_close(logits[i, :, :A], want, rtol=1e-4, atol=1e-5)
        assert torch.isinf(logits[i, :, A:]).all(), "padded answers must be masked with -inf"
        assert torch.equal(group.model(i).W_Q, model.W_Q)


@pytest.mark.xfail(strict=True, reason="known fault: the batched forward shifts each head's scores by their best over "
                   "the whole vocabulary and clips them 80 below it, so a prompt whose tokens all score more than 80 "
                   "below that best gets uniform attention instead of the model's softmax")
def test_batched_forward_is_the_per_model_forward_when_scores_spread_widely():
    """Sharp attention (scores spread over hundreds of units, as training reached at d = 45 in the paper-protocol
    subset) must not change the function the batched trainer computes."""
    run = Run(TaskConfig(S=8, R=8, D=4), d=16, H=2, d_h=4, m=8, lr=1e-2, seed=0)
    group = RunGroup([run])
    with torch.no_grad():
        group.weights["W_Q"].mul_(300.0)  # scores grow with |W_Q|: their spread over the vocabulary with it
    tokens, _ = group.tasks.sample_tokens(step=1, batch_size=200)
    model = group.model(0)
    with torch.no_grad():
        torch.testing.assert_close(group.forward_tokens(tokens)[0], model(tokens[0]), rtol=1e-4, atol=1e-4)


def test_answers_follow_each_runs_fact_table():
    runs = mixed_runs()
    group = RunGroup(runs)
    (s, r, noise), answers = group.tasks.sample(step=1, batch_size=200)
    for i, run in enumerate(runs):
        table = fact_table(run.task, 2**31 + run.seed)
        assert torch.equal(answers[i], table[s[i], r[i]])
        assert int(s[i].max()) < run.task.S and int(r[i].max()) < run.task.R
        assert bool((noise[i].sum(1) == run.task.T - 3).all()), "T - 3 noise tokens per prompt"
        assert float(noise[i, :, run.task.n_noise:].sum()) == 0, "no noise token past the run's own"


def test_runs_that_share_a_stream_draw_it_once_and_alone_draw_the_same():
    """The learning rates of one search share their data: drawn once for all of them, the batch is what each run
    draws in a group of its own, bit for bit."""
    a, b = mixed_runs()[:2]
    runs = [a, replace(a, lr=3e-3), b, replace(a, lr=1e-3)]
    group = RunGroup(runs)
    assert group.tasks._distinct(slice(None))[1].tolist() == [0, 0, 1, 0]
    (s, r, noise), answers = group.tasks.sample(step=7, batch_size=96)
    for i, run in enumerate(runs):
        (s1, r1, noise1), answers1 = RunGroup([run]).tasks.sample(step=7, batch_size=96)
        assert torch.equal(s[i], s1[0]) and torch.equal(r[i], r1[0]) and torch.equal(answers[i], answers1[0])
        assert torch.equal(noise[i, :, :noise1.shape[2]], noise1[0])


def test_prompts_are_well_formed_and_their_parts_are_the_training_batch():
    runs = mixed_runs()
    group = RunGroup(runs)
    tokens, answers = group.tasks.sample_tokens(step=3, batch_size=300)
    prompts, answers_parts = group.tasks.sample(step=3, batch_size=300)
    assert torch.equal(answers, answers_parts)
    for ours, theirs in zip(group.tasks.prompts(tokens), prompts):
        assert torch.equal(ours, theirs)
    for i, run in enumerate(runs):
        assert bool((prompt_probability(run.task, tokens[i]) > 0).all()), "every prompt must be a task prompt"


def test_sampler_matches_the_task_distribution():
    """Marginals of 2^15 prompts: subject, relation, subject position, noise tokens (the task's own sampler
    draws the same quantities; both are compared with the exact uniform frequencies)."""
    task = TaskConfig(S=7, R=5, D=3, T=12, n_noise=9)
    group = RunGroup([Run(task, d=8, H=2, d_h=2, m=4, lr=1e-2, seed=3)])
    B = 2**15
    tokens, _ = group.tasks.sample_tokens(step=11, batch_size=B)
    tokens = tokens[0]  # (B, T)
    ref, *_ = sample_batch(task, fact_table(task, 0), B, seed=0)  # (B, T)

    def marginals(z):
        body = z[:, :-1]
        subj = torch.bincount(body[body < task.S], minlength=task.S).double() / len(z)
        rel = torch.bincount(body[(body >= task.S) & (body < task.noise_offset)] - task.S, minlength=task.R).double() / len(z)
        pos = torch.bincount((body < task.S).double().argmax(1), minlength=task.T - 1).double() / len(z)
        noisy = body[body >= task.noise_offset] - task.noise_offset
        noise = torch.bincount(noisy, minlength=task.n_noise).double() / len(noisy)
        return subj, rel, pos, noise

    exact = [torch.full((k,), 1.0 / k, dtype=torch.float64) for k in (task.S, task.R, task.T - 1, task.n_noise)]
    for ours, theirs, p in zip(marginals(tokens), marginals(ref), exact):
        tol = 4 * (p[0] / B) ** 0.5
        assert (ours - p).abs().max() < tol
        assert (ours - theirs).abs().max() < 2 * tol
    assert bool((tokens[:, -1] == task.eos).all())


def test_random_integers_are_in_range_uniform_and_the_hashes_bijective():
    keys = torch.tensor([1, 2**40 + 7], dtype=torch.long)
    n = torch.tensor([3, 1000], dtype=torch.long)
    x = below(draws(subkeys(keys, stream=0, step=5), torch.arange(30000, dtype=torch.int32)), n[:, None])  # (2, 30000)
    assert int(x[0].min()) == 0 and int(x[0].max()) == 2 and 0 <= int(x[1].min()) and int(x[1].max()) == 999
    freq = torch.bincount(x[0], minlength=3).double() / 30000
    assert (freq - 1 / 3).abs().max() < 4 * (1 / 3 / 30000) ** 0.5
    assert not torch.equal(x[0], below(draws(subkeys(keys, 0, 6), torch.arange(30000, dtype=torch.int32)), 3)[0])
    z = torch.arange(-5000, 5000, dtype=torch.long)
    assert len(torch.unique(mix64(z))) == len(z)
    z32 = torch.arange(-2**17, 2**17, dtype=torch.int32)
    assert len(torch.unique(hash32_(z32.clone()))) == len(z32)


def test_a_batch_of_runs_trains_like_the_runs_one_by_one():
    runs = [Run(variant_task("S=R", n), d=8, H=2, d_h=2, m=8, lr=lr, seed=seed)
            for n, lr, seed in [(2, 1e-2, 0), (5, 3e-3, 1), (3, 1e-2, 2)]]
    together, models = train_runs(runs, TINY, keep_models=True)
    for run, outcome, model in zip(runs, together, models):
        (alone,), (single,) = train_runs([run], TINY, keep_models=True)
        assert (alone.reached, alone.steps) == (outcome.reached, outcome.steps)
        assert abs(alone.accuracy - outcome.accuracy) <= 2 / TINY.eval_size
        torch.testing.assert_close(single.W_O, model.W_O, rtol=1e-3, atol=1e-4)
    assert len({o.steps for o in together}) > 1, "runs that stop at different steps"


def test_capacity_search_is_plausible_and_deterministic():
    specs = [SearchSpec(d=8, H=2, d_h=4, m=8, seed=0), SearchSpec(d=8, H=1, d_h=1, m=1, seed=0)]
    # unit-norm embeddings: with N(0, 1/d) ones at d = 8, seed 0's big model sits at 50 % on two subjects for
    # most of this tiny budget, and the search's plausibility is what this test checks
    protocol = replace(TINY, steps=512, patience=256, foresight=0.0, embeddings="unit")
    first = capacity_sweep(specs, lrs=[1e-2], protocol=protocol, points=2, rtol=0.2)
    assert first == capacity_sweep(specs, lrs=[1e-2], protocol=protocol, points=2, rtol=0.2)
    big, small = first
    assert big["params"] == 4 * 2 * 4 * 8 + 2 * 8 * 8 and big["facts"] == big["S"] * big["R"]
    assert 2 <= big["n"] <= 16 and big["facts"] >= small["facts"]
    assert big["lr"] == 1e-2 and big["steps"] <= protocol.steps


def test_fit_scaling_recovers_a_power_law():
    params = [100, 1000, 10000]
    fit = fit_scaling(params, [0.2 * p for p in params])
    assert abs(fit["slope"] - 1) < 1e-9 and abs(fit["facts_per_param"] - 0.2) < 1e-9
    # two splits with different constants: across them the slope is off, within them it is exact
    params, facts, groups = [100, 1000, 300, 3000], [50, 200, 15, 60], ["a", "a", "b", "b"]
    assert abs(fit_scaling(params, facts)["slope"] - 0.6) > 0.05
    assert abs(fit_scaling(params, facts, groups)["slope"] - 0.60206) < 1e-4
    with pytest.raises(ValueError, match="two points"):
        fit_scaling([100, 200], [10, 20], groups=["a", "b"])


def test_head_sizes_round_down_or_half_up_and_skip_zero():
    assert head_sizes(8, 1, 1) == (1, 8) == head_sizes(8, 1, 1, rounding="half_up")
    assert head_sizes(11, 2, 2) == (2, 22) and head_sizes(11, 2, 2, rounding="half_up") == (3, 22)
    assert head_sizes(22, 0.5, 0.5) == (1, 11) and head_sizes(11, 1, 0.5, rounding="half_up") == (1, 6)
    assert head_sizes(8, 0.5, 0.5) is None and head_sizes(8, 0.5, 0.5, rounding="half_up") == (1, 4)
    assert head_sizes(8, 0.25, 1) is None and head_sizes(2, 1, 0.25) is None
    with pytest.raises(ValueError, match="rounding"):
        head_sizes(8, 1, 1, rounding="nearest")


@pytest.mark.parametrize("call, name", [
    (lambda: Run(TaskConfig(S=2, R=2, D=2), d=0, H=1, d_h=1, m=0, lr=1e-2), "d"),
    (lambda: Run(TaskConfig(S=2, R=2, D=2), d=4, H=1, d_h=1, m=-1, lr=1e-2), "m"),
    (lambda: Run(TaskConfig(S=2, R=2, D=2), d=4, H=1, d_h=1, m=0, lr=0.0), "lr"),
    (lambda: Run(TaskConfig(S=2, R=2, D=2, subjects="zipf"), d=4, H=1, d_h=1, m=0, lr=1e-2), "subjects"),
    (lambda: Protocol(steps=0), "steps"),
    (lambda: Protocol(threshold=1.5), "threshold"),
    (lambda: variant_task("S=R^3", 4), "variant"),
    (lambda: variant_task("S=R", 0), "n"),
    (lambda: capacity_sweep([SearchSpec(8, 2, 2, 2, 0)], lrs=[]), "lrs"),
    (lambda: train_runs(mixed_runs(), max_runs=0), "max_runs"),
    (lambda: RunGroup([]), "runs"),
    (lambda: RunGroup([mixed_runs()[0], replace(mixed_runs()[0], d=16)]), "runs of a group"),
])
def test_arguments_are_validated(call, name):
    with pytest.raises(ValueError, match=name):
        call()


TINY_JOB = {"protocol": {**Protocol(steps=128, batch_size=64, eval_every=64, eval_size=128, patience=64).__dict__},
            "seeds": [0]}


@pytest.mark.parametrize("variant, S, R, D, distinct", [
    ("S=R", 5, 5, 8, False), ("S=R^2", 10, 3, 8, False), ("S=R,D=S", 5, 5, 5, True), ("S=R^2,D=S", 10, 3, 10, True),
    ("S=R,D=S,iid", 5, 5, 5, False), ("S=R^2,D=S,iid", 10, 3, 10, False),
])
def test_variant_tasks(variant, S, R, D, distinct):
    task = variant_task(variant, 5 if variant.startswith("S=R,") or variant == "S=R" else 10)
    assert (task.S, task.R, task.D, task.distinct_answers) == (S, R, D, distinct)


@pytest.mark.parametrize("name", ["fig4-left", "fig7", "fig8", "fig9", "fig8-iid", "fig9-iid", "fig4-right"])
def test_reproduce_runs_each_figure_on_a_tiny_override(name, monkeypatch):
    fig = SCALING_FIGURES[name]
    tiny = {**fig.configs["quick"], **TINY_JOB}
    if "alpha_beta" in tiny:
        tiny.update(alpha_beta=[[4, 4], [0.25, 0.25]], lrs=[1e-2])  # (0.25, 0.25) rounds to d_h = 0: skipped
    else:
        tiny.update(H=[1, 2], m=[0, 4])
    monkeypatch.setitem(figures.FIGURES, name, replace(fig, configs={**fig.configs, "quick": tiny}))
    result = figures.reproduce(name, "quick", device="cpu", progress=False, d=[4])
    rows = result["rows"]
    assert result["provenance"]["config"]["d"] == [4]
    if "alpha_beta" in tiny:
        assert len(rows) == 1 and rows[0]["d"] == 4 and rows[0]["d_h"] == 2 and rows[0]["facts"] >= 1
        assert {"alpha", "beta", "S", "R", "D", "facts", "params", "lr", "steps", "bits"} <= set(rows[0])
    else:
        assert sorted((r["H"], r["m"]) for r in rows) == [(1, 0), (1, 4), (2, 0), (2, 4)]
        assert all(0 <= r["accuracy"] <= 1 for r in rows)


@pytest.mark.parametrize("m,eos_residual", [(0, False), (6, False), (6, True)])
def test_hand_written_gradient_is_autograds(m, eos_residual):
    group = RunGroup(mixed_runs(m), eos_residual=eos_residual)
    group.flat += 0.3 * torch.randn(group.flat.shape, generator=torch.Generator().manual_seed(0))  # b1 != 0
    prompts, answers = group.tasks.sample(step=3, batch_size=64)
    loss, grad = group.gradient(prompts, answers, with_loss=True)
    flat = group.flat.clone().requires_grad_(True)
    logits = group.forward(prompts, unflatten(flat, group.shapes))
    want = -logits.log_softmax(2).gather(2, answers[..., None]).mean(dim=(1, 2))  # (n,)
    (want_grad,) = torch.autograd.grad(want.sum(), flat)
    torch.testing.assert_close(loss, want.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-6)


def test_batched_adam_steps_are_the_per_model_optimiser():
    """Twenty steps of the batched trainer (flat weights, hand-written gradient, one Adam update for all runs)
    against torch.optim.Adam on each run's OneLayerTransformer, on the same prompts."""
    runs = mixed_runs(6)
    group = RunGroup(runs)
    models = [group.model(i) for i in range(len(runs))]
    optims = [torch.optim.Adam(mo.parameters(), lr=run.lr, betas=ADAM_BETAS, eps=ADAM_EPS) for mo, run in zip(models, runs)]
    moments = (torch.zeros_like(group.flat), torch.zeros_like(group.flat))
    for step in range(1, 21):
        tokens, answers = group.tasks.sample_tokens(step, batch_size=64)  # (n, B, T), (n, B)
        grad = group.gradient(group.tasks.prompts(tokens), answers)
        adam_update_(group.flat, grad, moments, group.lr[:, None], step)
        for i, (model, opt) in enumerate(zip(models, optims)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(tokens[i]), answers[i]).backward()
            opt.step()
    for i, model in enumerate(models):
        for name, value in group.weights.items():
            torch.testing.assert_close(value[i], getattr(model, name).detach(), rtol=1e-3, atol=1e-4)


def test_chunking_does_not_change_a_run(monkeypatch):
    runs = [Run(variant_task("S=R", n), d=8, H=2, d_h=2, m=8, lr=1e-2, seed=seed) for n, seed in [(2, 0), (4, 1), (3, 2)]]
    protocol = replace(TINY, steps=128)
    whole, _ = train_runs(runs, protocol)
    monkeypatch.setattr(batched, "CPU_CHUNK_ELEMENTS", 1)  # one run per chunk
    assert len(RunGroup(runs).chunks(protocol.batch_size)) == 3
    one_by_one, _ = train_runs(runs, protocol)
    for a, b in zip(whole, one_by_one):
        assert (a.reached, a.steps) == (b.reached, b.steps)
        assert abs(a.accuracy - b.accuracy) <= 2 / protocol.eval_size


def test_transformer_bench_reports_the_issue_keys(monkeypatch):
    from factlib import bench

    monkeypatch.setattr(bench, "TRANSFORMER", {**bench.TRANSFORMER, "runs": (1, 2), "threads": (1,), "batch_size": 64,
                                                "shapes": bench.TRANSFORMER["shapes"][:1]})
    entries = bench.transformer_bench(torch.device("cpu"), min_time=0.05)
    assert [(e["runs"], e["threads"]) for e in entries] == [(1, 1), (2, 1)]
    for e in entries:
        assert {"runs", "threads", "d", "run_steps_per_s", "gflops", "ratio_to_limit", "square_matmul_gflops"} <= set(e)
        assert e["run_steps_per_s"] > 0 and 0 < e["ratio_to_limit"] < 10


def test_replayed_stopping_rules_are_the_trainers():
    protocol = Protocol(steps=768, batch_size=128, eval_every=64, eval_size=256, patience=192, foresight=2.0)
    runs = [Run(variant_task("S=R", n), 8, 2, 2, 8, lr, seed=0) for n in (3, 6) for lr in (3e-3, 1e-2)]
    for outcome in train_runs(runs, protocol)[0]:
        assert replay_stopping(outcome.curve, protocol) == (outcome.reached, outcome.steps)


def test_a_successful_run_is_checked_on_every_pair():
    run = Run(variant_task("S=R", 2), d=8, H=2, d_h=2, m=8, lr=1e-2, seed=0)
    (outcome,), (model,) = train_runs([run], replace(TINY, population_repeats=4), keep_models=True)
    assert outcome.reached and outcome.facts_exact is not None and 0 <= outcome.facts_exact <= 1
    from factlib.task import evaluate_population
    from factlib.trainer import run_table
    want = evaluate_population(model, run.task, run_table(run), repeats=4, seed=2**30)
    assert outcome.facts_exact == pytest.approx(float((want.pair_accuracy == 1).double().mean()))
    (off,), _ = train_runs([run], replace(TINY, population_repeats=0))
    assert off.facts_exact is None and off.steps == outcome.steps


def test_bootstrap_fit_brackets_the_slope_and_fits_the_log_response():
    from factlib.searches import bootstrap_fit

    params = [100, 300, 1000, 3000, 120, 360, 1200, 3600]
    facts = [int(0.1 * p * (1 + 0.1 * (i % 3))) for i, p in enumerate(params)]
    units = ["a"] * 4 + ["b"] * 4
    fit = bootstrap_fit(params, facts, units, n_boot=200)
    assert fit["low"] <= fit["slope"] <= fit["high"] and fit["units"] == 2 and fit["points"] == 8
    # y = S R ln(S R) grows faster than S R: its slope against the same params is larger
    assert fit_scaling(params, facts, response="facts_log")["slope"] > fit_scaling(params, facts)["slope"]
    with pytest.raises(ValueError, match="response"):
        fit_scaling(params, facts, response="bits")


def test_bootstrap_interval_resamples_whole_units():
    import numpy as np

    from factlib.searches import bootstrap_interval

    values = np.array([1.0, 1.0, 5.0, 5.0, 9.0, 9.0])
    units = ["a", "a", "b", "b", "c", "c"]
    picks = []
    low, high = bootstrap_interval(lambda pick: picks.append(pick) or float(np.median(values[pick])), units,
                                   n_boot=400)
    assert all(len(pick) == 6 and all(pick[i] // 2 == pick[i + 1] // 2 for i in range(0, 6, 2)) for pick in picks)
    assert 1.0 <= low < 5.0 < high <= 9.0  # resamples of three units: medians from 1 to 9
    assert bootstrap_interval(lambda pick: 2.0, units, n_boot=50) == (2.0, 2.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_interval(lambda pick: 0.0, units, n_boot=5)
    with pytest.raises(ValueError, match="units"):
        bootstrap_interval(lambda pick: 0.0, [], n_boot=50)


def test_scaling_jobs_are_one_per_size_and_split():
    config = {**SCALING_FIGURES["fig4-ablation"].configs["quick"]}
    jobs = SCALING_FIGURES["fig4-ablation"].jobs(config)
    assert len(jobs) == len(config["models"]) * len(config["d"]) * len(config["alpha_beta"])
    assert all(len(job["alpha_beta"]) == 1 for job in jobs)
    assert {(j["protocol"]["init"], j["protocol"]["eos_residual"]) for j in jobs} == {
        (m["init"], m["eos_residual"]) for m in config["models"]}


def test_runs_of_mixed_shapes_train_as_in_their_own_groups():
    """Padding to the largest d, H, d_h, m is exact: a mixed group trains each run as its own-shape group does."""
    runs = [Run(variant_task("S=R", 3), d=8, H=2, d_h=2, m=8, lr=1e-2, seed=0),
            Run(variant_task("S=R", 4), d=12, H=3, d_h=4, m=0, lr=1e-2, seed=1),
            Run(variant_task("S=R", 2), d=6, H=1, d_h=3, m=5, lr=3e-3, seed=2)]
    protocol = replace(TINY, steps=128, eos_residual=True)
    mixed, mixed_models = train_runs(runs, protocol, keep_models=True, mixed_shapes=True)
    alone, alone_models = train_runs(runs, protocol, keep_models=True, mixed_shapes=False)
    for a, b, ma, mb in zip(mixed, alone, mixed_models, alone_models):
        assert (a.reached, a.steps) == (b.reached, b.steps)
        assert abs(a.accuracy - b.accuracy) <= 2 / protocol.eval_size
        for name in ("W_Q", "W_K", "W_V", "W_O", "W1", "W2"):
            torch.testing.assert_close(getattr(ma, name), getattr(mb, name), rtol=1e-3, atol=1e-4)
    group = RunGroup(runs, mixed_shapes=True)
    assert (group.d, group.H, group.d_h, group.m) == (12, 3, 4, 8)
    with pytest.raises(ValueError, match="mixed_shapes"):
        RunGroup(runs)


@pytest.mark.parametrize("name,profile", [("fig4-stopping-quick.json", "quick"), ("fig4-stopping-full-cpu.json", "full")])
def test_stored_stopping_verdicts_follow_from_their_curves(name, profile):
    """The stored validations of the stopping rule (scripts/validate_stopping.py): each run's full-budget verdict is
    its curve's (reached 99 % at the last evaluation, or spent the budget), and the rule's verdicts and counts are what
    ``replay_stopping`` gives today on the stored curves with the profile's protocol."""
    import json
    from pathlib import Path

    from factlib.scaling_figures import PAPER_PROTOCOL, QUICK_PROTOCOL

    stored = json.loads((Path(__file__).resolve().parents[1] / "book" / "data" / name).read_text())
    rule = Protocol(**(QUICK_PROTOCOL if profile == "quick" else PAPER_PROTOCOL))
    stopping = ("steps", "eval_every", "eval_size", "threshold", "patience", "min_delta", "foresight")
    assert {k: stored["provenance"]["protocol"][k] for k in stopping} == {k: getattr(rule, k) for k in stopping}
    agree = 0
    for row in stored["rows"]:
        curve = [tuple(c) for c in row["curve"]]
        last_step, last_acc, _ = curve[-1]
        assert row["full_budget_steps"] == last_step
        assert row["full_budget_reached"] == (last_acc >= rule.threshold)
        assert row["full_budget_reached"] or last_step == rule.steps
        assert replay_stopping(curve, rule) == (row[f"rule_reached[{profile}]"], row[f"rule_steps[{profile}]"])
        agree += row[f"rule_reached[{profile}]"] == row["full_budget_reached"]
    assert stored["rules"][profile]["agree"] == agree and stored["runs"] == len(stored["rows"]) >= 100


def test_trainer_rates_script_measures_this_checkout():
    """scripts/trainer_rates.py drives the current trainer on the bench's shapes (short bursts) and refuses bad
    burst settings by name."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from factlib.bench import TRANSFORMER

    root = Path(__file__).resolve().parents[1]
    script = [sys.executable, str(root / "scripts" / "trainer_rates.py"), str(root)]
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    out = subprocess.run(script + ["--bursts", "1", "--seconds", "0.01"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["d"], r["runs"]) for r in rows] == [(s["d"], n) for s in TRANSFORMER["shapes"] for n in (1, 8, 64)]
    assert all(r["run_steps_per_s_wall"] > 0 and r["run_steps_per_s_cpu"] > 0 for r in rows)
    bad = subprocess.run(script + ["--seconds", "nan"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "--seconds in (0, 60]" in bad.stderr
    missing = subprocess.run(script[:2] + [str(root / "book")], capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 2 and "has no factlib/ package" in missing.stderr


def test_trainer_rates_script_splits_a_profiled_step_into_products_and_the_rest():
    """scripts/trainer_rates.py --profiled finds the matrix products in a profile of the current trainer (a share of
    the step strictly between 0 and 1, a ceiling above the measured rate) and refuses a bad count by name."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from factlib.bench import TRANSFORMER

    root = Path(__file__).resolve().parents[1]
    script = [sys.executable, str(root / "scripts" / "trainer_rates.py"), str(root)]
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    out = subprocess.run(script + ["--bursts", "1", "--seconds", "0.01", "--profiled", "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [(r["d"], r["runs"]) for r in rows] == [(s["d"], n) for s in TRANSFORMER["shapes"] for n in (1, 8, 64)]
    for r in rows:
        assert 0 < r["products_share"] < 1 and r["ceiling_run_steps_per_s"] > r["run_steps_per_s_wall"] > 0
        assert abs(r["us_per_run_step"] - 1e6 / r["run_steps_per_s_wall"]) <= 0.1 + 1e-3 * r["us_per_run_step"]
    bad = subprocess.run(script + ["--profiled", "-1"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "--profiled must be in [0, 10000]" in bad.stderr
