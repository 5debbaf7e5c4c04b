"""Progress bars (factlib.progress) outside a live frontend: text in a terminal; in a notebook executed and
stored as `make execute` does, one line of text and no widget state, which nbval compares (sanitized) with a
new run. tests/test_lab.py checks the live side: a widget bar in JupyterLab while the work runs."""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
from nbval.plugin import get_sanitize_patterns
from tqdm.notebook import tqdm_notebook

from factlib.progress import progress_bar
from factlib.sweeps import run_sweep
from tools.execute_notebooks import execute

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
CELL = """\
from factlib.sweeps import run_sweep

results = run_sweep([{"x": x} for x in range(3)], lambda job: job["x"] ** 2, desc="demo sweep")
print(sum(results))"""
FINAL_LINE = re.compile(r"demo sweep: 100%\|██████████\| 3/3 \[\d\d:\d\d<00:00, +[\d.]+it/s\]")


def test_text_bar_outside_a_notebook():
    out = io.StringIO()
    bar = progress_bar(total=3, desc="demo", file=out, ascii=True)
    assert not isinstance(bar, tqdm_notebook)
    bar.update(3)
    bar.close()
    assert "demo: 100%|##########| 3/3" in out.getvalue()
    assert run_sweep([{"x": 1}], lambda job: job["x"], progress=False) == [1]


def test_stored_output_is_one_line_and_nbval_accepts_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    path = tmp_path / "progress.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nbformat.write(notebook, path)

    execute(path, timeout=120)
    stored = nbformat.read(path, as_version=4)
    bar, printed = stored.cells[0].outputs
    assert bar.output_type == "display_data" and list(bar.data) == ["text/plain"], bar
    assert FINAL_LINE.fullmatch(bar.data["text/plain"]), bar.data["text/plain"]
    assert printed.output_type == "stream" and printed.text == "5\n"
    # the bar's widgets were closed: no snapshot of them in the notebook
    assert not stored.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state")
    # nbval's sanitizer turns the line, timings included, into a placeholder ...
    line = bar.data["text/plain"]
    for regex, replace in get_sanitize_patterns(SANITIZE.read_text()):
        line = re.sub(regex, replace, line)
    assert line == "TQDM-PROGRESS"
    # ... and a new run passes nbval against the stored outputs, as `make nbval` runs it.
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tools.nbval_tolerance",
                          "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
