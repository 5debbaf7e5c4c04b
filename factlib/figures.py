"""The paper's figures as reproducible sweeps: each has a config per profile, a list of jobs and a job function.

``python -m factlib reproduce <figure>`` runs one; chapters call the same functions.
"""
from __future__ import annotations

import ast
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace as dataclass_replace
from pathlib import Path

import torch

from . import __version__
from ._validate import ArgumentTypeError, check_choice, check_int
from .config import device as pick_device, resolve_profile
from .bounds import BOUNDS_FIGURE
from .heavy_tail_figures import HEAVY_TAIL_FIGURES
from .induction_figures import INDUCTION_FIGURES
from .dynamics import DynamicsConfig, train
from .memory import TrainConfig
from .sweeps import (Figure, ResultStore, RowSpec, SweepStats, check_executor, exclusive, file_kind, run_sweep,
                     write_atomically)
from .scaling_figures import SCALING_FIGURES
from .train import linear_problem, memory_capacities, mlp_problem

#: d values of Figure 1, powers of 2^(1/2) rounded as in the paper
FIG1_DIMS = (8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256)


def _fig1_left_jobs(config: dict) -> list[dict]:
    """One job per d: all seeds' searches advance together in the batched engine."""
    return [{"d": d, "seeds": list(config["seeds"]), **config["train"]} for d in config["d"]]


def _recipe(job: dict) -> TrainConfig:
    return TrainConfig(lr=job["lrs"][0], steps=job["steps"], patience=job["patience"])


def job_problems(job: dict) -> list:
    """The capacity searches of one fig1-left / fig1-right / fig6 job, one per seed (``train.CapacityProblem``)."""
    if "alpha" not in job:
        return [linear_problem(job["d"], seed) for seed in job["seeds"]]
    return [mlp_problem(job["d"], int(job["alpha"] * job["d"]), seed, M=job["M"]) for seed in job["seeds"]]


def _fig1_left_job(job: dict, device: torch.device) -> list[dict]:
    Ns = memory_capacities(job_problems(job), job["lrs"], _recipe(job), device=device)
    return [{"d": job["d"], "seed": seed, "N": N} for seed, N in zip(job["seeds"], Ns)]


#: our recipe for trained linear memories: full-batch Adam from W = 0, learning rates tried together
#: (N counts as stored if one reaches 99 %), early stop at the threshold or when progress stalls
LINEAR_RECIPE = {"lrs": [3.0, 1.0, 10.0], "steps": 1024, "patience": 128}
#: trained MLP memories (Fig. 1 right, Fig. 6): Adam at the paper's lr 3e-2 from W1 ~ N(0, 1/d), b1 = W2 = 0;
#: the paper trains 2^15 steps without early stopping, we stop at 99 % or when progress stalls
MLP_RECIPE = {"lrs": [3e-2], "steps": 4096, "patience": 256}
MLP_RECIPE_FULL = {"lrs": [3e-2], "steps": 2**14, "patience": 1024}


def _mlp_jobs(config: dict) -> list[dict]:
    """One job per (d, alpha); its seeds run together. Skips widths above ``max_params`` (m d) if set."""
    cap = config.get("max_params")
    return [{"d": d, "alpha": a, "seeds": list(config["seeds"]), "M": config.get("M"), **config["train"]}
            for d in config["d"] for a in config["alpha"] if cap is None or a * d * d <= cap]


def _mlp_job(job: dict, device: torch.device) -> list[dict]:
    m = int(job["alpha"] * job["d"])
    Ns = memory_capacities(job_problems(job), job["lrs"], _recipe(job), device=device)
    return [{"d": job["d"], "m": m, "alpha": job["alpha"], "seed": seed, **({"M": job["M"]} if job["M"] else {}),
             "N": N} for seed, N in zip(job["seeds"], Ns)]


def _capacity_rows(job: dict) -> RowSpec | None:
    """The rows of a fig1-left / fig1-right / fig6 job: one per seed, in order, repeating the job's d (and m, alpha,
    M), with N an int within its search's bounds (low - 1 when even low fails). None for another kind of job."""
    mlp = "alpha" in job
    if set(job) != {"d", "seeds", "lrs", "steps", "patience"} | ({"alpha", "M"} if mlp else set()):
        return None
    problems = job_problems(job)  # (validates d, alpha, M and the seeds)
    shape = {"m": problems[0].m, "alpha": job["alpha"], **({"M": job["M"]} if job["M"] else {})} if mlp else {}
    fixed = [{"d": job["d"], **shape, "seed": seed} for seed in job["seeds"]]
    return RowSpec(fixed, {"N": ("int", problems[0].low - 1, problems[0].high)})


