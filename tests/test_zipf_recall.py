"""Chapter 8's Zipf facts in the factual recall task: training one transformer and the mass it answers."""
import pytest
import torch

from factlib import zipf_recall as zr
from factlib.task import TaskConfig, pair_probabilities


def test_top_mass_of_uniform_and_zipf_tasks():
    uniform = TaskConfig(S=8, R=2, D=4)
    assert zr.top_mass(uniform, 4) == pytest.approx(4 / 16)
    zipf = TaskConfig(S=8, R=2, D=4, subjects="zipf", zipf_exponent=1.0)
    probs = sorted(pair_probabilities(zipf).reshape(-1).tolist(), reverse=True)
    assert zr.top_mass(zipf, 3.5) == pytest.approx(sum(probs[:3]) + 0.5 * probs[3])
    assert zr.top_mass(zipf, 16) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="count"):
        zr.top_mass(zipf, 17)


def test_a_short_training_run_learns_the_frequent_facts_first():
    task = TaskConfig(S=16, R=2, D=4, T=8, subjects="zipf", zipf_exponent=1.5)
    model, table = zr.train_transformer(task, d=16, H=4, d_h=4, m=16, lr=1e-2, steps=150, batch_size=64, seed=0)
    assert table.shape == (16, 2)
    out = zr.recall_mass(model, task, table, repeats=4)
    assert 0 <= out["fraction"] <= 1 and out["mass"] <= out["top_mass"] + 1e-9
    assert out["mass"] > out["fraction"]  # the frequent subjects are learnt first


def test_recall_job_row():
    job = {"task": {"S": 8, "R": 2, "D": 4, "T": 6, "zipf_exponent": 1.0, "subjects": "uniform"}, "d": 8, "H": 2,
           "alpha_beta": [1, 1], "lr": 1e-2, "steps": 5, "batch_size": 16, "repeats": 2, "seed": 0}
    row = zr.recall_job(job, torch.device("cpu"))
    assert row["subjects"] == "uniform" and row["d_h"] == 4 and row["m"] == 8 and row["facts"] == 16
    assert row["mass"] == pytest.approx(row["fraction"])  # uniform pairs: the mass is the fraction
    jobs = zr.recall_jobs({"task": job["task"], "H": 2, "alpha_beta": [1, 1], "d": [8, 16], "seeds": [0],
                           "lr": 1e-2, "steps": 5, "batch_size": 16, "repeats": 2})
    assert [j["task"]["subjects"] for j in jobs] == ["zipf", "zipf", "uniform", "uniform"]


def test_train_transformer_rejects_bad_arguments():
    task = TaskConfig(S=4, R=2, D=2, T=5)
    with pytest.raises(ValueError, match="steps"):
        zr.train_transformer(task, 8, 2, 4, 8, 1e-2, 0, 8, 0)
    with pytest.raises(ValueError, match="lr"):
        zr.train_transformer(task, 8, 2, 4, 8, float("nan"), 5, 8, 0)
