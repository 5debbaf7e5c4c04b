"""The course edition: one nbgrader assignment per chapter, generated from the book's chapters.

    python tools/assignments.py [--out _assignments] [--force] [ch03 ch07 ...]     (or `make assignments`)

builds or updates an nbgrader course directory in ``--out`` (git-ignored):

- ``source/chNN/<chapter>.ipynb``: the chapter as it is in book/ (the instructor version, with solutions), its
  MyST markdown rewritten as the plain Markdown JupyterLab renders, with the book's numbers (tools/myst_markdown.py),
  and ``source/chNN/data/``, the stored results the chapter reads;
- ``nbgrader_config.py``: the course's configuration (below), rewritten each time; an instructor's own settings go in
  ``instructor_config.py`` next to it, which it reads last and this script never writes;
- ``release/chNN/``: the student version, made by ``nbgrader generate_assignment``: solution regions replaced by
  nbgrader's stub (``raise NotImplementedError()``), written answers by "YOUR ANSWER HERE", hidden tests and
  outputs removed, and the cells tagged ``instructor-only`` (the book's solution-box markers and its notes on the
  reference solutions) left out;
- ``gradebook.db``: nbgrader's database, with the assignments and their points.

Autograding runs a submission in seconds, not minutes: the chapters tag their heavy narrative cells (training runs,
explorers) ``autograde-skip``; this script tags them, and every later cell that uses a name they define, with
nbclient's ``skip-execution``, so ``nbgrader autograde`` does not run them, and the release keeps their stored
outputs. A graded or solution cell that would be skipped is an error.

Regenerating never loses course data: only the chapters asked for (every chapter by default) are rewritten, in
``source/`` and ``release/``; ``gradebook.db``, ``submitted/``, ``autograded/``, ``feedback/``, the other chapters and
``instructor_config.py`` stay. A chapter that already has submissions is refused, with the students named, unless
``--force`` is given (its grades stay in the gradebook; re-run autograde after changing its tests).

The chapters are never copied by hand: edit book/, then run this again. How to run the course from here
(collect, autograde, feedback): book/instructors.md.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import symtable
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from myst_markdown import convert_chapters  # noqa: E402
from nbgrader_course import SKIP_TAG  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
TOOLS = ROOT / "tools"
DEFAULT_OUT = ROOT / "_assignments"
COURSE_ID = "transformers-store-facts"
#: tag of the cells that only the instructor edition (the book) shows
INSTRUCTOR_TAG = "instructor-only"
#: tag, in the chapters, of the heavy narrative cells that autograding skips (the release keeps their outputs)
AUTOGRADE_SKIP_TAG = "autograde-skip"
#: seconds a cell may run when nbgrader executes a notebook (validate, autograde); the heavy cells are skipped, the
#: others take seconds, and a checker stops the student's function after factlib.checks.TIME_LIMIT_S (10 s)
CELL_TIMEOUT_S = 60
#: the instructor's own nbgrader settings, read after the generated ones
INSTRUCTOR_CONFIG = "instructor_config.py"

CONFIG = f'''\
# nbgrader configuration of the course edition, written by tools/assignments.py each time it runs: do not edit it.
# Your own settings (an exchange directory, a hub's course id, ...) go in {INSTRUCTOR_CONFIG} next to this file:
# it is read last, and tools/assignments.py never writes it.
import os
import sys

sys.path.insert(0, {str(TOOLS)!r})  # the course's own nbgrader steps: tools/nbgrader_course.py

import nbgrader  # noqa: E402
import nbgrader_course as course  # noqa: E402
from nbconvert.preprocessors import TagRemovePreprocessor  # noqa: E402
from nbgrader.converters import Autograde, GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import ClearOutput, Execute, OverwriteCells  # noqa: E402

c = get_config()  # noqa: F821 (nbgrader's config loader defines it)
c.CourseDirectory.course_id = {COURSE_ID!r}
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.lock"]


def replaced(steps, old, new):
    return [new if step is old else step for step in steps]


def default(converter, name):
    return list(converter.class_traits()[name].default())


# The student version leaves out the cells only the book shows (the solution boxes' markers and the notes on the
# reference solutions) and keeps the stored outputs of the cells autograding skips; nbgrader's own steps (clear
# solutions, outputs and hidden tests, checksums) follow.
c.GenerateAssignment.preprocessors = [TagRemovePreprocessor] + replaced(
    default(GenerateAssignment, "preprocessors"), ClearOutput, course.KeepStoredOutputs)
c.TagRemovePreprocessor.enabled = True
c.TagRemovePreprocessor.remove_cell_tags = [{INSTRUCTOR_TAG!r}]

# Autograding: hidden tests restored without a warning when the test cell is as released; a kernel that dies is
# reported in the cell that killed it, and the tests after it score 0 "not run" (the submission is still graded).
# A checker stops the student's function after factlib.checks.TIME_LIMIT_S (or $FACTLIB_CHECK_TIMEOUT) seconds,
# and a cell that still runs after {CELL_TIMEOUT_S} s is interrupted and counted as an error.
c.Autograde.sanitize_preprocessors = replaced(
    default(Autograde, "sanitize_preprocessors"), OverwriteCells, course.QuietHiddenTests)
c.Autograde.autograde_preprocessors = replaced(
    default(Autograde, "autograde_preprocessors"), Execute, course.ReportDeadKernel)
c.Execute.timeout = {CELL_TIMEOUT_S}
c.Execute.interrupt_on_timeout = True

# Feedback pages: nbgrader's, with MathJax in the page (offline) instead of a CDN.
c.HTMLExporter.template_name = "course_feedback"
c.HTMLExporter.extra_template_basedirs = [
    os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates"),
    str(course.TEMPLATES)]
c.HTMLExporter.filters = {{"inline_mathjax": course.inline_mathjax}}

load_subconfig({INSTRUCTOR_CONFIG!r})  # noqa: F821 (nbgrader's config loader defines it)
'''


class CourseError(Exception):
    """A course directory that cannot be updated as asked (the message says why and what to do)."""


def chapters() -> dict[str, Path]:
    """Assignment id ("ch01", ...) -> chapter notebook."""
    return {f"ch{path.name[:2]}": path for path in sorted(BOOK.glob("0[0-9]_*.ipynb"))}


# --- which cells autograding skips ----------------------------------------------------------------------------

class _TopLevelReads(ast.NodeVisitor):
    """Names a cell's top-level code reads before binding them, in execution order; nested scopes are left to
    symtable (their bodies run later)."""

    def __init__(self):
        self.bound, self.reads = set(), set()

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            if node.id not in self.bound:
                self.reads.add(node.id)
        else:
            self.bound.add(node.id)

    def _value_first(self, node):
        if getattr(node, "value", None) is not None:
            self.visit(node.value)
        for target in getattr(node, "targets", None) or [node.target]:
            if isinstance(node, ast.AugAssign) and isinstance(target, ast.Name) and target.id not in self.bound:
                self.reads.add(target.id)
            self.visit(target)

    visit_Assign = visit_AugAssign = visit_AnnAssign = visit_NamedExpr = _value_first

    def visit_For(self, node):
        self.visit(node.iter)
        self.visit(node.target)
        for statement in node.body + node.orelse:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def _definition(self, node):  # decorators, defaults and bases run now; the body later
        for expression in node.decorator_list:
            self.visit(expression)
        for part in ([node.args] if hasattr(node, "args") else node.bases + node.keywords):
            self.visit(part)
        self.bound.add(node.name)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition

    def visit_Lambda(self, node):
        self.visit(node.args)

    def _comprehension(self, node):  # its first iterable is evaluated here, the rest in its own scope
        self.visit(node.generators[0].iter)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Import(self, node):
        for alias in node.names:
            self.bound.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node):
        self.bound.update(alias.asname or alias.name for alias in node.names if alias.name != "*")


def _nested_globals(table: symtable.SymbolTable) -> set[str]:
    names = set()
    for child in table.get_children():
        names |= {s.get_name() for s in child.get_symbols() if s.is_global() and s.is_referenced()}
        names |= _nested_globals(child)
    return names


def cell_names(source: str) -> tuple[set[str], set[str]]:
    """(names a code cell needs from earlier cells, names it defines at the top level)."""
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(source)  # IPython syntax (%magics, !shell) as Python
    table = symtable.symtable(code, "<cell>", "exec")
    defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    reads = _TopLevelReads()
    reads.visit(ast.parse(code))
    return reads.reads | (_nested_globals(table) - defined), defined


def _graded(cell: dict) -> bool:
    meta = cell["metadata"].get("nbgrader", {})
    return bool(meta.get("grade") or meta.get("solution"))


def autograde_skips(cells: list[dict]) -> dict[int, str]:
    """Indices of the code cells autograding skips -> why: tagged ``autograde-skip``, or it uses a name whose
    latest definition is in a skipped cell. Raises ValueError if that would skip a graded or solution cell."""
    skips, definer = {}, {}
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        needed, defined = cell_names("".join(cell["source"]))
        if AUTOGRADE_SKIP_TAG in cell["metadata"].get("tags", []):
            skips[index] = f"tagged {AUTOGRADE_SKIP_TAG}"
        else:
            used = sorted(name for name in needed if definer.get(name) in skips)
            if used:
                skips[index] = f"uses {', '.join(used)} from cell {definer[used[0]]}"
        if index in skips and _graded(cell):
            raise ValueError(f"cell {index} ({cell['metadata']['nbgrader']['grade_id']}) is graded but autograding "
                             f"would skip it: it {skips[index]}")
        for name in defined:
            definer[name] = index
    return skips


def mark_autograde_skips(notebook: dict) -> dict[int, str]:
    """Tag the cells autograding skips with ``skip-execution`` (in place); returns autograde_skips' answer."""
    skips = autograde_skips(notebook["cells"])
    for index in skips:
        tags = notebook["cells"][index]["metadata"].setdefault("tags", [])
        if SKIP_TAG not in tags:
            tags.append(SKIP_TAG)
    return skips


