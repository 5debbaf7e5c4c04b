"""Results that cannot be lost or forged, and bad inputs that fail at once with a message naming them.

The scenarios of the issue "Results that cannot be lost or forged": other runs' stored jobs survive, a second run
on one output is refused, an edited or stale record is recomputed and counted, FACTLIB_PROFILE is honoured, no
hang (checkers, Dask without workers, NaN times), worker processes end with their parent, and a table of bad
inputs across the command line, the library and the checkers.
"""
import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from factlib import capacity, config, constructions, dynamics, embeddings, figures, memory, sweeps
from factlib.__main__ import main
from factlib.checks import ch1, ch2, ch3, ch4, ch5, ch6
from factlib.figures import FIGURES, job_context, reproduce
from factlib.sweeps import ResultStore, StoreLocked, exclusive, job_key, run_sweep, write_atomically
from factlib.task import TaskConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(d=[8], seeds=1, progress=False, device="cpu")


def _store(out) -> list[dict]:
    return [json.loads(line) for line in open(f"{out}.jobs.jsonl").read().splitlines()]


# --- data loss ---------------------------------------------------------------------------------------------------

def test_a_finished_run_keeps_the_jobs_of_other_runs(tmp_path):
    """Run A stores jobs, run B on the same --out finishes, A resumes: A's jobs are all still there."""
    out = tmp_path / "r.json"
    first = reproduce("fig1-left", out=str(out), **{**TINY, "d": [8, 11]})  # "A", as far as it got
    reproduce("fig1-left", out=str(out), **{**TINY, "seeds": 2})  # "B": other jobs, run to the end
    assert out.exists() and len(_store(out)) == 3
    resumed = reproduce("fig1-left", out=str(out), **{**TINY, "d": [8, 11, 16]})  # A again, one d more
    prov = resumed["provenance"]
    assert (prov["jobs_total"], prov["jobs_reused"], prov["jobs_recomputed_invalid"]) == (3, 2, 0)
    assert resumed["rows"][:2] == first["rows"]


def test_a_second_run_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "r.json"
    with exclusive(out):  # as a running sweep holds it
        with pytest.raises(StoreLocked, match="out .* in use by another run"):
            reproduce("fig1-left", out=str(out), **TINY)
        assert main(["reproduce", "fig1-left", "--d", "8", "--seeds", "1", "--no-progress", "--device", "cpu",
                     "--out", str(out)]) == 2
    assert re.match(r"error: out .* in use", capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "r.json.jobs.jsonl").exists()
    reproduce("fig1-left", out=str(out), **TINY)  # the lock is free again
    assert out.exists()


