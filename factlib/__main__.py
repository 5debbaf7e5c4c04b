"""Command line: ``python -m factlib reproduce <figure> --profile quick|full --device auto --out FILE.json``.

Where the jobs run: ``--executor inline|processes|dask``, ``--workers N``, ``--scheduler tcp://host:port``.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from .config import DEVICES, PROFILES
from .figures import FIGURES, reproduce
from .sweeps import EXECUTORS, StoreLocked, WorkerDied


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer; got {text!r}") from None


def _add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor, --workers, --scheduler: where a sweep's jobs run (see factlib.sweeps.run_sweep)."""
    parser.add_argument("--executor", help=f"where the jobs run, one of: {', '.join(EXECUTORS)} (default inline; "
                        "processes if --workers is given, dask if --scheduler is)")
    parser.add_argument("--workers", help="number of worker processes, in [1, 1024] (default: one per CPU core)")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                        "(implies --executor dask)")


def _executor_arguments(args: argparse.Namespace) -> dict:
    """``executor``, ``workers``, ``scheduler`` for run_sweep; their values are checked there."""
    workers = None if args.workers is None else _parse_int("workers", args.workers)
    executor = args.executor
    if executor is None:
        executor = "dask" if args.scheduler is not None else "processes" if workers is not None else "inline"
    return {"executor": executor, "workers": workers, "scheduler": args.scheduler}


def _add_reproduce(sub) -> None:
    rep = sub.add_parser("reproduce", help="run the sweep behind one of the paper's figures")
    rep.add_argument("figure", nargs="?", help=f"one of: {', '.join(FIGURES)}")
    rep.add_argument("--list", action="store_true", help="list the figures and exit")
    rep.add_argument("--profile", help=f"one of: {', '.join(PROFILES)} (default: $FACTLIB_PROFILE, else quick)")
    rep.add_argument("--device", default="auto", help=f"one of: {', '.join(DEVICES)} (default auto)")
    rep.add_argument("--out", help="write the results here as JSON (and resume from <out>.jobs.jsonl)")
    rep.add_argument("--d", help="comma-separated embedding dimensions, each in [2, 4096] (default: the profile's); "
                     "a size that does not fit in memory is refused before any job runs (README: sweeps and stores)")
    rep.add_argument("--seeds", help="number of seeds, in [1, 1000] (default: the profile's)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_executor_arguments(rep)
    rep.set_defaults(run=_reproduce)


def _reproduce(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.list:
        for name, fig in FIGURES.items():
            print(f"{name:12s} {fig.description}")
        return 0
    if args.figure is None:
        parser.error("a figure is required (see --list)")
    dims = None if args.d is None else [_parse_int("d", v) for v in args.d.split(",")]
    seeds = None if args.seeds is None else _parse_int("seeds", args.seeds)
    result = reproduce(args.figure, args.profile, args.device, args.out, not args.no_progress, dims, seeds,
                       **_executor_arguments(args))
    if not args.out:
        print(json.dumps(result, indent=1))
    else:
        print(f"wrote {args.out}: {len(result['rows'])} rows in {result['provenance']['wall_time_s']} s "
              f"on {result['provenance']['device']}")
    return 0


def _add_bench(sub) -> None:
    ben = sub.add_parser("bench", help="print the trainers' speed as JSON (GFLOP/s, run-steps/s, figure wall times)")
    ben.add_argument("--device", default="auto", help=f"one of: {', '.join(DEVICES)} (default auto)")
    ben.add_argument("--figures", help="comma-separated capacity figures to time (default: fig1-left,fig1-right,fig6;"
                                       " empty: none)")
    ben.add_argument("--baseline", action="store_true",
                     help="also time the plain per-configuration loop on the same searches (slow)")
    ben.add_argument("--no-transformer", action="store_true",
                     help="skip the transformer trainer's section (1, 8 and 64 runs on 1 and 2 threads, about a minute)")
    ben.set_defaults(run=_bench)


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .bench import bench, parse_figures  # imported here: it is the only command that needs it

    print(json.dumps(bench(args.device, parse_figures(args.figures), args.baseline, not args.no_transformer), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m factlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_reproduce(sub)
    _add_bench(sub)  # each subcommand: a _add_<name>(sub) that sets run=<handler>(args, parser) -> exit code
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            return args.run(args, parser)
        except (ValueError, TypeError, StoreLocked) as err:  # a bad argument, path or store: one line, status 2
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 2
        except (WorkerDied, OSError) as err:  # the run failed (a worker killed, a disk full...): one line, status 1
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 1


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. records of a results store that are ignored) as one line each on stderr."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())
