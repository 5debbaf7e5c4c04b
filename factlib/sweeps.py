"""Sweeps: independent jobs (a JSON-able config -> a JSON-able result) whose results are written to an
on-disk store as each one finishes, so an interrupted sweep resumes with nothing lost and nothing run twice.

The store is JSON lines, one record per finished job: ``{"key", "job", "context", "result", "wall_s",
"checksum"}``. ``context`` says what produced the result besides the job (for the figures: the factlib version,
a hash of the code, the device kind and the dtype, see ``factlib.figures.job_context``) and ``key`` hashes the
job and the context together, so a record is reused only by the same job under the same code and
environment. ``checksum`` is the SHA-256 of the rest of the record: it catches a record damaged or edited by
hand (a result changed, a job swapped), which is then ignored and its job run again. It is a checksum, not a
signature: whoever edits a record and recomputes the checksum can still forge one.

Records are only ever appended (under a file lock), never deleted: the store of a finished run stays as a
cache, and the records of other runs sharing the file survive.

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
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ._validate import check_choice, check_int
from .progress import progress_bar

EXECUTORS = ("inline", "processes", "dask")
SCHEDULER_PROTOCOLS = ("tcp://", "tls://", "ucx://", "inproc://")
#: seconds to wait for a connection to a Dask scheduler, then for a first worker to join it
DASK_CONNECT_TIMEOUT_S = 10
DASK_WORKER_TIMEOUT_S = 60
#: seconds a store append waits for another process appending to the same store
STORE_LOCK_TIMEOUT_S = 60


@dataclass(frozen=True)
class Figure:
    """A paper figure as a sweep: a config per profile, the jobs of a config, and the function of one job.

    ``run_job`` must be a module-level function (so process and Dask executors can pickle it). ``dtype`` is
    the floating-point type its jobs compute in (part of the result store's key); ``details``, if given, maps
    a config to extra provenance (e.g. the full training protocol behind a short config).
    """

    name: str
    description: str
    configs: dict[str, dict]         # profile -> config
    jobs: Callable[[dict], list[dict]]  # config -> jobs
    run_job: Callable[..., object]   # (job, device=...) -> row or list of rows
    dtype: str = "float32"
    details: Callable[[dict], dict] | None = None


class StoreLocked(OSError):
    """Another run holds the lock of this output: refused rather than computing every job twice."""


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def job_key(job: dict) -> str:
    """A stable hash of a job's config (key order does not matter)."""
    return hashlib.sha256(_canonical(job).encode()).hexdigest()[:16]


def record_key(job: dict, context: dict | None = None) -> str:
    """The store key of ``job`` run under ``context``: ``job_key(job)`` without a context, else a hash of both."""
    return job_key(job) if context is None else job_key({"job": job, "context": context})


def _checksum(record: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "checksum"}).encode()).hexdigest()


