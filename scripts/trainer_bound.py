"""How fast the batched transformer trainer could be if everything but its matrix products were free.

    python scripts/trainer_bound.py             # Figure 4's shapes of the bench, 8 and 64 runs, one thread

For each of the bench's shapes (``factlib.bench.TRANSFORMER``: S = R near the capacity, D = 8, H = 8, batch 1024)
it times training steps (run-steps per second, best of ``--bursts`` bursts of ``--seconds`` seconds), then profiles
``--profiled`` steps with ``torch.profiler`` and adds up the time spent in the matrix products (``aten::bmm``,
``baddbmm``, ``mm``, ``addmm``; ``einsum`` lands in ``bmm``). It prints, per shape and number of runs, the
microseconds per run-step of a whole step and of its products, the products' share, and the ceiling: the
run-steps per second of a trainer that did these same products at the same speed and nothing else. On a machine
shared with other work the figures are upper bounds on the time and mean little; run it on an idle one.
"""
import argparse
import json
import sys
import time
from pathlib import Path

PRODUCTS = ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="8,64", help="numbers of runs in flight, comma-separated")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--profiled", type=int, default=20, help="steps profiled per shape")
    args = parser.parse_args()
    try:
        runs = [int(x) for x in args.runs.split(",")]
    except ValueError:
        parser.error(f"--runs must be comma-separated integers; got {args.runs!r}")
    if not runs or min(runs) < 1 or max(runs) > 1024:
        parser.error(f"--runs must be integers in [1, 1024]; got {args.runs!r}")
    if args.bursts < 1 or not 0 < args.seconds <= 60 or not 1 <= args.profiled <= 10_000:
        parser.error("--bursts must be at least 1, --seconds in (0, 60], --profiled in [1, 10000]")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch
    from torch.profiler import ProfilerActivity, profile

    from factlib.batched import RunGroup
    from factlib.bench import TRANSFORMER
    from factlib.task import TaskConfig
    from factlib.trainer import Run, train_step

    torch.set_num_threads(1)
    B, H = TRANSFORMER["batch_size"], TRANSFORMER["H"]
    for shape in TRANSFORMER["shapes"]:
        task = TaskConfig(S=shape["S"], R=shape["S"], D=TRANSFORMER["D"])
        for n in runs:
            group = RunGroup([Run(task, shape["d"], H, shape["d_h"], shape["m"], 1e-2, seed)
                              for seed in range(n)], "cpu")
            moments = (torch.zeros_like(group.flat), torch.zeros_like(group.flat))
            grad = torch.empty_like(group.flat)
            chunks = group.chunks(B)
            t = 1
            train_step(group, chunks, grad, moments, t, B)
            best = 0.0
            for _ in range(args.bursts):
                start, k = time.perf_counter(), 0
                while time.perf_counter() - start < args.seconds or k < 3:
                    t, k = t + 1, k + 1
                    train_step(group, chunks, grad, moments, t, B)
                best = max(best, n * k / (time.perf_counter() - start))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.profiled):
                    t += 1
                    train_step(group, chunks, grad, moments, t, B)
            us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in PRODUCTS)
            products = us / (n * args.profiled)  # microseconds of products per run-step
            step = 1e6 / best
            print(json.dumps({"d": shape["d"], "runs": n, "run_steps_per_s": round(best, 1),
                              "us_per_run_step": round(step, 1), "products_us_per_run_step": round(products, 1),
                              "products_share": round(products / step, 3),
                              "ceiling_run_steps_per_s": round(1e6 / products, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
