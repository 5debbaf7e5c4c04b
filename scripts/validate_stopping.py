"""Does the early-failure rule stop runs that would have stored their table? (issue 14, item 1)

Trains runs spanning Figure 4 (left)'s quick sizes (d in {8, 11, 16}, the quick (alpha, beta) pairs, five scales n
around each size's stored quick capacity, two learning rates) with the quick protocol and early failure off, so
each run trains until it reaches 99 % or spends its whole budget; then replays the quick protocol's stopping rules
on each run's evaluations (``factlib.trainer.replay_stopping``) and counts the runs where both verdicts agree.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/validate_stopping.py [--out book/data/fig4-stopping-quick.json]
"""
import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from factlib import __version__
from factlib.figures import _code_hash, _git_commit
from factlib.scaling_figures import QUICK_PROTOCOL, QUICK_SCALING
from factlib.searches import head_sizes, variant_task
from factlib.trainer import Protocol, Run, replay_stopping, train_runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="book/data/fig4-stopping-quick.json")
    parser.add_argument("--capacities", default="book/data/fig4-left-quick.json",
                        help="stored quick results whose capacities centre the scales tried")
    parser.add_argument("--span", type=int, default=2, help="scales n_c - span .. n_c + span")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quick = Protocol(**QUICK_PROTOCOL)
    full_budget = replace(quick, foresight=0.0, patience=quick.steps + 1)  # stops only at 99 % or the budget
    stored = json.loads(Path(args.capacities).read_text())["rows"]
    runs = []
    for row in stored:
        assert head_sizes(row["d"], row["alpha"], row["beta"], row["H"]) == (row["d_h"], row["m"])
        for n in range(max(1, row["n"] - args.span), row["n"] + args.span + 1):
            for lr in QUICK_SCALING["lrs"]:
                runs.append(Run(variant_task("S=R", n), row["d"], row["H"], row["d_h"], row["m"], lr, seed=0))
    start = time.perf_counter()
    outcomes, _ = train_runs(runs, full_budget)
    wall = time.perf_counter() - start
    rows, agree = [], 0
    for run, o in zip(runs, outcomes):
        rule_reached, rule_step = replay_stopping(o.curve, quick)
        agree += rule_reached == o.reached
        rows.append({"d": run.d, "d_h": run.d_h, "m": run.m, "n": run.task.S, "lr": run.lr,
                     "full_budget_reached": o.reached, "full_budget_steps": o.steps,
                     "rule_reached": rule_reached, "rule_steps": rule_step, "curve": [list(c) for c in o.curve]})
    result = {"what": "early-failure rule against the full quick budget", "runs": len(runs), "agree": agree,
              "agreement": round(agree / len(runs), 4),
              "stopped_learners": sum(r["full_budget_reached"] and not r["rule_reached"] for r in rows),
              "rows": rows,
              "provenance": {"factlib_version": __version__, "code": _code_hash(), "git_commit": _git_commit(),
                             "protocol": vars(quick), "full_budget_protocol": vars(full_budget),
                             "device": "cpu", "torch_threads": torch.get_num_threads(), "wall_time_s": round(wall, 1),
                             "python": platform.python_version(), "torch_version": torch.__version__}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{agree} of {len(runs)} verdicts agree ({agree / len(runs):.1%}); "
          f"{result['stopped_learners']} learners stopped by the rule; {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
