"""A class of five simulated students per chapter, graded with nbgrader's own commands: the check behind
book/instructors.md's table of autograding times and scores.

    OMP_NUM_THREADS=1 python tools/class_simulation.py [--out DIR] [--check-timeout S] [ch03 ...]

generates the course (tools/assignments.py) in ``--out`` (a fresh temporary folder by default), then for each chapter
submits five notebooks:

- ``blank``: the release as handed out;
- ``reference``: the instructor version (every solution);
- ``wrong``: the reference with one code exercise answered with a known misconception (``WRONG``);
- ``crash``: the reference whose first solution cell ends its kernel (``os._exit(1)``);
- ``loop``: the reference whose first exercise function never returns (``while True: pass``);

runs ``nbgrader autograde <chapter> --student <name>`` for each, timed, then ``nbgrader generate_feedback``, and
prints one Markdown row per submission: the autograded score, the seconds autograding took (wall and CPU, with the
machine's load average), and the reason the first test that lost points gives.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import assignments  # noqa: E402

STUDENTS = ("blank", "reference", "wrong", "crash", "loop")
#: per chapter: (solution cell's grade id, a wrong answer written as a student with the misconception would)
WRONG = {
    "ch01": ("ex-code-hebbian-code", "def my_hebbian_memory(E, U, targets):\n    return (U[targets].T @ E).T\n"),
    "ch02": ("ex-code-mlp-forward-code", "def my_mlp_forward(E, W1, b1, W2):\n    return (E @ W1.T + b1) @ W2.T\n"),
    "ch03": ("ex-information-bits-code", "def information_bits(S, R, D):\n    return S * R * math.log(D)\n"),
    "ch04": ("ex-param-count-code", "def my_parameter_count(d, H, d_h, m):\n    return 4 * H * d_h * d + m * d\n\n"
                                    "m_equal = 4 * 8 * 8 * 32 // (2 * 32)\n"),
    "ch05": ("ex-fit-scaling-code", "def fit_scaling(params, facts):\n"
                                    "    slope = np.polyfit(params, facts, 1)[0]\n"
                                    "    return slope, float(np.median(np.divide(facts, params)))\n"),
    "ch06": ("ex-dyn-partial-losses-code",
             "def my_partial_losses(logits, answers, D):\n"
             "    p = torch.softmax(logits, dim=-1).reshape(len(answers), -1, D)\n"
             "    rows = torch.arange(len(answers))\n"
             "    relation = -torch.log(p[rows, answers // D].sum(-1)).mean()\n"
             "    subject = -torch.log(p[rows, :, answers % D].sum(-1)).mean()\n"
             "    return subject.item(), relation.item()\n"),
    "ch07": ("ex-fano-bits-code", "def fano_bits(S, R, D, accuracy):\n"
                                  "    eps = 1 - accuracy\n"
                                  "    if eps >= 1 - 1 / D:\n"
                                  "        return 0.0\n"
                                  "    h2 = -sum(x * math.log(x) for x in (eps, 1 - eps) if x > 0)\n"
                                  "    return S * R * (math.log(D) - h2 - eps * math.log(D - 1))\n"),
}


def _cells(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf8"))


def _grade_id(cell: dict) -> str | None:
    return cell["metadata"].get("nbgrader", {}).get("grade_id")


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def submissions(course: Path, aid: str) -> dict[str, dict]:
    """The five notebooks of ``aid``'s simulated class."""
    name = assignments.chapters()[aid].name
    reference = _cells(course / "source" / aid / name)
    out = {"blank": _cells(course / "release" / aid / name), "reference": reference}
    first = next(c for c in reference["cells"] if c["cell_type"] == "code"
                 and c["metadata"].get("nbgrader", {}).get("solution"))
    function = re.search(r"^def \w+\(.*?\):\n", _source(first), re.M)[0]
    variants = {
        "wrong": {WRONG[aid][0]: WRONG[aid][1]},
        "crash": {_grade_id(first): "import os\nos._exit(1)\n\n" + _source(first)},
        "loop": {_grade_id(first): function + "    while True:\n        pass\n"},
    }
    for student, replace in variants.items():
        notebook = json.loads(json.dumps(reference))
        for cell in notebook["cells"]:
            if _grade_id(cell) in replace:
                cell["source"] = replace[_grade_id(cell)]
        out[student] = notebook
    return out


