"""The course edition (tools/assignments.py, `make assignments`), run as an instructor and a class would run it, with
nbgrader's own commands.

Every chapter is generated: the student release holds no solution, hidden test or instructor cell, and keeps the
stored outputs of the cells autograding skips. Chapters 3 and 4 are submitted by the five students of
tools/class_simulation.py (blank, reference, wrong, a kernel that dies, an endless loop) and autograded one by one:
scores, reasons and feedback are checked, the autograding time too. Chapter 4's hidden tests give partial credit per
quantity and no checksum warning on an untouched release. The release and a feedback page are opened in JupyterLab /
Chromium: no MathJax error, no quote marker typeset inside math, nothing loaded from outside the machine.
Regenerating the course last: it never loses submissions, grades or feedback."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402
import class_simulation  # noqa: E402

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

CHAPTERS = assignments.chapters()
SIMULATED = ["ch03", "ch04"]
#: seconds each checker gives the student's function while grading (the looping student's cost)
CHECK_TIMEOUT_S = "3"
#: the target: autograding one submission of a chapter takes at most this long on the project's 2-core machine
TARGET_S = 30
#: a test bound for one submission's wall time, above the target: the machine is shared with other work
WALL_BOUND_S = 90


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def nbgrader_meta(cell: dict) -> dict:
    return cell["metadata"].get("nbgrader", {})


def solution_lines(text: str) -> list[str]:
    """The distinctive lines inside the cell's solution and hidden-test regions."""
    out, inside = [], False
    for line in text.split("\n"):
        if "BEGIN SOLUTION" in line or "BEGIN HIDDEN TESTS" in line:
            inside = True
        elif "END SOLUTION" in line or "END HIDDEN TESTS" in line:
            inside = False
        elif inside and len(line.strip()) >= 12:
            out.append(line.strip())
    return out


def grading_env() -> dict:
    return dict(os.environ, FACTLIB_CHECK_TIMEOUT=CHECK_TIMEOUT_S, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return assignments.build(tmp_path_factory.mktemp("course") / "course")


def test_every_exercise_is_an_nbgrader_exercise():
    """In the chapters: each exercise has graded cells, each code exercise a solution cell with a solution region
    followed by a locked test cell that calls its checker, and the grade ids are unique."""
    for aid, path in CHAPTERS.items():
        nb = cells(path)
        labels = re.findall(r":label: (ex-[\w-]+)", "".join(source(c) for c in nb if c["cell_type"] == "markdown"))
        assert labels, aid
        ids = [nbgrader_meta(c)["grade_id"] for c in nb if nbgrader_meta(c)]
        assert len(ids) == len(set(ids)), f"{aid}: duplicate grade ids"
        for label in labels:
            mine = [(i, c) for i, c in enumerate(nb) if nbgrader_meta(c).get("grade_id", "").startswith(label + "-")]
            assert any(nbgrader_meta(c).get("grade") for _, c in mine), f"{aid} {label}: no graded cell"
            for i, c in mine:
                meta = nbgrader_meta(c)
                if c["cell_type"] == "code" and meta["solution"]:
                    assert "### BEGIN SOLUTION" in source(c) and "### END SOLUTION" in source(c), (aid, label)
                    test = nb[i + 1]
                    assert nbgrader_meta(test).get("grade") and nbgrader_meta(test).get("locked"), (aid, label)
                    assert re.match(rf"ch{int(aid[2:])}\.test_\w+\(", source(test)), (aid, label)
                if c["cell_type"] == "markdown":
                    assert meta["solution"] and meta["grade"] and meta["points"] > 0, (aid, label)


def test_a_test_cell_checks_one_thing():
    """A checker call and a hidden test of a stored number are separate graded cells (partial credit per quantity),
    and every solution region but a function's body is announced by a comment that names what to compute."""
    for aid, path in CHAPTERS.items():
        for c in cells(path):
            meta, text = nbgrader_meta(c), source(c)
            if c["cell_type"] != "code" or not meta:
                continue
            if meta.get("grade"):
                assert not (re.search(r"ch\d\.test_", text) and "HIDDEN TESTS" in text), (aid, meta["grade_id"])
            if meta.get("solution"):
                lines = text.split("\n")
                for k, line in enumerate(lines):
                    if line == "### BEGIN SOLUTION":  # at the top level: not a function's body
                        assert k > 0 and lines[k - 1].startswith("# "), (aid, meta["grade_id"], text)


def test_generation(course):
    for aid, path in CHAPTERS.items():
        assert (course / "release" / aid / path.name).exists(), aid
        assert (course / "release" / aid / "data").is_dir(), aid
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert sorted(a.name for a in gb.assignments) == sorted(CHAPTERS)
        for aid in CHAPTERS:
            assert gb.find_assignment(aid).max_score > 0, aid
    assert "load_subconfig('instructor_config.py')" in (course / "nbgrader_config.py").read_text()


def test_release_reads_as_markdown_with_the_books_numbers(course):
    """JupyterLab does not render MyST: the release's markdown is plain (tools/myst_markdown.py), numbered as in the
    HTML book (chapter 3's first exercise is the book's 14th)."""
    path = CHAPTERS["ch03"]
    release = cells(course / "release" / "ch03" / path.name)
    markdown = "\n".join(source(c) for c in release if c["cell_type"] == "markdown")
    assert "> **Exercise 14 (A prompt sampler).**" in markdown
    left = re.findall(r"^`{3,}\{|\{(?:eq|prf:ref|ref|numref|doc|cite:[tp])\}`", markdown, re.M)
    assert not left, left[:5]


def test_release_contains_no_solution(course):
    for aid, path in CHAPTERS.items():
        instructor = cells(path)
        release_text = (course / "release" / aid / path.name).read_text()
        release = cells(course / "release" / aid / path.name)
        hidden = [line for c in instructor for line in solution_lines(source(c))]
        assert hidden, aid
        for line in hidden:
            assert line not in release_text, f"{aid}: solution line in the release: {line}"
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "{solution", assignments.INSTRUCTOR_TAG):
            assert marker not in release_text, f"{aid}: {marker!r} in the release"
        # the book's notes on the reference solutions stay in the instructor edition
        for c in instructor:
            if assignments.INSTRUCTOR_TAG in c["metadata"].get("tags", []) and len(source(c)) > 80:
                assert source(c).strip() not in release_text, aid
        solutions = [c for c in release if nbgrader_meta(c).get("solution")]
        assert len(solutions) == sum(1 for c in instructor if nbgrader_meta(c).get("solution")), aid
        for c in solutions:
            if c["cell_type"] == "code":
                assert "raise NotImplementedError()" in source(c), f"{aid}: {source(c)}"
            else:
                assert source(c) == "YOUR ANSWER HERE", f"{aid}: {source(c)}"
        # outputs only where autograding does not run the cell: the book's stored figures and tables
        for c in release:
            if c["cell_type"] == "code" and c.get("outputs"):
                assert "skip-execution" in c["metadata"].get("tags", []) and not nbgrader_meta(c), aid
                assert all("application/vnd.jupyter.widget-view+json" not in o.get("data", {}) for o in c["outputs"])


