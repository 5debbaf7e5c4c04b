"""Profiles, devices and seeded random generators.

Two profiles: ``quick`` (the default: every chapter runs on two CPU cores in minutes) and ``full``
(the paper's scale, meant for a GPU). Choose one by argument or by the ``FACTLIB_PROFILE`` variable.
Random draws always happen on the CPU from an explicit seed and are then moved to the device, so the
same seed gives the same embeddings on every machine.
"""
from __future__ import annotations

import os

import torch

from ._validate import ArgumentTypeError, check_choice, check_int

PROFILES = ("quick", "full")
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_profile(profile: str | None = None) -> str:
    """The profile to use: ``profile`` if given, else ``$FACTLIB_PROFILE``, else ``"quick"``."""
    if profile is None:
        profile = os.environ.get("FACTLIB_PROFILE", "quick")
        return check_choice("profile (from the environment variable FACTLIB_PROFILE)", profile, PROFILES)
    return check_choice("profile", profile, PROFILES)


def device(preference: str = "auto") -> torch.device:
    """The torch device to compute on: for ``"auto"``, cuda if present, then mps, then cpu."""
    check_choice("device", preference, DEVICES)
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        why = ("this torch build has no CUDA" if torch.version.cuda is None
               else "no CUDA device is visible (torch.cuda.is_available() is False)")
        raise ValueError(f"device 'cuda' was requested but {why}; use auto or cpu")
    if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but is not available; use auto or cpu")
    return torch.device(preference)


def check_device(value) -> torch.device:
    """A device argument as a ``torch.device``: a ``torch.device`` or a name ("cpu", "cuda", "cuda:1", "mps",
    "auto"); raises ValueError naming it if it is malformed or not available here."""
    if isinstance(value, str) and value in DEVICES:
        return device(value)
    if not isinstance(value, (str, torch.device)):
        raise ArgumentTypeError(f"device must be a torch.device or one of {', '.join(DEVICES)}; got {value!r}")
    try:
        dev = torch.device(value)
    except RuntimeError:
        raise ValueError(f"device must be a torch.device or one of {', '.join(DEVICES)}; got {value!r}") from None
    if dev.type not in ("cpu", "cuda", "mps", "meta"):
        raise ValueError(f"device must be a torch.device or one of {', '.join(DEVICES)}; got {value!r} (factlib "
                         "computes on cpu, cuda or mps)")
    if dev.type in ("cuda", "mps"):
        device(dev.type)  # raises if not available
    return dev


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (an integer >= 0); nothing in factlib reads the global RNG."""
    seed = check_int("seed", seed, 0, 2**63 - 1)
    return torch.Generator(device="cpu").manual_seed(seed)
