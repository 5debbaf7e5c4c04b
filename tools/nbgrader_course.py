"""nbgrader steps of the course edition, named in the nbgrader_config.py that tools/assignments.py writes.

- ``KeepStoredOutputs`` (generate_assignment): nbgrader's ClearOutput, except for the cells that autograding does not
  run (tag ``skip-execution``): the student version keeps the outputs the book stored for them (figures, tables), less
  a live explorer's widget, which needs a kernel.
- ``QuietHiddenTests`` (autograde): nbgrader's OverwriteCells without the "checksum has changed" warning for a test
  cell that is exactly as released (the release lacks its hidden tests; nbgrader restores them either way).
- ``ReportDeadKernel`` (autograde): nbgrader's Execute, except that a submission whose kernel dies (``os._exit``, a
  crash, memory) is still graded: the cell that killed it gets an error output saying so, every later test cell an
  error "not run", so they score 0 with a reason, and the autograded notebook and its feedback exist.
- ``inline_mathjax`` (generate_feedback, a Jinja filter used by nbgrader_templates/course_feedback/mathjax.html.j2):
  the feedback pages carry MathJax 3 in the page itself, so their math renders offline, whoever opens the file.
"""
from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

import markupsafe
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, Execute, OverwriteCells

#: nbclient's tag for cells it does not execute (autograding skips the heavy narrative cells so marked)
SKIP_TAG = "skip-execution"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: where the feedback template lives (given to nbconvert as a template base directory)
TEMPLATES = Path(__file__).resolve().parent / "nbgrader_templates"


def skipped(cell) -> bool:
    return cell.get("cell_type") == "code" and SKIP_TAG in cell.get("metadata", {}).get("tags", [])


class KeepStoredOutputs(ClearOutput):
    """ClearOutput, but a cell autograding skips keeps its stored outputs (not a widget view)."""

    def preprocess_cell(self, cell, resources, cell_index):
        if skipped(cell):
            cell.outputs = [out for out in cell.outputs if WIDGET_VIEW not in out.get("data", {})]
            return cell, resources
        return super().preprocess_cell(cell, resources, cell_index)


def released_source(source: str) -> str:
    """A test cell's source as the release shows it: its hidden tests removed, as nbgrader removes them."""
    cell = NotebookNode(cell_type="code", source=source, metadata={})
    ClearHiddenTests()._remove_hidden_test_region(cell)
    return cell.source


class QuietHiddenTests(OverwriteCells):
    """OverwriteCells, restoring an untouched released test cell's hidden tests before it compares checksums."""

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None and utils.is_locked(cell):
            try:
                original = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id).source
            except MissingEntry:
                original = None
            if original is not None and original != cell.source and released_source(original) == cell.source:
                cell.source = original
        return super().preprocess_cell(cell, resources, cell_index)


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class ReportDeadKernel(Execute):
    """Execute, turning a dead kernel into error outputs instead of a submission nbgrader drops."""

    def preprocess(self, nb, resources=None, km=None):
        self.died_in = None
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if self.died_in is not None:
            if cell.cell_type == "code" and utils.is_grade(cell):
                cell.outputs = [_error("KernelDied", f"not run: the kernel died in an earlier cell (the one that "
                                                     f"starts {self.died_in!r}), so this test scores 0")]
            return cell, self.resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self.died_in = (cell.source.strip().splitlines() or [""])[0][:60]
            cell.outputs.append(_error(
                "KernelDied", "the kernel died while this cell ran (os._exit or sys.exit at the top of a cell, a "
                              "crash, or too much memory); the cells after it were not run and their tests score 0"))
            return cell, self.resources


@lru_cache(maxsize=1)
def _mathjax_source() -> str:
    files = importlib.metadata.files("sphinx-mathjax-offline") or []
    path = next((f for f in files if f.as_posix().endswith("static/mathjax/tex-svg.js")), None)
    if path is None:
        raise FileNotFoundError("MathJax (tex-svg.js) not found: install sphinx-mathjax-offline (requirements.txt)")
    return Path(path.locate()).read_text(encoding="utf8")


MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true},
  svg: {fontCache: 'global'}
};"""


def inline_mathjax(_=None) -> markupsafe.Markup:
    """The MathJax configuration and MathJax 3 itself (SVG output: no font files), as inline scripts."""
    code = _mathjax_source().replace("</script", "<\\/script")
    return markupsafe.Markup(f"<script>\n{MATHJAX_CONFIG}\n</script>\n<script>\n{code}\n</script>")  # noqa: S704