def _check_capacity_job(job: dict) -> None:
    """Before any job runs: each search's problem fits in memory (``train.CapacityProblem`` checks its size)."""
    job_problems(job)


def _fig5_jobs(config: dict) -> list[dict]:
    """One training run per (schedule, d, method/seed): the exact-gradient run and a minibatch run per seed."""
    protocol = config["protocol"]
    dims = config.get("d")
    if dims is not None and protocol["model"] == "linear":
        raise ValueError("d does not apply to fig5-left: its embeddings are one-hot, d = vocab_size")
    runs = ([{"method": "population", "seed": 0}] if config["population"] else []) + \
        [{"method": "minibatch", "seed": s} for s in config["seeds"]]
    return [{**protocol, **({"d": d} if d is not None else {}), "schedule": schedule, **run}
            for schedule in config["schedules"] for d in (dims or [None]) for run in runs]


def _fig5_details(config: dict) -> dict:
    """The whole training protocol of a Figure 5 config (lr, steps, batch size...), defaults included."""
    protocol = asdict(DynamicsConfig(**config["protocol"]))
    protocol.pop("seed")
    return {"protocol": protocol}


def _fig5_rows(job: dict) -> RowSpec:
    """The rows of a Figure 5 job: one per evaluation (every ``eval_every`` steps and at the end), in order."""
    cfg = DynamicsConfig(**{k: v for k, v in job.items() if k != "method"})
    steps = sorted(set(range(0, cfg.steps, cfg.eval_every)) | {cfg.steps})
    run = {"model": cfg.model, "method": job["method"], "schedule": cfg.schedule, "seed": cfg.seed,
           **({"d": cfg.embed_dim} if cfg.model == "softmax" else {})}
    loss = ("number", 0.0, None)
    return RowSpec([{**run, "step": k} for k in steps], {"total_loss": loss, "relation_loss": loss,
                                                         "subject_loss": loss, "accuracy": ("number", 0.0, 1.0)})


def _fig5_job(job: dict, device: torch.device) -> list[dict]:
    cfg = DynamicsConfig(**{k: v for k, v in job.items() if k != "method"})
    dtype = torch.float64 if cfg.model == "linear" else torch.float32
    curve = train(cfg, job["method"], device=device, dtype=dtype)
    extra = {"model": cfg.model, "method": job["method"], "schedule": cfg.schedule, "seed": cfg.seed}
    if cfg.model == "softmax":
        extra["d"] = cfg.embed_dim
    return curve.rows(**extra)


#: Figure 5 (chapter 6). Left: the paper's protocol (linear attention, one-hot embeddings, S=16, R=4, D=8,
#: n_noise=20, T=32, init 1e-5, lr 0.1, 2^13 steps, batch 1024) by exact population gradient and by
#: minibatches. Right: softmax attention with random unit-norm embeddings; our choice of d = 512 and lr
#: (the paper does not give them), quick profile shortened to 2^12 steps at twice the learning rate.
FIG5_LEFT = {"model": "linear"}
FIG5_RIGHT = {"model": "softmax", "d": 512, "lr": 2.0, "steps": 2**13, "batch_size": 1024, "eval_repeats": 16}

