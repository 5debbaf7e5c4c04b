"""``python -m factlib bench``: how fast the capacity engine is, in figures a reader can check.

Prints JSON with: this machine's fp32 matrix-product GFLOP/s (a large square product, and a batched product of
the shape that dominates the trainer: (runs, N, d) x (runs, d, M) with small d); the trainer's achieved GFLOP/s
on a fixed MLP-memory workload (FLOPs of its matrix products, counted from the shapes, over wall time); their
ratios; the batched transformer trainer's run-steps per second and GFLOP/s at Figure 4's shapes, for 1, 8 and
64 runs on 1 and 2 threads, against a matrix product of its largest product's shape (``transformer``); and the wall
time of every quick-profile capacity figure through ``reproduce``. With ``baseline``, also
the same searches run directly by the engine and by the plain loop (one configuration and one learning rate at a
time, ``train.plain_capacity``), with the number of trainings each needed.
"""
from __future__ import annotations

import platform
import time

import torch

from . import __version__
from ._validate import check_choice
from .config import device as pick_device
from .embeddings import memory_embeddings
from .figures import FIGURES, _recipe, job_problems, reproduce
from .memory import TrainConfig
from .task import TaskConfig
from .train import adam_update_, many_to_one_targets, memory_capacities, mlp_init, plain_capacity, train_memories
from .trainer import Run, RunGroup, step_flops

CAPACITY_FIGURES = ("fig1-left", "fig1-right", "fig6")

#: the transformer workload: Figure 4 (left)'s shapes at d = 16, alpha = beta = 1 (H = 8, d_h = 2, m = 16) on
#: S = R = 16, D = 8, batch 1024, for 1, 8 and 64 runs in flight, on 1 and 2 threads
TRANSFORMER = {"d": 16, "H": 8, "d_h": 2, "m": 16, "S": 16, "R": 16, "D": 8, "batch_size": 1024,
               "runs": (1, 8, 64), "threads": (1, 2)}

#: the trainer workload: R MLP memories (d, m) on N = M associations, a fixed number of steps, no early stop
WORKLOAD = {"runs": 8, "N": 512, "d": 16, "m": 64, "steps": 200}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _rate(fn, flops: float, dev: torch.device, min_time: float = 0.5) -> float:
    """GFLOP/s of ``fn`` (which performs ``flops``), repeated for at least ``min_time`` seconds after a warm-up."""
    fn()
    _sync(dev)
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        _sync(dev)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return flops * reps / elapsed / 1e9


def matmul_gflops(dev: torch.device) -> dict[str, float]:
    """Measured fp32 matrix-product speed: square 1024 x 1024, and the trainer's dominant batched shape."""
    gen = torch.Generator().manual_seed(0)
    n = 1024
    a, b = (torch.randn(n, n, generator=gen).to(dev) for _ in range(2))
    out = torch.empty(n, n, device=dev)
    R, N, d = WORKLOAD["runs"], WORKLOAD["N"], WORKLOAD["d"]
    x, y = torch.randn(R, N, d, generator=gen).to(dev), torch.randn(R, d, N, generator=gen).to(dev)
    z = torch.empty(R, N, N, device=dev)
    return {
        "square_1024": round(_rate(lambda: torch.mm(a, b, out=out), 2.0 * n**3, dev), 2),
        f"batched_{R}x{N}x{d}x{N}": round(_rate(lambda: torch.bmm(x, y, out=z), 2.0 * R * N * d * N, dev), 2),
    }


def trainer_gflops(dev: torch.device) -> dict[str, float]:
    """The batched trainer on ``WORKLOAD``: GFLOP/s of its matrix products, and seconds per step."""
    w = WORKLOAD
    E, U = memory_embeddings(w["N"], w["N"], w["d"], 0)  # (N, d) each
    R = w["runs"]
    E, U = E[None].repeat(R, 1, 1).to(dev), U[None].repeat(R, 1, 1).to(dev)  # (R, N, d)
    targets = many_to_one_targets(w["N"], w["N"])[None].repeat(R, 1).to(dev)  # (R, N)
    W1 = torch.stack([mlp_init(w["m"], w["d"], s).float() for s in range(R)]).to(dev)  # (R, m, d)
    config = TrainConfig(steps=w["steps"], patience=None, threshold=1.0)  # never stops early: fixed work
    sizes = torch.full((R,), w["N"])
    lrs = torch.full((R,), 3e-2)
    train_memories(E[:, :64], U[:, :64], targets[:, :64] % 64, torch.full((R,), 64), torch.full((R,), 64), lrs,
                   TrainConfig(steps=5, patience=None, threshold=1.0), m=w["m"], W1=W1)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    res = train_memories(E, U, targets, sizes, sizes, lrs, config, m=w["m"], W1=W1)
    _sync(dev)
    elapsed = time.perf_counter() - start
    return {"gflops": round(res.flops / elapsed / 1e9, 2), "ms_per_step": round(1e3 * elapsed / (w["steps"] + 1), 3)}


def _transformer_task() -> TaskConfig:
    return TaskConfig(S=TRANSFORMER["S"], R=TRANSFORMER["R"], D=TRANSFORMER["D"])


