"""The reference solutions of the chapters' code exercises, read from the notebooks themselves.

``chapter_solutions(3)`` runs, in a fresh namespace, the imports of chapter 3's code cells and the imports and
function definitions of its solution cells (nbgrader ``solution`` cells), and returns {checker name: the function
the chapter's test cell gives it}. The checker tests call the checkers on these, so a checker and the solution the
book shows cannot drift apart.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"
#: a test cell's checker call, ``ch3.test_information_bits(information_bits)``
CHECKER_CALL = re.compile(r"^ch(?P<chapter>\d)\.(?P<checker>test_\w+)\((?P<function>\w+)\)", re.M)


def _run(nodes: list, namespace: dict, filename: str) -> None:
    exec(compile(ast.Module(body=nodes, type_ignores=[]), filename, "exec"), namespace)


def chapter_solutions(number: int) -> dict:
    """{checker name: the chapter's solution function} for chapter ``number``."""
    path = next(BOOK.glob(f"{number:02d}_*.ipynb"))
    code = [c for c in json.loads(path.read_text(encoding="utf8"))["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    for cell in code:
        tree = ast.parse("".join(cell["source"]))
        _run([n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], namespace, path.name)
    solutions = {}
    for cell, test in zip(code, code[1:]):
        if not cell["metadata"].get("nbgrader", {}).get("solution"):
            continue
        tree = ast.parse("".join(cell["source"]))
        _run([n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))], namespace,
             path.name)
        for call in CHECKER_CALL.finditer("".join(test["source"])):
            solutions[call["checker"]] = namespace[call["function"]]
    return solutions
