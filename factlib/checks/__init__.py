"""Exercise checkers: ``factlib.checks.ch1.test_hebbian_memory(my_fn)`` prints a pass line, or raises an
AssertionError whose message names the likely misconception. Each checker tests properties and known
mistakes, not only equality with the reference; CI runs every checker on the reference and on wrong answers.

A check runs in a child process (``os.fork``: the child inherits the notebook's functions, lambdas included, which
need not be picklable) and has a hard time limit for the whole check, ``time_limit()`` seconds: ``TIME_LIMIT_S`` (10
by default) or the ``FACTLIB_CHECK_TIMEOUT`` environment variable. When the time is up the child is killed (SIGKILL),
whatever the student's function is doing: a busy loop, a long C call, a sleep, a function that catches every
exception. The child runs torch on one thread (a thread pool does not survive a fork).

In the child, the checker computes its reference values before it calls the student's function, and the function
gets copies of its inputs: an in-place change (``E.mul_(2)``) cannot reach the reference or the next call. A checker
names the library functions that compute the exercise's answer (``@checker(answers=...)``); a student's function
that calls one of them, directly or through other code, is refused. What the function prints is shown after the
check. A failing check raises AssertionError (TimeoutError when time is up) with its message alone: the traceback
shows neither the checker's code nor its reference computation.

Where ``os.fork`` does not exist (Windows), the check runs in the notebook's own process, without the time limit.
"""
from __future__ import annotations

import builtins
import copy
import functools
import inspect
import io
import math
import numbers
import os
import pickle
import select
import signal
import sys
import tempfile
import time
import traceback

import torch

#: seconds a whole check may take (see the module's docstring)
TIME_LIMIT_S = 10.0
#: the largest accepted $FACTLIB_CHECK_TIMEOUT, in seconds
MAX_TIME_LIMIT_S = 3600.0
#: characters of the student's printed output shown after a check (per stream)
OUTPUT_LIMIT = 20_000


def passed(name: str) -> None:
    print(f"All tests in {name} passed!")


def close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Whether two tensors (or numbers) agree; False on a shape mismatch rather than an error."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol)


def time_limit() -> float:
    """Seconds a whole check may take: $FACTLIB_CHECK_TIMEOUT if set, else ``TIME_LIMIT_S``."""
    text = os.environ.get("FACTLIB_CHECK_TIMEOUT")
    if text is None:
        return float(TIME_LIMIT_S)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_TIME_LIMIT_S):  # NaN fails this too
        raise ValueError(f"FACTLIB_CHECK_TIMEOUT must be a number of seconds in (0, {MAX_TIME_LIMIT_S:g}]; "
                         f"got {text!r}")
    return value


class _Refused(BaseException):
    """The student's function called the library's own answer (a BaseException: checker code cannot catch it)."""


class _Raised(BaseException):
    """The student's function raised; carries its exception's type name, message and the student's frames."""

    def __init__(self, error: BaseException):
        frames = traceback.extract_tb(error.__traceback__)[1:]  # the first frame is _Student.__call__
        super().__init__(type(error).__name__, str(error), "".join(traceback.format_list(frames)))


class _Student:
    """The student's function as a checker calls it: on copies of the arguments, watched for calls into the
    library's own answer."""

    def __init__(self, fn, name: str, answers):
        self.fn, self.name, self.answers, self.called = fn, name, {}, None
        for answer in answers:
            inner = inspect.unwrap(answer)
            self.answers[inner.__code__] = f"{inner.__module__}.{inner.__qualname__}"

    def _watch(self, frame, event, arg):
        if event == "call" and frame.f_code in self.answers and self.called is None:
            self.called = self.answers[frame.f_code]

    def __call__(self, *args, **kwargs):
        args, kwargs = _copied(args), _copied(kwargs)
        previous = sys.getprofile()
        sys.setprofile(self._watch if self.answers else previous)
        try:
            value = self.fn(*args, **kwargs)
        except BaseException as error:
            sys.setprofile(previous)
            if self.called is None:
                raise _Raised(error) from None
            value = None
        finally:
            sys.setprofile(previous)
        if self.called is not None:
            raise _Refused(f"{self.name}: your function calls {self.called}, the library's own answer to this "
                           "exercise; write the computation yourself (the checker refuses calls into it)")
        return value