def test_concurrent_appends_to_one_store_lose_nothing(tmp_path):
    path = tmp_path / "s.jsonl"
    threads = [threading.Thread(target=lambda i=i: [ResultStore(path).add({"i": i, "j": j}, j) for j in range(20)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ResultStore(path).results) == 80


def test_out_is_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    old = '{"figure": "fig1-left", "rows": [], "provenance": {}}\n'  # an earlier result, which a run may replace
    write_atomically(out, old)
    assert out.read_text() == old

    def killed(*args):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(os, "replace", killed)  # only write_atomically renames
    with pytest.raises(KeyboardInterrupt):
        reproduce("fig1-left", out=str(out), **TINY)
    assert out.read_text() == old  # the old file, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert len(_store(out)) == 1  # the finished job is kept for the next run


# --- forged or stale records -------------------------------------------------------------------------------------

def test_an_edited_result_is_recomputed_and_counted(tmp_path):
    out = tmp_path / "r.json"
    honest = reproduce("fig1-left", out=str(out), **TINY)
    store = out.with_name("r.json.jobs.jsonl")
    text = store.read_text()
    N = honest["rows"][0]["N"]
    store.write_text(text.replace(f'"N": {N}', '"N": 99999'))
    with pytest.warns(UserWarning, match=r"r\.json\.jobs\.jsonl: ignored 1 record.*line 1: its checksum"):
        again = reproduce("fig1-left", out=str(out), **TINY)
    assert again["rows"] == honest["rows"] and 99999 not in [r["N"] for r in again["rows"]]
    assert (again["provenance"]["jobs_reused"], again["provenance"]["jobs_recomputed_invalid"]) == (0, 1)


def test_a_swapped_job_is_not_reused(tmp_path):
    """A record whose job was edited (checksum recomputed by the forger) no longer matches its key."""
    path = tmp_path / "s.jsonl"
    context = job_context("fig1-left", torch.device("cpu"))
    ResultStore(path, context).add({"d": 8}, [{"N": 1}])
    record = json.loads(path.read_text())
    record["job"] = {"d": 11}
    record["checksum"] = sweeps._checksum(record)
    path.write_text(json.dumps(record) + "\n")
    with pytest.warns(UserWarning, match="key does not match"):
        store = ResultStore(path, context)
    assert {"d": 11} not in store and {"d": 8} not in store
    assert job_key({"d": 11}) in store.rejected


@pytest.mark.parametrize("change", ["code", "device", "dtype", "factlib_version"])
def test_records_of_other_code_or_environment_are_recomputed(tmp_path, change):
    path = tmp_path / "s.jsonl"
    context = job_context("fig1-left", torch.device("cpu"))
    ResultStore(path, context).add({"d": 8}, [{"N": 1}])
    other = {**context, change: "something else"}
    store = ResultStore(path, other)
    assert {"d": 8} not in store
    calls = []
    stats = sweeps.SweepStats()
    assert run_sweep([{"d": 8}], lambda job: calls.append(job) or [{"N": 2}], store, progress=False,
                     stats=stats) == [[{"N": 2}]]
    assert calls == [{"d": 8}] and stats.jobs_recomputed_invalid == 1
    assert {"d": 8} in ResultStore(path, context)  # the other record is still there, for its own code


def test_code_hash_covers_factlib_sources():
    assert re.fullmatch(r"[0-9a-f]{16}", figures._code_hash())
    assert job_context("fig5-left", torch.device("cpu"))["dtype"] == "float64"
    assert job_context("fig5-right", torch.device("cpu"))["dtype"] == "float32"


def _package(tmp_path):
    """A package ``pkg``: a imports b inside a function, b imports c by the package's name, sub.e imports a and
    sub; d is imported by nobody."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {"__init__.py": "", "a.py": "def f():\n    from .b import g\n    return g()\n",
             "b.py": "import os\nfrom pkg.c import h as g\n", "c.py": "def h():\n    return 1\n",
             "d.py": "from . import a\n", "sub/__init__.py": "", "sub/e.py": "from .. import a\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_module_closure_follows_imports_anywhere_in_the_source(tmp_path):
    root = _package(tmp_path)
    assert figures.module_closure("a", root) == ["__init__.py", "a.py", "b.py", "c.py"]
    assert figures.module_closure("pkg.sub.e", root) == ["__init__.py", "a.py", "b.py", "c.py", "sub/__init__.py",
                                                         "sub/e.py"]
    assert figures.module_closure("c", root) == ["__init__.py", "c.py"]
    with pytest.raises(ValueError, match="module 'zzz' is not a module of the package"):
        figures.module_closure("zzz", root)


def test_code_hash_changes_with_the_closure_only(tmp_path):
    root = _package(tmp_path)
    before = figures._code_hash.__wrapped__("a", root)
    (root / "d.py").write_text("from . import a\nX = 2\n")  # outside a's closure
    (root / "sub" / "e.py").write_text("X = 3\n")
    assert figures._code_hash.__wrapped__("a", root) == before
    (root / "c.py").write_text("def h():\n    return 2\n")  # inside it, two imports away
    assert figures._code_hash.__wrapped__("a", root) != before
    assert figures._code_hash.__wrapped__(None, root) != figures._code_hash.__wrapped__("a", root)


@pytest.mark.parametrize("module", sorted({fig.run_job.__module__ for fig in FIGURES.values()}))
def test_figure_jobs_load_nothing_outside_their_code_hash(module):
    """The store key of a figure hashes the closure of its job module: importing that module in a fresh
    interpreter loads no factlib module outside it; the explorers, widgets and plots are outside every one."""
    code = (f"import sys, {module}\n"
            "print(' '.join(sorted(m for m in sys.modules if m == 'factlib' or m.startswith('factlib.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    loaded = {m.partition(".")[2].replace(".", "/") or "__init__" for m in out.stdout.split()}
    closure = {f.removesuffix(".py").removesuffix("/__init__") or "__init__" for f in figures.module_closure(module)}
    assert loaded <= closure, loaded - closure
    assert not {"explorer", "widgets", "plots"} & closure


@pytest.mark.parametrize("line", [b"42", b"{}", b'{"key": 1, "job": 2}', b"[1, 2]", b"\xff\xfe not utf-8"])
def test_bad_store_lines_warn_once_naming_the_file_and_line(tmp_path, line):
    out = tmp_path / "r.json"
    store = tmp_path / "r.json.jobs.jsonl"
    store.write_bytes(line + b"\n")
    with pytest.warns(UserWarning, match=r"r\.json\.jobs\.jsonl: ignored 1 record.*line 1: "):
        result = reproduce("fig1-left", out=str(out), **TINY)
    assert result["provenance"]["jobs_total"] == 1
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # and on the command line, one warning line and no traceback
        assert main(["reproduce", "fig1-left", "--d", "11", "--seeds", "1", "--no-progress", "--device", "cpu",
                     "--out", str(out)]) == 0
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and str(store) in lines[0]


def test_fig5_provenance_has_the_whole_protocol(tmp_path, monkeypatch):
    cfg = dynamics.DynamicsConfig()
    details = FIGURES["fig5-left"].details(FIGURES["fig5-left"].configs["quick"])
    assert details["protocol"]["lr"] == cfg.lr and details["protocol"]["steps"] == cfg.steps
    assert details["protocol"]["batch_size"] == cfg.batch_size


# --- FACTLIB_PROFILE ---------------------------------------------------------------------------------------------

def test_factlib_profile_chooses_the_profile(monkeypatch):
    seen = []
    monkeypatch.setattr(figures, "_run_figure", lambda fig, profile, *a: seen.append(profile) or {"rows": []})
    monkeypatch.setenv("FACTLIB_PROFILE", "full")
    reproduce("fig1-left", progress=False)
    assert main(["reproduce", "fig1-left", "--no-progress"]) == 0
    assert main(["reproduce", "fig1-left", "--no-progress", "--profile", "quick"]) == 0
    assert seen == ["full", "full", "quick"]


def test_a_bad_factlib_profile_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("FACTLIB_PROFILE", "medium")
    assert main(["reproduce", "fig1-left", "--no-progress"]) == 2
    assert re.match(r"error: profile \(from the environment variable FACTLIB_PROFILE\) must be one of quick, full; "
                    r"got 'medium'$", capsys.readouterr().err.strip())


# --- no hang -----------------------------------------------------------------------------------------------------

def test_checker_time_limit(monkeypatch):
    monkeypatch.setenv("FACTLIB_CHECK_TIMEOUT", "0.5")
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"test_predicted_capacity: your function did not return within 0\.5 s"):
        ch1.test_predicted_capacity(lambda p, c: time.sleep(1e6))
    assert time.monotonic() - start < 5
    errors = []  # outside the main thread: a helper thread, and the checker moves on

    def in_thread():
        try:
            ch1.test_predicted_capacity(lambda p, c: time.sleep(3))
        except TimeoutError as err:
            errors.append(err)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(5)
    assert len(errors) == 1


def test_checker_time_limit_setting_is_checked(monkeypatch):
    monkeypatch.setenv("FACTLIB_CHECK_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="FACTLIB_CHECK_TIMEOUT"):
        ch1.test_predicted_capacity(capacity.predicted_capacity)


def test_dask_scheduler_without_workers_or_unreachable(monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(sweeps, "DASK_WORKER_TIMEOUT_S", 2)
    monkeypatch.setattr(sweeps, "DASK_CONNECT_TIMEOUT_S", 2)
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        with pytest.raises(ValueError, match="^scheduler .* has no worker"):
            run_sweep([{"x": 1}], str, progress=False, executor="dask", scheduler=cluster.scheduler_address)
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"^scheduler tcp://127\.0\.0\.1:1 cannot be reached within 2 s"):
        run_sweep([{"x": 1}], str, progress=False, executor="dask", scheduler="tcp://127.0.0.1:1")
    assert time.monotonic() - start < 20


WORKERS_CODE = '''
import functools, sys, time
sys.path.insert(0, {tests!r})
from factlib.sweeps import run_sweep
from sweep_jobs import logged_square
if __name__ == "__main__":
    run_sweep([{{"x": x}} for x in range(8)], functools.partial(logged_square, log={log!r}, delay=60),
              progress=False, executor="processes", workers=2)
'''


def test_worker_processes_end_with_their_parent(tmp_path):
    psutil = pytest.importorskip("psutil")
    log = tmp_path / "runs.log"
    code = WORKERS_CODE.format(tests=os.path.dirname(__file__), log=str(log))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        proc.send_signal(signal.SIGKILL)  # the parent only, not its process group
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"outlived their parent: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- bad inputs: the exception type, and a message naming the argument -------------------------------------------

def _cli(*args):
    """Run the command line; on exit status 2 raise ValueError with its one-line message (else fail)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["reproduce", *args, "--no-progress", "--device", "cpu"])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    raise ValueError(lines[0][len("error: "):])


E, U = embeddings.memory_embeddings(6, 6, 4, 0)
T = torch.arange(6)
NAN_E = E.clone()
NAN_E[2, 1] = math.nan
TASK = TaskConfig(8, 4, 4)
DYN = dynamics.DynamicsConfig(steps=4)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="cuda is available")