def _problem(record, context: dict | None, check_result: Callable[[object], bool] | None) -> str | None:
    """Why a parsed store line cannot be reused under ``context`` (None if it can)."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    missing = {"key", "job", "result", "checksum"} - set(record)
    if missing:
        return f"no {', '.join(sorted(missing))}"
    if not isinstance(record["job"], dict):
        return "its job is not a JSON object"
    if record["checksum"] != _checksum(record):
        return "its checksum does not match (the record was damaged or edited)"
    if record["key"] != record_key(record["job"], record.get("context")):
        return "its key does not match its job"
    if record.get("context") != context:
        return "it was made by other code or on another device or dtype"
    if check_result is not None and not check_result(record["result"]):
        return "its result is malformed"
    return None


class ResultStore:
    """Finished results on disk (JSON lines), for jobs run under ``context`` (see the module's docstring).

    A record is reused only if its checksum, key, job and context all agree (and ``check_result(result)``
    holds, if given). Other lines are ignored: lines cut short by a killed run silently, records of
    another context silently (other code, device or dtype; they stay in the file), anything else with a
    one-line warning naming the file and the line. ``rejected`` maps the ``job_key`` of a job whose record was
    ignored (damaged, edited or stale) to the reason, so a sweep can count what it recomputed.
    """

    def __init__(self, path: str | os.PathLike, context: dict | None = None,
                 check_result: Callable[[object], bool] | None = None):
        self.path = Path(path)
        self.context = context
        self.check_result = check_result
        self.records: dict[str, dict] = {}
        self.rejected: dict[str, str] = {}
        if self.path.is_dir():
            raise ValueError(f"{self.path}: is a folder, not a results store")
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        problems = []
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.append(f"line {number}: not UTF-8 text")
                continue
            except json.JSONDecodeError:
                continue  # a write cut short by a kill (the next run starts on a fresh line): that job runs again
            problem = _problem(record, self.context, self.check_result)
            if problem is None:
                self.records[record["key"]] = record
                continue
            if isinstance(record, dict) and isinstance(record.get("job"), dict):
                self.rejected[job_key(record["job"])] = problem
            if problem.startswith("it was made by other"):
                continue  # a record of other code or another environment: not ours to judge
            problems.append(f"line {number}: {problem}")
        if problems:
            warnings.warn(f"{self.path}: ignored {len(problems)} record(s), their jobs run again "
                          f"({'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''})", stacklevel=3)

    @property
    def results(self) -> dict[str, object]:
        """Key -> result of every reusable record."""
        return {key: record["result"] for key, record in self.records.items()}

    def key(self, job: dict) -> str:
        return record_key(job, self.context)

    def __contains__(self, job: dict) -> bool:
        key = self.key(job)
        return key in self.records and _canonical(self.records[key]["job"]) == _canonical(job)

    def __getitem__(self, job: dict):
        if job not in self:
            raise KeyError(job_key(job))
        return self.records[self.key(job)]["result"]

    def wall_s(self, job: dict) -> float:
        """Seconds the stored run of ``job`` took (0 if not recorded)."""
        value = self.records[self.key(job)].get("wall_s")
        return float(value) if isinstance(value, (int, float)) else 0.0

    def add(self, job: dict, result, wall_s: float | None = None) -> None:
        key = self.key(job)
        record = {"key": key, "job": job, **({"context": self.context} if self.context is not None else {}),
                  "result": result, **({"wall_s": round(wall_s, 3)} if wall_s is not None else {})}
        record["checksum"] = _checksum(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self.path}.lock", timeout=STORE_LOCK_TIMEOUT_S), self.path.open("a+") as f:
            # a killed run may have left a cut-off last line: start ours on a fresh line
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[key] = record
        self.rejected.pop(job_key(job), None)


@contextmanager
def exclusive(path: str | os.PathLike, what: str = "out"):
    """Hold ``<path>.lock`` while the block runs; raise ``StoreLocked`` at once if another process holds it."""
    lock = FileLock(f"{path}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise StoreLocked(f"{what} {str(path)!r} is in use by another run (lock {path}.lock); wait for it to "
                          f"finish or choose another {what}") from None
    try:
        yield
    finally:
        lock.release()


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename: a reader (or a
    kill) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class SweepStats:
    """What ``run_sweep`` did: distinct jobs, reused from the store, recomputed because their record was
    ignored (damaged, edited, stale), and the stored compute time of the reused ones."""

    jobs_total: int = 0
    jobs_reused: int = 0
    jobs_recomputed_invalid: int = 0
    reused_wall_s: float = 0.0


def _timed(fn: Callable, job: dict) -> tuple[object, float]:
    """``fn(job)`` and the seconds it took (module-level, so executors can pickle it)."""
    start = time.perf_counter()
    result = fn(job)
    return result, time.perf_counter() - start


def check_executor(executor: str, workers: int | None, scheduler: str | None) -> int | None:
    """Check ``run_sweep``'s executor, workers and scheduler together; return workers as an int (or None)."""
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
    return workers


def run_sweep(jobs: Iterable[dict], fn: Callable[[dict], object], store: ResultStore | None = None,
              progress: bool = True, desc: str | None = None, executor: str = "inline",
              workers: int | None = None, scheduler: str | None = None, stats: SweepStats | None = None) -> list:
    """Run ``fn`` on every distinct job not already in ``store``; return all results in job order.

    Jobs with the same ``job_key`` run once (the returned list repeats their result). Whatever the executor,
    each result is added to ``store`` in this process as soon as its job finishes, so a killed sweep resumes
    where it stopped. An error in a job is raised here after the results finished before it are stored; jobs
    not yet started are cancelled. ``stats``, if given, receives the counts of a ``SweepStats``.

    executor: ``"inline"`` (default) runs the jobs one after the other in this process. ``"processes"`` runs
        them on ``workers`` local processes (default ``os.cpu_count()``) started with "spawn"; each limits
        torch, OpenMP and BLAS to ``cpu_count // workers`` threads unless ``OMP_NUM_THREADS`` is set, and
        exits when this process is gone (even after a SIGKILL).
        ``"dask"`` runs them on a ``dask.distributed`` cluster: with ``scheduler=None``, a ``LocalCluster`` of
        ``workers`` one-thread worker processes (default ``os.cpu_count()``) started here and closed at the
        end; otherwise the existing cluster whose scheduler listens at ``scheduler`` (``"tcp://host:8786"``,
        or a ``tls://``, ``ucx://`` or ``inproc://`` address), whose workers must have factlib installed. A
        scheduler that cannot be reached within ``DASK_CONNECT_TIMEOUT_S``, or that has no worker within
        ``DASK_WORKER_TIMEOUT_S``, raises ``ValueError`` naming it.
    For ``"processes"`` and ``"dask"``, ``fn`` and the jobs are pickled and sent to the workers: ``fn`` must be
    a module-level function or a ``functools.partial`` of one (not a lambda, nor a function defined inside
    another), in a module the workers can import.
    """
    workers = check_executor(executor, workers, scheduler)
    jobs = list(jobs)
    keys = [job_key(job) for job in jobs]
    distinct: dict[str, dict] = {}  # one job per key, the first of any duplicates
    for key, job in zip(keys, jobs):
        distinct.setdefault(key, job)
    todo = {key: job for key, job in distinct.items() if store is None or job not in store}
    if stats is not None:
        reused = [job for key, job in distinct.items() if key not in todo]
        stats.jobs_total, stats.jobs_reused = len(distinct), len(reused)
        stats.jobs_recomputed_invalid = sum(store is not None and key in store.rejected for key in todo)
        stats.reused_wall_s = sum(store.wall_s(job) for job in reused)
    done: dict[str, object] = {}
    bar = progress_bar(desc=desc, disable=not progress, initial=len(distinct) - len(todo), total=len(distinct))

    def finish(key: str, timed: tuple[object, float]) -> None:
        result, seconds = timed
        if store is not None:
            store.add(todo[key], result, seconds)
        done[key] = result
        bar.update()

    try:
        if executor == "inline":
            for key, job in todo.items():
                finish(key, _timed(fn, job))
        elif todo:
            run = _run_processes if executor == "processes" else _run_dask
            run(todo, fn, finish, workers, scheduler)
    finally:
        bar.close()
    return [done[key] if key in done else store[distinct[key]] for key in keys]


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


def _exit_with_parent(parent: int) -> None:
    """In a worker process: exit as soon as the process ``parent`` is gone, so that no worker outlives a
    killed sweep. On Linux the kernel sends SIGKILL at the parent's death (prctl PR_SET_PDEATHSIG); everywhere,
    a daemon thread also checks every half second whether this process was handed to another parent."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(threads: int, parent: int) -> None:
    """Initializer of a local worker process: exit with ``parent``; ``threads`` threads for torch, OpenMP and
    BLAS, unless the user set ``OMP_NUM_THREADS``."""
    _exit_with_parent(parent)
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
                               initializer=_init_worker, initargs=(max(1, cpus // n), os.getpid()))
    try:
        futures = {pool.submit(_timed, fn, job): key for key, job in todo.items()}
        # stop: cancel what has not started and wait for the running jobs, whose results are then kept
        _collect(futures, as_completed(futures), finish,
                 lambda: pool.shutdown(wait=True, cancel_futures=True))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler`` with at least one worker, or a one-line ValueError."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"scheduler {scheduler} cannot be reached within {DASK_CONNECT_TIMEOUT_S} s "
                         f"({reason[:200]})") from None
    try:
        client.wait_for_workers(1, timeout=DASK_WORKER_TIMEOUT_S)
    except (OSError, TimeoutError):
        client.close()
        raise ValueError(f"scheduler {scheduler} has no worker: none joined within {DASK_WORKER_TIMEOUT_S} s "
                         "(start workers with `dask worker " + scheduler + "`)") from None
    return client


def _run_dask(todo: dict, fn: Callable, finish: Callable, workers: int | None, scheduler: str | None) -> None:
    from distributed import Client, LocalCluster, as_completed as dask_completed  # imported here: dask is heavy

    cluster = None
    if scheduler is None:
        n = min(workers or os.cpu_count() or 1, len(todo))
        # no dashboard; the scheduler's small HTTP server (health checks) on a free local port, not on 8787
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        with (Client(cluster) if cluster is not None else _connect(scheduler)) as client:
            run = uuid.uuid4().hex[:8]  # keys unique to this run: a shared scheduler may hold other sweeps' tasks
            futures = {client.submit(_timed, fn, job, pure=False, key=f"sweep-{key}-{run}"): key
                       for key, job in todo.items()}
            _collect(futures, dask_completed(list(futures)), finish,
                     lambda: client.cancel([f for f in futures if not f.done()]))
    finally:
        if cluster is not None:
            cluster.close()
