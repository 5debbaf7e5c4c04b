"""Sweeps: independent jobs (a JSON-able config -> a JSON-able result) whose results are written to an
on-disk store as each one finishes, so an interrupted sweep resumes with nothing lost and nothing run twice.

The store is JSON lines, one record per finished job: ``{"key", "job", "context", "result", "wall_s",
"checksum"}``. ``context`` says what produced the result besides the job (for the figures: the factlib version,
a hash of the code, the device kind and the dtype, see ``factlib.figures.job_context``) and ``key`` hashes the
job and the context together, so a record is reused only by the same job under the same code and
environment. ``checksum`` is the SHA-256 of the rest of the record: it catches a record damaged or edited by
hand (a result changed, a job swapped), which is then ignored and its job run again. Before a record is reused it
is also checked against the job that names it: the record's fields and their types, strict JSON (no NaN or
infinity), and, where the store is given a ``check`` (the figures give their ``RowSpec``), the rows that job must
produce: their number, keys, types, ranges and the job's own parameters. A damaged line (cut short, NUL bytes, a
byte-order mark, not UTF-8) is ignored the same way, with a warning naming the file and the line. It is a
checksum, not a signature: forgery by someone who can recompute checksums (and writes rows of the right form) is
out of scope.

Records are only ever appended (under a file lock), never deleted: the store of a finished run stays as a
cache, and the records of other runs sharing the file survive. A record that cannot be appended because the
lock stays held by another process (``STORE_LOCK_TIMEOUT_S``) or cannot be taken is written to a side file
``<store>.side-<pid>-<random>.jsonl`` next to it instead, with a warning naming it; the store reads its side
files too, so a later run reuses those results.

``run_sweep`` runs the jobs in this process (``executor="inline"``), on local worker processes
(``"processes"``, a ``concurrent.futures.ProcessPoolExecutor`` started with "spawn") or on a Dask cluster
(``"dask"``: a ``dask.distributed.LocalCluster`` it starts, or an existing scheduler's ``tcp://host:port``).
Whatever the executor, results reach the store in this process, one by one as jobs finish.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import pickle
import re
import stat
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from ._validate import ArgumentTypeError, check_choice, check_int
from .progress import progress_bar

EXECUTORS = ("inline", "processes", "dask")
#: a Dask scheduler's address: tcp://host:port. Not tls:// (it needs certificates configured for the client),
#: ucx:// (the ucx-py package) nor inproc:// (a scheduler inside this very process), none of which is set up here
SCHEDULER_ADDRESS = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*):([0-9]{1,5})")
#: seconds to wait for a connection to a Dask scheduler, then for a first worker to join it
DASK_CONNECT_TIMEOUT_S = 10
DASK_WORKER_TIMEOUT_S = 60
#: seconds a store append waits for another process appending to the same store
STORE_LOCK_TIMEOUT_S = 60


@dataclass(frozen=True)
class RowSpec:
    """The rows one job must produce: one per entry of ``fixed``, in order.

    Row i has exactly the keys of ``fixed[i]`` and of ``kinds``: ``fixed[i]`` holds the values the job itself fixes
    (its d, its seed, its alpha...), which the row must repeat exactly (same JSON: 1 is not 1.0 nor true);
    ``kinds`` maps every other key to the kind of its value: "int", "number" (finite, never a bool), "bool", "str",
    "numbers" (a list of numbers), a kind ending in "?" also allows null, and ``(kind, low, high)`` bounds a number
    (None: no bound). ``problem`` says what is wrong with a result, or None.
    """

    fixed: list[dict]
    kinds: dict[str, object]

    def problem(self, rows) -> str | None:
        if not isinstance(rows, list):
            return f"its result is {_json_kind(rows)}, not a list of rows"
        if len(rows) != len(self.fixed):
            return f"it has {len(rows)} row(s), its job makes {len(self.fixed)}"
        for i, (row, fixed) in enumerate(zip(rows, self.fixed), 1):
            if not isinstance(row, dict):
                return f"row {i} is {_json_kind(row)}, not an object"
            keys = set(fixed) | set(self.kinds)
            if set(row) != keys:
                missing, extra = sorted(keys - set(row)), sorted(set(row) - keys)
                return f"row {i}: " + (f"no {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}")
            for key, value in fixed.items():
                if _canonical(row[key]) != _canonical(value):
                    return f"row {i}: {key} is {_canonical(row[key])}, its job has {_canonical(value)}"
            for key, kind in self.kinds.items():
                problem = _kind_problem(row[key], kind)
                if problem is not None:
                    return f"row {i}: {key} {problem}"
        return None


def _json_kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a bool", type(None): "null",
            int: "an int", float: "a float"}.get(type(value), f"a {type(value).__name__}")


def _kind_problem(value, kind) -> str | None:
    """Why ``value`` is not of ``kind`` (see ``RowSpec``), or None."""
    low, high = None, None
    if isinstance(kind, tuple):
        kind, low, high = kind
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if kind == "numbers":
        if not isinstance(value, list):
            return f"is {_json_kind(value)}, not a list of numbers"
        for j, item in enumerate(value):
            problem = _kind_problem(item, ("number", low, high))
            if problem is not None:
                return f"[{j}] {problem}"
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {"int": number and isinstance(value, int), "number": number, "bool": isinstance(value, bool),
          "str": isinstance(value, str)}[kind]
    if not ok:
        return f"is {_json_kind(value)}, not {'an int' if kind == 'int' else 'a ' + kind}"
    if number:
        if not math.isfinite(value):
            return f"is {value}, not a finite number"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"= {value} lies outside [{low}, {high}]"
    return None


@dataclass(frozen=True)
class RowParts:
    """The rows of a job where one ``RowSpec`` does not say it all: consecutive ``parts``, each checked by its
    own ``RowSpec`` (a row per token, then a loss row; curve rows, then attention maps); ``tables``, keys whose
    value is a list of equal-length lists (a margin trajectory, a thinned curve), each mapped to (its number of
    lists or None, the kind of each column); ``single``: the job returns its one row itself, an object, not a list
    of rows."""

    parts: tuple[RowSpec, ...]
    tables: dict = field(default_factory=dict)
    single: bool = False

    @property
    def fixed(self) -> list[dict]:
        return [row for part in self.parts for row in part.fixed]

    def problem(self, result) -> str | None:
        if self.single and not isinstance(result, dict):
            return f"its result is {_json_kind(result)}, its job returns one row (an object)"
        rows = [result] if self.single else result
        if not isinstance(rows, list) or len(rows) != len(self.fixed):
            return RowSpec(self.fixed, {}).problem(rows)  # names the type or the count
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                continue  # the parts name it
            for key, (length, columns) in self.tables.items():
                if key not in row:
                    return f"row {i}: no {key}"
                problem = _table_problem(row[key], length, columns)
                if problem is not None:
                    return f"row {i}: {key} {problem}"
        rows = [{k: v for k, v in row.items() if k not in self.tables} if isinstance(row, dict) else row
                for row in rows]
        start = 0
        for part in self.parts:
            n = len(part.fixed)
            problem = part.problem(rows[start:start + n])
            if problem is not None:
                return problem if len(self.parts) == 1 else f"rows {start + 1}-{start + n}: {problem}"
            start += n
        return None


def _table_problem(value, length: int | None, columns: list) -> str | None:
    """Why ``value`` is not a list of ``length`` lists (any number if None), item j of each of kind ``columns[j]``."""
    if not isinstance(value, list):
        return f"is {_json_kind(value)}, not a list of lists"
    if length is not None and len(value) != length:
        return f"has {len(value)} entries, its job makes {length}"
    for i, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != len(columns):
            return f"[{i}] is {_json_kind(entry)}, not a list of {len(columns)}"
        for j, (item, kind) in enumerate(zip(entry, columns)):
            problem = _kind_problem(item, kind)
            if problem is not None:
                return f"[{i}][{j}] {problem}"
    return None


@dataclass(frozen=True)
class Figure:
    """A paper figure as a sweep: a config per profile, the jobs of a config, and the function of one job.

    ``run_job`` must be a module-level function (so process and Dask executors can pickle it). ``dtype`` is
    the floating-point type its jobs compute in (part of the result store's key); ``details``, if given, maps
    a config to extra provenance (e.g. the full training protocol behind a short config). ``options`` are the
    overrides of ``reproduce`` the figure uses ("d", "seeds"; any other is refused). ``rows``, if given, maps a
    job to the ``RowSpec`` of the rows it must produce: a stored record whose rows do not fit it is recomputed,
    and a job whose fresh rows do not fit it is an error. ``check_job``, if given, raises a ValueError naming
    the arguments if a job cannot run here (e.g. it needs more memory than ``_validate.MAX_BYTES``); it runs on
    every job before the first one starts.
    """

    name: str
    description: str
    configs: dict[str, dict]         # profile -> config
    jobs: Callable[[dict], list[dict]]  # config -> jobs
    run_job: Callable[..., object]   # (job, device=...) -> row or list of rows
    dtype: str = "float32"
    details: Callable[[dict], dict] | None = None
    options: tuple[str, ...] = ("d", "seeds")
    rows: Callable[[dict], RowSpec] | None = None
    check_job: Callable[[dict], None] | None = None


class StoreLocked(OSError):
    """Another run holds the lock of this output: refused rather than computing every job twice."""


class WorkerDied(RuntimeError):
    """A worker process died while running jobs (killed, or out of memory); the finished jobs are stored."""


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def job_key(job: dict) -> str:
    """A stable hash of a job's config (key order does not matter); a job is a dict of JSON values."""
    problem = _not_json(job, "job") if isinstance(job, dict) else f"job is {_json_kind(job)}"
    if problem is not None:
        raise ArgumentTypeError(f"job must be a dict of JSON values; {problem}")
    return hashlib.sha256(_canonical(job).encode()).hexdigest()[:16]


def record_key(job: dict, context: dict | None = None) -> str:
    """The store key of ``job`` run under ``context``: ``job_key(job)`` without a context, else a hash of both."""
    return job_key(job) if context is None else job_key({"job": job, "context": context})


def _checksum(record: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "checksum"}).encode()).hexdigest()