def _copied(value):
    """A deep copy of the arguments, except random generators: a sampler must advance the generator it is given."""
    keep = {id(v): v for v in (value.values() if isinstance(value, dict) else value) if isinstance(v, torch.Generator)}
    return copy.deepcopy(value, keep)


def _check(test, fn, args, kwargs, name: str, answers) -> tuple:
    """Run ``test`` on the student's ``fn`` (in the child); returns the outcome as plain data."""
    try:
        test(_Student(fn, name, answers), *args, **kwargs)
    except _Refused as refusal:
        return ("refused", str(refusal))
    except _Raised as raised:
        return ("raised", *raised.args)
    except AssertionError as failure:
        return ("failed", str(failure))
    except Exception as error:  # the checker could not use what the function returned
        return ("unusable", f"{type(error).__name__}: {error}")
    return ("passed",)


class _Capture(io.TextIOBase):
    """A text stream written straight to a file descriptor (what survives a SIGKILL), cut after ``limit`` chars."""

    def __init__(self, fd: int, limit: int = OUTPUT_LIMIT):
        super().__init__()
        self.fd, self.left = fd, limit

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.left > 0:
            shown = text[: self.left]
            self.left -= len(text)
            if self.left <= 0:
                shown += f"\n... (output cut after {OUTPUT_LIMIT} characters)\n"
            os.write(self.fd, shown.encode("utf8", "replace"))
        return len(text)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _child(work, write_fd: int, out_fd: int, err_fd: int) -> None:
    """The forked child: run ``work``, send its pickled result on ``write_fd``, exit without cleanup."""
    status = 1
    try:
        os.setpgid(0, 0)  # a group of its own: a timeout kills whatever the function started too
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        torch.set_num_threads(1)
        sys.stdout, sys.stderr = _Capture(out_fd), _Capture(err_fd)
        payload = pickle.dumps(work())
        _write_all(write_fd, payload)
        status = 0
    except BaseException:
        try:
            _write_all(write_fd, pickle.dumps(("internal", traceback.format_exc())))
        except BaseException:
            pass
    finally:
        os._exit(status)


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written on the pipe until it closes, or None if ``deadline`` (monotonic) passes first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _stop(pid: int) -> int:
    """Kill the child's process group (if it still runs) and reap the child; returns its wait status."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return status
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
            break
        except OSError:
            continue
    return os.waitpid(pid, 0)[1]


def _replay(file) -> None:
    """Show what the child printed: the file's text on the stream it was written to."""
    for handle, stream in file:
        handle.seek(0)
        text = handle.read().decode("utf8", "replace")
        handle.close()
        if text:
            stream.write(text)
            stream.flush()