# --- the course directory -------------------------------------------------------------------------------------

def nbgrader(*args: str, course: Path, env: dict | None = None, timeout: float | None = None):
    """Run the nbgrader command line in the course directory; raises RuntimeError with its log on failure."""
    exe = Path(sys.executable).with_name("nbgrader")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nbgrader"]
    run_env = dict(os.environ if env is None else env)
    # nbgrader runs `alembic` (its database migrations) from PATH: this environment's scripts first
    run_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), run_env.get("PATH", "")])
    # the kernels nbgrader starts import factlib from this checkout
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), run_env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(cmd + list(args), cwd=course, env=run_env, capture_output=True, text=True,
                          timeout=timeout)
    if "Exception while loading config file" in done.stdout + done.stderr:  # nbgrader only logs it and goes on
        done.returncode = done.returncode or 1
    if done.returncode != 0:
        log = (done.stdout + done.stderr).strip().splitlines()
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {done.returncode}) in {course}:\n"
                           + "\n".join(log[-40:]))
    return done


def students_with_work(course: Path, aid: str) -> list[str]:
    """Students with a submission of ``aid`` in the course: in submitted/ or autograded/, or in the gradebook."""
    students = {path.parent.name for folder in ("submitted", "autograded")
                for path in (course / folder).glob(f"*/{aid}")}
    if (course / "gradebook.db").exists():
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            try:
                students |= {sub.student.id for sub in gb.find_assignment(aid).submissions}
            except MissingEntry:
                pass
    return sorted(students)


