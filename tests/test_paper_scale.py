"""scripts/paper_scale.py, the prepared run of Figure 4 (left) at the paper's protocol, on a config small enough
for a test: it stores each d, copies the store where it is told, and a second run reuses every stored job."""
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from factlib import figures
from factlib.scaling_figures import QUICK_PROTOCOL

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def paper_scale(tmp_path, monkeypatch):
    """The script as a module, run in an empty project folder, with fig4-left's full profile cut to one d, one
    split, one seed, one learning rate and a few steps (the registry is restored afterwards)."""
    spec = importlib.util.spec_from_file_location("paper_scale", ROOT / "scripts" / "paper_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fig = figures.FIGURES["fig4-left"]
    tiny = {**fig.configs["full"], "d": [8], "alpha_beta": [[1, 1]], "seeds": [0], "lrs": [1e-2],
            "protocol": {**QUICK_PROTOCOL, "steps": 64, "batch_size": 64, "eval_every": 32, "eval_size": 64,
                         "patience": 32},
            "search": {**fig.configs["full"]["search"], "rtol": 0.5}}
    monkeypatch.setitem(figures.FIGURES, "fig4-left", dataclasses.replace(fig, configs={**fig.configs, "full": tiny}))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book" / "data").mkdir(parents=True)
    return module


def test_paper_scale_stores_copies_and_resumes(paper_scale, tmp_path):
    copy = tmp_path / "out"
    assert paper_scale.main(["--d", "8", "--minutes", "5", "--copy-to", str(copy)]) == 0
    out = tmp_path / "book" / "data" / "fig4-left-full.json"
    stored = json.loads(out.read_text())
    assert stored["rows"] and {r["d"] for r in stored["rows"]} == {8}
    assert (copy / out.name).read_text() == out.read_text()
    assert (copy / f"{out.name}.jobs.jsonl").read_text() == Path(f"{out}.jobs.jsonl").read_text()
    store = Path(f"{out}.jobs.jsonl")
    jobs = store.read_text().splitlines()
    assert len(jobs) == stored["provenance"]["jobs_total"] == 1  # one job: d = 8, (1, 1), seed 0
    assert paper_scale.main(["--d", "8", "--minutes", "5"]) == 0  # again: nothing recomputed
    again = json.loads(out.read_text())
    assert again["rows"] == stored["rows"] and store.read_text().splitlines() == jobs
    assert again["provenance"]["jobs_reused"] == 1


def test_paper_scale_starts_nothing_after_its_deadline(paper_scale, tmp_path, capsys):
    assert paper_scale.main(["--d", "8", "--minutes", "0"]) == 0
    assert "deadline reached before d = 8" in capsys.readouterr().out
    assert not (tmp_path / "book" / "data" / "fig4-left-full.json").exists()
