"""Job functions for the sweep tests, in a module of their own: worker processes (spawned, or Dask's) import
it by name to unpickle them, which they cannot do for functions defined in a test module."""
import os
import time


def square(job: dict) -> dict:
    """A cheap job: the square of ``job["x"]`` (fails on purpose where ``job["fail"]`` is true)."""
    if job.get("fail"):
        raise RuntimeError(f"job {job['x']} failed on purpose")
    return {"square": job["x"] ** 2, "label": f"job-{job['x']}"}


def logged_square(job: dict, log: str, delay: float = 0.0) -> dict:
    """``square``, after appending the job's ``x`` and this process's id to the file ``log`` (durably) and
    sleeping ``delay`` seconds: a record of every start of every job, whichever process ran it."""
    with open(log, "a") as f:
        f.write(f"{job['x']} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(delay)
    return square(job)


def runs(log: str) -> dict[int, int]:
    """How many times each job (by ``x``) started, from the log written by ``logged_square``."""
    counts: dict[int, int] = {}
    if os.path.exists(log):
        for line in open(log).read().splitlines():
            x = int(line.split()[0])
            counts[x] = counts.get(x, 0) + 1
    return counts


def dying_square(job: dict) -> dict:
    """``square``, except that the worker process running it is killed (SIGKILL) where ``job["die"]`` is true."""
    if job.get("die"):
        os.kill(os.getpid(), 9)
    return square(job)


def tensor_result(job: dict):
    """A job whose result is not JSON: a torch tensor."""
    import torch

    return torch.ones(2) * job["x"]