#: the fields of a stored record (``context`` and ``wall_s`` may be absent)
RECORD_FIELDS = ("key", "job", "context", "result", "wall_s", "checksum")
#: the start of a record as ``ResultStore.add`` writes it: enough of a line cut short to tell its record's key
_KEY_PREFIX = re.compile(rb'\{"key": "([0-9a-f]{16})"')


def _not_json(value, where: str) -> str | None:
    """Why ``value`` is not strict JSON that reads back as itself (None if it is): ``where`` names it, e.g.
    "result[0]['N'] is NaN", "result is a Tensor"."""
    if value is None or isinstance(value, (bool, str, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {'NaN' if value != value else value}"
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := _not_json(v, f"{where}[{i}]")) is not None), None)
    if isinstance(value, dict):
        for key, v in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}, not a string"
            problem = _not_json(v, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    return f"{where} is a {type(value).__name__}"


def _shown_job(job: dict) -> str:
    text = repr(job)
    return text if len(text) <= 160 else f"{text[:150]}... (key {job_key(job)})"


def _check_strict_json(job: dict, result) -> None:
    """Raise (naming the job and the value) unless ``result`` is strict JSON that reads back as itself."""
    problem = _not_json(result, "result")
    if problem is None:
        return
    if problem.endswith((" is NaN", " is inf", " is -inf")):
        raise ValueError(f"job {_shown_job(job)} returned a result that is not strict JSON: {problem}; a stored "
                         "result holds finite numbers only (return None, or leave the value out)")
    raise TypeError(f"job {_shown_job(job)} returned a result that cannot be stored: {problem}, not JSON; return "
                    "numbers, strings, lists and dicts with string keys (e.g. tensor.tolist() or .item())")


def _reject_constant(name: str):
    raise ValueError(f"holds {name} (not strict JSON)")


def _unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise ValueError(f"repeats the field {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _parse_line(raw: bytes) -> tuple[object, str | None]:
    """(record, None) for a line that is a JSON value, else (None, why not)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return None, "starts with a UTF-8 byte-order mark (edited by hand?)"
    if b"\0" in raw:
        return None, "holds NUL bytes (a write cut short by a crash?)"
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError:
        return None, "cut short or not JSON (a write interrupted by a kill?)"
    except ValueError as err:  # NaN or infinity, or a field given twice
        return None, str(err)


def _problem(record, context: dict | None, check: Callable[[dict, object], str | None] | None) -> str | None:
    """Why a parsed store line cannot be reused under ``context`` (None if it can)."""
    if not isinstance(record, dict):
        return f"not a JSON object but {_json_kind(record)}"
    missing = {"key", "job", "result", "checksum"} - set(record)
    if missing:
        return f"no {', '.join(sorted(missing))}"
    if not isinstance(record["job"], dict):
        return "its job is not a JSON object"
    if record["checksum"] != _checksum(record):
        return "its checksum does not match (the record was damaged or edited)"
    if record["key"] != record_key(record["job"], record.get("context")):
        return "its key does not match its job"
    if record.get("context") != context:
        return "it was made by other code or on another device or dtype"
    extra = set(record) - set(RECORD_FIELDS)
    if extra:
        return f"unexpected field(s) {', '.join(sorted(extra))}"
    wall_s = record.get("wall_s", 0.0)
    if isinstance(wall_s, bool) or not isinstance(wall_s, (int, float)) or not 0 <= wall_s < math.inf:
        return f"its wall_s is {_json_kind(wall_s)} {wall_s!r}, not a number of seconds >= 0"
    return None if check is None else check(record["job"], record["result"])


class ResultStore:
    """Finished results on disk (JSON lines), for jobs run under ``context`` (see the module's docstring).

    A record is reused only if its checksum, key, job and context all agree, its fields are well formed, and
    ``check(job, result)`` (if given) finds no problem (it returns a string saying what is wrong, or None). The
    first reusable record of a job wins: a later one with another result is ignored. Records of another context
    are skipped silently (other code, device or dtype; they stay in the file); every other line that cannot be
    reused (damaged, cut short, edited, malformed) is reported in one warning naming the file and the line.
    ``rejected`` maps the ``job_key`` of a job whose record was ignored to the reason, ``rejected_keys`` does the
    same by record key for lines of which only the key could be read, and ``unattributed`` counts damaged lines
    whose job cannot be told: so a sweep can count what it recomputes.
    """

    def __init__(self, path: str | os.PathLike, context: dict | None = None,
                 check: Callable[[dict, object], str | None] | None = None):
        if not isinstance(path, (str, os.PathLike)) or not str(path) or "\0" in str(path):
            raise ArgumentTypeError(f"path must be a file path, got {path!r}")
        if context is not None and not isinstance(context, dict):
            raise ArgumentTypeError(f"context must be a dict or None, got {type(context).__name__}")
        if check is not None and not callable(check):
            raise ArgumentTypeError(f"check must be a function (job, result) -> problem or None, got {check!r}")
        self.path = Path(path)
        self.context = context
        self.check = check
        self.records: dict[str, dict] = {}
        self.rejected: dict[str, str] = {}
        self.rejected_keys: dict[str, str] = {}
        self.unattributed = 0
        self._side: Path | None = None
        self._where: dict[str, str] = {}  # record key -> "line N" of its first reusable record
        if self.path.is_dir():
            raise ValueError(f"{self.path}: is a folder, not a results store")
        problems: list[str] = []
        for source in (self.path, *self.side_files()):
            if source.is_file():
                self._load(source, problems)
        if problems:
            warnings.warn(f"{self.path}: ignored {len(problems)} record(s) "
                          f"({'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''})", stacklevel=3)

    def side_files(self) -> list[Path]:
        """The side files of this store (records that could not be appended to it), oldest name first."""
        prefix = f"{self.path.name}.side-"
        folder = self.path.parent
        names = os.listdir(folder) if folder.is_dir() else []
        return [folder / n for n in sorted(names) if n.startswith(prefix) and n.endswith(".jsonl")]

    def _load(self, source: Path, problems: list[str]) -> None:
        label = "" if source == self.path else f"{source.name} "
        for number, raw in enumerate(source.read_bytes().split(b"\n"), 1):
            if not raw.strip():
                continue
            where = f"{label}line {number}"
            record, problem = _parse_line(raw)
            if problem is None:
                problem = _problem(record, self.context, self.check)
            if problem is None:
                key = record["key"]
                if key not in self.records:
                    self.records[key], self._where[key] = record, where
                    continue
                if _canonical(self.records[key]["result"]) == _canonical(record["result"]):
                    continue  # the same job stored twice with the same result: harmless
                problem = f"a second record of the job of {self._where[key]} with another result (the first is kept)"
            elif isinstance(record, dict) and isinstance(record.get("job"), dict):
                self.rejected[job_key(record["job"])] = problem
            elif (match := _KEY_PREFIX.match(raw.removeprefix(b"\xef\xbb\xbf"))) is not None:
                self.rejected_keys[match.group(1).decode()] = problem
            else:
                self.unattributed += 1
            if problem.startswith("it was made by other"):
                continue  # a record of other code or another environment: not ours to judge
            problems.append(f"{where}: {problem}")

    @property
    def results(self) -> dict[str, object]:
        """Key -> result of every reusable record."""
        return {key: record["result"] for key, record in self.records.items()}

    def key(self, job: dict) -> str:
        return record_key(job, self.context)

    def __contains__(self, job: dict) -> bool:
        key = self.key(job)
        return key in self.records and _canonical(self.records[key]["job"]) == _canonical(job)

    def __getitem__(self, job: dict):
        if job not in self:
            raise KeyError(job_key(job))
        return self.records[self.key(job)]["result"]

    def was_rejected(self, job: dict) -> bool:
        """Whether a record of ``job`` was found and ignored (damaged, edited, malformed or stale)."""
        return job_key(job) in self.rejected or self.key(job) in self.rejected_keys

    def wall_s(self, job: dict) -> float:
        """Seconds the stored run of ``job`` took (0 if not recorded)."""
        return float(self.records[self.key(job)].get("wall_s", 0.0))

    def check_appendable(self) -> None:
        """Before any job runs: the append lock ``<store>.lock`` can be opened (else ValueError) and is free within
        ``STORE_LOCK_TIMEOUT_S`` (else ``StoreLocked``)."""
        lock = f"{self.path}.lock"
        _check_lock_file(lock, f"job store {str(self.path)!r}")
        try:
            with FileLock(lock, timeout=STORE_LOCK_TIMEOUT_S):
                pass
        except Timeout:
            raise StoreLocked(f"job store {str(self.path)!r}: its lock {lock!r} is held by another process; it was not "
                              f"free within {STORE_LOCK_TIMEOUT_S} s") from None
        except OSError as err:
            raise ValueError(f"job store {str(self.path)!r}: cannot take its lock {lock!r} ({_reason(err)})") from None

    def add(self, job: dict, result, wall_s: float | None = None) -> None:
        """Store ``result`` for ``job``: appended to the store under its lock, or, if the lock is not free within
        ``STORE_LOCK_TIMEOUT_S`` or cannot be taken, to a side file (with a warning naming it). A result that is
        not strict JSON, or that ``check`` finds wrong, raises (naming the job) and is not stored; so does a job
        stored already with another result (the first record of a job is the one reused), while the same result
        again is not stored twice."""
        key = self.key(job)
        if job in self:
            if _canonical(self[job]) == _canonical(result):
                return
            raise ValueError(f"job {_shown_job(job)} is already stored with another result ({self._where[key]} of "
                             f"{self.path}); a stored result is never replaced: delete the store to start afresh")
        record = {"key": key, "job": job, **({"context": self.context} if self.context is not None else {}),
                  "result": result, **({"wall_s": round(wall_s, 3)} if wall_s is not None else {})}
        _check_strict_json(job, result)
        record["checksum"] = _checksum(record)
        line = json.dumps(record, allow_nan=False) + "\n"
        problem = None if self.check is None else self.check(job, result)
        if problem is not None:
            raise ValueError(f"job {_shown_job(job)} returned rows that are not what it must produce: {problem}")
        try:
            self._append(line)
        except OSError as err:  # filelock's Timeout is an OSError too
            reason = (f"its lock was held by another process for {STORE_LOCK_TIMEOUT_S} s" if isinstance(err, Timeout)
                      else _reason(err))
            self._append_side(line, reason)
        self.records[key], self._where[key] = record, "a record added by this run"
        self.rejected.pop(job_key(job), None)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self.path}.lock", timeout=STORE_LOCK_TIMEOUT_S):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "r+b") as f:
                # a killed run may have left a cut-off last line: start ours on a fresh line
                end = f.seek(0, os.SEEK_END)
                if end > 0:
                    f.seek(end - 1)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write(line.encode())
                f.flush()
                os.fsync(f.fileno())

    def _append_side(self, line: str, reason: str) -> None:
        first = self._side is None
        if first:
            self._side = self.path.with_name(f"{self.path.name}.side-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl")
        fd = os.open(self._side, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        warnings.warn(f"{self.path}: could not append a finished job's result ({reason}); it is kept in "
                      f"{self._side}, which this store reads too" + ("" if first else " (as the earlier ones)"),
                      stacklevel=4)


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words ("a folder", "a FIFO"...)."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR,
                       "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "not a regular file"


def _check_lock_file(lock: str, owner: str) -> None:
    """Raise a one-line ValueError (``owner``: ...) unless ``lock`` is, or can be created as, a regular file this
    process can open for writing (not a link, a device, another user's file it may not write)."""
    try:
        st = os.lstat(lock)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise ValueError(f"{owner}: cannot take its lock {lock!r} ({_reason(err)})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{owner}: its lock {lock!r} is {file_kind(st.st_mode)}, not a lock file")
    try:
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    except OSError as err:
        held = f", owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}" if st is not None else ""
        raise ValueError(f"{owner}: cannot take its lock {lock!r} ({_reason(err)}{held})") from None


@contextmanager
def exclusive(path: str | os.PathLike, what: str = "out"):
    """Hold ``<path>.lock`` while the block runs; raise ``StoreLocked`` at once if another process holds it, and a
    one-line ValueError if the lock file cannot be opened or taken (naming why: not "in use" when it is not)."""
    lock_path = f"{path}.lock"
    _check_lock_file(lock_path, f"{what} {str(path)!r}")
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise StoreLocked(f"{what} {str(path)!r} is in use by another run (lock {path}.lock); wait for it to "
                          f"finish or choose another {what}") from None
    except OSError as err:
        raise ValueError(f"{what} {str(path)!r}: cannot take its lock {lock_path!r} ({_reason(err)})") from None
    try:
        yield
    finally:
        lock.release()


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a new temporary file in the same folder and a rename: a reader (or a
    kill) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class SweepStats:
    """What ``run_sweep`` did: distinct jobs, reused from the store, recomputed because their record was
    ignored (damaged, edited, malformed, stale), and the stored compute time of the reused ones. A damaged line
    whose job cannot be told (NUL bytes, no key left) counts for one recomputed job that no other line explains."""

    jobs_total: int = 0
    jobs_reused: int = 0
    jobs_recomputed_invalid: int = 0
    reused_wall_s: float = 0.0


def _timed(fn: Callable, job: dict) -> tuple[object, float]:
    """``fn(job)`` and the seconds it took (module-level, so executors can pickle it)."""
    start = time.perf_counter()
    result = fn(job)
    return result, time.perf_counter() - start


def check_executor(executor: str, workers: int | None, scheduler: str | None) -> int | None:
    """Check ``run_sweep``'s executor, workers and scheduler together; return workers as an int (or None)."""
    check_choice("executor", executor, EXECUTORS)
    if workers is not None:
        workers = check_int("workers", workers, 1, 1024)
        if executor == "inline":
            raise ValueError("workers is only used with executor processes or dask; got executor 'inline'")
    if scheduler is not None:
        if executor != "dask":
            raise ValueError(f"scheduler is only used with executor dask; got executor {executor!r}")
        match = SCHEDULER_ADDRESS.fullmatch(scheduler) if isinstance(scheduler, str) else None
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            other = isinstance(scheduler, str) and scheduler.startswith(("tls://", "ucx://", "inproc://"))
            raise ValueError("scheduler must be a tcp://host:port address of a running Dask scheduler (e.g. "
                             f"tcp://127.0.0.1:8786, port in [1, 65535]); got {scheduler!r}" +
                             ("; tls://, ucx:// and inproc:// are not supported" if other else ""))
        if workers is not None:
            raise ValueError("workers is not used with a scheduler (the cluster's workers run the jobs); "
                             f"got workers {workers}")
    return workers


def run_sweep(jobs: Iterable[dict], fn: Callable[[dict], object], store: ResultStore | None = None,
              progress: bool = True, desc: str | None = None, executor: str = "inline",
              workers: int | None = None, scheduler: str | None = None, stats: SweepStats | None = None) -> list:
    """Run ``fn`` on every distinct job not already in ``store``; return all results in job order.

    Jobs with the same ``job_key`` run once (the returned list repeats their result). Whatever the executor,
    each result is added to ``store`` in this process as soon as its job finishes, so a killed sweep resumes
    where it stopped. An error in a job is raised here after the results finished before it are stored; jobs
    not yet started are cancelled. So is a result that cannot be stored (not strict JSON, or not the rows the
    store's ``check`` expects: ``TypeError`` or ``ValueError`` naming the job), and the death of a worker process
    (``WorkerDied``, saying how many jobs are unfinished). ``stats``, if given, receives the counts of a
    ``SweepStats``.

    executor: ``"inline"`` (default) runs the jobs one after the other in this process. ``"processes"`` runs
        them on ``workers`` local processes (default ``os.cpu_count()``) started with "spawn"; each limits
        torch, OpenMP and BLAS to ``cpu_count // workers`` threads unless ``OMP_NUM_THREADS`` is set, and
        exits when this process is gone (even after a SIGKILL).
        ``"dask"`` runs them on a ``dask.distributed`` cluster: with ``scheduler=None``, a ``LocalCluster`` of
        ``workers`` one-thread worker processes (default ``os.cpu_count()``) started here and closed at the
        end; otherwise the existing cluster whose scheduler listens at ``scheduler`` (``"tcp://host:8786"``),
        whose workers must have factlib installed. A
        scheduler that cannot be reached within ``DASK_CONNECT_TIMEOUT_S``, or that has no worker within
        ``DASK_WORKER_TIMEOUT_S``, raises ``ValueError`` naming it.
    For ``"processes"`` and ``"dask"``, ``fn`` and the jobs are pickled and sent to the workers: ``fn`` must be
    a module-level function or a ``functools.partial`` of one (not a lambda, nor a function defined inside
    another), in a module the workers can import.
    """
    jobs = _check_jobs(jobs)
    if not callable(fn):
        raise ArgumentTypeError(f"fn must be a function of one job, got {fn!r}")
    if store is not None and not isinstance(store, ResultStore):
        raise ArgumentTypeError(f"store must be a ResultStore or None, got {store!r}")
    if stats is not None and not isinstance(stats, SweepStats):
        raise ArgumentTypeError(f"stats must be a SweepStats or None, got {stats!r}")
    workers = check_executor(executor, workers, scheduler)
    keys = [job_key(job) for job in jobs]
    distinct: dict[str, dict] = {}  # one job per key, the first of any duplicates
    for key, job in zip(keys, jobs):
        distinct.setdefault(key, job)
    todo = {key: job for key, job in distinct.items() if store is None or job not in store}
    if stats is not None:
        reused = [job for key, job in distinct.items() if key not in todo]
        stats.jobs_total, stats.jobs_reused = len(distinct), len(reused)
        rejected = sum(store is not None and store.was_rejected(job) for job in todo.values())
        damaged = 0 if store is None else store.unattributed
        stats.jobs_recomputed_invalid = rejected + min(damaged, len(todo) - rejected)
        stats.reused_wall_s = sum(store.wall_s(job) for job in reused)
    done: dict[str, object] = {}
    bar = progress_bar(desc=desc, disable=not progress, initial=len(distinct) - len(todo), total=len(distinct))

    def finish(key: str, timed: tuple[object, float]) -> None:
        result, seconds = timed
        if store is not None:
            store.add(todo[key], result, seconds)
        done[key] = result
        bar.update()

    try:
        if executor == "inline":
            for key, job in todo.items():
                finish(key, _timed(fn, job))
        elif todo:
            run = _run_processes if executor == "processes" else _run_dask
            run(todo, fn, finish, workers, scheduler)
    except WorkerDied as err:
        kept = f", stored in {store.path}" if store is not None else " (no store: their results are lost)"
        raise WorkerDied(f"{err}: {len(todo) - len(done)} of {len(distinct)} jobs unfinished; the {len(done)} "
                         f"finished in this run are kept{kept}; run again to resume") from None
    finally:
        bar.close()
    return [done[key] if key in done else store[distinct[key]] for key in keys]


def _check_jobs(jobs) -> list[dict]:
    """``jobs`` as a list of JSON objects, or an ArgumentTypeError naming what is wrong."""
    if isinstance(jobs, (str, bytes, dict)) or not isinstance(jobs, Iterable):
        raise ArgumentTypeError(f"jobs must be an iterable of jobs (dicts of JSON values), got {jobs!r}"[:200])
    jobs = list(jobs)
    for i, job in enumerate(jobs):
        problem = _not_json(job, f"jobs[{i}]") if isinstance(job, dict) else f"jobs[{i}] is {_json_kind(job)}"
        if problem is not None:
            raise ArgumentTypeError(f"jobs must be dicts of JSON values (a job is a JSON object); {problem}")
    return jobs


def _collect(futures: dict, completed: Iterable, finish: Callable, stop: Callable[[], None]) -> None:
    """Pass each result of ``futures`` (future -> job key) to ``finish`` in the order ``completed`` yields them.

    On an error (in a job, or in ``finish``: a result that cannot be stored): ``stop()`` cancels the jobs not
    started, then what else finished is kept and the error raised again.
    """
    for future in completed:
        key = futures.pop(future)
        try:
            finish(key, future.result())
        except BaseException:
            stop()
            for other, other_key in futures.items():
                if other.done() and not other.cancelled():
                    try:
                        other_result = other.result()
                    except Exception:
                        continue
                    finish(other_key, other_result)
            raise


def _exit_with_parent(parent: int) -> None:
    """In a worker process: exit as soon as the process ``parent`` is gone, so that no worker outlives a
    killed sweep. On Linux the kernel sends SIGKILL at the parent's death (prctl PR_SET_PDEATHSIG); everywhere,
    a daemon thread also checks every half second whether this process was handed to another parent."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(threads: int, parent: int) -> None:
    """Initializer of a local worker process: exit with ``parent``; ``threads`` threads for torch, OpenMP and
    BLAS, unless the user set ``OMP_NUM_THREADS``."""
    _exit_with_parent(parent)
    user_set = "OMP_NUM_THREADS" in os.environ
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))  # read by torch and numpy when first imported
    torch = sys.modules.get("torch")  # already imported with the parent's main module
    if torch is not None and not user_set:
        torch.set_num_threads(threads)


def _run_processes(todo: dict, fn: Callable, finish: Callable, workers: int | None, scheduler: str | None) -> None:
    try:
        pickle.dumps(fn)
    except Exception as err:  # say so now, not once per job from the pool's feeder thread
        raise TypeError("fn must be picklable to run on worker processes: a module-level function or a "
                        f"functools.partial of one; got {fn!r} ({err})") from err
    cpus = os.cpu_count() or 1
    n = min(workers or cpus, len(todo))
    # "spawn": a forked child of a process that has used torch (threads, CUDA) can deadlock
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(max(1, cpus // n), os.getpid()))
    try:
        futures = {pool.submit(_timed, fn, job): key for key, job in todo.items()}
        # stop: cancel what has not started and wait for the running jobs, whose results are then kept
        _collect(futures, as_completed(futures), finish,
                 lambda: pool.shutdown(wait=True, cancel_futures=True))
    except BrokenProcessPool:
        raise WorkerDied("a worker process died while running jobs (killed by a signal, or out of memory)") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler`` with at least one worker, or a one-line ValueError."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"scheduler {scheduler} cannot be reached within {DASK_CONNECT_TIMEOUT_S} s "
                         f"({reason[:200]})") from None
    try:
        client.wait_for_workers(1, timeout=DASK_WORKER_TIMEOUT_S)
    except (OSError, TimeoutError):
        client.close()
        raise ValueError(f"scheduler {scheduler} has no worker: none joined within {DASK_WORKER_TIMEOUT_S} s "
                         "(start workers with `dask worker " + scheduler + "`)") from None
    return client


def _run_dask(todo: dict, fn: Callable, finish: Callable, workers: int | None, scheduler: str | None) -> None:
    from distributed import Client, LocalCluster, as_completed as dask_completed  # imported here: dask is heavy

    cluster = None
    if scheduler is None:
        n = min(workers or os.cpu_count() or 1, len(todo))
        # no dashboard; the scheduler's small HTTP server (health checks) on a free local port, not on 8787
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        with (Client(cluster) if cluster is not None else _connect(scheduler)) as client:
            run = uuid.uuid4().hex[:8]  # keys unique to this run: a shared scheduler may hold other sweeps' tasks
            futures = {client.submit(_timed, fn, job, pure=False, key=f"sweep-{key}-{run}"): key
                       for key, job in todo.items()}
            try:
                _collect(futures, dask_completed(list(futures)), finish,
                         lambda: client.cancel([f for f in futures if not f.done()]))
            except Exception as err:
                if type(err).__name__ != "KilledWorker":  # distributed's: a task whose workers kept dying
                    raise
                raise WorkerDied("Dask worker processes died while running a job (killed by a signal, or out of "
                                 f"memory: {str(err)[:200]})") from None
    finally:
        if cluster is not None:
            cluster.close()
