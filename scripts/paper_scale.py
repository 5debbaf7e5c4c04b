"""Figure 4 (left) at the paper's protocol, resumable, committing its job store as it grows.

Runs ``python -m factlib reproduce <figure> --profile full`` one model dimension d at a time (each d is one job per
(alpha, beta) split, 3 seeds x 3 learning rates x a capacity search), so that the job store
``book/data/<figure>-full.json.jobs.jsonl`` grows job by job; after every d it rewrites ``<figure>-full.json``
from everything stored so far and (with ``--commit``) commits both files, and (with ``--copy-to``) copies them
there (e.g. ``$OUT`` on a lent GPU machine, whose git commits do not come back). It stops starting new work after
``--minutes``; a killed run loses only the job in flight, and the next run resumes from the store.

On a GPU (the default device is cuda when present):

    PYTHONPATH=. python scripts/paper_scale.py --minutes 12 --copy-to "$OUT"

On a CPU, a labelled subset in chunks (the paper's protocol, fewer splits and seeds, written to its own file):

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/paper_scale.py --cpu-subset --d 8,11,16 --minutes 30 --commit

(``--workers 2`` runs two of a d's splits at once, one process and one thread each, on an otherwise idle 2-core
machine.)

Figures after fig4-left (``--figures fig4-left,fig4-right,fig7,fig8,fig9``) run in order if time is left.
The store is keyed by factlib's code: results computed by other code are recomputed, not mixed in.
"""
import argparse
import dataclasses
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from factlib.figures import FIGURES, reproduce, reproduce_reduced

DATA = Path("book/data")
#: the CPU subset: the paper's protocol (batch 1024, <= 2^14 steps, three learning rates, 5 % resolution) on the
#: diagonal splits only, its three seeds
CPU_SUBSET = {"alpha_beta": [[1, 1], [2, 2], [0.5, 0.5]], "seeds": [0, 1, 2]}
CPU_NOTE = ("CPU subset of the paper's protocol (batch 1024, <= 2^14 steps, lr in {1e-3, 3e-3, 1e-2}, 5 % "
            "search resolution, 3 seeds): (alpha, beta) in {(1, 1), (2, 2), (0.5, 0.5)} instead of 25 pairs, d as "
            "listed")


def _commit(paths: list[Path], message: str) -> None:
    subprocess.run(["git", "add", "--force", *map(str, paths)], check=True)  # job stores are ignored elsewhere
    if subprocess.run(["git", "diff", "--cached", "--quiet"]).returncode:  # something staged
        subprocess.run(["git", "commit", "-q", "-m", message], check=True)


def _copy(files: list[Path], copy_to: Path) -> None:
    copy_to.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.exists():
            shutil.copy(f, copy_to / f.name)


def run_figure(figure: str, dims: list[int], deadline: float, cpu_subset: bool, commit: bool,
               copy_to: Path | None, workers: int) -> list[int]:
    """Every d of ``dims`` for ``figure`` until ``deadline``; returns the d's done (stored). With ``copy_to``, the
    store is also copied there every 30 s, so a run killed in the middle of a d still hands back its finished
    jobs."""
    name = f"{figure}-full-cpu" if cpu_subset else f"{figure}-full"
    out = DATA / f"{name}.json"
    files = [out, Path(f"{out}.jobs.jsonl")]
    where = {"executor": "processes", "workers": workers} if workers > 1 else {}
    stop = threading.Event()
    if copy_to is not None:
        def mirror():
            while not stop.wait(30):
                _copy(files, copy_to)

        threading.Thread(target=mirror, daemon=True).start()
    done = []
    try:
        done = _run_dims(figure, dims, deadline, cpu_subset, commit, copy_to, out, files, name, where)
    finally:
        stop.set()
    return done


def _run_dims(figure, dims, deadline, cpu_subset, commit, copy_to, out, files, name, where) -> list[int]:
    done = []
    for d in dims:
        if time.time() > deadline:
            print(f"{figure}: deadline reached before d = {d}", flush=True)
            break
        start = time.time()
        for ds in ([d], done + [d]):  # compute d (store grows), then rewrite the JSON from all stored d's
            if cpu_subset:
                reproduce_reduced(figure, str(out), CPU_NOTE, d=ds, **where, **CPU_SUBSET)
            else:
                reproduce(figure, "full", out=str(out), progress=False, d=ds, **where)
        done.append(d)
        print(f"{figure}: d = {d} done in {time.time() - start:.0f} s", flush=True)
        if commit:
            _commit(files, f"{name}: d = {', '.join(map(str, done))} stored (scripts/paper_scale.py)")
        if copy_to is not None:
            _copy(files, copy_to)
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", default="fig4-left", help="comma-separated, run in order")
    parser.add_argument("--d", help="comma-separated d values (default: the full profile's)")
    parser.add_argument("--minutes", type=float, default=12.0, help="start no new d after this long")
    parser.add_argument("--cpu-subset", action="store_true", help="the labelled CPU subset (see CPU_SUBSET)")
    parser.add_argument("--commit", action="store_true", help="git commit the store after every d")
    parser.add_argument("--copy-to", type=Path, help="copy the store and JSON here every 30 s and after every d")
    parser.add_argument("--job-per", choices=["d", "split", "seed"], default=None,
                        help="one job per d (all splits in flight together; the default with a GPU), per (d, alpha, "
                             "beta), or per (d, alpha, beta, seed) (the finest resumption; the default on a CPU)")
    parser.add_argument("--workers", type=int, default=None,
                        help="jobs run at once, each in its own process (default: 16 with a GPU, where each job "
                             "keeps its runs in flight on the device and the processes overlap; else 1)")
    args = parser.parse_args(argv)
    deadline = time.time() + 60 * args.minutes
    import torch

    gpu = torch.cuda.is_available()
    workers = args.workers or (16 if gpu else 1)
    job_per = args.job_per or ("d" if gpu else "seed")
    for figure in args.figures.split(","):
        fig = FIGURES[figure]
        config = fig.configs["full"]
        if "job_per" in config:  # the granularity of the jobs, not their content: set in the registry
            FIGURES[figure] = dataclasses.replace(fig, configs={**fig.configs, "full": {**config, "job_per": job_per}})
        dims = [int(v) for v in args.d.split(",")] if args.d else list(config["d"])
        run_figure(figure, dims, deadline, args.cpu_subset, args.commit, args.copy_to, workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