def _in_child(work, limit: float) -> tuple:
    """``work()`` in a forked child with ``limit`` seconds; returns its result, ("timeout",) or ("died", how)."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child(work, write_fd, out.fileno(), err.fileno())
        os.close(write_fd)
        write_fd = None
        try:
            os.setpgid(pid, pid)  # also here: whichever runs first, the group exists before a kill
        except OSError:
            pass
        payload, status = None, None
        try:
            payload = _read_until(read_fd, time.monotonic() + limit)
        finally:
            status = _stop(pid)
    finally:
        for fd in (read_fd, write_fd):
            if fd is not None:
                os.close(fd)
        _replay([(out, sys.stdout), (err, sys.stderr)])
    if payload is None:
        return ("timeout",)
    if not payload:
        how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}")
        return ("died", how)
    return pickle.loads(payload)


_NOT_IMPLEMENTED_HINT = " (the exercise's stub: replace `raise NotImplementedError()` with your code)"


def _raise_for(outcome: tuple, name: str, limit: float) -> None:
    """Raise the exception that reports a check's outcome (nothing for a pass); hidden from IPython tracebacks."""
    __tracebackhide__ = True  # noqa: F841 (IPython and pytest leave this frame out of tracebacks)
    kind = outcome[0]
    if kind == "passed":
        return
    if kind in ("failed", "refused"):
        raise AssertionError(outcome[1]) from None
    if kind == "timeout":
        raise TimeoutError(f"{name}: your function did not return within {limit:g} s; look for an endless loop or "
                           "a much larger computation than the exercise needs (the limit is "
                           "factlib.checks.TIME_LIMIT_S, or $FACTLIB_CHECK_TIMEOUT)") from None
    if kind == "died":
        raise RuntimeError(f"{name}: your function ended the checker's process ({outcome[1]}) before returning: "
                           "does it call os._exit or sys.exit, or crash Python?") from None
    if kind == "raised":
        ename, message, frames = outcome[1:]
        hint = _NOT_IMPLEMENTED_HINT if ename == "NotImplementedError" else ""
        text = f"{name}: your function raised {ename}" + (f": {message}" if message else "") + hint
        text += "\n" + frames.rstrip() if frames else ""
        error_type = getattr(builtins, ename, None)
        if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
            error_type = RuntimeError
        try:
            error = error_type(text)
        except Exception:
            error = RuntimeError(text)
        raise error from None
    if kind == "unusable":
        raise AssertionError(f"{name}: the checker could not use what your function returned ({outcome[1]})") \
            from None
    raise RuntimeError(f"{name}: the check itself failed:\n{outcome[-1]}") from None


def checker(test=None, *, answers=()):
    """Decorator of a checker ``test(fn, ...)``, used as ``@checker`` or ``@checker(answers=(hebbian_memory,))``.

    ``fn`` must be callable; the check runs in a child process with the time limit, ``fn`` is called on copies of
    its inputs, and a call from ``fn`` into one of ``answers`` (the library's implementations of the exercise)
    is refused. See the module's docstring.
    """
    if test is None:
        return functools.partial(checker, answers=answers)

    @functools.wraps(test)
    def run(fn, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841
        if not callable(fn):
            raise TypeError(f"{test.__name__}: pass your function itself (e.g. {test.__name__}(my_function)), "
                            f"not {_described(fn)}")
        limit = time_limit()
        work = functools.partial(_check, test, fn, args, kwargs, test.__name__, answers)
        outcome = _in_child(work, limit) if hasattr(os, "fork") else work()
        _raise_for(outcome, test.__name__, limit)
        passed(test.__name__)
    run.answers = tuple(answers)
    return run


def _described(value) -> str:
    """How a returned value is named: "NaN", "None", "a list", "a tensor of shape (3, 4)"."""
    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}" if value.ndim else "a one-element tensor"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def number(value, what: str = "your function", integer: bool = False) -> float:
    """The single finite number ``value`` returned by the student's function, or an AssertionError saying what it
    returned instead ("returned NaN", "returned a list; expected a number")."""
    expected = "an integer" if integer else "a number"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalars and 1-element arrays
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AssertionError(f"{what} returned {_described(value)}; expected {expected}")
    value = float(value)
    if math.isnan(value):
        raise AssertionError(f"{what} returned NaN; expected {expected} (look for 0/0, log of 0 or of a negative, "
                             "or an empty mean)")
    if math.isinf(value):
        raise AssertionError(f"{what} returned {value}; expected a finite number")
    return value


def tensor(value, shape: tuple | None = None, what: str = "your function", shape_text: str | None = None):
    """The tensor ``value`` returned by the student's function, checked: a torch.Tensor of ``shape`` (if given)
    without NaN; else an AssertionError saying what it returned ("returned a list; expected a tensor of shape
    (N,)"). ``shape_text`` names the shape in words, e.g. "(d, d) = (8, 8)"."""
    want = "a torch.Tensor" if shape is None else f"a tensor of shape {shape_text or tuple(shape)}"
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} returned {_described(value)}; expected {want}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{what} returned a tensor of shape {tuple(value.shape)}; expected {want}")
    if value.is_floating_point() and bool(torch.isnan(value).any()):
        raise AssertionError(f"{what} returned a tensor holding NaN (look for 0/0 or log of 0)")
    return value
