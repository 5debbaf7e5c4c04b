"""Sweeps: independent jobs (a JSON-able config -> a JSON-able result) whose results are written to an
on-disk store as each one finishes, so an interrupted sweep resumes with nothing lost and nothing run twice.

The store is JSON lines, one ``{"key", "job", "result"}`` record per finished job, keyed by a hash of the job.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm


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
    """Run ``fn`` on every job not already in ``store``; return all results in job order."""
    if executor != "inline" or workers is not None or scheduler is not None:
        raise NotImplementedError("only the in-process executor exists so far")
    jobs = list(jobs)
    todo = [job for job in jobs if store is None or job not in store]
    done = {}
    for job in tqdm(todo, desc=desc, disable=not progress, initial=len(jobs) - len(todo), total=len(jobs)):
        result = fn(job)
        if store is not None:
            store.add(job, result)
        done[job_key(job)] = result
    return [done[job_key(j)] if job_key(j) in done else store[j] for j in jobs]
