"""Exercise checkers: ``factlib.checks.ch1.test_hebbian_memory(my_fn)`` prints a pass line, or raises an
AssertionError whose message names the likely misconception. Each checker tests properties and known
mistakes, not only equality with the reference; CI runs every checker on the reference and on wrong answers.
"""
from __future__ import annotations

import torch


def passed(name: str) -> None:
    print(f"All tests in {name} passed!")


def close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Whether two tensors (or numbers) agree; False on a shape mismatch rather than an error."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol)
