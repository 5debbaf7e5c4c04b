"""Exercise checkers: ``factlib.checks.ch1.test_hebbian_memory(my_fn)`` prints a pass line, or raises an
AssertionError whose message names the likely misconception. Each checker tests properties and known
mistakes, not only equality with the reference; CI runs every checker on the reference and on wrong answers.

Every call of the student's function has a time limit, ``time_limit()`` seconds: ``TIME_LIMIT_S`` (10 by
default), or the ``FACTLIB_CHECK_TIMEOUT`` environment variable if set (0: no limit). In the main thread (a
notebook cell, a test) a SIGALRM timer interrupts the function, which then raises ``TimeoutError``; it stops
Python code and sleeps, and a long C call (one huge torch operation) at its end. In another thread the call
runs in a helper thread, and after the limit the checker raises ``TimeoutError`` and moves on while that thread
finishes in the background (a thread cannot be stopped from outside).
"""
from __future__ import annotations

import functools
import math
import numbers
import os
import signal
import threading

import torch

#: seconds each call of the student's function may take (see the module's docstring)
TIME_LIMIT_S = 10.0


def passed(name: str) -> None:
    print(f"All tests in {name} passed!")


def close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Whether two tensors (or numbers) agree; False on a shape mismatch rather than an error."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol)


def time_limit() -> float:
    """Seconds per call of the student's function: $FACTLIB_CHECK_TIMEOUT if set, else ``TIME_LIMIT_S``; 0 is none."""
    text = os.environ.get("FACTLIB_CHECK_TIMEOUT")
    if text is None:
        return float(TIME_LIMIT_S)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"FACTLIB_CHECK_TIMEOUT must be a number of seconds >= 0 (0: no limit); got {text!r}")
    return value


def _too_slow(name: str, limit: float) -> TimeoutError:
    return TimeoutError(f"{name}: your function did not return within {limit:g} s; look for an endless loop or "
                        "a much larger computation than the exercise needs (the limit is "
                        "factlib.checks.TIME_LIMIT_S, or $FACTLIB_CHECK_TIMEOUT)")


def _limited(fn, name: str):
    """``fn`` with the time limit on each call (see the module's docstring)."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        limit = time_limit()
        if limit == 0:
            return fn(*args, **kwargs)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            def alarm(signum, frame):
                raise _too_slow(name, limit)

            previous = signal.signal(signal.SIGALRM, alarm)
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                return fn(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        outcome = {}

        def run():
            try:
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as err:  # handed to the checker's thread below
                outcome["error"] = err

        worker = threading.Thread(target=run, name=f"{name}-student", daemon=True)
        worker.start()
        worker.join(limit)
        if worker.is_alive():
            raise _too_slow(name, limit)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]
    return call


def checker(test):
    """Decorator of a checker ``test(fn, ...)``: ``fn`` must be callable, and each of its calls is time-limited."""
    @functools.wraps(test)
    def run(fn, *args, **kwargs):
        if not callable(fn):
            raise TypeError(f"{test.__name__}: pass your function itself (e.g. {test.__name__}(my_function)), "
                            f"not {_described(fn)}")
        return test(_limited(fn, test.__name__), *args, **kwargs)
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