FIGURES: dict[str, Figure] = {
    "fig1-left": Figure(
        name="fig1-left",
        description="Figure 1 (left): capacity N of a trained d x d linear memory, f*(x) = x, 99 % accuracy",
        configs={
            "quick": {"d": list(FIG1_DIMS[:7]), "seeds": [0, 1, 2], "train": LINEAR_RECIPE},
            "full": {"d": list(FIG1_DIMS), "seeds": [0, 1, 2, 3, 4], "train": {**LINEAR_RECIPE, "steps": 4096}},
        },
        jobs=_fig1_left_jobs,
        run_job=_fig1_left_job,
        rows=_capacity_rows,
        check_job=_check_capacity_job,
    ),
    "fig1-right": Figure(
        name="fig1-right",
        description="Figure 1 (right): capacity N of a trained MLP memory of width m = alpha d, f*(x) = x",
        configs={
            "quick": {"d": [8, 11, 16], "alpha": [1, 2, 4, 8], "seeds": [0, 1], "max_params": 1024,
                      "train": MLP_RECIPE},
            "full": {"d": list(FIG1_DIMS[:8]), "alpha": [1, 2, 4, 8], "seeds": [0, 1, 2], "train": MLP_RECIPE_FULL},
        },
        jobs=_mlp_jobs,
        run_job=_mlp_job,
        rows=_capacity_rows,
        check_job=_check_capacity_job,
    ),
    "fig6": Figure(
        name="fig6",
        description="Figure 6: the MLP sweep of Figure 1 (right) with a fixed output vocabulary, M = 32",
        configs={
            "quick": {"d": [8, 11, 16], "alpha": [1, 2, 4, 8], "seeds": [0, 1], "M": 32, "max_params": 1024,
                      "train": MLP_RECIPE},
            "full": {"d": list(FIG1_DIMS[:8]), "alpha": [1, 2, 4, 8], "seeds": [0, 1, 2], "M": 32,
                     "train": MLP_RECIPE_FULL},
        },
        jobs=_mlp_jobs,
        run_job=_mlp_job,
        rows=_capacity_rows,
        check_job=_check_capacity_job,
    ),
    "fig5-left": Figure(
        name="fig5-left",
        description="Figure 5 (left): total, relation-only and subject-only losses of the linear-attention model",
        configs={
            "quick": {"protocol": FIG5_LEFT, "seeds": [0], "population": True, "schedules": ["constant"]},
            "full": {"protocol": FIG5_LEFT, "seeds": [0, 1, 2, 3, 4], "population": True,
                     "schedules": ["constant", "cosine"]},
        },
        jobs=_fig5_jobs,
        run_job=_fig5_job,
        dtype="float64",
        details=_fig5_details,
        options=("seeds",),  # one-hot embeddings: d = vocab_size
        rows=_fig5_rows,
    ),
    "fig5-right": Figure(
        name="fig5-right",
        description="Figure 5 (right): the same losses for softmax attention with random embeddings",
        configs={
            "quick": {"protocol": {**FIG5_RIGHT, "lr": 4.0, "steps": 2**12, "batch_size": 256, "eval_repeats": 8},
                      "seeds": [0], "population": False, "schedules": ["constant"]},
            "full": {"protocol": FIG5_RIGHT, "seeds": [0, 1, 2], "population": False, "schedules": ["constant"]},
        },
        jobs=_fig5_jobs,
        run_job=_fig5_job,
        dtype="float32",
        details=_fig5_details,
        rows=_fig5_rows,
    ),
}


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of module ``name`` ("" is the package itself) in the package at ``root``, or None."""
    base = root.joinpath(*name.split(".")) if name else root
    for path in (base.with_suffix(".py") if name else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _imported_modules(root: Path, name: str) -> set[str]:
    """The modules of the package at ``root`` that module ``name``'s source imports anywhere in it (top level or
    inside a function), relatively (``from .x import y``) or by the package's name (``factlib.x``)."""
    path = _module_file(root, name)
    package = name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == root.name:
                base = node.module.partition(".")[2]
            else:
                continue
            found.add(base)  # and each imported name that is a module of its own (``from . import x``)
            found.update(f"{base}.{a.name}".lstrip(".") for a in node.names
                         if _module_file(root, f"{base}.{a.name}".lstrip(".")) is not None)
        elif isinstance(node, ast.Import):
            found.update(a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == root.name)
    # importing a.b runs a's __init__ too
    return {".".join(m.split(".")[:k]) for m in found for k in range(len(m.split(".")) + 1)}


def module_closure(module: str, root: Path | None = None) -> list[str]:
    """The source files (relative to the package at ``root``, default factlib) that module ``module``
    ("factlib.x" or "x") can run: its own and, transitively, those of every package module it imports."""
    root = Path(__file__).resolve().parent if root is None else root
    start = module.partition(".")[2] if module.split(".")[0] == root.name else module
    if _module_file(root, start) is None:
        raise ValueError(f"module {module!r} is not a module of the package at {str(root)!r}")
    seen, todo = set(), [start, ""]
    while todo:
        name = todo.pop()
        if name in seen or _module_file(root, name) is None:
            continue
        seen.add(name)
        todo.extend(_imported_modules(root, name))
        todo.append(name.rpartition(".")[0])  # a module's package runs first
    return sorted(_module_file(root, n).relative_to(root).as_posix() for n in seen)


