"""Does the early-failure rule stop runs that would have stored their table? (issue 14, item 1)

Trains runs spanning Figure 4 (left)'s quick sizes (d in {8, 11, 16}, the quick (alpha, beta) pairs, five scales n
around each size's stored quick capacity, two learning rates) with the quick protocol and early failure off, so
each run trains until it reaches 99 % or spends its whole budget; then replays the quick protocol's stopping rules
on each run's evaluations (``factlib.trainer.replay_stopping``) and counts the runs where both verdicts agree, for the quick rule and for the forecast rule it replaced.

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
    parser.add_argument("--replay", help="take the runs' curves from this earlier output instead of training")
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
    if args.replay:
        earlier = json.loads(Path(args.replay).read_text())
        trained = [(r["full_budget_reached"], r["full_budget_steps"], [tuple(c) for c in r["curve"]])
                   for r in earlier["rows"]]
        assert len(trained) == len(runs), "the earlier output must hold the same runs"
        wall, provenance = earlier["provenance"]["wall_time_s"], earlier["provenance"]
        curves_from = {k: provenance.get(k) for k in ("code", "git_commit", "wall_time_s")}
    else:
        start = time.perf_counter()
        outcomes, _ = train_runs(runs, full_budget)
        wall = time.perf_counter() - start
        trained = [(o.reached, o.steps, o.curve) for o in outcomes]
        curves_from = None
    rules = {"quick": quick, "forecast (foresight 2, the quick rule before issue 14)": replace(quick, foresight=2.0)}
    rows, verdicts = [], {name: {"agree": 0, "stopped_learners": 0, "steps": 0} for name in rules}
    for run, (reached, steps, curve) in zip(runs, trained):
        row = {"d": run.d, "d_h": run.d_h, "m": run.m, "n": run.task.S, "lr": run.lr,
               "full_budget_reached": reached, "full_budget_steps": steps}
        for name, rule in rules.items():
            rule_reached, rule_step = replay_stopping(curve, rule)
            v = verdicts[name]
            v["agree"] += rule_reached == reached
            v["stopped_learners"] += reached and not rule_reached
            v["steps"] += rule_step
            row[f"rule_reached[{name}]"], row[f"rule_steps[{name}]"] = rule_reached, rule_step
        rows.append(row | {"curve": [list(c) for c in curve]})
    for v in verdicts.values():
        v["agreement"] = round(v["agree"] / len(runs), 4)
        v["mean_steps"] = round(v.pop("steps") / len(runs))
    result = {"what": "early-failure rules against the full quick budget", "runs": len(runs),
              "successes": sum(r["full_budget_reached"] for r in rows), "rules": verdicts,
              "full_budget_mean_steps": round(sum(r["full_budget_steps"] for r in rows) / len(runs)),
              "rows": rows,
              "provenance": {"factlib_version": __version__, "code": _code_hash(), "git_commit": _git_commit(),
                             "protocol": vars(quick), "full_budget_protocol": vars(full_budget),
                             "curves_from": curves_from,
                             "device": "cpu", "torch_threads": torch.get_num_threads(), "wall_time_s": round(wall, 1),
                             "python": platform.python_version(), "torch_version": torch.__version__}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, v in verdicts.items():
        print(f"{name}: {v['agree']} of {len(runs)} verdicts agree ({v['agreement']:.1%}), {v['stopped_learners']} "
              f"learners stopped, {v['mean_steps']} steps a run on average")
    print(f"{result['successes']} successes in the full budget; {wall:.0f} s of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
