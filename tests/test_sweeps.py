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
        store.add(job, result)
        expected[job_key(job)] = result
        assert job in store and store[job] == result
    reopened = ResultStore(path)
    assert reopened.results == expected
    for job, _ in records:
        assert job in reopened and reopened[job] == expected[job_key(job)]


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
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if store_path.exists() and len(store_path.read_text().splitlines()) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended before it was killed: {proc.stderr.read().decode()}")
            time.sleep(0.02)
        else:
            pytest.fail("the sweep did not finish 3 jobs within 30 s")
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
