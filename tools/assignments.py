"""The course edition: one nbgrader assignment per chapter, generated from the book's chapters.

    python tools/assignments.py [--out _assignments] [ch03 ch07 ...]     (or `make assignments`)

builds an nbgrader course directory in ``--out`` (git-ignored, rebuilt from scratch each time):

- ``source/chNN/<chapter>.ipynb``: the chapter as it is in book/ (the instructor version, with solutions), and
  ``source/chNN/data/``, the stored results the chapter reads;
- ``nbgrader_config.py``: the course's configuration (below);
- ``release/chNN/``: the student version, made by ``nbgrader generate_assignment``: solution regions replaced by
  nbgrader's stub (``raise NotImplementedError()``), written answers by "YOUR ANSWER HERE", hidden tests and
  outputs removed, and the cells tagged ``instructor-only`` (the book's solution-box markers and its notes on the
  reference solutions) left out;
- ``gradebook.db``: nbgrader's database, with the assignments and their points.

The chapters are never copied by hand: edit book/, then run this again. How to run the course from here
(collect, autograde, feedback): book/instructors.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
DEFAULT_OUT = ROOT / "_assignments"
COURSE_ID = "transformers-store-facts"
#: tag of the cells that only the instructor edition (the book) shows
INSTRUCTOR_TAG = "instructor-only"
#: seconds a cell may run when nbgrader executes a notebook (validate, autograde); the chapters' longest cells
#: (training in chapters 1, 2 and 5) take about a minute on a laptop CPU
CELL_TIMEOUT_S = 600

CONFIG = f'''\
# nbgrader configuration of the course edition, written by tools/assignments.py: do not edit, edit that script.
from nbconvert.preprocessors import TagRemovePreprocessor
from nbgrader.converters import GenerateAssignment

c = get_config()  # noqa: F821 (nbgrader's config loader defines it)
c.CourseDirectory.course_id = {COURSE_ID!r}
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.lock"]

# The student version leaves out the cells only the book shows: the solution boxes' markers and the notes on the
# reference solutions. nbgrader's own steps (clear solutions, outputs and hidden tests, checksums) follow.
c.GenerateAssignment.preprocessors = [TagRemovePreprocessor] + list(
    GenerateAssignment.class_traits()["preprocessors"].default())
c.TagRemovePreprocessor.enabled = True
c.TagRemovePreprocessor.remove_cell_tags = [{INSTRUCTOR_TAG!r}]

# A submission that never returns cannot hang the grading: each checker limits every call of the student's
# function (factlib.checks.TIME_LIMIT_S, or $FACTLIB_CHECK_TIMEOUT), and a cell that still runs this long is
# interrupted and counted as an error.
c.Execute.timeout = {CELL_TIMEOUT_S}
c.Execute.interrupt_on_timeout = True
'''


def chapters() -> dict[str, Path]:
    """Assignment id ("ch01", ...) -> chapter notebook."""
    return {f"ch{path.name[:2]}": path for path in sorted(BOOK.glob("0[0-9]_*.ipynb"))}


def nbgrader(*args: str, course: Path, env: dict | None = None, timeout: float | None = None):
    """Run the nbgrader command line in the course directory; raises CalledProcessError with its log on failure."""
    exe = Path(sys.executable).with_name("nbgrader")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nbgrader"]
    run_env = dict(os.environ if env is None else env)
    # the kernels nbgrader starts import factlib from this checkout
    # nbgrader runs `alembic` (its database migrations) from PATH: this environment's scripts first
    run_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), run_env.get("PATH", "")])
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


def build(out: Path = DEFAULT_OUT, only: list[str] | None = None) -> Path:
    """Write the course directory ``out`` from book/ and generate the student release; returns ``out``."""
    out = Path(out).resolve()
    todo = chapters()
    if only:
        unknown = sorted(set(only) - set(todo))
        if unknown:
            raise SystemExit(f"no chapter {', '.join(unknown)}; the assignments are {', '.join(todo)}")
        todo = {aid: todo[aid] for aid in only}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "nbgrader_config.py").write_text(CONFIG)
    for aid, notebook in todo.items():
        source = out / "source" / aid
        source.mkdir(parents=True)
        shutil.copy2(notebook, source / notebook.name)
        shutil.copytree(BOOK / "data", source / "data", ignore=shutil.ignore_patterns("*.lock"))
        nbgrader("generate_assignment", aid, "--force", course=out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="course directory (default: _assignments)")
    parser.add_argument("assignments", nargs="*", help="chNN ids (default: every chapter)")
    args = parser.parse_args(argv)
    out = build(args.out, args.assignments or None)
    print(f"Student release in {out / 'release'}: {', '.join(sorted(p.name for p in (out / 'release').iterdir()))}")


if __name__ == "__main__":
    main()