BAD = [
    # command line
    ("cli d repeated", lambda p: _cli("fig1-left", "--d", "8,8"), ValueError, r"^d must"),
    ("cli d empty", lambda p: _cli("fig1-left", "--d", ""), ValueError, r"^d must"),
    ("cli out is a folder", lambda p: _cli("fig1-left", "--out", str(p)), ValueError, r"^out .* is a folder"),
    ("cli out under a file", lambda p: _cli("fig1-left", "--out", str(p / "f" / "r.json")), ValueError,
     r"^out .* cannot create its folder"),
    ("cli store is a folder", lambda p: _cli("fig1-left", "--out", str(p / "s.json")), ValueError,
     r"^out .*jobs\.jsonl' is a folder"),
    ("cli seeds bool-like", lambda p: _cli("fig1-left", "--seeds", "1.5"), ValueError, r"^seeds must"),
    ("cli workers", lambda p: _cli("fig1-left", "--workers", "-1"), ValueError, r"^workers must"),
    # library: reproduce and sweeps
    ("reproduce d repeated", lambda p: reproduce("fig1-left", **{**TINY, "d": [8, 8]}), ValueError, r"^d must"),
    ("reproduce d not a list", lambda p: reproduce("fig1-left", **{**TINY, "d": 8}), TypeError, r"^d must"),
    ("reproduce seeds bool", lambda p: reproduce("fig1-left", **{**TINY, "seeds": True}), TypeError, r"^seeds"),
    ("reproduce profile", lambda p: reproduce("fig1-left", profile="medium", progress=False), ValueError,
     r"^profile must"),
    ("reproduce out folder", lambda p: reproduce("fig1-left", out=str(p), **TINY), ValueError, r"^out "),
    ("reproduce out None-like", lambda p: reproduce("fig1-left", out=3, **TINY), TypeError, r"^out must"),
    ("run_sweep workers bool", lambda p: run_sweep([], str, executor="processes", workers=True), TypeError,
     r"^workers must"),
    ("store is a folder", lambda p: ResultStore(p), ValueError, r"is a folder"),
    # library: memories
    ("recall_accuracy NaN W", lambda p: memory.recall_accuracy(torch.full((4, 4), math.nan), E, U, T), ValueError,
     r"^W must be finite"),
    ("recall_accuracy W shape", lambda p: memory.recall_accuracy(torch.eye(5), E, U, T), ValueError,
     r"^W must have shape \(4, 4\)"),
    ("recall_accuracy W list", lambda p: memory.recall_accuracy([[1.0]], E, U, T), TypeError, r"^W must be"),
    ("train NaN E", lambda p: memory.train_linear_memory(NAN_E, U, T), ValueError, r"^E must be finite"),
    ("hebbian float64 E float32 U", lambda p: memory.hebbian_memory(E.double(), U, T), TypeError,
     r"^E and U must have the same dtype"),
    ("hebbian int E", lambda p: memory.hebbian_memory(E.long(), U.long(), T), TypeError, r"^E must be a floating"),
    ("gaussian M=0", lambda p: memory.gaussian_recall_probability(1, 1, M=0), ValueError, r"^M must"),
    ("gaussian M=-3", lambda p: memory.gaussian_recall_probability(1, 1, M=-3), ValueError, r"^M must"),
    ("gaussian sigma2 NaN", lambda p: memory.gaussian_recall_probability(math.nan, 1, 3), ValueError,
     r"^sigma2 must"),
    ("gaussian tau2 negative", lambda p: memory.gaussian_recall_probability(1, -1, 3), ValueError, r"^tau2 must"),
    ("gaussian M bool", lambda p: memory.gaussian_recall_probability(1, 1, True), TypeError, r"^M must"),
    ("TrainConfig lr NaN", lambda p: memory.TrainConfig(lr=math.nan), ValueError, r"^lr must"),
    ("TrainConfig steps bool", lambda p: memory.TrainConfig(steps=True), TypeError, r"^steps must"),
    ("predicted_capacity inf", lambda p: capacity.predicted_capacity(math.inf, 1.0), ValueError, r"^params must"),
    ("predicted_capacity c str", lambda p: capacity.predicted_capacity(100.0, "1"), TypeError, r"^c must"),
    ("embeddings dtype int", lambda p: embeddings.gaussian_embeddings(4, 3, 0, dtype=torch.int64), ValueError,
     r"^dtype must"),
    ("embeddings n=0", lambda p: embeddings.gaussian_embeddings(0, 3, 0), ValueError, r"^n must"),
    ("generator seed -1", lambda p: config.generator(-1), ValueError, r"^seed must"),
    # library: constructions and dynamics
    ("max head load d=0", lambda p: constructions.predicted_max_head_load(TASK, d=0, H=2), ValueError, r"^d must"),
    ("max head load sink NaN", lambda p: constructions.predicted_max_head_load(TASK, 8, 2, math.nan), ValueError,
     r"^sink must"),
    ("min d H=0", lambda p: constructions.predicted_min_d(TASK, H=0), ValueError, r"^H must"),
    ("min d task", lambda p: constructions.predicted_min_d("task"), TypeError, r"^task must"),
    ("relation_first D=0", lambda p: dynamics.relation_first(16, 4, 0), ValueError, r"^D must"),
    ("time_to_step NaN", lambda p: dynamics.time_to_step(DYN, math.nan), ValueError, r"^t must"),
    ("time_to_step -5", lambda p: dynamics.time_to_step(DYN, -5), ValueError, r"^t must"),
    ("DynamicsConfig lr True", lambda p: dynamics.DynamicsConfig(lr=True), TypeError, r"^lr must"),
    ("DynamicsConfig lr str", lambda p: dynamics.DynamicsConfig(lr="0.1"), TypeError, r"^lr must"),
    ("DynamicsConfig lr inf", lambda p: dynamics.DynamicsConfig(lr=math.inf), ValueError, r"^lr must"),
    ("DynamicsConfig steps 1.5", lambda p: dynamics.DynamicsConfig(steps=1.5), TypeError, r"^steps must"),
    ("reduced_flow NaN time", lambda p: dynamics.reduced_flow(16, 4, 8, 1e-5, [math.nan]), ValueError,
     r"^times must"),
    ("train dtype int64", lambda p: dynamics.train(DYN, dtype=torch.int64), ValueError, r"^dtype must"),
    pytest.param("train cuda", lambda p: dynamics.train(DYN, device="cuda"), ValueError, r"^device 'cuda'",
                 marks=NO_CUDA),
    ("train device typo", lambda p: dynamics.train(DYN, device="gpu0"), ValueError, r"^device must"),
    # checkers
    ("checker given None", lambda p: ch1.test_predicted_capacity(None), TypeError, r"^test_predicted_capacity: "),
    ("checker NaN", lambda p: ch1.test_recall_accuracy(lambda *a: math.nan), AssertionError,
     r"^recall_accuracy_fn returned NaN"),
    ("checker list", lambda p: ch1.test_hebbian_memory(lambda *a: [1.0]), AssertionError,
     r"^hebbian_memory_fn returned a list; expected a tensor of shape \(d, d\)"),
    ("checker None", lambda p: ch2.test_mlp_forward(lambda *a: None), AssertionError,
     r"^mlp_forward_fn returned None"),
    ("checker list number", lambda p: ch3.test_information_bits(lambda *a: [1]), AssertionError,
     r"^information_bits_fn returned a list; expected a number"),
    ("checker NaN count", lambda p: ch4.test_parameter_count(lambda *a: math.nan), AssertionError,
     r"^parameter_count_fn returned NaN"),
    ("checker NaN tensor", lambda p: ch5.test_masked_cross_entropy(lambda lg, a, n: torch.full((3,), math.nan)),
     AssertionError, r"^loss_fn returned a tensor holding NaN"),
    ("checker pair None", lambda p: ch6.test_growth_rates(lambda *a: None), AssertionError,
     r"^growth_rates_fn returned None"),
]