def _transformer_flops() -> int:
    w, task = TRANSFORMER, _transformer_task()
    return step_flops(w["d"], w["H"], w["d_h"], w["m"], task.vocab_size, task.num_answers, w["batch_size"])


def transformer_bench(dev: torch.device, min_time: float = 2.0) -> list[dict]:
    """The batched transformer trainer (``factlib.trainer``) on ``TRANSFORMER``: training steps (sample, forward,
    backward, Adam; no evaluation) of every run, per second, and GFLOP/s of its matrix products against the
    rate of the step's largest product alone (the unembedding, (runs, B, d) x (runs, d, R D)) at the same shape and
    thread count."""
    w, task = TRANSFORMER, _transformer_task()
    B = w["batch_size"]
    flops = _transformer_flops()
    threads_before = torch.get_num_threads()
    out = []
    try:
        for threads in w["threads"]:
            torch.set_num_threads(threads)
            for n in w["runs"]:
                group = RunGroup([Run(task, w["d"], w["H"], w["d_h"], w["m"], 1e-2, seed) for seed in range(n)], dev)
                moments = (torch.zeros_like(group.flat), torch.zeros_like(group.flat))
                grad = torch.empty_like(group.flat)
                chunks = group.chunks(B)

                def step(t):
                    for rows in chunks:
                        s, r, noise, answers = group.sample_parts(t, B, rows=rows)
                        grad[rows] = group.loss_and_grad(group.counts(s, r, noise, rows), answers, rows)[1]
                    adam_update_(group.flat, grad, moments, group.lr[:, None], t)

                step(1)
                _sync(dev)
                t, start = 1, time.perf_counter()
                while time.perf_counter() - start < min_time or t < 4:
                    t += 1
                    step(t)
                    _sync(dev)
                rate = n * (t - 1) / (time.perf_counter() - start)
                h = torch.randn(n, B, w["d"], device=dev)
                U = torch.randn(n, task.num_answers, w["d"], device=dev)
                logits = torch.empty(n, B, task.num_answers, device=dev)
                matmul = _rate(lambda: torch.bmm(h, U.transpose(1, 2), out=logits),
                               2.0 * n * B * w["d"] * task.num_answers, dev)
                gflops = rate * flops / 1e9
                out.append({"runs": n, "threads": threads, "d": w["d"], "run_steps_per_s": round(rate, 1),
                            "gflops": round(gflops, 2), "same_shape_matmul_gflops": round(matmul, 2),
                            "ratio_to_same_shape_matmul": round(gflops / matmul, 3)})
    finally:
        torch.set_num_threads(threads_before)
    return out


def _baseline(figure: str, config: dict) -> dict:
    """The same searches by the engine (trainings counted) and by the plain per-configuration loop (chapter 1's
    trainer, one N at a time by bisection from the same guess, one learning rate at a time): trainings and time."""
    engine, plain = {"runs": 0}, {"runs": 0}
    start = time.perf_counter()
    jobs = FIGURES[figure].jobs(config)
    for job in jobs:
        stats = {}
        memory_capacities(job_problems(job), job["lrs"], _recipe(job), stats=stats)
        engine["runs"] += stats["runs"]
    engine_s = time.perf_counter() - start
    start = time.perf_counter()
    for job in jobs:
        for problem in job_problems(job):
            plain_capacity(problem, job["lrs"], _recipe(job), stats=plain)
    return {"plain_loop": round(time.perf_counter() - start, 2), "plain_loop_trainings": plain["runs"],
            "engine_direct": round(engine_s, 2), "engine_trainings": engine["runs"]}


def bench(device: str = "auto", figures: tuple[str, ...] = CAPACITY_FIGURES, baseline: bool = False,
          transformer: bool = True) -> dict:
    """Run the benchmark and return its figures (see the module docstring)."""
    for name in figures:
        check_choice("figures", name, CAPACITY_FIGURES)
    dev = pick_device(device)
    matmul = matmul_gflops(dev)
    trainer = trainer_gflops(dev)
    square, batched = matmul["square_1024"], list(matmul.values())[1]
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "torch_threads": torch.get_num_threads(),
        "factlib_version": __version__,
        "torch_version": torch.__version__,
        "matmul_gflops": matmul,
        "trainer": {"workload": WORKLOAD, **trainer},
        "ratio_to_square_matmul": round(trainer["gflops"] / square, 3),
        "ratio_to_same_shape_matmul": round(trainer["gflops"] / batched, 3),
        "transformer_workload": {**TRANSFORMER, "flops_per_run_step": _transformer_flops()},
        "transformer": transformer_bench(dev) if transformer else [],
        "figures_quick_s": {},
    }
    for name in figures:
        start = time.perf_counter()
        reproduce(name, "quick", device=dev.type, progress=False)
        entry = {"engine": round(time.perf_counter() - start, 2)}
        if baseline:
            entry.update(_baseline(name, FIGURES[name].configs["quick"]))
        result["figures_quick_s"][name] = entry
    return result


def parse_figures(text: str | None) -> tuple[str, ...]:
    if text is None:
        return CAPACITY_FIGURES
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    for name in names:
        check_choice("figures", name, CAPACITY_FIGURES)
    return names
