"""Sweeps: independent jobs (a JSON-able config -> a JSON-able result) whose results are written to an
on-disk store as each one finishes, so an interrupted sweep resumes with nothing lost and nothing run twice.

The store is JSON lines, one ``{"key", "job", "result"}`` record per finished job, keyed by a hash of the job.

``run_sweep`` runs the jobs in this process (``executor="inline"``), on local worker processes
(``"processes"``, a ``concurrent.futures.ProcessPoolExecutor`` started with "spawn") or on a Dask cluster
(``"dask"``: a ``dask.distributed.LocalCluster`` it starts, or an existing scheduler's address). Whatever the
executor, results reach the store in this process, one by one as jobs finish.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import sys
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ._validate import check_choice, check_int
from .progress import progress_bar

EXECUTORS = ("inline", "processes", "dask")
SCHEDULER_PROTOCOLS = ("tcp://", "tls://", "ucx://", "inproc://")


@dataclass(frozen=True)
class Figure:
    """A paper figure as a sweep: a config per profile, the jobs of a config, and the function of one job.

    ``run_job`` must be a module-level function (so process and Dask executors can pickle it).
    """

    name: str
    description: str
    configs: dict[str, dict]         # profile -> config
    jobs: Callable[[dict], list[dict]]  # config -> jobs
    run_job: Callable[..., object]   # (job, device=...) -> row or list of rows


def job_key(job: dict) -> str:
    """A stable hash of a job's config (key order does not matter)."""
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