def _id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name, call, error, message", BAD, ids=[_id(c) for c in BAD])
def test_bad_input_raises_naming_it(tmp_path, monkeypatch, name, call, error, message):
    monkeypatch.delenv("FACTLIB_PROFILE", raising=False)
    (tmp_path / "f").write_text("a file")
    (tmp_path / "s.json.jobs.jsonl").mkdir()
    with pytest.raises(error, match=message):
        call(tmp_path)
    assert not list(tmp_path.glob("*.json"))  # nothing written


def test_the_table_is_long_enough():
    assert len(BAD) >= 40


def test_diverging_dynamics_say_so():
    with pytest.raises(FloatingPointError, match="training diverged.*lr 10000"):
        dynamics.train(dynamics.DynamicsConfig(model="softmax", d=16, lr=1e4, steps=64, eval_repeats=2))



def test_reproduce_reduced_states_its_cuts_and_restores_the_registry(tmp_path):
    """The CPU subset's entry point: the overrides reach the jobs, the note lands in the provenance, worker
    processes give the rows the inline run gives, and the registry is left as it was."""
    from factlib.figures import reproduce_reduced
    from factlib.scaling_figures import PAPER_PROTOCOL

    before = FIGURES["fig4-left"]
    tiny = {**PAPER_PROTOCOL, "steps": 32, "batch_size": 16, "eval_every": 16, "eval_size": 32, "patience": 32,
            "population_repeats": 1}
    cut = {"d": [8], "alpha_beta": [[1, 1], [2, 2]], "seeds": [0], "lrs": [1e-2], "protocol": tiny,
           "search": {"facts_per_param": 0.01, "points": 2, "growth": 2.0, "rtol": 0.5}}
    inline = reproduce_reduced("fig4-left", str(tmp_path / "a.json"), "tiny cut", **cut)
    spread = reproduce_reduced("fig4-left", str(tmp_path / "b.json"), "tiny cut", executor="processes", workers=2,
                               **cut)
    assert FIGURES["fig4-left"] is before
    assert inline["rows"] == spread["rows"] and len(inline["rows"]) == 2
    assert {(r["d"], r["alpha"], r["beta"]) for r in inline["rows"]} == {(8, 1, 1), (8, 2, 2)}
    assert inline["provenance"]["config"]["note"] == "tiny cut" and inline["profile"] == "full"
    assert spread["provenance"]["executor"] == "processes"
    with pytest.raises(ValueError, match=r"unknown: \['nonsense'\]"):
        reproduce_reduced("fig4-left", str(tmp_path / "c.json"), "x", nonsense=1)


# === issue 25: --out safety, records checked against their job, unused flags, sizes, named errors ================

