"""The chapters live in JupyterLab, driven in a real headless Chromium: the path `make lab` gives a reader.

A module fixture starts JupyterLab as `make lab` does (tests/lab_session.py: the configuration in tools/jupyter/,
serving the working copy tools/jupyter/workcopy.py makes, here in a temporary folder), with a throwaway notebook added.
The browser reaches 127.0.0.1 only: any other request is aborted and fails the test. At the end the server is shut
down and every process it started, kernels included, is waited for (killed, and the test fails, if one outlives the
shutdown).

- The working copy reads as Markdown: no raw MyST in chapter 3's rendered cells, its math typeset with no MathJax
  error and no quote marker inside an equation.
- Chapter 3 runs top to bottom (Run > Run All Cells) with no error, in the factlib-book kernel, and its
  explorer redraws when its seed slider moves.
- An exercise (chapter 3's information_bits): its cell, edited by typing, run with Shift+Enter, shows the
  checker's verdict: the misconception typed in, then a pass. Saved (Ctrl+S), the edit lands in the working copy,
  and no file of the repository's book/ changes.
- A server on the whole repository refuses to save a chapter of book/ (what JupyterLab's autosave would do).
- A long cell's progress bar (factlib.progress) is tqdm's widget while it runs and one line of text after.

Set LAB_TEST_SCREENSHOTS=DIR to save a screenshot of the page at the end of each test.
"""

import hashlib
import json
import re
import shutil
import time
import urllib.error

import nbformat
import pytest
from playwright.sync_api import expect

from lab_session import ROOT, KERNEL_IDLE, Lab, LabPage, expected_gt, workcopy

BOOK = ROOT / "book"
KERNEL = "factlib-book"
CHAPTER = "03_factual_recall_task.ipynb"
PROGRESS_NOTEBOOK = "progress_demo.ipynb"
RUN_ALL_TIMEOUT_S = 120
# What JupyterLab shows when it does not render MyST: directive fences, roles, label lines.
RAW_MYST = re.compile(r"```\{|:::\{|\{(?:prf:ref|ref|numref|eq|doc|cite:[tp])\}`|^\([\w-]+\)=", re.M)


def _book_state() -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(BOOK.rglob("*")) if p.is_file()}


_BOOK_AT_IMPORT = _book_state()


# The throwaway notebook of the progress-bar test: a sweep of 8 jobs of 0.4 s each.
PROGRESS_CELL = """\
import time
from factlib.sweeps import run_sweep

results = run_sweep([{"x": x} for x in range(8)], lambda job: time.sleep(0.4) or job["x"] ** 2, desc="demo sweep")
print(sum(results))"""