def build(out: Path = DEFAULT_OUT, only: list[str] | None = None, force: bool = False) -> Path:
    """Write or update the course directory ``out`` from book/ and generate the student release; returns ``out``."""
    out = Path(out).resolve()
    todo = chapters()
    if only:
        unknown = sorted(set(only) - set(todo))
        if unknown:
            raise CourseError(f"no chapter {', '.join(unknown)}; the assignments are {', '.join(todo)}")
        todo = {aid: todo[aid] for aid in only}
    if not force:
        busy = {aid: students for aid in todo if (students := students_with_work(out, aid))}
        if busy:
            listed = "; ".join(f"{aid}: {', '.join(students)}" for aid, students in busy.items())
            raise CourseError(f"{out} already has submissions of the assignments being regenerated ({listed}). "
                              "Nothing was changed. Regenerate other chapters by naming them, or add --force to "
                              "rewrite these (their submissions and grades stay; autograde them again afterwards)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(CONFIG)
    # Every chapter is converted, whichever are built: the book numbers its theorems, exercises, equations and
    # figures through all of them.
    plain = convert_chapters({path.stem: json.loads(path.read_text(encoding="utf8")) for path in chapters().values()})
    for aid, notebook in todo.items():
        source = out / "source" / aid
        if source.exists():
            shutil.rmtree(source)
        source.mkdir(parents=True)
        converted = plain[notebook.stem]
        mark_autograde_skips(converted)
        with open(source / notebook.name, "w", encoding="utf8") as f:
            json.dump(converted, f, indent=1, ensure_ascii=False)
            f.write("\n")
        shutil.copytree(BOOK / "data", source / "data", ignore=shutil.ignore_patterns("*.lock"))
        nbgrader("generate_assignment", aid, "--force", course=out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="course directory (default: _assignments)")
    parser.add_argument("--force", action="store_true",
                        help="regenerate chapters that already have submissions (their grades stay)")
    parser.add_argument("assignments", nargs="*", help="chNN ids (default: every chapter)")
    args = parser.parse_args(argv)
    try:
        out = build(args.out, args.assignments or None, args.force)
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Student release in {out / 'release'}: {', '.join(sorted(p.name for p in (out / 'release').iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