import dataclasses  # noqa: E402
import fcntl  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import sweep_jobs  # noqa: E402
from factlib import bounds, task  # noqa: E402
from factlib.train import many_to_one_targets as memory_targets  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _quiet_reproduce(*args, **kwargs):
    """``reproduce`` with its warnings recorded: (result, list of warning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = reproduce(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


# --- item 1: --out never names another run's file, a link, a device, a FIFO or a folder --------------------------

@pytest.fixture
def run_a(tmp_path):
    """A finished run A on a.json: its output, job store and lock, and their bytes."""
    out = tmp_path / "a.json"
    reproduce("fig1-left", out=str(out), **TINY)
    files = {p: p.read_bytes() for p in (out, tmp_path / "a.json.jobs.jsonl", tmp_path / "a.json.lock")}
    return out, files


@pytest.mark.parametrize("name", ["a.json.jobs.jsonl", "a.json.lock", "a.json.jobs.jsonl.lock"])
def test_out_naming_another_runs_store_or_lock_is_refused(run_a, name):
    out, files = run_a
    target = out.with_name(name)
    with pytest.raises(ValueError, match=rf"^out '{re.escape(str(target))}': .*(job store|lock)"):
        reproduce("fig1-left", out=str(target), **TINY)
    assert {p: p.read_bytes() for p in files} == files  # A's files untouched
    with pytest.raises(ValueError, match=rf"^out '{re.escape(str(target))}': "):
        _cli("fig1-left", "--d", "8", "--seeds", "1", "--out", str(target))  # one line, exit status 2
    assert {p: p.read_bytes() for p in files} == files


def test_out_that_is_a_symlink_is_refused(run_a, tmp_path):
    out, files = run_a
    link = tmp_path / "c.json"
    link.symlink_to(out)
    with pytest.raises(ValueError, match=r"^out '.*c\.json': .*symbolic link"):
        reproduce("fig1-left", out=str(link), **TINY)
    assert link.is_symlink() and {p: p.read_bytes() for p in files} == files
    # nor may its store or lock be links onto another run's files
    (tmp_path / "e.json.jobs.jsonl").symlink_to(tmp_path / "a.json.jobs.jsonl")
    with pytest.raises(ValueError, match=r"^out '.*e\.json': .*e\.json\.jobs\.jsonl' is a symbolic link"):
        reproduce("fig1-left", out=str(tmp_path / "e.json"), **TINY)
    (tmp_path / "f.json.lock").symlink_to(tmp_path / "a.json.lock")
    with pytest.raises(ValueError, match=r"^out '.*f\.json': .*f\.json\.lock' is a symbolic link"):
        reproduce("fig1-left", out=str(tmp_path / "f.json"), **TINY)
    assert {p: p.read_bytes() for p in files} == files


def test_out_that_is_a_device_fifo_or_folder_path_is_refused(tmp_path):
    node, fifo = tmp_path / "null.json", tmp_path / "pipe.json"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a character device, as /dev/null
    os.mkfifo(fifo)
    cases = [(node, "character device"), (fifo, "FIFO"), (str(tmp_path / "newdir") + "/", "ends with '/'")]
    for out, what in cases:
        with pytest.raises(ValueError, match=rf"^out '.*': .*{what}"):
            reproduce("fig1-left", out=str(out), **TINY)
    assert stat.S_ISCHR(node.lstat().st_mode) and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert not (tmp_path / "newdir").exists() and not list(tmp_path.glob("*.jsonl"))


def test_out_holding_something_else_is_refused(run_a, tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_text("my notes, not a result\n")
    with pytest.raises(ValueError, match=r"^out '.*notes\.json': .*not a result"):
        reproduce("fig1-left", out=str(notes), **TINY)
    out, files = run_a  # A's result is fig1-left's: a fig5-left run may not replace it
    with pytest.raises(ValueError, match=r"^out '.*a\.json': .*results of figure fig1-left"):
        reproduce("fig5-left", out=str(out), progress=False, device="cpu")
    assert notes.read_text() == "my notes, not a result\n" and {p: p.read_bytes() for p in files} == files
    assert reproduce("fig1-left", out=str(out), **TINY)["rows"]  # the same figure again: replaced, as before


def test_out_with_a_nul_character_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"^out .*NUL"):
        reproduce("fig1-left", out="x\0.json", **TINY)


def test_an_unopenable_lock_is_not_called_in_use(tmp_path):
    with pytest.raises(ValueError, match=r"^out '/proc/x\.json': cannot create files in its folder '/proc'") as err:
        _cli("fig1-left", "--d", "8", "--seeds", "1", "--out", "/proc/x.json")  # one line, exit status 2
    assert "in use" not in str(err.value)


def test_a_foreign_lock_is_reported_before_any_job_runs(tmp_path):
    """As root: a lock file owned by another account (uid 4242) in a sticky folder, as in /tmp; filelock refuses
    to take such a lock (its owner could swap it during the hold). Real ownership, no monkeypatching."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    lock = shared / "r.json.lock"
    lock.write_text("")
    os.chown(lock, 4242, 4242)
    with pytest.raises(ValueError, match=r"^out '.*r\.json': cannot take its lock .*uid 4242"):
        reproduce("fig1-left", out=str(shared / "r.json"), **TINY)
    assert not (shared / "r.json.jobs.jsonl").exists()  # no job ran


