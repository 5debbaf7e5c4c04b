"""The command line: ``python -m factlib reproduce`` (listing, argument errors, output, determinism, resume)."""
import datetime as dt
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import factlib
from factlib.__main__ import main
from factlib.figures import FIGURES, job_context, reproduce
from factlib.sweeps import ResultStore

ARGS = ["fig1-left", "--d", "8,11", "--seeds", "2", "--no-progress"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cli(*args, cwd=None):
    # one torch thread, as in this process (see the one_torch_thread fixture)
    return subprocess.run([sys.executable, "-m", "factlib", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """One real run of the command, in a subprocess: (its JSON, the output path, the process)."""
    out = tmp_path_factory.mktemp("cli") / "tmp.json"
    proc = _cli("reproduce", *ARGS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), out, proc


def test_list_names_the_figures():
    proc = _cli("reproduce", "--list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert names == list(FIGURES)
    assert "fig1-left" in names


@pytest.mark.parametrize("args, name", [
    (["fig9-right"], "figure"),
    (["fig1-left", "--profile", "medium"], "profile"),
    (["fig1-left", "--d", "1"], "d"),
    (["fig1-left", "--d", "8,5000"], "d"),
    (["fig1-left", "--d", "x"], "d"),
    (["fig1-left", "--d", "8,"], "d"),
    (["fig1-left", "--seeds", "0"], "seeds"),
    (["fig1-left", "--seeds", "two"], "seeds"),
    pytest.param(["fig1-left", "--device", "cuda"], "device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="cuda is available")),
    (["fig1-left", "--device", "tpu"], "device"),
    (["fig1-left", "--executor", "threads"], "executor"),
    (["fig1-left", "--workers", "0"], "workers"),
    (["fig1-left", "--workers", "two"], "workers"),
    (["fig1-left", "--executor", "processes", "--workers", "2000"], "workers"),
    (["fig1-left", "--executor", "inline", "--workers", "2"], "workers"),
    (["fig1-left", "--scheduler", "localhost:8786"], "scheduler"),
    (["fig1-left", "--executor", "processes", "--scheduler", "tcp://127.0.0.1:8786"], "scheduler"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, args, name):
    out = tmp_path / "never.json"
    assert main(["reproduce", *args, "--no-progress", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert re.match(rf"error: {name}\b", lines[0]), lines[0]
    assert captured.out == ""
    assert not out.exists() and not (tmp_path / "never.json.jobs.jsonl").exists()


def test_bad_argument_exit_code_of_the_process(tmp_path):
    proc = _cli("reproduce", "fig1-left", "--d", "x", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert re.match(r"error: d must", proc.stderr)
    assert "Traceback" not in proc.stderr


def test_missing_figure_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce"])
    assert exit_.value.code == 2
    assert "figure" in capsys.readouterr().err


def test_reproduce_writes_results_with_provenance(reproduced):
    result, out, proc = reproduced
    assert set(result) == {"figure", "profile", "rows", "provenance"}
    assert result["figure"] == "fig1-left" and result["profile"] == "quick"
    rows = result["rows"]
    assert [(r["d"], r["seed"]) for r in rows] == [(8, 0), (8, 1), (11, 0), (11, 1)]
    for row in rows:
        assert set(row) == {"d", "seed", "N"}
        assert isinstance(row["N"], int) and row["d"] <= row["N"] <= row["d"] ** 2 // 2
    prov = result["provenance"]
    assert prov["factlib_version"] == factlib.__version__
    assert prov["torch_version"] == torch.__version__
    assert prov["device"] == ("cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name())
    assert prov["config"]["d"] == [8, 11] and prov["config"]["seeds"] == [0, 1]
    assert prov["config"]["train"] == FIGURES["fig1-left"].configs["quick"]["train"]
    assert prov["seeds"] == [0, 1]
    assert isinstance(prov["wall_time_s"], (int, float)) and prov["wall_time_s"] >= 0
    created = dt.datetime.fromisoformat(prov["created"])
    assert created.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 600
    assert prov["jobs_total"] == 2 and prov["jobs_reused"] == 0 and prov["jobs_recomputed_invalid"] == 0
    assert prov["wall_time_total_s"] >= prov["wall_time_s"]
    assert prov["executor"] == "inline" and prov["workers"] is None
    assert prov["numpy_version"] and prov["scipy_version"] and prov["dtype"] == "float32"
    assert prov["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])
    # the store of finished jobs is kept (it may hold other runs' jobs): one record per job
    assert len(out.with_name(out.name + ".jobs.jsonl").read_text().splitlines()) == 2
    assert str(out) in proc.stdout and "4 rows" in proc.stdout


def test_reproduce_is_deterministic(reproduced, tmp_path, capsys):
    first, _, _ = reproduced
    out = tmp_path / "again.json"
    assert main(["reproduce", *ARGS, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"] == first["rows"]


def test_reproduce_without_out_prints_json(reproduced, capsys):
    first, _, _ = reproduced
    assert main(["reproduce", "fig1-left", "--d", "8", "--seeds", "1", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == first["rows"][:1]


def test_reproduce_resumes_from_jobs_file(tmp_path):
    out = tmp_path / "resumed.json"
    jobs_path = tmp_path / "resumed.json.jobs.jsonl"
    fig = FIGURES["fig1-left"]
    config = {**fig.configs["quick"], "d": [8, 11], "seeds": [0, 1]}
    jobs = fig.jobs(config)  # one job per d, all seeds together
    assert [job["d"] for job in jobs] == [8, 11]
    # finished rows with values no real run gives: if they come back, the job was not recomputed
    fake = [{"d": 8, "seed": 0, "N": 9}, {"d": 8, "seed": 1, "N": 10}]  # within the search's range [8, 32]
    ResultStore(jobs_path, job_context("fig1-left", torch.device("cpu"))).add(jobs[0], fake, wall_s=100.0)
    assert main(["reproduce", "fig1-left", "--d", "8,11", "--seeds", "2", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert rows[:2] == fake
    fresh = reproduce("fig1-left", d=[11], seeds=2, progress=False, device="cpu")["rows"]
    assert rows[2:] == fresh  # the other job was computed, as in a fresh run
    prov = result["provenance"]
    assert (prov["jobs_total"], prov["jobs_reused"], prov["jobs_recomputed_invalid"]) == (2, 1, 0)
    assert prov["wall_time_total_s"] >= 100.0 + prov["wall_time_s"] - 0.01  # the reused job's time counts
    assert len(jobs_path.read_text().splitlines()) == 2


@pytest.mark.parametrize("args, expected", [
    ([], {"executor": "inline", "workers": None, "scheduler": None}),
    (["--workers", "3"], {"executor": "processes", "workers": 3, "scheduler": None}),
    (["--executor", "dask", "--workers", "3"], {"executor": "dask", "workers": 3, "scheduler": None}),
    (["--scheduler", "tcp://h:8786"], {"executor": "dask", "workers": None, "scheduler": "tcp://h:8786"}),
    (["--executor", "processes"], {"executor": "processes", "workers": None, "scheduler": None}),
])
def test_executor_options_reach_reproduce(monkeypatch, capsys, args, expected):
    seen = {}

    def fake_reproduce(*args, **kwargs):
        seen.update(kwargs)
        return {"rows": []}

    monkeypatch.setattr("factlib.__main__.reproduce", fake_reproduce)
    assert main(["reproduce", "fig1-left", "--no-progress", *args]) == 0
    assert seen == expected


def test_reproduce_on_worker_processes_matches_inline(reproduced, tmp_path, capsys):
    first, _, _ = reproduced
    out = tmp_path / "processes.json"
    assert main(["reproduce", *ARGS, "--executor", "processes", "--workers", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"] == first["rows"]


def test_reproduce_on_a_dask_scheduler_matches_inline(reproduced, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    first, _, _ = reproduced
    out = tmp_path / "dask.json"
    # one worker process: each one imports torch and factlib, seconds on a small shared machine
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        # --scheduler alone implies --executor dask
        assert main(["reproduce", *ARGS, "--scheduler", cluster.scheduler_address, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"] == first["rows"]