def submit(course: Path, aid: str, student: str, notebook: dict) -> None:
    """Place ``notebook`` as ``student``'s submission of ``aid``, beside the release's other files (data/)."""
    folder = course / "submitted" / student / aid
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(course / "release" / aid, folder)
    (folder / assignments.chapters()[aid].name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False),
                                                           encoding="utf8")


def reason(course: Path, aid: str, student: str) -> str:
    """The first error of a graded test cell in the autograded notebook (the reason points were lost), or ""."""
    notebook = _cells(course / "autograded" / student / aid / assignments.chapters()[aid].name)
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade") and cell["cell_type"] == "code":
            for out in cell.get("outputs", []):
                if out["output_type"] == "error":
                    return f"{out['ename']}: {out['evalue'].splitlines()[0] if out['evalue'] else ''}"
    return ""


def score(course: Path, aid: str, student: str) -> tuple[float, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission(aid, student)
        return sub.code_score, sub.max_code_score


def autograde(course: Path, aid: str, student: str, env: dict) -> dict:
    """``nbgrader autograde`` of one submission, timed: its score, maximum, wall seconds, CPU seconds (nbgrader, its
    kernel and the checkers' processes together, which a busy machine does not inflate), reason and nbgrader's log."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = assignments.nbgrader("autograde", aid, "--student", student, "--force", course=course, env=env,
                                timeout=900)
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    got, best = score(course, aid, student)
    return {"assignment": aid, "student": student, "score": got, "max": best, "seconds": seconds,
            "cpu": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime,
            "reason": reason(course, aid, student), "log": done.stdout + done.stderr}


def simulate(course: Path, aids: list[str], env: dict):
    """Submit, autograde (timed, one student at a time) and give feedback to the class of each chapter; yields one
    row (a dict) per submission."""
    for aid in aids:
        for student, notebook in submissions(course, aid).items():
            submit(course, aid, student, notebook)
        for student in STUDENTS:
            yield autograde(course, aid, student, env)
        assignments.nbgrader("generate_feedback", aid, "--force", course=course, env=env, timeout=900)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="a new course directory (default: in a new temporary folder)")
    parser.add_argument("--check-timeout", help="FACTLIB_CHECK_TIMEOUT for the kernels (default: the checkers')")
    parser.add_argument("assignments", nargs="*", help="chNN ids (default: every chapter)")
    args = parser.parse_args(argv)
    course = args.out or Path(tempfile.mkdtemp(prefix="class-simulation-")) / "course"
    if course.exists() and any(course.iterdir()):
        print(f"error: {course} is not empty: the simulation makes a course of its own", file=sys.stderr)
        return 2
    aids = args.assignments or list(assignments.chapters())
    env = dict(os.environ)
    if args.check_timeout:
        env["FACTLIB_CHECK_TIMEOUT"] = args.check_timeout
    start = time.monotonic()
    assignments.build(course, aids)
    print(f"course generated in {course} ({time.monotonic() - start:.0f} s); "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    print("| assignment | student | score | autograde wall (s) | CPU (s) | load | first reason for lost points |")
    print("|---|---|---|---|---|---|---|")
    for row in simulate(course, aids, env):
        print(f"| {row['assignment']} | {row['student']} | {row['score']:g} / {row['max']:g} | {row['seconds']:.1f} "
              f"| {row['cpu']:.1f} | {os.getloadavg()[0]:.1f} | {row['reason'].replace('|', '/')[:110]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
