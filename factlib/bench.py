"""``python -m factlib bench``: how fast the capacity engine is, in figures a reader can check.

Prints JSON with: this machine's fp32 matrix-product GFLOP/s (a large square product, and a batched product of
the shape that dominates the trainer: (runs, N, d) x (runs, d, M) with small d); the trainer's achieved GFLOP/s
on a fixed MLP-memory workload (FLOPs of its matrix products, counted from the shapes, over wall time); their
ratios; the batched transformer trainer's run-steps per second and GFLOP/s at Figure 4's shapes for d = 8, 16 and
32, with 1, 8 and 64 runs on 1 and 2 threads, against a square matrix product on as many threads (``transformer``);
and the wall
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
from .batched import RunGroup, step_flops
from .config import device as pick_device
from .embeddings import memory_embeddings
from .figures import FIGURES, _recipe, job_problems, reproduce
from .memory import TrainConfig
from .task import TaskConfig
from .train import many_to_one_targets, memory_capacities, mlp_init, plain_capacity, train_memories
from .trainer import Run, train_step

CAPACITY_FIGURES = ("fig1-left", "fig1-right", "fig6")

#: the transformer workload: Figure 4 (left)'s shapes at alpha = beta = 1 (H = 8, d_h = d / 8, m = d), each on the
#: S = R task at about its capacity under the paper's protocol (64, 225 and 841 facts), D = 8, batch 1024, for 1, 8
#: and 64 runs in flight on 1 and 2 threads
TRANSFORMER = {"shapes": ({"d": 8, "d_h": 1, "m": 8, "S": 8}, {"d": 16, "d_h": 2, "m": 16, "S": 15},
                          {"d": 32, "d_h": 4, "m": 32, "S": 29}),
               "H": 8, "D": 8, "batch_size": 1024, "runs": (1, 8, 64), "threads": (1, 2)}

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


def _transformer_flops(shape: dict) -> int:
    """Matrix-product FLOPs of one run-step at ``shape`` (``trainer.step_flops``)."""
    w, task = TRANSFORMER, TaskConfig(S=shape["S"], R=shape["S"], D=TRANSFORMER["D"])
    return step_flops(shape["d"], w["H"], shape["d_h"], shape["m"], task.vocab_size, task.num_answers,
                      w["batch_size"], noise=task.n_noise)


def transformer_bench(dev: torch.device, min_time: float = 2.0) -> list[dict]:
    """The batched transformer trainer on ``TRANSFORMER``: training steps (sample, forward, backward, Adam; no
    evaluation) of every run, per second, and the GFLOP/s of its matrix products (``step_flops``: the useful work,
    padding excluded) against the limit, a square 1024 x 1024 fp32 product on the same number of threads."""
    w = TRANSFORMER
    B = w["batch_size"]
    threads_before = torch.get_num_threads()
    out = []
    try:
        for threads in w["threads"]:
            torch.set_num_threads(threads)
            limit = matmul_gflops(dev)["square_1024"]
            for shape in w["shapes"]:
                task = TaskConfig(S=shape["S"], R=shape["S"], D=w["D"])
                flops = _transformer_flops(shape)
                for n in w["runs"]:
                    group = RunGroup([Run(task, shape["d"], w["H"], shape["d_h"], shape["m"], 1e-2, seed)
                                      for seed in range(n)], dev)
                    moments = (torch.zeros_like(group.flat), torch.zeros_like(group.flat))
                    grad = torch.empty_like(group.flat)
                    chunks = group.chunks(B)
                    train_step(group, chunks, grad, moments, 1, B)
                    _sync(dev)
                    t, start = 1, time.perf_counter()
                    while time.perf_counter() - start < min_time or t < 4:
                        t += 1
                        train_step(group, chunks, grad, moments, t, B)
                        _sync(dev)
                    rate = n * (t - 1) / (time.perf_counter() - start)
                    gflops = rate * flops / 1e9
                    out.append({"d": shape["d"], "facts": task.num_facts, "runs": n, "threads": threads,
                                "run_steps_per_s": round(rate, 1), "gflops": round(gflops, 2),
                                "square_matmul_gflops": round(limit, 2), "ratio_to_limit": round(gflops / limit, 3)})
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
        "transformer_workload": {**TRANSFORMER, "flops_per_run_step": [_transformer_flops(shape)
                                                                         for shape in TRANSFORMER["shapes"]]},
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
