"""Does the early-failure rule stop runs that would have stored their table?

Trains runs spanning Figure 4 (left)'s sizes with a profile's protocol and early failure off, so each run trains
until it reaches 99 % or spends its whole budget; then replays the profile's stopping rules on each run's evaluations
(``factlib.trainer.replay_stopping``) and counts the runs where both verdicts agree, for the profile's rule and for
the forecast rule it replaced. The sizes are those of a stored result (``--capacities``), and the scales n around
each size's stored capacity (n_c - span .. n_c + span), with the profile's learning rates.

- ``--profile quick`` (default): the quick protocol (batch 256, 2^12 steps, patience 2048), the quick sizes
  (d in {8, 11, 16}, the quick (alpha, beta) pairs), two learning rates.
- ``--profile full``: the paper's protocol (batch 1024, 2^14 steps, patience 4096), the sizes of the CPU subset
  of ``scripts/paper_scale.py`` (``--d`` picks some), three learning rates.

Each size is one job of a resumable sweep: its runs' curves go to ``<out>.jobs.jsonl`` as it finishes, so a killed
run loses at most the size in flight.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/validate_stopping.py [--out book/data/fig4-stopping-quick.json]
    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/validate_stopping.py --profile full --d 8,11 --span 3
"""
import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from factlib import __version__
from factlib.figures import _code_hash, _git_commit
from factlib.scaling_figures import PAPER_LRS, PAPER_PROTOCOL, QUICK_PROTOCOL, QUICK_SCALING
from factlib.searches import head_sizes, variant_task
from factlib.sweeps import ResultStore, SweepStats, run_sweep
from factlib.trainer import Protocol, Run, replay_stopping, train_runs

#: profile -> (protocol, learning rates, stored capacities that centre the scales, default output)
PROFILES = {
    "quick": (QUICK_PROTOCOL, QUICK_SCALING["lrs"], "book/data/fig4-left-quick.json",
              "book/data/fig4-stopping-quick.json"),
    "full": (PAPER_PROTOCOL, PAPER_LRS, "book/data/fig4-left-full-cpu-unit.json", "book/data/fig4-stopping-full-cpu.json"),
}


def size_runs(job: dict) -> list[Run]:
    """The runs of one size: every scale n of ``job["ns"]`` at every learning rate, seed 0."""
    return [Run(variant_task("S=R", n), job["d"], job["H"], job["d_h"], job["m"], lr, seed=0)
            for n in job["ns"] for lr in job["lrs"]]


def train_size(job: dict) -> list[list]:
    """Train one size's runs to ``job["protocol"]``; per run [reached, steps, curve]."""
    torch.set_num_threads(1)
    outcomes, _ = train_runs(size_runs(job), Protocol(**job["protocol"]))
    return [[o.reached, o.steps, [list(c) for c in o.curve]] for o in outcomes]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", help="default: book/data/fig4-stopping-<quick | full-cpu>.json")
    parser.add_argument("--capacities", help="stored results whose capacities centre the scales tried (default: "
                        "the profile's Figure 4 (left))")
    parser.add_argument("--d", help="comma-separated d values of the stored sizes to use (default: all)")
    parser.add_argument("--span", type=int, default=2, help="scales n_c - span .. n_c + span")
    parser.add_argument("--replay", help="take the runs' curves from this earlier output instead of training")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    protocol_values, lrs, capacities, default_out = PROFILES[args.profile]
    out = Path(args.out or default_out)
    rule = Protocol(**protocol_values)
    full_budget = replace(rule, foresight=0.0, patience=rule.steps + 1)  # stops only at 99 % or the budget
    stored = json.loads(Path(args.capacities or capacities).read_text())["rows"]
    if args.d:
        keep = {int(v) for v in args.d.split(",")}
        stored = [row for row in stored if row["d"] in keep]
    jobs = []
    for row in stored:
        rounding = row.get("rounding", "half_up")  # results stored before the sizes followed the release's rounding
        assert head_sizes(row["d"], row["alpha"], row["beta"], row["H"], rounding) == (row["d_h"], row["m"])
        jobs.append({"d": row["d"], "H": row["H"], "d_h": row["d_h"], "m": row["m"], "lrs": list(lrs),
                     "ns": list(range(max(1, row["n"] - args.span), row["n"] + args.span + 1)),
                     "protocol": vars(full_budget)})
    runs = [run for job in jobs for run in size_runs(job)]
    if args.replay:
        earlier = json.loads(Path(args.replay).read_text())
        trained = [(r["full_budget_reached"], r["full_budget_steps"], [tuple(c) for c in r["curve"]])
                   for r in earlier["rows"]]
        assert len(trained) == len(runs), "the earlier output must hold the same runs"
        wall, provenance = earlier["provenance"]["wall_time_s"], earlier["provenance"]
        curves_from = {k: provenance.get(k) for k in ("code", "git_commit", "wall_time_s")}
    else:
        context = {"factlib_version": __version__, "code": _code_hash("factlib.trainer"), "device": "cpu",
                   "script": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]}
        store = ResultStore(f"{out}.jobs.jsonl", context)
        start, stats = time.perf_counter(), SweepStats()
        results = run_sweep(jobs, train_size, store, desc=f"sizes ({args.profile})", stats=stats)
        wall = time.perf_counter() - start + stats.reused_wall_s  # this run's training and the stored sizes'
        trained = [(reached, steps, [tuple(c) for c in curve]) for res in results for reached, steps, curve in res]
        curves_from = None
    rules = {args.profile: rule,
             "forecast (foresight 2)": replace(rule, foresight=2.0)}
    rows, verdicts = [], {name: {"agree": 0, "stopped_learners": 0, "steps": 0} for name in rules}
    for run, (reached, steps, curve) in zip(runs, trained):
        row = {"d": run.d, "d_h": run.d_h, "m": run.m, "n": run.task.S, "lr": run.lr,
               "full_budget_reached": reached, "full_budget_steps": steps}
        for name, replayed in rules.items():
            rule_reached, rule_step = replay_stopping(curve, replayed)
            v = verdicts[name]
            v["agree"] += rule_reached == reached
            v["stopped_learners"] += reached and not rule_reached
            v["steps"] += rule_step
            row[f"rule_reached[{name}]"], row[f"rule_steps[{name}]"] = rule_reached, rule_step
        rows.append(row | {"curve": [list(c) for c in curve]})
    for v in verdicts.values():
        v["agreement"] = round(v["agree"] / len(runs), 4)
        v["mean_steps"] = round(v.pop("steps") / len(runs))
    result = {"what": f"early-failure rules against the full {args.profile} budget", "runs": len(runs),
              "successes": sum(r["full_budget_reached"] for r in rows), "rules": verdicts,
              "full_budget_mean_steps": round(sum(r["full_budget_steps"] for r in rows) / len(runs)),
              "rows": rows,
              "provenance": {"factlib_version": __version__, "code": _code_hash("factlib.trainer"), "git_commit": _git_commit(),
                             "protocol": vars(rule), "full_budget_protocol": vars(full_budget),
                             "capacities": str(args.capacities or capacities), "span": args.span,
                             "curves_from": curves_from,
                             "device": "cpu", "torch_threads": torch.get_num_threads(), "wall_time_s": round(wall, 1),
                             "python": platform.python_version(), "torch_version": torch.__version__}}
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, v in verdicts.items():
        print(f"{name}: {v['agree']} of {len(runs)} verdicts agree ({v['agreement']:.1%}), {v['stopped_learners']} "
              f"learners stopped, {v['mean_steps']} steps a run on average")
    print(f"{result['successes']} successes in the full budget; {wall:.0f} s of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