def test_another_users_lock_is_reported_to_that_user(tmp_path):
    """A real second account: the run drops to uid 65534 (nobody) once its modules are imported (the interpreter
    lives under /root, which nobody cannot read), on a lock file root owns with mode 0644."""
    shared = Path(tempfile.mkdtemp(dir="/tmp", prefix="factlib-shared-"))
    out = shared / "r.json"
    code = ("import os, sys\nfrom factlib.__main__ import main\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            f"sys.exit(main(['reproduce', 'fig1-left', '--d', '8', '--seeds', '1', '--no-progress', '--device', 'cpu', "
            f"'--out', {str(out)!r}]))\n")
    try:
        shared.chmod(0o1777)
        (shared / "r.json.lock").write_text("")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert re.match(r"error: out '.*r\.json': '.*r\.json\.lock' is not writable by this user \(owned by uid 0",
                        proc.stderr), proc.stderr
        assert not (shared / "r.json.jobs.jsonl").exists()
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=True)


def _hold(path):
    """Hold an flock on ``path`` from another open file description, as another process appending would."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _test_figure(run_job, name="test-squares", **config):
    """A registered test figure: one job per x, computed by ``run_job(job, device=...)``."""
    return sweeps.Figure(name=name, description="squares, for the tests",
                         configs={"quick": {"x": [1, 2], **config}, "full": {"x": [1, 2, 3], **config}},
                         jobs=lambda cfg: [{"x": x} for x in cfg["x"]], run_job=run_job, options=())


def _square_rows(job, device):
    return [{"x": job["x"], "square": job["x"] ** 2}]


def test_a_store_lock_held_too_long_is_reported_before_any_job_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(FIGURES, "test-squares",
                        _test_figure(lambda job, device: calls.append(job) or _square_rows(job, device)))
    monkeypatch.setattr(sweeps, "STORE_LOCK_TIMEOUT_S", 0.3)
    out = tmp_path / "r.json"
    fd = _hold(f"{out}.jobs.jsonl.lock")
    try:
        with pytest.raises(StoreLocked, match=r"job store .*r\.json\.jobs\.jsonl.* held .* 0\.3 s"):
            reproduce("test-squares", out=str(out), progress=False, device="cpu")
    finally:
        os.close(fd)
    assert calls == [] and not out.exists()


def test_a_store_lock_timeout_after_a_job_keeps_its_result(tmp_path, monkeypatch):
    """The append lock is taken by another process after the run began: the finished job goes to a side file,
    the run says where, and the next run reuses it from there."""
    out = tmp_path / "r.json"
    held = []

    def job_then_block(job, device):
        if not held:
            held.append(_hold(f"{out}.jobs.jsonl.lock"))  # from now on, appends wait in vain
        return _square_rows(job, device)

    monkeypatch.setitem(FIGURES, "test-squares", _test_figure(job_then_block))
    monkeypatch.setattr(sweeps, "STORE_LOCK_TIMEOUT_S", 0.3)
    try:
        result, messages = _quiet_reproduce("test-squares", out=str(out), progress=False, device="cpu")
    finally:
        os.close(held[0])
    side = sorted(tmp_path.glob("r.json.jobs.jsonl.side-*.jsonl"))
    assert len(side) == 1 and len(side[0].read_text().splitlines()) == 2
    assert any(str(side[0]) in m and "kept" in m for m in messages), messages
    assert result["rows"] == [{"x": 1, "square": 1}, {"x": 2, "square": 4}]
    monkeypatch.setitem(FIGURES, "test-squares", _test_figure(lambda job, device: pytest.fail("recomputed")))
    again, _ = _quiet_reproduce("test-squares", out=str(out), progress=False, device="cpu")
    assert again["rows"] == result["rows"] and again["provenance"]["jobs_reused"] == 2


def test_a_killed_worker_process_is_named_and_the_finished_jobs_are_kept(tmp_path):
    jobs_ = [{"x": x, "die": x == 2} for x in range(4)]
    store = ResultStore(tmp_path / "r.jsonl")
    with pytest.raises(sweeps.WorkerDied, match=r"^a worker process died .*1 of 4 jobs unfinished|^a worker process"
                                                r" died"):
        run_sweep(jobs_, sweep_jobs.dying_square, store, progress=False, executor="processes", workers=1)
    stored = ResultStore(store.path)
    assert jobs_[0] in stored and jobs_[1] in stored and jobs_[2] not in stored


# --- item 2: every stored record is checked against the job that names it ----------------------------------------

def _forge(store_path, mutate, line=0, rekey=False):
    """Edit record ``line`` of a store as a forger who recomputes the key and the checksum would."""
    lines = Path(store_path).read_text().splitlines()
    record = json.loads(lines[line])
    mutate(record)
    if rekey:
        record["key"] = sweeps.record_key(record["job"], record.get("context"))
    record["checksum"] = sweeps._checksum(record)
    lines[line] = json.dumps(record)
    Path(store_path).write_text("\n".join(lines) + "\n")
    return record


def _set_row(key, value):
    return lambda record: record["result"][0].__setitem__(key, value)


FORGED = [
    ("no rows", lambda r: r.__setitem__("result", [])),
    ("rows of another d", _set_row("d", 11)),
    ("another seed", _set_row("seed", 1)),
    ("N a string", _set_row("N", "21")),
    ("N a bool", _set_row("N", True)),
    ("N NaN", _set_row("N", math.nan)),
    ("N infinite", _set_row("N", math.inf)),
    ("N out of its range", _set_row("N", 99999)),
    ("a dict, not a list", lambda r: r.__setitem__("result", r["result"][0])),
    ("an extra row", lambda r: r["result"].append(dict(r["result"][0]))),
    ("a key missing", lambda r: r["result"][0].pop("N")),
    ("an extra key", _set_row("note", "forged")),
    ("an extra field", lambda r: r.__setitem__("note", "forged")),
    ("wall_s negative", lambda r: r.__setitem__("wall_s", -1.0)),
    ("wall_s a string", lambda r: r.__setitem__("wall_s", "1")),
]


@pytest.mark.parametrize("name, mutate", FORGED, ids=[f[0] for f in FORGED])
def test_a_forged_but_checksummed_record_is_recomputed_and_counted(tmp_path, name, mutate):
    out = tmp_path / "r.json"
    honest = reproduce("fig1-left", out=str(out), **TINY)
    _forge(f"{out}.jobs.jsonl", mutate)
    again, messages = _quiet_reproduce("fig1-left", out=str(out), **TINY)
    assert again["rows"] == honest["rows"]
    prov = again["provenance"]
    assert (prov["jobs_reused"], prov["jobs_recomputed_invalid"]) == (0, 1)
    assert len(messages) == 1 and re.search(r"r\.json\.jobs\.jsonl: ignored 1 record.*line 1: ", messages[0]), messages
    assert "NaN" not in out.read_text() and "Infinity" not in out.read_text()


def test_a_later_duplicate_record_does_not_replace_the_first(tmp_path):
    out = tmp_path / "r.json"
    honest = reproduce("fig1-left", out=str(out), **TINY)
    store = Path(f"{out}.jobs.jsonl")
    first = store.read_text()
    store.write_text(first * 2)
    _forge(store, _set_row("N", 9), line=1)
    again, messages = _quiet_reproduce("fig1-left", out=str(out), **TINY)
    assert again["rows"] == honest["rows"] and again["provenance"]["jobs_reused"] == 1
    assert len(messages) == 1 and "line 2: " in messages[0] and "line 1" in messages[0], messages


def test_a_fig6_record_relabelled_fig1_right_is_not_reused(tmp_path, monkeypatch):
    small = {"d": [8], "alpha": [1], "seeds": [0], "max_params": 1024,
             "train": {"lrs": [3e-2], "steps": 256, "patience": 64}}
    for name in ("fig1-right", "fig6"):
        fig = FIGURES[name]
        monkeypatch.setitem(FIGURES, name, dataclasses.replace(
            fig, configs={**fig.configs, "quick": {**fig.configs["quick"], **small}}))
    reproduce("fig6", out=str(tmp_path / "six.json"), progress=False, device="cpu")
    record = json.loads((tmp_path / "six.json.jobs.jsonl").read_text())
    record["job"]["M"] = None  # now names fig1-right's job, context (code, device, dtype) unchanged
    (tmp_path / "one.json.jobs.jsonl").write_text(json.dumps(record) + "\n")
    _forge(tmp_path / "one.json.jobs.jsonl", lambda r: None, rekey=True)
    result, messages = _quiet_reproduce("fig1-right", out=str(tmp_path / "one.json"), progress=False, device="cpu")
    assert result["provenance"]["jobs_recomputed_invalid"] == 1 and "M" not in result["rows"][0]
    assert len(messages) == 1 and "line 1: " in messages[0]


@pytest.mark.parametrize("damage, what", [
    (lambda text: "\ufeff" + text, "byte-order mark"),
    (lambda text: text.splitlines()[0][:40] + "\n" + text.splitlines()[1] + "\n", "cut short"),
    (lambda text: "\0" * len(text.splitlines()[0]) + "\n" + text.splitlines()[1] + "\n", "NUL"),
])
def test_a_damaged_line_is_warned_about_and_counted(tmp_path, damage, what):
    out = tmp_path / "r.json"
    honest = reproduce("fig1-left", out=str(out), **{**TINY, "d": [8, 11]})
    store = Path(f"{out}.jobs.jsonl")
    store.write_text(damage(store.read_text()))
    again, messages = _quiet_reproduce("fig1-left", out=str(out), **{**TINY, "d": [8, 11]})
    assert again["rows"] == honest["rows"]
    prov = again["provenance"]
    assert (prov["jobs_reused"], prov["jobs_recomputed_invalid"]) == (1, 1)
    assert len(messages) == 1 and re.search(rf"r\.json\.jobs\.jsonl: ignored 1 record.*line 1: .*{what}",
                                            messages[0]), messages


def test_results_that_are_not_strict_json_are_refused_naming_the_job(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    with pytest.raises(ValueError, match=r"job \{'x': 2\}.*result\['v'\] is NaN"):
        run_sweep([{"x": 1}, {"x": 2}], lambda job: {"v": 1.0 if job["x"] == 1 else math.nan}, store, progress=False)
    with pytest.raises(TypeError, match=r"job \{'x': 3\}.*result\[0\] is a Tensor.*not JSON"):
        run_sweep([{"x": 3}], lambda job: [torch.ones(2)], store, progress=False)
    text = store.path.read_text()
    assert "NaN" not in text and len(text.splitlines()) == 1 and {"x": 1} in ResultStore(store.path)


def test_a_figure_job_with_nan_rows_is_refused_and_nothing_has_bare_nan(tmp_path, monkeypatch):
    monkeypatch.setitem(FIGURES, "test-squares", _test_figure(
        lambda job, device: [{"x": job["x"], "square": math.nan if job["x"] == 2 else 1}]))
    out = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"NaN"):
        reproduce("test-squares", out=str(out), progress=False, device="cpu")
    assert not out.exists() and "NaN" not in Path(f"{out}.jobs.jsonl").read_text()


def _committed_figures():
    return sorted(p for p in (REPO / "book" / "data").glob("*.json")
                  if json.loads(p.read_text()).get("figure") in FIGURES)


@pytest.mark.parametrize("path", _committed_figures(), ids=lambda p: p.name)
def test_committed_results_satisfy_their_figures_row_checks(path):
    """Every result under book/data, split by the jobs its config makes, passes its figure's row check."""
    data = json.loads(path.read_text())
    fig = FIGURES[data["figure"]]
    config = {k: v for k, v in data["provenance"]["config"].items()}
    rows = data["rows"]
    for job in fig.jobs(config):
        spec = fig.rows(job)
        n = len(spec.fixed)
        assert spec.problem(rows[:n]) is None, (job, spec.problem(rows[:n]))
        rows = rows[n:]
    assert rows == []


def test_committed_job_store_is_reused_whole():
    """book/data's job store: every record passes its figure's checks under its own context, and a resume of the
    stored figure (its config, on the code that made it) finds every one of its jobs."""
    path = REPO / "book" / "data" / "fig4-left-full-cpu-unit.json.jobs.jsonl"
    data = json.loads((REPO / "book" / "data" / "fig4-left-full-cpu-unit.json").read_text())
    fig = FIGURES["fig4-left"]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    context = {**records[-1]["context"]}
    assert context["code"] == data["provenance"]["code"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = ResultStore(path, context, figures.record_check(fig))
    jobs_ = fig.jobs(data["provenance"]["config"])
    assert len(jobs_) == data["provenance"]["jobs_total"] == 15 and all(job in store for job in jobs_)
    assert [row for job in jobs_ for row in store[job]] == data["rows"]


# --- item 3: a flag a figure does not use is refused --------------------------------------------------------------

@pytest.mark.parametrize("figure, flag", [("bounds", "--d"), ("bounds", "--seeds"), ("fig5-left", "--d")])
def test_flags_a_figure_does_not_use_are_refused(figure, flag, capsys, tmp_path):
    out = tmp_path / "never.json"
    assert main(["reproduce", figure, flag, "8", "--no-progress", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(rf"error: {flag[2:]} is not used by figure {figure}", err) and "\n" not in err, err
    assert not out.exists() and not (tmp_path / "never.json.jobs.jsonl").exists()


def test_provenance_states_the_overrides():
    result = reproduce("fig1-left", **TINY)
    assert result["provenance"]["overrides"] == {"d": [8], "seeds": 1}
    assert result["provenance"]["config"]["d"] == [8] and result["provenance"]["seeds"] == [0]


# --- item 5: sizes checked from the arguments, before anything is allocated -------------------------------------

HUGE = [
    ("mlp_init", lambda: memory.mlp_init(10**6, 10**5, 0), r"^m = 1000000, d = 100000: .* 800\.0 GB"),
    ("gaussian_embeddings", lambda: embeddings.gaussian_embeddings(10**5, 10**5, 0),
     r"^n = 100000, d = 100000: .* \d+\.\d GB"),
    ("fact_table", lambda: task.fact_table(TaskConfig(10**6, 10**6, 2), 0), r"^S = 1000000, R = 1000000: .* TB"),
    ("relu_hermite_coefficient", lambda: memory.relu_hermite_coefficient(2 * 10**6), r"^k must be .*\[0, 10000\]"),
    ("kernel_overlap_variance", lambda: memory.kernel_overlap_variance(10**6), r"^j must be .*\[1, 1000\]"),
    ("reproduce fig1-left d 4096", lambda: reproduce("fig1-left", **{**TINY, "d": [4096]}), r"^d = 4096: .* GB"),
    ("reproduce fig1-right d 2048", lambda: reproduce("fig1-right", "full", **{**TINY, "d": [2048]}),
     r"^d = 2048: .* GB"),
]


@pytest.mark.parametrize("name, call, message", HUGE, ids=[h[0] for h in HUGE])
def test_huge_sizes_are_refused_before_allocating(name, call, message):
    start = time.monotonic()
    with pytest.raises(ValueError, match=message):
        call()
    assert time.monotonic() - start < 5


def test_huge_d_on_the_command_line_is_one_line_before_any_job(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["reproduce", "fig1-left", "--d", "4096", "--no-progress", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(r"error: d = 4096: .* GB", err) and "\n" not in err, err
    assert not (tmp_path / "r.json.jobs.jsonl").exists()


# --- item 8: every bad input named ----------------------------------------------------------------------------

NAMED = [
    ("information_bits None", lambda: task.information_bits(None), TypeError, r"^cfg must be a TaskConfig"),
    ("recall_accuracy mixed dtypes", lambda: memory.recall_accuracy(torch.eye(4, dtype=torch.float64), E, U, T),
     TypeError, r"^W must have the dtype of E"),
    ("run_sweep None", lambda: run_sweep(None, str, progress=False), TypeError, r"^jobs must be"),
    ("run_sweep jobs not dicts", lambda: run_sweep([1, 2], str, progress=False), TypeError, r"^jobs must be"),
    ("run_sweep job not JSON", lambda: run_sweep([{"x": {1, 2}}], str, progress=False), TypeError,
     r"^jobs must be .*JSON"),
    ("run_sweep fn None", lambda: run_sweep([{"x": 1}], None, progress=False), TypeError, r"^fn must be"),
    ("run_sweep store", lambda: run_sweep([{"x": 1}], str, "s.jsonl", progress=False), TypeError,
     r"^store must be"),
    ("fitted_constant empty", lambda: capacity.fitted_constant([], []), ValueError, r"^params and N must"),
    ("fitted_constant NaN", lambda: capacity.fitted_constant([math.nan], [3]), ValueError, r"^params must"),
    ("bounds figure d", lambda: reproduce("bounds", **TINY), ValueError, r"^d is not used by figure bounds"),
    ("find_capacity None", lambda: capacity.find_capacity(None, 1, 10), TypeError, r"^succeeds must be a function"),
    ("min_bits None", lambda: bounds.min_bits(None), TypeError, r"^accuracy_at must be a function"),
    ("head_loads S 0", lambda: bounds.head_loads(0, 2), ValueError, r"^S must"),
    ("head_loads huge", lambda: bounds.head_loads(10**5, 10**5), ValueError, r"^S \+ R must be <= 4096"),
    ("predicted_curve NaN", lambda: dynamics.predicted_curve(DYN, [math.nan]), ValueError, r"^steps must"),
    ("assign_heads None", lambda: constructions.assign_heads(None, 2), TypeError, r"^task must"),
    ("code_blocks share 2", lambda: constructions.code_blocks(8, 2.0), ValueError, r"^subject_share must"),
    ("check_device xla", lambda: config.check_device("xla"), ValueError, r"^device must"),
    ("job_key not JSON", lambda: sweeps.job_key({"x": {1}}), TypeError, r"^job must be a dict of JSON values"),
    ("many_to_one_targets N 0", lambda: memory_targets(0, 1), ValueError, r"^N must"),
    ("many_to_one_targets huge", lambda: memory_targets(10**12, 2), ValueError, r"^N = 1000000000000: .* 8.0 TB"),
    ("prompt_probability floats", lambda: task.prompt_probability(TASK, torch.ones(2, 32)), TypeError,
     r"^tokens must be an integer tensor \(B, T\), got a Tensor$"),
]
for _address in ("ucx://127.0.0.1:8786", "tls://127.0.0.1:8786", "inproc://x", "tcp://", "tcp://host",
                 "tcp://host:port", "tcp://host:99999"):
    NAMED.append((f"scheduler {_address}", lambda a=_address: run_sweep([{"x": 1}], str, progress=False,
                                                                        executor="dask", scheduler=a),
                  ValueError, r"^scheduler must be a tcp://host:port address"))


@pytest.mark.parametrize("name, call, error, message", NAMED, ids=[n[0] for n in NAMED])
def test_bad_inputs_are_named(name, call, error, message):
    start = time.monotonic()
    with pytest.raises(error, match=message):
        call()
    assert time.monotonic() - start < 5