class ResultStore:
    """Finished results on disk (JSON lines); a truncated last line from a killed run is ignored."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.results: dict[str, object] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the write of this line was interrupted: that job simply runs again
                self.results[record["key"]] = record["result"]

    def __contains__(self, job: dict) -> bool:
        return job_key(job) in self.results

    def __getitem__(self, job: dict):
        return self.results[job_key(job)]

    def add(self, job: dict, result) -> None:
        key = job_key(job)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+") as f:
            # a killed run may have left a cut-off last line: start ours on a fresh line
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            f.write(json.dumps({"key": key, "job": job, "result": result}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.results[key] = result


def run_sweep(jobs: Iterable[dict], fn: Callable[[dict], object], store: ResultStore | None = None,
              progress: bool = True, desc: str | None = None, executor: str = "inline",
              workers: int | None = None, scheduler: str | None = None) -> list:
    """Run ``fn`` on every distinct job not already in ``store``; return all results in job order.

    Jobs with the same ``job_key`` run once (the returned list repeats their result). Whatever the executor,
    each result is added to ``store`` in this process as soon as its job finishes, so a killed sweep resumes
    where it stopped. An error in a job is raised here after the results finished before it are stored; jobs
    not yet started are cancelled.

    executor: ``"inline"`` (default) runs the jobs one after the other in this process. ``"processes"`` runs
        them on ``workers`` local processes (default ``os.cpu_count()``) started with "spawn"; each limits
        torch, OpenMP and BLAS to ``cpu_count // workers`` threads unless ``OMP_NUM_THREADS`` is set.
        ``"dask"`` runs them on a ``dask.distributed`` cluster: with ``scheduler=None``, a ``LocalCluster`` of
        ``workers`` one-thread worker processes (default ``os.cpu_count()``) started here and closed at the
        end; otherwise the existing cluster whose scheduler listens at ``scheduler`` (``"tcp://host:8786"``,
        or a ``tls://``, ``ucx://`` or ``inproc://`` address), whose workers must have factlib installed.
    For ``"processes"`` and ``"dask"``, ``fn`` and the jobs are pickled and sent to the workers: ``fn`` must be
    a module-level function or a ``functools.partial`` of one (not a lambda, nor a function defined inside
    another), in a module the workers can import.
    """
    check_choice("executor", executor, EXECUTORS)
    if workers is not None:
        workers = check_int("workers", workers, 1, 1024)
        if executor == "inline":
            raise ValueError("workers is only used with executor processes or dask; got executor 'inline'")
    if scheduler is not None:
        if executor != "dask":
            raise ValueError(f"scheduler is only used with executor dask; got executor {executor!r}")
        if not isinstance(scheduler, str) or not scheduler.startswith(SCHEDULER_PROTOCOLS):
            raise ValueError(f"scheduler must be an address starting with {', '.join(SCHEDULER_PROTOCOLS)} "
                             f"(e.g. tcp://host:8786); got {scheduler!r}")
        if workers is not None:
            raise ValueError("workers is not used with a scheduler (the cluster's workers run the jobs); "
                             f"got workers {workers}")
    jobs = list(jobs)
    keys = [job_key(job) for job in jobs]
    distinct: dict[str, dict] = {}  # one job per key, the first of any duplicates
    for key, job in zip(keys, jobs):
        distinct.setdefault(key, job)
    todo = {key: job for key, job in distinct.items() if store is None or key not in store.results}
    done: dict[str, object] = {}
    bar = progress_bar(desc=desc, disable=not progress, initial=len(distinct) - len(todo), total=len(distinct))

    def finish(key: str, result) -> None:
        if store is not None:
            store.add(todo[key], result)
        done[key] = result
        bar.update()

    try:
        if executor == "inline":
            for key, job in todo.items():
                finish(key, fn(job))
        elif todo:
            run = _run_processes if executor == "processes" else _run_dask
            run(todo, fn, finish, workers, scheduler)
    finally:
        bar.close()
    return [done[key] if key in done else store.results[key] for key in keys]


def _collect(futures: dict, completed: Iterable, finish: Callable, stop: Callable[[], None]) -> None:
    """Pass each result of ``futures`` (future -> job key) to ``finish`` in the order ``completed`` yields them.

    On a job's error: ``stop()`` cancels the jobs not started, then what else finished is kept and the error
    raised again.
    """
    for future in completed:
        key = futures.pop(future)
        try:
            result = future.result()
        except BaseException:
            stop()
            for other, other_key in futures.items():
                if other.done() and not other.cancelled():
                    try:
                        other_result = other.result()
                    except Exception:
                        continue
                    finish(other_key, other_result)
            raise
        finish(key, result)


def _limit_threads(threads: int) -> None:
    """Initializer of a local worker process: ``threads`` threads for torch, OpenMP and BLAS, unless the user
    set ``OMP_NUM_THREADS``."""
    user_set = "OMP_NUM_THREADS" in os.environ
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))  # read by torch and numpy when first imported
    torch = sys.modules.get("torch")  # already imported with the parent's main module
    if torch is not None and not user_set:
        torch.set_num_threads(threads)


def _run_processes(todo: dict, fn: Callable, finish: Callable, workers: int | None, scheduler: str | None) -> None:
    try:
        pickle.dumps(fn)
    except Exception as err:  # say so now, not once per job from the pool's feeder thread
        raise TypeError("fn must be picklable to run on worker processes: a module-level function or a "
                        f"functools.partial of one; got {fn!r} ({err})") from err
    cpus = os.cpu_count() or 1
    n = min(workers or cpus, len(todo))
    # "spawn": a forked child of a process that has used torch (threads, CUDA) can deadlock
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_limit_threads, initargs=(max(1, cpus // n),))
    try:
        futures = {pool.submit(fn, job): key for key, job in todo.items()}
        # stop: cancel what has not started and wait for the running jobs, whose results are then kept
        _collect(futures, as_completed(futures), finish,
                 lambda: pool.shutdown(wait=True, cancel_futures=True))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(todo: dict, fn: Callable, finish: Callable, workers: int | None, scheduler: str | None) -> None:
    from distributed import Client, LocalCluster, as_completed as dask_completed  # imported here: dask is heavy

    cluster = None
    if scheduler is None:
        n = min(workers or os.cpu_count() or 1, len(todo))
        # no dashboard; the scheduler's small HTTP server (health checks) on a free local port, not on 8787
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            run = uuid.uuid4().hex[:8]  # keys unique to this run: a shared scheduler may hold other sweeps' tasks
            futures = {client.submit(fn, job, pure=False, key=f"sweep-{key}-{run}"): key
                       for key, job in todo.items()}
            _collect(futures, dask_completed(list(futures)), finish,
                     lambda: client.cancel([f for f in futures if not f.done()]))
    finally:
        if cluster is not None:
            cluster.close()
