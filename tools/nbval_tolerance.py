"""nbval with stated tolerances: the numbers a cell prints may differ by a bounded amount between machines.

A chapter's stored outputs are compared with a fresh run by nbval, exactly. That is right for everything whose
value does not depend on the processor (text, shapes, counts, constructions, exact enumerations). Numbers that
come out of training or a capacity search do depend on it: a processor's vector width, its BLAS kernels or a GPU
round differently, and training amplifies the difference into a different integer near a threshold.

A code cell opts in with its metadata::

    "nbval-tolerance": {"rtol": 0.05, "atol": 0.02, "why": "capacities from training; see the text"}

and then its text outputs (streams, ``text/plain``, ``text/markdown``, ``text/html``, and the same types of the
values a cell glues for the text, MyST-NB's ``application/papermill.record/...``) are compared this way:

* the outputs are split into numbers and the text between them (after nbval's sanitizers ran);
* the text must be the same, except that runs of spaces and tabs count as one space (a number that gains a
  digit shifts a table's padding); line breaks count, so a missing or added line fails;
* there must be as many numbers, and each new number ``b`` must lie within ``atol + rtol * |a|`` of the stored
  ``a``; integers are compared the same way (a capacity of 65 against 66 is a 1.5 % difference).

Everything else (the keys of the outputs, their count, other MIME types, cells without the metadata) is
nbval's own exact comparison. Cells that print no training output keep exact comparison: the tolerance is
stated where it is needed, cell by cell, with the reason, and nowhere else.

Loaded by the repository's ``conftest.py`` (``pytest_plugins``), so ``pytest --nbval book/`` uses it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

METADATA_KEY = "nbval-tolerance"
_TEXT_TYPES = ("text/plain", "text/markdown", "text/html")
#: a glued value (``myst_nb.glue``) is stored under its type prefixed by this
GLUE_PREFIX = "application/papermill.record/"
TEXT_KEYS = ("stdout", "stderr", *_TEXT_TYPES, *(GLUE_PREFIX + t for t in _TEXT_TYPES))

# a decimal number with optional sign, fraction and exponent; not the digits inside a word like "fig1"
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w|\.\d)")
BLANKS = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Tolerance:
    """``|new - stored| <= atol + rtol * |stored|`` for every number a cell prints."""

    rtol: float
    atol: float = 0.0

    @classmethod
    def from_metadata(cls, spec) -> "Tolerance":
        if not isinstance(spec, dict) or "rtol" not in spec:
            raise ValueError(f"cell metadata {METADATA_KEY!r} must be a dict with 'rtol' (and optionally 'atol', "
                             f"'why'); got {spec!r}")
        unknown = set(spec) - {"rtol", "atol", "why"}
        if unknown:
            raise ValueError(f"cell metadata {METADATA_KEY!r} has unknown keys {sorted(unknown)}")
        values = {}
        for name in ("rtol", "atol"):
            value = spec.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 \
                    or not math.isfinite(value):
                raise ValueError(f"{METADATA_KEY} {name} must be a number in [0, 1]; got {value!r}")
            values[name] = float(value)
        return cls(**values)


def _parts(text: str) -> tuple[list[str], list[float], list[str]]:
    """The text between numbers (blanks collapsed), the numbers, and the numbers as printed."""
    printed = NUMBER.findall(text)
    between = [BLANKS.sub(" ", piece) for piece in NUMBER.split(text)]
    return between, [float(p) for p in printed], printed


def compare_text(stored: str, new: str, tol: Tolerance) -> str | None:
    """``None`` if ``new`` matches ``stored`` within ``tol``, else the first difference, in words."""
    s_text, s_nums, s_printed = _parts(stored)
    n_text, n_nums, n_printed = _parts(new)
    for i, (a, b) in enumerate(zip(s_text, n_text)):
        if a != b:
            where = "".join(p + (s_printed[j] if j < len(s_printed) else "") for j, p in enumerate(s_text[:i]))
            line = where.count("\n") + 1
            return f"text differs on line {line}: stored {a!r}, new {b!r}"
    if len(s_nums) != len(n_nums) or len(s_text) != len(n_text):
        return f"stored output has {len(s_nums)} numbers, new output {len(n_nums)}"
    for a, b, pa, pb in zip(s_nums, n_nums, s_printed, n_printed):
        if abs(b - a) > tol.atol + tol.rtol * abs(a):
            return (f"number {pb} differs from stored {pa} by more than atol {tol.atol:g} + rtol {tol.rtol:g} "
                    f"x |stored|")
    return None


def _text_outputs(cell, outputs) -> dict[str, list[str]]:
    """Key (stream name or MIME type) -> list of sanitized texts, as nbval flattens them."""
    found: dict[str, list[str]] = {}
    for out in outputs:
        if out.get("output_type") == "stream":
            found.setdefault(out["name"], []).append(cell.sanitize(out["text"]))
        for mime, value in out.get("data", {}).items():
            if mime in TEXT_KEYS:
                found.setdefault(mime, []).append(cell.sanitize(value if isinstance(value, str) else "".join(value)))
    return found


def _without_text(outputs) -> list:
    """The outputs with their tolerantly compared parts removed (the rest goes to nbval's exact comparison)."""
    kept = []
    for out in outputs:
        if out.get("output_type") == "stream":
            continue
        out = dict(out)
        if "data" in out:
            out["data"] = {k: v for k, v in out["data"].items() if k not in TEXT_KEYS}
        kept.append(out)
    return kept


def install() -> None:
    """Wrap nbval's ``IPyNbCell.compare_outputs`` so cells with the metadata are compared with tolerances."""
    import nbformat
    from nbval.plugin import IPyNbCell

    if getattr(IPyNbCell.compare_outputs, "tolerant", False):
        return
    exact = IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        spec = self.cell.metadata.get(METADATA_KEY)
        if spec is None:
            return exact(self, test, ref, skip_compare)
        tol = Tolerance.from_metadata(spec)
        self.comparison_traceback = []
        stored, new = _text_outputs(self, ref), _text_outputs(self, test)
        if set(stored) != set(new):
            self.comparison_traceback.append(f"output kinds differ: stored {sorted(stored)}, new {sorted(new)}")
            return False
        for key in stored:
            if len(stored[key]) != len(new[key]):
                self.comparison_traceback.append(f"{len(stored[key])} stored {key} outputs, {len(new[key])} new")
                return False
            for a, b in zip(stored[key], new[key]):
                problem = compare_text(a, b, tol)
                if problem is not None:
                    self.comparison_traceback += [f"{key}: {problem} (tolerance from cell metadata)",
                                                  "stored:", a, "new:", b]
                    return False
        rest_ref = [nbformat.from_dict(o) for o in _without_text(ref)]
        rest_test = [nbformat.from_dict(o) for o in _without_text(test)]
        return exact(self, rest_test, rest_ref, skip_compare)

    compare_outputs.tolerant = True
    IPyNbCell.compare_outputs = compare_outputs


def pytest_configure(config):
    if config.pluginmanager.hasplugin("nbval"):
        install()