@functools.cache
def _code_hash(module: str | None = None, root: Path | None = None) -> str:
    """SHA-256 (16 hex digits) of factlib's source files, by path and content: those that module ``module`` can
    run (``module_closure``: its own and those it imports, found in the source, so imports inside functions
    count), or every one with None.

    A figure's store key uses the closure of the module that defines its job function: an edit to code its jobs
    cannot run (the explorers, the widgets, the plots, another figure's job module, ...) keeps its stored results,
    and an edit anywhere in code they can run, a docstring included, makes them be computed again.
    ``tests/test_safety.py`` checks that a job loads no factlib module outside the closure.
    """
    root = Path(__file__).resolve().parent if root is None else root
    files = module_closure(module, root) if module is not None else sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.py"))
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_hash(figure: str) -> str:
    """The code part of ``figure``'s store key and provenance: ``_code_hash`` of the module of its job
    function; for a job function outside factlib (a figure registered by a user or a test), the hash of that
    module's source together with every factlib source."""
    module = FIGURES[check_choice("figure", figure, FIGURES)].run_job.__module__
    if module.split(".")[0] == __package__:
        return _code_hash(module)
    source = Path(getattr(sys.modules.get(module), "__file__", None) or "")
    digest = hashlib.sha256((_code_hash() + module).encode() + (source.read_bytes() if source.is_file() else b""))
    return digest.hexdigest()[:16]


def job_context(figure: str, device: torch.device) -> dict:
    """What a figure's stored result depends on besides its job: factlib's version and code, the device kind
    and the dtype. Part of the result store's key (``factlib.sweeps.ResultStore``)."""
    return {"factlib_version": __version__, "code": code_hash(figure), "device": torch.device(device).type,
            "dtype": FIGURES[figure].dtype}


def _git_commit() -> str | None:
    """The commit of the checkout factlib runs from, or None (not a git checkout, or no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def record_check(fig: Figure):
    """The check a figure's job store applies to a record (``sweeps.ResultStore``'s ``check``): the problem with
    its rows (``fig.rows``) for a job of this figure, None otherwise (a record of a job this figure does not make
    is never asked for, so it is not judged). Without ``fig.rows``: a row or a list of rows."""

    def check(job: dict, result) -> str | None:
        if fig.rows is None:
            ok = isinstance(result, dict) or isinstance(result, list) and all(isinstance(r, dict) for r in result)
            return None if ok else "its result is not a row nor a list of rows"
        try:
            spec = fig.rows(job)
        except (KeyError, TypeError, ValueError, IndexError):
            return None  # not a job of this figure
        return None if spec is None else spec.problem(result)

    return check


#: the most bytes of an existing ``out`` that are read to see whether it is a result (results are a few MB)
MAX_RESULT_BYTES = 2**28


def _check_out(out, figure: str) -> Path:
    """The output path, checked before any job runs; a one-line ValueError naming it otherwise.

    A run writes only files it makes for its own ``out``: ``out`` itself (replaced atomically), ``<out>.jobs.jsonl``
    (appended to), ``<out>.lock`` and ``<out>.jobs.jsonl.lock``. So ``out`` must name a file (not a folder, nor end in
    "/"), not another run's job store, lock or side file (a name ending in .jsonl or .lock); none of these paths
    may be a symbolic link (the run would write through it onto another file), a device, a FIFO or a socket; an
    existing ``out`` must be an earlier result of the same figure (or empty); and its folder must exist (or be
    made) and let files be created in it.
    """
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise ArgumentTypeError(f"out must be a file path, got {out!r}")
    text = os.fsdecode(out)
    if "\0" in text:
        raise ValueError(f"out {text!r} holds a NUL character; give a file path")
    if text.endswith(("/", os.sep)):
        raise ValueError(f"out {text!r}: it ends with '/', so it names a folder; give a file name, e.g. "
                         f"{text + 'results.json'!r}")
    path = Path(text)
    if path.name.endswith((".jsonl", ".lock")):
        raise ValueError(f"out {text!r}: a name ending in .jsonl or .lock is a run's job store or lock; the results "
                         "go to a .json file (its finished jobs to <out>.jobs.jsonl)")
    for p in (path, Path(f"{text}.jobs.jsonl"), Path(f"{text}.lock"), Path(f"{text}.jobs.jsonl.lock")):
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            raise ValueError(f"out {text!r}: cannot look at {str(p)!r} ({err.strerror or err})") from None
        if stat.S_ISLNK(st.st_mode):
            raise ValueError(f"out {text!r}: {str(p)!r} is a symbolic link (to {os.readlink(p)!r}); give the "
                             "file's own path")
        if stat.S_ISDIR(st.st_mode):
            raise ValueError(f"out {text!r}: {str(p)!r} is a folder; give a file name, e.g. "
                             f"{str(path / 'results.json')!r}")
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"out {text!r}: {str(p)!r} is {file_kind(st.st_mode)}, not a regular file")
        if not os.access(p, os.W_OK):
            raise ValueError(f"out {text!r}: {str(p)!r} is not writable by this user (owned by uid {st.st_uid}, "
                             f"mode {stat.S_IMODE(st.st_mode):o})")
        if p == path and st.st_size:
            _check_earlier_result(path, st.st_size, figure)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"out {text!r}: cannot create its folder ({err.strerror or err})") from None
    try:  # what writing ``out`` will do at the end: create a file in its folder
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"out {text!r}: cannot create files in its folder {str(path.parent)!r} "
                         f"({err.strerror or err})") from None
    return path


def _check_earlier_result(path: Path, size: int, figure: str) -> None:
    """Raise unless the existing file ``path`` is a result of ``figure`` (which a new run may replace)."""
    try:
        earlier = json.loads(path.read_bytes()) if size <= MAX_RESULT_BYTES else None
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict) or not {"figure", "rows", "provenance"} <= set(earlier):
        raise ValueError(f"out {str(path)!r}: the file exists and is not a result of `python -m factlib reproduce`; "
                         "remove it or choose another out")
    if earlier["figure"] != figure:
        raise ValueError(f"out {str(path)!r}: the file holds the results of figure {earlier['figure']}, not "
                         f"{figure}; choose another out")


def strict_json(result: dict) -> str:
    """A figure's result as strict JSON (no NaN or infinity: its rows were checked to be finite)."""
    return json.dumps(result, indent=1, allow_nan=False) + "\n"


