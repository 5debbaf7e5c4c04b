"""Argument checks shared by the public functions: each raises an error naming the argument and its range.

A value of the wrong type raises ``ArgumentTypeError``, which is both a ``TypeError`` and a ``ValueError`` (so
``except ValueError`` keeps catching every bad argument); a value of the right type outside its range raises
``ValueError``. ``bool`` is never a number here, and NaN or infinity never passes a float check.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

#: the most memory (bytes) one computation may ask for: the public ranges are set so that a run fits in a machine
#: of 24 GiB with room for Python, torch and the rest; ``check_allocation`` refuses anything larger before it starts
MAX_BYTES = 16 * 2**30


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError``, and a ``ValueError`` for callers that catch those)."""


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in [low, high] (bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "__index__")):
        raise ArgumentTypeError(f"{name} must be an integer{_range(low, high)}, got {_shown(value)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {value}")
    return value


def check_float(name: str, value, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number in the range.

    Numbers are ints, floats, numpy scalars and one-element tensors; not bool, not strings.
    """
    if isinstance(value, (bool, str, bytes)) or not (isinstance(value, numbers.Real) or _is_scalar(value)):
        raise ArgumentTypeError(f"{name} must be a number{_range(low, high, low_open)}, got {_shown(value)}")
    value = float(value)
    bad_low = low is not None and (value <= low if low_open else value < low)
    if not math.isfinite(value) or bad_low or (high is not None and value > high):
        raise ValueError(f"{name} must be a number{_range(low, high, low_open)}, got {value}")
    return value


def check_choice(name: str, value, choices: Iterable):
    """Return ``value`` if it is one of ``choices``, else raise ValueError listing them."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_tensor(name: str, value, ndim: int | None = None, shape: tuple | None = None,
                 floating: bool = False, finite: bool = False):
    """Return ``value`` if it is a torch tensor of ``ndim`` dimensions / this ``shape`` (None entries: any size),
    of a floating dtype if ``floating``, with no NaN or infinity if ``finite``; else raise naming ``name``."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {_shown(value)}")
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and value.ndim != ndim or shape is not None and any(
            s is not None and s != v for s, v in zip(shape, value.shape)):
        want = f"shape {tuple('*' if s is None else s for s in shape)}" if shape is not None else f"{ndim} dimensions"
        raise ValueError(f"{name} must have {want}; got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite; it holds NaN or infinity")
    return value


def check_dtype(name: str, value):
    """Return ``value`` if it is a floating-point torch dtype (float32, float64...), else raise naming ``name``."""
    import torch

    if not isinstance(value, torch.dtype):
        raise ArgumentTypeError(f"{name} must be a floating-point torch dtype such as torch.float32, "
                                f"got {_shown(value)}")
    if not value.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch dtype such as torch.float32, got {value}")
    return value


def check_allocation(args: Mapping[str, object], elements: int, dtype, what: str) -> int:
    """Return the bytes ``elements`` numbers of ``dtype`` (a torch dtype) take, or raise ValueError if that exceeds
    ``MAX_BYTES``: the message starts with the arguments the size comes from (``args``: name -> value, e.g.
    ``{"n": n, "d": d}``), says what would be allocated (``what``) and how many bytes it would need.

    Called with the sizes of the arguments, before any tensor is made: a run too large for this machine stops at
    once with the reason, not after minutes of swapping or with the operating system's kill."""
    need = int(elements) * dtype.itemsize
    if need > MAX_BYTES:
        named = ", ".join(f"{name} = {value}" for name, value in args.items())
        kind = str(dtype).replace("torch.", "")
        raise ValueError(f"{named}: {what} would need {format_bytes(need)} ({need} bytes: {int(elements)} {kind} "
                         f"numbers); at most {MAX_BYTES} bytes ({MAX_BYTES / 2**30:g} GiB, factlib._validate.MAX_BYTES) "
                         "fits")
    return need


def format_bytes(n: int) -> str:
    """``n`` bytes in GB (10^9 bytes) with one decimal, or TB beyond 10^12: the unit of an error message."""
    return f"{n / 1e12:.1f} TB" if n >= 1e12 else f"{n / 1e9:.1f} GB"


def _is_scalar(value) -> bool:
    """A one-element array or tensor (numpy, torch): usable as a number."""
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    n = numel() if callable(numel) else size if isinstance(size, int) else None
    return n == 1 and hasattr(value, "__float__")


def _shown(value) -> str:
    """How a rejected value is named in a message: its repr if short and on one line, else its type."""
    text = repr(value)
    return text if len(text) <= 60 and "\n" not in text else f"a {type(value).__name__}"


def check_function(name: str, value, what: str):
    """Return ``value`` if it is callable, else raise ``ArgumentTypeError`` naming ``name`` (``what``: its role)."""
    if not callable(value):
        raise ArgumentTypeError(f"{name} must be {what}, got {_shown(value)}")
    return value


def _range(low, high, low_open=False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" <= {high}"
    return ""
