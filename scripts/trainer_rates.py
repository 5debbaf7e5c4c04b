"""Training steps per second of the batched transformer trainer of any checkout, for comparisons across its history.

    PYTHONPATH= python scripts/trainer_rates.py .                     # this checkout
    git worktree add --detach /tmp/before 8bcda12
    PYTHONPATH= python scripts/trainer_rates.py /tmp/before           # the trainer as of 8bcda12

Prints, on one torch thread, for Figure 4's shapes at alpha = beta = 1 (the workload of ``factlib.bench``: S = R
near the capacity, D = 8, H = 8, batch 1024) and 1, 8 and 64 runs, the run-steps per second by wall time and by
the thread's CPU time, each the best of ``--bursts`` bursts of ``--seconds`` seconds. On an idle machine the two
agree; on a busy one CPU time is the fairer of the two, and both checkouts should run in the same minutes.
Checkouts from before ``factlib.batched`` existed (the trainer lived in ``factlib.trainer``) are driven through
their own API.

With ``--profiled N``, each cell then profiles N more steps with ``torch.profiler`` and adds up the self time of the
matrix products (``aten::bmm``, ``baddbmm``, ``mm``, ``addmm``; ``einsum`` lands in ``bmm``): the microseconds per
run-step of a whole step and of its products, the products' share, and the ceiling, the run-steps per second of a
trainer that did these same products at the same speed and nothing else.
"""
import argparse
import json
import sys
import time
from pathlib import Path

PRODUCTS = ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="the root of a factlib checkout")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--profiled", type=int, default=0, help="steps profiled per cell (0: no profile)")
    args = parser.parse_args()
    if args.bursts < 1 or not 0 < args.seconds <= 60:
        parser.error("--bursts must be at least 1 and --seconds in (0, 60]")
    if not 0 <= args.profiled <= 10_000:
        parser.error(f"--profiled must be in [0, 10000]; got {args.profiled}")
    if not (Path(args.checkout) / "factlib" / "__init__.py").is_file():
        parser.error(f"checkout: {args.checkout} has no factlib/ package")
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    # the workload of this repository's bench, whatever the checkout measured has
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from factlib.bench import TRANSFORMER

    del sys.path[0]
    for name in [name for name in sys.modules if name == "factlib" or name.startswith("factlib.")]:
        del sys.modules[name]
    sys.path.insert(0, str(Path(args.checkout).resolve()))
    from factlib.task import TaskConfig

    try:
        from factlib.batched import RunGroup
        from factlib.trainer import Run, train_step
    except ImportError:  # the trainer as one module
        from factlib.trainer import RunGroup, Run, adam_update_
        train_step = None
    B, H = TRANSFORMER["batch_size"], TRANSFORMER["H"]
    rows = []
    for shape in TRANSFORMER["shapes"]:
        task = TaskConfig(S=shape["S"], R=shape["S"], D=TRANSFORMER["D"])
        for n in (1, 8, 64):
            group = RunGroup([Run(task, shape["d"], H, shape["d_h"], shape["m"], 1e-2, seed)
                              for seed in range(n)], "cpu")
            moments = (torch.zeros_like(group.flat), torch.zeros_like(group.flat))
            grad = torch.empty_like(group.flat)
            chunks = group.chunks(B)

            def step(t):
                if train_step is not None:
                    return train_step(group, chunks, grad, moments, t, B)
                for rows_ in chunks:
                    s, r, noise, answers = group.sample_parts(t, B, rows=rows_)
                    grad[rows_] = group.loss_and_grad(group.counts(s, r, noise, rows_), answers, rows_)[1]
                adam_update_(group.flat, grad, moments, group.lr[:, None], t)

            step(1)
            t, wall, cpu = 1, 0.0, 0.0
            for _ in range(args.bursts):
                w0, c0, k = time.perf_counter(), time.thread_time(), 0
                while time.perf_counter() - w0 < args.seconds or k < 3:
                    t, k = t + 1, k + 1
                    step(t)
                wall = max(wall, n * k / (time.perf_counter() - w0))
                cpu = max(cpu, n * k / (time.thread_time() - c0))
            rows.append({"d": shape["d"], "facts": task.num_facts, "runs": n,
                         "run_steps_per_s_wall": round(wall, 1), "run_steps_per_s_cpu": round(cpu, 1)})
            if args.profiled:
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(args.profiled):
                        t += 1
                        step(t)
                us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in PRODUCTS)
                products, whole = us / (n * args.profiled), 1e6 / wall  # microseconds per run-step
                rows[-1].update(us_per_run_step=round(whole, 1), products_us_per_run_step=round(products, 1),
                                products_share=round(products / whole, 3),
                                ceiling_run_steps_per_s=round(1e6 / products, 1))
            print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