def _stored_seconds(cell: dict) -> float:
    run = cell["metadata"].get("execution")
    if not run:
        return 0.0
    start, end = (datetime.datetime.fromisoformat(run[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def test_autograding_skips_the_heavy_cells():
    """What autograding still runs of each chapter took at most a quarter of the target when the book was executed
    (the stored timings); the skipped cells are the heavy ones, and no graded cell is skipped."""
    for aid, path in CHAPTERS.items():
        nb = cells(path)
        skips = assignments.autograde_skips(nb)
        runs = sum(_stored_seconds(c) for i, c in enumerate(nb) if c["cell_type"] == "code" and i not in skips)
        skipped = sum(_stored_seconds(nb[i]) for i in skips)
        assert runs <= TARGET_S / 4, f"{aid}: autograding runs {runs:.1f} s of the chapter's cells"
        assert skipped > runs or skipped > 10, (aid, skipped, runs)
        assert not any(nbgrader_meta(nb[i]) for i in skips), aid


def test_autograde_skips_follow_the_names_a_cell_uses():
    code = [
        ("import math\nx = 1", []), ("y = heavy()", ["autograde-skip"]), ("def f():\n    return y", []),
        ("z = [y for _ in range(2)]", []), ("y = 2\nprint(y)", []), ("print(f(), y)", []),
        ("x += 1", []), ("w = math.pi * x", []),
    ]
    nb = [{"cell_type": "code", "metadata": {"tags": tags}, "source": text} for text, tags in code]
    assert sorted(assignments.autograde_skips(nb)) == [1, 2, 3, 5]
    graded = nb[:2] + [{"cell_type": "code", "source": "check(y)",
                        "metadata": {"nbgrader": {"grade": True, "grade_id": "ex-a-tests"}}}]
    with pytest.raises(ValueError, match="ex-a-tests.*uses y from cell 1"):
        assignments.autograde_skips(graded)


@pytest.fixture(scope="module")
def graded(course):
    """Chapters 3 and 4 submitted by the simulated class and autograded one submission at a time, feedback given;
    chapter 4 also by a student whose function is right, whose stored number is wrong, and who edited a test cell."""
    env = grading_env()
    rows = {(r["assignment"], r["student"]): r for r in class_simulation.simulate(course, SIMULATED, env)}
    name = CHAPTERS["ch04"].name
    notebook = json.loads((course / "source" / "ch04" / name).read_text())
    for cell in notebook["cells"]:
        if nbgrader_meta(cell).get("grade_id") == "ex-param-count-code":
            cell["source"] = source(cell).replace("m_equal = 4 * 8 * 8 * 32 // (2 * 32)", "m_equal = 64")
        if nbgrader_meta(cell).get("grade_id") == "ex-param-count-tests":
            cell["source"] = "pass  # the checker call, deleted"
    class_simulation.submit(course, "ch04", "tampered", notebook)
    rows["ch04", "tampered"] = class_simulation.autograde(course, "ch04", "tampered", env)
    assignments.nbgrader("generate_feedback", "ch04", "--force", course=course, env=env, timeout=900)
    return course, rows


def feedback(course: Path, aid: str, student: str) -> str:
    return (course / "feedback" / student / aid / CHAPTERS[aid].with_suffix(".html").name).read_text()


def test_reference_solutions_get_full_marks(graded):
    course, rows = graded
    for aid in SIMULATED:
        row = rows[aid, "reference"]
        assert row["max"] > 0 and row["score"] == row["max"] and row["reason"] == "", row
        autograded = cells(course / "autograded" / "reference" / aid / CHAPTERS[aid].name)
        errors = [source(c)[:60] for c in autograded if any(o["output_type"] == "error" for o in c.get("outputs", []))]
        assert not errors, f"{aid}: cells that raised when autograded: {errors}"  # nothing needs a skipped cell


def test_blank_release_gets_zero_saying_why(graded):
    _, rows = graded
    for aid in SIMULATED:
        row = rows[aid, "blank"]
        assert row["max"] > 0 and row["score"] == 0, row
        assert row["reason"].startswith("NotImplementedError: ") and "replace `raise NotImplementedError()`" in row[
            "reason"], row


def test_wrong_submission_gets_partial_credit_and_the_checkers_hint(graded):
    course, rows = graded
    row = rows["ch03", "wrong"]
    assert 0 < row["score"] < row["max"]
    assert "use log base 2: the information is counted in bits" in feedback(course, "ch03", "wrong")
    row = rows["ch04", "wrong"]  # the function wrong, the stored number right
    assert row["score"] == row["max"] - 0.5 and "2 m d" in row["reason"], row


def test_a_submission_that_kills_its_kernel_is_graded_zero_with_a_reason(graded):
    course, rows = graded
    for aid in SIMULATED:
        row = rows[aid, "crash"]
        assert row["score"] == 0 and row["reason"].startswith("KernelDied: not run: the kernel died"), row
        page = feedback(course, aid, "crash")
        assert "the kernel died while this cell ran" in page and "KernelDied" in page


def test_an_endless_loop_costs_its_points_not_the_grading(graded):
    _, rows = graded
    for aid in SIMULATED:
        row = rows[aid, "loop"]
        assert row["reason"].startswith(f"TimeoutError: test_") and f"within {CHECK_TIMEOUT_S} s" in row["reason"]
        assert 0 < row["score"] < row["max"], row  # the exercises after it are still graded


def test_hidden_tests_give_partial_credit_per_quantity_without_checksum_warnings(graded):
    course, rows = graded
    row = rows["ch04", "tampered"]
    assert row["score"] == row["max"] - 0.5 and row["reason"].startswith("AssertionError: m_equal"), row
    # the edited test cell was restored from the gradebook (nbgrader's warning), its checker run and passed
    assert re.search(r"checksum.*ex-param-count-tests|ex-param-count-tests.*checksum", row["log"], re.I), row["log"]
    for student in class_simulation.STUDENTS:
        assert "checksum" not in rows["ch04", student]["log"].lower(), (student, rows["ch04", student]["log"])
    autograded = cells(course / "autograded" / "blank" / "ch04" / CHAPTERS["ch04"].name)
    hidden = next(c for c in autograded if nbgrader_meta(c).get("grade_id") == "ex-param-count-hidden")
    assert "assert m_equal == 128" in source(hidden)  # restored for grading


def test_hidden_tests_leave_the_release_and_come_back_for_grading(course):
    path = CHAPTERS["ch04"]
    assert "m_equal == 128" not in (course / "release" / "ch04" / path.name).read_text()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert "m_equal == 128" in gb.find_source_cell("ex-param-count-hidden", path.stem, "ch04").source


def test_autograding_takes_seconds(graded):
    _, rows = graded
    times = {key: round(row["seconds"], 1) for key, row in rows.items()}
    print("autograde seconds per submission:", times)
    for (aid, student), seconds in times.items():
        limit = WALL_BOUND_S + (float(CHECK_TIMEOUT_S) if student == "loop" else 0)
        assert seconds < limit, f"{aid} {student}: {seconds} s"


# --- math, in JupyterLab and in a feedback page ------------------------------------------------------------------

@pytest.fixture(scope="module")
def math_pages(course, graded, browser, tmp_path_factory):
    """Chapter 2 (aligned equations, theorems with math) as released, in JupyterLab; and its feedback page."""
    from lab_session import Lab, LabPage

    env = grading_env()
    name = CHAPTERS["ch02"].name
    class_simulation.submit(course, "ch02", "blank", json.loads((course / "release" / "ch02" / name).read_text()))
    class_simulation.autograde(course, "ch02", "blank", env)
    assignments.nbgrader("generate_feedback", "ch02", "--force", course=course, env=env, timeout=900)
    lab = Lab(tmp_path_factory.mktemp("release-lab"), root=course / "release" / "ch02")
    try:
        page = LabPage(browser, lab, name)
        released = page.rendered_math()
        page.close("release-ch02")
    finally:
        assert not lab.stop()
    return released, json.loads((course / "release" / "ch02" / name).read_text())


def test_release_math_renders_in_jupyterlab(math_pages):
    from lab_session import expected_gt

    report, notebook = math_pages
    assert report["errors"] == 0, f"{report['errors']} MathJax errors"
    assert report["containers"] > 50
    assert report["gt"] == expected_gt(notebook)


def test_feedback_math_renders_offline(course, math_pages, browser):
    from lab_session import MATH_REPORT_JS, expected_gt

    page_path = course / "feedback" / "blank" / "ch02" / CHAPTERS["ch02"].with_suffix(".html").name
    html = page_path.read_text()
    assert "cdnjs" not in html and "<script src=\"http" not in html
    outside = []
    context = browser.new_context()
    context.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
                  if route.request.url.startswith("http") else route.continue_())
    page = context.new_page()
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise")
        page.evaluate("() => window.MathJax.startup.promise")
        report = page.evaluate(f"() => ({MATH_REPORT_JS})(null)")
    finally:
        context.close()
    assert not outside, outside
    autograded = json.loads((course / "autograded" / "blank" / "ch02" / CHAPTERS["ch02"].name).read_text())
    assert report["errors"] == 0, f"{report['errors']} MathJax errors"
    assert report["containers"] > 50 and report["pending"] == 0
    assert report["gt"] == expected_gt(autograded)


# --- last: regenerating the course ---------------------------------------------------------------------------------

def _tree(course: Path, *folders: str) -> dict:
    return {str(p.relative_to(course)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted((course / folder).rglob("*")) if p.is_file()}


def _grades(course: Path) -> dict:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {(sub.assignment.name, sub.student.id): sub.score for a in gb.assignments for sub in a.submissions}


def test_regenerating_never_loses_course_data(graded, capsys):
    course, _ = graded
    kept = ("submitted", "autograded", "feedback")
    before, grades = _tree(course, *kept), _grades(course)
    assert {aid for aid, _ in grades} >= {"ch03", "ch04"}
    release_before = _tree(course, "release", "source")
    # a chapter with submissions is refused, and nothing changes
    assert assignments.main(["--out", str(course), "ch03"]) == 2
    message = capsys.readouterr().err
    assert "already has submissions" in message and "ch03: blank, crash, loop, reference, wrong" in message
    assert _tree(course, "release", "source") == release_before
    # another chapter is rebuilt alone: every submission, grade, feedback page and other release stays
    (course / "instructor_config.py").write_text("c.Exchange.root = '/srv/exchange'\n")
    assignments.build(course, ["ch05"])
    assert _tree(course, *kept) == before and _grades(course) == grades
    assert {k: v for k, v in _tree(course, "release", "source").items() if "/ch05/" not in k} == \
        {k: v for k, v in release_before.items() if "/ch05/" not in k}
    # told to, it rewrites a chapter with submissions: they and their grades stay
    assignments.build(course, ["ch03"], force=True)
    assert _tree(course, *kept) == before and _grades(course) == grades
    assert (course / "instructor_config.py").read_text() == "c.Exchange.root = '/srv/exchange'\n"
    assert sorted(p.name for p in (course / "release").iterdir()) == sorted(CHAPTERS)
