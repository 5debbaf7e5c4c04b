"""The course edition (tools/assignments.py, `make assignments`): nbgrader generates one assignment per chapter from
book/, the student release holds no solution, and autograding chapter 3 end to end gives the reference solutions full
marks, a blank release zero (without hanging) and a wrong submission the checker's hint in its feedback.

Autograding executes whole notebooks, so only chapter 3 (seconds to run) is graded here; every chapter is generated
and checked for leaks, and chapter 4's hidden tests are checked to leave the release."""
from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

CHAPTERS = assignments.chapters()
GRADED = "ch03"
#: seconds each checker gives the student's function while grading: the blank and looping submissions must not hang
CHECK_TIMEOUT_S = "3"


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


def test_generation(course):
    for aid, path in CHAPTERS.items():
        assert (course / "release" / aid / path.name).exists(), aid
        assert (course / "release" / aid / "data").is_dir(), aid
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert sorted(a.name for a in gb.assignments) == sorted(CHAPTERS)
        for aid in CHAPTERS:
            assert gb.find_assignment(aid).max_score > 0, aid


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
        assert all(not c.get("outputs") for c in release if c["cell_type"] == "code"), f"{aid}: outputs in release"


def submit(course: Path, student: str, notebook: dict) -> None:
    path = CHAPTERS[GRADED]
    folder = course / "submitted" / student / GRADED
    shutil.copytree(course / "release" / GRADED, folder)
    (folder / path.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))


def replace_solution(nb: dict, grade_id: str, code: str) -> None:
    cell = next(c for c in nb["cells"] if nbgrader_meta(c).get("grade_id") == grade_id)
    cell["source"] = code


@pytest.fixture(scope="module")
def graded(course):
    """Chapter 3 submitted by three students and autograded: the reference solutions, the blank release, and one
    with a wrong answer (natural logarithm for bits) and a function that never returns."""
    path = CHAPTERS[GRADED]
    submit(course, "reference", json.loads((course / "source" / GRADED / path.name).read_text()))
    submit(course, "blank", json.loads((course / "release" / GRADED / path.name).read_text()))
    wrong = json.loads((course / "source" / GRADED / path.name).read_text())
    replace_solution(wrong, "ex-information-bits-code",
                     "import math\n\ndef information_bits(S, R, D):\n    return S * R * math.log(D)\n")
    replace_solution(wrong, "ex-sample-prompt-code", "def sample_prompt(task, s, r, gen):\n    while True:\n        pass\n")
    submit(course, "wrong", wrong)
    env = dict(assignments.os.environ, FACTLIB_CHECK_TIMEOUT=CHECK_TIMEOUT_S, OMP_NUM_THREADS="1")
    start = time.monotonic()
    assignments.nbgrader("autograde", GRADED, "--force", course=course, env=env, timeout=600)
    seconds = time.monotonic() - start
    assignments.nbgrader("generate_feedback", GRADED, "--force", course=course, env=env, timeout=300)
    return course, seconds


def scores(course: Path, student: str) -> tuple[float, float]:
    """(autograded score, autograded maximum) of the student's chapter 3."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission(GRADED, student)
        return sub.code_score, sub.max_code_score


def feedback(course: Path, student: str) -> str:
    return (course / "feedback" / student / GRADED / CHAPTERS[GRADED].with_suffix(".html").name).read_text()


def test_reference_solutions_get_full_marks(graded):
    course, _ = graded
    score, best = scores(course, "reference")
    assert best > 0 and score == best


def test_blank_release_gets_zero_and_finishes(graded):
    course, seconds = graded
    score, best = scores(course, "blank")
    assert best > 0 and score == 0
    assert seconds < 300, f"autograding three submissions took {seconds:.0f} s"


def test_wrong_submission_gets_the_checkers_hint(graded):
    course, _ = graded
    score, best = scores(course, "wrong")
    assert 0 < score < best
    page = feedback(course, "wrong")
    assert "use log base 2: the information is counted in bits" in page
    # the endless loop was stopped by the checker's time limit, and the exercises after it were still graded
    assert "did not return within" in page


def test_hidden_tests_leave_the_release_and_come_back_for_grading(course):
    """Chapter 4 asks for m_equal, checked by a hidden test: not in the release, but in the gradebook's copy of
    the test cell, which nbgrader restores when it grades."""
    path = CHAPTERS["ch04"]
    assert "m_equal == 128" not in (course / "release" / "ch04" / path.name).read_text()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        cell = gb.find_source_cell("ex-param-count-tests", path.stem, "ch04")
        assert "m_equal == 128" in cell.source


def test_instructor_page_lists_every_exercise_with_its_points():
    """book/instructors.md's tables give every exercise the points its nbgrader cells carry."""
    page = (ROOT / "book" / "instructors.md").read_text()
    listed = {label: int(points) for label, points in
              re.findall(r"^\| \{ref\}`(ex-[\w-]+)` \| [^|]+ \| (\d+) \|", page, re.M)}
    expected = {}
    for path in CHAPTERS.values():
        for c in cells(path):
            meta = nbgrader_meta(c)
            if meta.get("grade"):
                label = meta["grade_id"].rsplit("-", 1)[0]
                expected[label] = expected.get(label, 0) + meta["points"]
    assert listed == expected
    assert f"hold {sum(expected.values())} points" in page