def reproduce(figure: str, profile: str | None = None, device: str = "auto", out: str | None = None,
              progress: bool = True, d: list[int] | None = None, seeds: int | None = None,
              executor: str = "inline", workers: int | None = None, scheduler: str | None = None) -> dict:
    """Run a figure's sweep and return ``{"figure", "profile", "rows", "provenance"}``; resumable via ``out``.

    ``profile``: "quick" or "full"; None means ``$FACTLIB_PROFILE``, else "quick" (``config.resolve_profile``).
    ``d`` (distinct values) and ``seeds`` (a count) override the profile's values, for the figures that use them
    (``Figure.options``; another figure refuses them); the provenance lists them under ``overrides``.
    ``executor``, ``workers`` and ``scheduler`` choose where the jobs run (see ``factlib.sweeps.run_sweep``).
    Every job is checked before the first one runs (``Figure.check_job``: a size too large for this machine is
    refused, naming the bytes it would need).
    With ``out``, finished jobs are appended to ``<out>.jobs.jsonl`` as they finish, so a killed run picks up
    where it stopped; the file is kept afterwards (it may hold other runs' jobs too: a later run reuses what
    it finds there, if computed by the same code on the same kind of device, and only records whose rows are
    what their job must produce). ``out`` is checked before any job runs (``_check_out``: never another run's
    store or lock, a link, a device, a FIFO or a folder), written atomically as strict JSON, and a second run on
    the same ``out`` while one is going is refused (``sweeps.StoreLocked``).
    """
    check_choice("figure", figure, FIGURES)
    fig = FIGURES[figure]
    for name, value in (("d", d), ("seeds", seeds)):
        if value is not None and name not in fig.options:
            uses = f"it takes only {', '.join(fig.options)}" if fig.options else "it takes no overrides"
            raise ValueError(f"{name} is not used by figure {figure} ({uses}); leave it out")
    profile = resolve_profile(profile)
    dev = pick_device(device)
    config = dict(fig.configs[profile])
    if d is not None:
        if isinstance(d, (str, bytes)) or not hasattr(d, "__iter__"):
            raise ArgumentTypeError(f"d must be a list of integers in [2, 4096], got {d!r}")
        config["d"] = [check_int("d", v, 2, 4096) for v in d]
        if not config["d"] or len(set(config["d"])) < len(config["d"]):
            raise ValueError(f"d must be a non-empty list of distinct integers in [2, 4096], got {config['d']}")
    if seeds is not None:
        config["seeds"] = list(range(check_int("seeds", seeds, 1, 1000)))
    check_executor(executor, workers, scheduler)
    overrides = {name: value for name, value in (("d", config.get("d")), ("seeds", seeds))
                 if (d if name == "d" else seeds) is not None}
    jobs = fig.jobs(config)
    if fig.check_job is not None:
        for job in jobs:
            fig.check_job(job)
    def run(store: ResultStore | None) -> dict:
        return _run_figure(fig, profile, config, overrides, jobs, dev, store, progress, executor, workers, scheduler)

    if out is None:
        return run(None)
    path = _check_out(out, figure)
    with exclusive(path):
        store = ResultStore(f"{path}.jobs.jsonl", job_context(figure, dev), record_check(fig))
        store.check_appendable()
        result = run(store)
        write_atomically(path, strict_json(result))
    return result