def run_all_cells(page: LabPage) -> list[dict]:
    """Edit > Clear Outputs of All Cells, Run > Run All Cells, then wait until every code cell has an execution
    count and the kernel is idle; stops early at the first cell with an error."""
    page.menu("Edit", "Clear Outputs of All Cells")
    assert all(c["count"] is None for c in page.cells())
    page.menu("Run", "Run All Cells")
    deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
    while True:
        cells = page.cells()
        if any(c["errors"] for c in cells):
            return cells
        if all(c["count"] is not None for c in cells) and page.page.evaluate(KERNEL_IDLE):
            return cells
        if time.monotonic() > deadline:
            pending = [c["source"][:80] for c in cells if c["count"] is None]
            raise AssertionError(f"cells not run after {RUN_ALL_TIMEOUT_S} s: {pending}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    """JupyterLab as `make lab` starts it, on a working copy of the chapters (and a throwaway notebook)."""
    book_before = _book_state()
    server = Lab(tmp_path_factory.mktemp("lab"))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROGRESS_CELL)])
    notebook.metadata["kernelspec"] = nbformat.read(BOOK / CHAPTER, as_version=4).metadata["kernelspec"]
    nbformat.write(notebook, server.root / PROGRESS_NOTEBOOK)
    try:
        specs = server.api("kernelspecs")
        assert list(specs["kernelspecs"]) == [KERNEL], (
            f"JupyterLab offers the kernels {list(specs['kernelspecs'])}, not only {KERNEL}: run `make venv`, "
            f"which installs it into .venv")
        yield server
    finally:
        killed = server.stop()
    assert not killed, f"processes that outlived JupyterLab's shutdown, killed: {killed}"
    assert _book_state() == book_before, "a file of book/ changed while JupyterLab ran"


def test_the_working_copy_reads_as_markdown_with_typeset_math(browser, lab):
    page = LabPage(browser, lab, CHAPTER)
    try:
        report = page.rendered_math()
        copy = json.loads((lab.root / CHAPTER).read_text())
        assert not RAW_MYST.search(report["text"]), RAW_MYST.search(report["text"])[0]
        assert "Exercise 14 (A prompt sampler)." in report["text"]  # the boxes, numbered as in the HTML book
        assert report["errors"] == 0, f"{report['errors']} MathJax errors"
        assert report["containers"] > 50
        assert report["gt"] == expected_gt(copy), "a '>' typeset inside math that the chapter does not have"
    finally:
        page.close("working-copy")


@pytest.fixture(scope="module")
def chapter(browser, lab):
    """Chapter 3 open in JupyterLab, all its cells run."""
    page = LabPage(browser, lab, CHAPTER)
    page.ran = run_all_cells(page)
    yield page
    page.close("chapter")


def test_chapter_runs_in_the_book_kernel(chapter, lab):
    cells = chapter.ran
    assert len(cells) == sum(c.cell_type == "code" for c in nbformat.read(BOOK / CHAPTER, as_version=4).cells)
    raised = {c["source"][:80]: c["errors"] for c in cells if c["errors"]}
    assert not raised, f"cells that raised: {raised}"
    assert [c["count"] for c in cells] == list(range(1, len(cells) + 1))
    sessions = [s for s in lab.api("sessions") if s["path"].endswith(CHAPTER)]
    assert [s["kernel"]["name"] for s in sessions] == [KERNEL]


def test_explorer_responds_live(chapter):
    explorer = chapter.cell("prompt_explorer(").locator(".jp-OutputArea .jupyter-widgets.widget-vbox").first
    images = explorer.locator("img")
    expect(images).to_have_count(2)  # the prompts and the fact table
    before = images.evaluate_all("imgs => imgs.map(i => i.src)")
    seed = explorer.locator(".widget-slider").filter(has=chapter.page.locator(".widget-label", has_text="seed"))
    expect(seed.locator(".widget-readout")).to_have_text("0")
    seed.locator(".noUi-handle").focus()
    chapter.page.keyboard.press("ArrowRight")
    expect(seed.locator(".widget-readout")).to_have_text("1")
    # The kernel redraws both figures for the new seed, and the Image widgets show them.
    chapter.page.wait_for_function(
        "([imgs, before]) => imgs.every((img, k) => img.src !== before[k] && img.complete && img.naturalWidth > 0)",
        arg=[images.element_handles(), before], timeout=30_000)
    chapter.wait_idle()


def _edit_return_line(page: LabPage, cell, new_line: str) -> None:
    """Type over the solution's `return` statement (the line after `### BEGIN SOLUTION`), as a reader would."""
    cell.locator(".cm-content").click()
    page.page.keyboard.press("Control+Home")
    page.page.keyboard.press("ArrowDown")
    page.page.keyboard.press("ArrowDown")
    page.page.keyboard.press("End")
    page.page.keyboard.press("Shift+Home")  # to the end of the indentation: the statement, not its indent
    page.page.keyboard.type(new_line)


def test_exercise_typed_and_checked(chapter):
    """The reader edits the solution cell, runs it and then the checker cell after it (Shift+Enter twice)."""
    solution = chapter.cell("def information_bits(")
    check = chapter.cell("ch3.test_information_bits(")
    output = check.locator(".jp-OutputArea")
    for body, verdict in [("return S * R * math.log(D)", "use log base 2"),
                          ("return S * R * math.log2(D)", "All tests in test_information_bits passed!")]:
        _edit_return_line(chapter, solution, body)
        lines = solution.locator(".cm-line").all_inner_texts()
        assert lines[:3] == ["def information_bits(S, R, D):", "    ### BEGIN SOLUTION", f"    {body}"], lines
        chapter.page.keyboard.press("Shift+Enter")  # runs the solution, selects the checker cell
        chapter.page.keyboard.press("Shift+Enter")  # runs the checker
        output.get_by_text(verdict).wait_for(timeout=30_000)
        chapter.wait_idle()
        errors = [c["errors"] for c in chapter.cells() if c["source"].startswith("ch3.test_information_bits(")]
        assert errors == ([["AssertionError: use log base 2: the information is counted in bits"]]
                          if "log(" in body else [[]]), errors


def test_saving_writes_the_working_copy_never_book(chapter, lab):
    """Ctrl+S after the exercise's edit: the working copy on disk holds it; book/ is checked unchanged when the
    server stops (the lab fixture)."""
    before = (lab.root / CHAPTER).read_text()
    chapter.cell("def information_bits(").locator(".cm-content").click()
    chapter.page.keyboard.press("Control+s")
    chapter.page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
    after = (lab.root / CHAPTER).read_text()
    assert after != before and "return S * R * math.log2(D)" in after
    assert _book_state() == _BOOK_AT_IMPORT


def test_a_server_on_the_repository_refuses_to_save_into_book(tmp_path):
    """What autosave would do on a chapter of book/ (`jupyter lab` started at the repository's root with make lab's
    configuration): the save is refused and the file is untouched."""
    path = f"book/{CHAPTER}"
    before = (BOOK / CHAPTER).read_bytes()
    server = Lab(tmp_path, root=ROOT)
    try:
        model = server.api(f"contents/{path}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            server.api(f"contents/{path}", "PUT", {"type": "notebook", "format": "json", "content": model["content"]})
        assert refused.value.code == 403
        assert "which JupyterLab does not write" in json.loads(refused.value.read())["message"]
    finally:
        assert not server.stop()
    assert (BOOK / CHAPTER).read_bytes() == before


def test_the_working_copy_follows_book_but_keeps_the_readers_edits(tmp_path, monkeypatch):
    book = tmp_path / "book"
    shutil.copytree(BOOK, book)
    monkeypatch.setattr(workcopy, "BOOK", book)
    dest = tmp_path / "_lab"
    assert workcopy.update(dest) == []
    edited, untouched = dest / CHAPTER, dest / "01_linear_memory.ipynb"
    edited.write_text(edited.read_text().replace("A prompt sampler", "A prompt sampler, my notes"))
    for name in (CHAPTER, untouched.name):  # then book/ changes both chapters
        notebook = json.loads((book / name).read_text())
        notebook["cells"][0]["source"].append("\n\nA sentence added to the book.")
        (book / name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    notes = workcopy.update(dest)
    assert "my notes" in edited.read_text() and "added to the book" not in edited.read_text()
    assert len(notes) == 1 and CHAPTER in notes[0] and "has your changes and is kept" in notes[0]
    assert "A sentence added to the book." in untouched.read_text()
    assert sorted(p.name for p in (dest / "data").iterdir()) == sorted(p.name for p in (book / "data").iterdir()
                                                                       if not p.name.endswith(".lock"))


def test_make_lab_never_serves_book(capsys):
    assert workcopy.main([str(BOOK)]) == 2
    assert workcopy.main([str(BOOK / "data")]) == 2
    assert "JupyterLab would save into the chapters" in capsys.readouterr().err


def test_progress_bar_is_a_widget_then_one_line(browser, lab):
    page = LabPage(browser, lab, PROGRESS_NOTEBOOK)
    try:
        cell = page.cell("run_sweep(")
        cell.locator(".cm-content").click()
        page.page.keyboard.press("Shift+Enter")
        # While the sweep runs: tqdm's notebook bar, an ipywidgets progress bar.
        cell.locator(".jp-OutputArea .widget-hprogress").wait_for(timeout=30_000)
        # When it ends: its final line, as text, and the cell's own output.
        cell.locator(".jp-OutputArea").get_by_text("140").wait_for(timeout=30_000)
        page.wait_idle()
        texts = cell.locator(".jp-OutputArea-output").all_inner_texts()
        assert cell.locator(".jp-OutputArea .jupyter-widgets").count() == 0
        assert len(texts) == 2 and texts[1].strip() == "140", texts
        assert texts[0].startswith("demo sweep: 100%|██████████| 8/8 [") and "\n" not in texts[0].strip(), texts
    finally:
        page.close("progress")
