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
    write_atomically(out, "old\n")
    assert out.read_text() == "old\n"

    def killed(*args):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(os, "replace", killed)  # only write_atomically renames
    with pytest.raises(KeyboardInterrupt):
        reproduce("fig1-left", out=str(out), **TINY)
    assert out.read_text() == "old\n"  # the old file, whole
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