def _run_figure(fig: Figure, profile: str, config: dict, overrides: dict, jobs: list[dict], dev: torch.device,
                store: ResultStore | None, progress: bool, executor: str, workers, scheduler) -> dict:
    import numpy
    import scipy

    start = time.perf_counter()
    stats = SweepStats()
    results = run_sweep(jobs, functools.partial(fig.run_job, device=dev), store, progress, desc=fig.name,
                        executor=executor, workers=workers, scheduler=scheduler, stats=stats)
    wall = time.perf_counter() - start
    # a job returns one row, or a list of rows (a training curve)
    rows = [row for res in results for row in (res if isinstance(res, list) else [res])]
    return {
        "figure": fig.name,
        "profile": profile,
        "rows": rows,
        "provenance": {
            "factlib_version": __version__,
            "torch_version": torch.__version__,
            "numpy_version": numpy.__version__,
            "scipy_version": scipy.__version__,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
            "dtype": fig.dtype,
            "code": code_hash(fig.name),
            "git_commit": _git_commit(),
            "config": config,
            **(fig.details(config) if fig.details is not None else {}),
            "seeds": config.get("seeds"),
            "overrides": overrides,
            "executor": executor,
            "workers": workers,
            "scheduler": scheduler,
            "jobs_total": stats.jobs_total,
            "jobs_reused": stats.jobs_reused,
            "jobs_recomputed_invalid": stats.jobs_recomputed_invalid,
            "wall_time_s": round(wall, 2),
            "wall_time_total_s": round(wall + stats.reused_wall_s, 2),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        },
    }

# Chapter 5's figures (Figs. 4, 7-9: trained one-layer transformers) and chapter 7's measurement (quantised
# memories and transformers, defined with the bounds it is compared to) join the registry.
FIGURES.update(SCALING_FIGURES)
FIGURES[BOUNDS_FIGURE.name] = BOUNDS_FIGURE
FIGURES.update(HEAVY_TAIL_FIGURES)
FIGURES.update(INDUCTION_FIGURES)


def reproduce_reduced(figure: str, out: str, note: str, executor: str = "inline", workers: int | None = None,
                      **overrides) -> dict:
    """``reproduce(figure, "full")`` with some full-profile config values replaced (e.g. ``alpha_beta``,
    ``protocol``), for a run on a machine that cannot afford the paper's scale; ``note`` says what was cut and
    lands in the provenance's config; ``executor`` and ``workers`` as for ``reproduce``. The registry is restored
    afterwards."""
    check_choice("figure", figure, SCALING_FIGURES)
    unknown = set(overrides) - set(SCALING_FIGURES[figure].configs["full"])
    if unknown:
        raise ValueError(f"overrides must be keys of the full config; unknown: {sorted(unknown)}")
    original = FIGURES[figure]
    config = {**original.configs["full"], **overrides, "note": note}
    FIGURES[figure] = dataclass_replace(original, configs={**original.configs, "full": config})
    try:
        return reproduce(figure, "full", device="auto", out=out, progress=False, executor=executor, workers=workers)
    finally:
        FIGURES[figure] = original
