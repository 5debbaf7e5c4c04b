"""Sweeps: job keys, the JSON-lines result store, resuming, and surviving a SIGKILL (factlib.sweeps)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from factlib.sweeps import ResultStore, job_key, run_sweep

FAST = settings(max_examples=50, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
jobs = st.dictionaries(st.text(min_size=1, max_size=6), json_values, min_size=1, max_size=6)


def _wait_for_results(proc: subprocess.Popen, store_path, count: int, timeout: float = 30) -> None:
    """Wait until the sweep run by ``proc`` has stored ``count`` results (it must still be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store_path.exists() and len(store_path.read_text().splitlines()) >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it was killed: {proc.stderr.read().decode()}")
        time.sleep(0.02)
    pytest.fail(f"the sweep did not finish {count} jobs within {timeout} s")


def _shuffled(job: dict, seed: int) -> dict:
    items = list(job.items())
    random.Random(seed).shuffle(items)
    return {k: (_shuffled(v, seed) if isinstance(v, dict) else v) for k, v in items}


@FAST
@given(job=jobs, seed=st.integers(0, 1000))
def test_job_key_ignores_key_order(job, seed):
    key = job_key(job)
    assert isinstance(key, str) and len(key) == 16
    assert job_key(_shuffled(job, seed)) == key


@FAST
@given(job=jobs, other=jobs)
def test_job_key_tells_jobs_apart(job, other):
    if job != other:
        assert job_key(job) != job_key(other)


def test_job_key_stable_across_processes():
    job = {"d": 8, "seed": 0, "lrs": [3.0, 1.0]}
    code = "import json,sys; from factlib.sweeps import job_key; print(job_key(json.loads(sys.argv[1])))"
    out = subprocess.run([sys.executable, "-c", code, json.dumps({"seed": 0, "lrs": [3.0, 1.0], "d": 8})],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == job_key(job)


@FAST
@given(records=st.lists(st.tuples(jobs, json_values), max_size=6))
def test_store_round_trip(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("store") / "sub" / "results.jsonl"  # parent folder created on demand
    store = ResultStore(path)
    expected = {}
    for job, result in records:
        first = expected.get(job_key(job), result)
        if json.dumps(first, sort_keys=True) != json.dumps(result, sort_keys=True):
            with pytest.raises(ValueError, match="already stored with another result"):
                store.add(job, result)  # the first result of a job stays: records are never replaced
        else:
            store.add(job, result)
            expected[job_key(job)] = result
        assert job in store and store[job] == expected[job_key(job)]
    reopened = ResultStore(path)
    assert reopened.results == expected
    for job, _ in records:
        assert job in reopened and reopened[job] == expected[job_key(job)]
    assert len(path.read_text().splitlines()) == len(expected) if path.exists() else not expected


def test_empty_store_and_missing_job(tmp_path):
    store = ResultStore(tmp_path / "none.jsonl")
    assert store.results == {} and {"a": 1} not in store
    with pytest.raises(KeyError):
        store[{"a": 1}]
    assert not (tmp_path / "none.jsonl").exists()


def test_store_ignores_truncated_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    store.add({"i": 0}, {"v": 0})
    store.add({"i": 1}, {"v": 1})
    line = json.dumps({"key": job_key({"i": 2}), "job": {"i": 2}, "result": {"v": 2}})
    with path.open("a") as f:
        f.write(line[: len(line) // 2])  # a write cut short by a kill
    reopened = ResultStore(path)
    assert reopened.results == {job_key({"i": 0}): {"v": 0}, job_key({"i": 1}): {"v": 1}}
    assert {"i": 2} not in reopened


def test_store_keeps_records_added_after_a_truncated_line(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultStore(path).add({"i": 0}, 0)
    with path.open("a") as f:
        f.write('{"key": "abc')
    resumed = ResultStore(path)
    resumed.add({"i": 1}, 1)
    assert {"i": 1} in ResultStore(path)


def test_run_sweep_without_store_returns_results_in_order():
    calls = []
    jobs_ = [{"x": x} for x in (3, 1, 2)]
    assert run_sweep(jobs_, lambda j: calls.append(j["x"]) or j["x"] ** 2, progress=False) == [9, 1, 4]
    assert calls == [3, 1, 2]


def test_run_sweep_skips_finished_jobs(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    jobs_ = [{"x": x, "tag": "t"} for x in range(6)]
    store.add(jobs_[1], "stored-1")  # results deliberately unlike what fn returns: proves they were reused
    store.add(jobs_[4], "stored-4")
    calls = []

    def fn(job):
        calls.append(job["x"])
        return job["x"] * 10

    results = run_sweep(jobs_, fn, store, progress=False)
    assert results == [0, "stored-1", 20, 30, "stored-4", 50]
    assert calls == [0, 2, 3, 5]
    # a second run over the same store computes nothing
    calls.clear()
    assert run_sweep(jobs_, fn, ResultStore(tmp_path / "r.jsonl"), progress=False) == results
    assert calls == []


# --- a sweep killed with SIGKILL resumes with nothing lost and nothing finished run twice ----------------

JOB_CODE = '''
import json, os, time
from factlib.sweeps import ResultStore, job_key, run_sweep

def make_fn(calls_path, delay):
    def fn(job):
        with open(calls_path, "a") as f:       # record the start of every call, durably
            f.write(job_key(job) + "\\n")
            f.flush()
            os.fsync(f.fileno())
        time.sleep(delay)
        return {"square": job["x"] ** 2, "label": f"job-{job['x']}"}
    return fn

JOBS = [{"x": x, "sweep": "kill-test"} for x in range(12)]
'''


def test_sweep_resumes_after_sigkill(tmp_path):
    store_path, calls_path = tmp_path / "store.jsonl", tmp_path / "calls.txt"
    code = JOB_CODE + (f"\nrun_sweep(JOBS, make_fn({str(calls_path)!r}, 0.25), "
                       f"ResultStore({str(store_path)!r}), progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_results(proc, store_path, 3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    finished_before = set(ResultStore(store_path).results)
    assert 3 <= len(finished_before) < 12, "the kill must land mid-sweep"
    started_before = calls_path.read_text().split()

    namespace = {}
    exec(JOB_CODE, namespace)
    jobs_ = namespace["JOBS"]
    resumed = run_sweep(jobs_, namespace["make_fn"](str(calls_path), 0.0), ResultStore(store_path),
                        progress=False)
    uninterrupted = run_sweep(jobs_, namespace["make_fn"](str(tmp_path / "other.txt"), 0.0), progress=False)
    assert resumed == uninterrupted

    started_after = calls_path.read_text().split()[len(started_before):]
    assert not finished_before & set(started_after), "a job finished before the kill ran again"
    assert set(started_before) | set(started_after) == {job_key(j) for j in jobs_}
    assert len(started_after) == len(set(started_after)) == 12 - len(finished_before)
    # the store now holds every job
    assert set(ResultStore(store_path).results) == {job_key(j) for j in jobs_}


# --- executors: local processes and Dask give what the in-process run gives ------------------------------
# The job functions live in tests/sweep_jobs.py: spawned workers import them by name (tests/ is on sys.path,
# put there by pytest and handed on to spawned processes).

import functools  # noqa: E402

import sweep_jobs  # noqa: E402
from sweep_jobs import logged_square, runs, square  # noqa: E402

SMALL = [{"x": x, "sweep": "executors"} for x in (3, 1, 4, 0, 5, 2)]
# the same jobs with duplicates: one of them twice, one again with its keys in another order
WITH_DUPLICATES = SMALL + [SMALL[2], {"sweep": "executors", "x": 3}]


@pytest.fixture(scope="module")
def dask_cluster():
    """A two-worker Dask cluster of local processes, as a cluster started by hand would be."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        yield cluster


def test_job_module_is_the_one_workers_import():
    assert square.__module__ == "sweep_jobs" and sweep_jobs.square is square


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_executor_matches_inline_and_stores_every_job(tmp_path, executor):
    expected = run_sweep(WITH_DUPLICATES, square, progress=False)
    assert expected[:6] == [{"square": x * x, "label": f"job-{x}"} for x in (3, 1, 4, 0, 5, 2)]
    log = str(tmp_path / "runs.log")
    store = ResultStore(tmp_path / "r.jsonl")
    results = run_sweep(WITH_DUPLICATES, functools.partial(logged_square, log=log), store, progress=False,
                        executor=executor, workers=2)
    assert results == expected
    assert runs(log) == {job["x"]: 1 for job in SMALL}, "each distinct job runs exactly once"
    assert len(set(line.split()[1] for line in open(log))) <= 2  # on at most 2 worker processes
    assert ResultStore(store.path).results == {job_key(j): r for j, r in zip(SMALL, expected)}
    assert len(store.path.read_text().splitlines()) == len(SMALL)
    # a second run finds everything in the store: nothing runs, no worker starts
    assert run_sweep(WITH_DUPLICATES, functools.partial(logged_square, log=log), ResultStore(store.path),
                     progress=False, executor=executor, workers=2) == expected
    assert runs(log) == {job["x"]: 1 for job in SMALL}


def test_dask_on_an_existing_scheduler(tmp_path, dask_cluster):
    assert dask_cluster.scheduler_address.startswith("tcp://")
    log = str(tmp_path / "runs.log")
    store = ResultStore(tmp_path / "r.jsonl")
    store.add(SMALL[1], "stored")  # finished before: reused, not sent to the cluster
    results = run_sweep(SMALL, functools.partial(logged_square, log=log), store, progress=False,
                        executor="dask", scheduler=dask_cluster.scheduler_address)
    expected = run_sweep(SMALL, square, progress=False)
    assert results == expected[:1] + ["stored"] + expected[2:]
    assert runs(log) == {job["x"]: 1 for job in SMALL if job is not SMALL[1]}
    assert set(ResultStore(store.path).results) == {job_key(j) for j in SMALL}
    # the cluster is still up for others: run_sweep closed only its client
    assert dask_cluster.status.name == "running"


def test_duplicate_jobs_run_once_inline():
    calls = []
    jobs_ = [{"x": 1, "y": 2}, {"x": 2}, {"y": 2, "x": 1}, {"x": 2}]

    def fn(job):
        calls.append(job["x"])
        return job["x"] * 10

    assert run_sweep(jobs_, fn, progress=False) == [10, 20, 10, 20]
    assert calls == [1, 2]


@pytest.mark.parametrize("executor, workers", [("inline", None), ("processes", 1), ("dask", 1)])
def test_a_failing_job_raises_after_earlier_results_are_stored(tmp_path, executor, workers):
    jobs_ = [{"x": x, "fail": x == 3} for x in range(6)]
    store = ResultStore(tmp_path / "r.jsonl")
    with pytest.raises(RuntimeError, match="job 3 failed on purpose"):
        run_sweep(jobs_, square, store, progress=False, executor=executor, workers=workers)
    stored = ResultStore(store.path)
    assert jobs_[3] not in stored
    for job in jobs_:
        if job in stored:
            assert stored[job] == square(job)
    if executor != "dask":  # one worker runs the jobs in order (Dask's scheduler may pick another order)
        assert all(job in stored for job in jobs_[:3])


@pytest.mark.parametrize("kwargs, name", [
    ({"executor": "threads"}, "executor"),
    ({"executor": None}, "executor"),
    ({"executor": "processes", "workers": 0}, "workers"),
    ({"executor": "processes", "workers": 1025}, "workers"),
    ({"executor": "processes", "workers": "2"}, "workers"),
    ({"executor": "dask", "workers": 1.5}, "workers"),
    ({"executor": "inline", "workers": 2}, "workers"),
    ({"executor": "processes", "scheduler": "tcp://127.0.0.1:8786"}, "scheduler"),
    ({"executor": "inline", "scheduler": "tcp://127.0.0.1:8786"}, "scheduler"),
    ({"executor": "dask", "scheduler": "127.0.0.1:8786"}, "scheduler"),
    ({"executor": "dask", "scheduler": "http://127.0.0.1:8787"}, "scheduler"),
    ({"executor": "dask", "scheduler": 8786}, "scheduler"),
    ({"executor": "dask", "scheduler": "tcp://127.0.0.1:8786", "workers": 2}, "workers"),
])
def test_bad_executor_arguments_raise_value_error_naming_them(tmp_path, kwargs, name):
    calls = []
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        run_sweep(SMALL, calls.append, ResultStore(tmp_path / "r.jsonl"), progress=False, **kwargs)
    assert calls == [] and not (tmp_path / "r.jsonl").exists()


def test_processes_need_a_picklable_function(tmp_path):
    with pytest.raises(TypeError, match="fn must be picklable"):
        run_sweep(SMALL, lambda job: job["x"], ResultStore(tmp_path / "r.jsonl"), progress=False,
                  executor="processes", workers=1)
    assert not (tmp_path / "r.jsonl").exists()


def test_importing_factlib_does_not_import_dask():
    code = ("import sys, factlib, factlib.sweeps, factlib.figures, factlib.__main__; "
            "print('dask' in sys.modules, 'distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- a sweep on worker processes, killed with SIGKILL (the parent and its workers), resumes ---------------

PROCESSES_CODE = '''
import functools, sys
sys.path.insert(0, {tests!r})
from factlib.sweeps import ResultStore, run_sweep
from sweep_jobs import logged_square
JOBS = [{{"x": x, "sweep": "kill-processes"}} for x in range(12)]
if __name__ == "__main__":
    run_sweep(JOBS, functools.partial(logged_square, log={log!r}, delay=0.3), ResultStore({store!r}),
              progress=False, executor="processes", workers=2)
'''


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_processes_sweep_resumes_after_sigkill(tmp_path):
    store_path, log = tmp_path / "store.jsonl", str(tmp_path / "runs.log")
    jobs_ = [{"x": x, "sweep": "kill-processes"} for x in range(12)]
    code = PROCESSES_CODE.format(tests=os.path.dirname(__file__), log=log, store=str(store_path))
    # a session of its own, so that one killpg reaches the sweep and every worker it spawned
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _wait_for_results(proc, store_path, 3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not _group_gone(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)  # the workers die with their parent; wait until none can still write the log
        assert _group_gone(proc.pid), "a worker outlived the kill"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    finished_before = {x for x, job in enumerate(jobs_) if job in ResultStore(store_path)}
    assert 3 <= len(finished_before) < 12, "the kill must land mid-sweep"
    before = runs(log)
    assert all(before[x] == 1 for x in finished_before)

    resumed = run_sweep(jobs_, functools.partial(logged_square, log=log), ResultStore(store_path),
                        progress=False, executor="processes", workers=2)
    assert resumed == run_sweep(jobs_, square, progress=False)  # as an uninterrupted run
    after = {x: n - before.get(x, 0) for x, n in runs(log).items()}
    assert not {x for x in finished_before if after[x]}, "a job finished before the kill ran again"
    assert {x for x, n in after.items() if n} == set(range(12)) - finished_before
    assert all(n <= 1 for n in after.values())
    assert set(ResultStore(store_path).results) == {job_key(j) for j in jobs_}
