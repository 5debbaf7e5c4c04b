"""Command line: ``python -m factlib reproduce <figure> --profile quick|full --device auto --out FILE.json``."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

from . import __version__
from ._validate import check_int
from .config import DEVICES, PROFILES, device as pick_device
from .figures import FIGURES
from .sweeps import ResultStore, run_sweep


def reproduce(figure: str, profile: str = "quick", device: str = "auto", out: str | None = None,
              progress: bool = True, d: list[int] | None = None, seeds: int | None = None) -> dict:
    """Run a figure's sweep and return ``{"figure", "profile", "rows", "provenance"}``; resumable via ``out``.

    ``d`` and ``seeds`` (a count) override the profile's values.
    Finished jobs are kept in ``<out>.jobs.jsonl`` while the sweep runs, so a killed run picks up where it
    stopped; the file is removed once ``out`` is written.
    """
    if figure not in FIGURES:
        raise ValueError(f"figure must be one of {', '.join(FIGURES)}; got {figure!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    fig = FIGURES[figure]
    dev = pick_device(device)
    config = dict(fig.configs[profile])
    if d is not None:
        config["d"] = [check_int("d", v, 2, 4096) for v in d]
    if seeds is not None:
        config["seeds"] = list(range(check_int("seeds", seeds, 1, 1000)))
    store_path = Path(f"{out}.jobs.jsonl") if out else None
    store = ResultStore(store_path) if store_path else None
    start = time.perf_counter()
    rows = run_sweep(fig.jobs(config), lambda job: fig.run_job(job, dev), store, progress, desc=figure)
    result = {
        "figure": figure,
        "profile": profile,
        "rows": rows,
        "provenance": {
            "factlib_version": __version__,
            "torch_version": torch.__version__,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
            "config": config,
            "seeds": config.get("seeds"),
            "wall_time_s": round(time.perf_counter() - start, 2),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
        store_path.unlink(missing_ok=True)
    return result


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer; got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m factlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run the sweep behind one of the paper's figures")
    rep.add_argument("figure", nargs="?", help=f"one of: {', '.join(FIGURES)}")
    rep.add_argument("--list", action="store_true", help="list the figures and exit")
    rep.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)} (default quick)")
    rep.add_argument("--device", default="auto", help=f"one of: {', '.join(DEVICES)} (default auto)")
    rep.add_argument("--out", help="write the results here as JSON (and resume from <out>.jobs.jsonl)")
    rep.add_argument("--d", help="comma-separated embedding dimensions, each in [2, 4096] (default: the profile's)")
    rep.add_argument("--seeds", help="number of seeds, in [1, 1000] (default: the profile's)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.list:
        for name, fig in FIGURES.items():
            print(f"{name:12s} {fig.description}")
        return 0
    if args.figure is None:
        parser.error("a figure is required (see --list)")
    try:
        dims = None if args.d is None else [_parse_int("d", v) for v in args.d.split(",")]
        seeds = None if args.seeds is None else _parse_int("seeds", args.seeds)
        result = reproduce(args.figure, args.profile, args.device, args.out, not args.no_progress, dims, seeds)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.out:
        print(json.dumps(result, indent=1))
    else:
        print(f"wrote {args.out}: {len(result['rows'])} rows in {result['provenance']['wall_time_s']} s "
              f"on {result['provenance']['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
