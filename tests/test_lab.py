"""The chapters live in JupyterLab, driven in a real headless Chromium: the path `make lab` gives a reader.

A module fixture starts JupyterLab as `make lab` does (the configuration in tools/jupyter/: 127.0.0.1 only,
the kernel factlib-book and no other, started without asking, no news or update checks), on a free port with
a random token, serving a temporary copy of book/ (nothing in the repository changes), with Jupyter's config,
data, runtime, settings and workspace folders in a temporary folder; kernels import this checkout's factlib.
The browser reaches 127.0.0.1 only: any other request is aborted and fails the test. At the end the server is
shut down and every process it started, kernels included, is waited for (killed, and the test fails, if one
outlives the shutdown).

- Chapter 3 runs top to bottom (Run > Run All Cells) with no error, in the factlib-book kernel, and its
  explorer redraws when its seed slider moves.
- An exercise (chapter 3's information_bits): its cell, edited by typing, run with Shift+Enter, shows the
  checker's verdict: the misconception typed in, then a pass.
- A long cell's progress bar (factlib.progress) is tqdm's widget while it runs and one line of text after.

Set LAB_TEST_SCREENSHOTS=DIR to save a screenshot of the page at the end of each test.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import psutil
import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
LAB_CONFIG = ROOT / "tools" / "jupyter"  # on JUPYTER_CONFIG_PATH, as in `make lab`
KERNEL = "factlib-book"
CHAPTER = "03_factual_recall_task.ipynb"
PROGRESS_NOTEBOOK = "progress_demo.ipynb"
LOCAL_HOST = "127.0.0.1"
TIMEOUT_MS = 60_000
RUN_ALL_TIMEOUT_S = 120

# The throwaway notebook of the progress-bar test: a sweep of 8 jobs of 0.4 s each.
PROGRESS_CELL = """\
import time
from factlib.sweeps import run_sweep

results = run_sweep([{"x": x} for x in range(8)], lambda job: time.sleep(0.4) or job["x"] ** 2, desc="demo sweep")
print(sum(results))"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL_HOST, 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server started as `make lab` starts it, on a copy of book/."""

    def __init__(self, tmp: Path):
        self.root = tmp / "book"
        shutil.copytree(BOOK, self.root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROGRESS_CELL)])
        notebook.metadata["kernelspec"] = nbformat.read(BOOK / CHAPTER, as_version=4).metadata["kernelspec"]
        nbformat.write(notebook, self.root / PROGRESS_NOTEBOOK)
        jupyter = tmp / "jupyter"
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_PATH": str(LAB_CONFIG),
            "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
            "JUPYTER_DATA_DIR": str(jupyter / "data"),  # the kernel and the widget extension are in .venv
            "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "workspaces"),
            "IPYTHONDIR": str(jupyter / "ipython"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        })
        env.setdefault("OMP_NUM_THREADS", "1")  # the kernels' torch: one thread, as the other tests
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://{LOCAL_HOST}:{self.port}"
        command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={self.root}",
                   f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}",
                   "--LabApp.extension_manager=readonly",  # never asks PyPI for extensions
                   "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: the notebook's cell models
        if os.geteuid() == 0:  # containers: JupyterLab refuses root unless told
            command.append("--allow-root")
        self.log_path = tmp / "jupyterlab.log"
        self.log = open(self.log_path, "w")
        # A session of its own: the whole group can be signalled at the end.
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.api("status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer within 60 s:\n{self.log_tail()}")
                time.sleep(0.25)

    def log_tail(self) -> str:
        return self.log_path.read_text()[-4000:]

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def stop(self) -> list[str]:
        """Shut the server down and wait for every process it started; returns those that had to be killed."""
        try:
            server = psutil.Process(self.process.pid)
            processes = [server, *server.children(recursive=True)]  # kernels run in sessions of their own
        except psutil.NoSuchProcess:
            processes = []
        try:
            self.api("shutdown", "POST")  # shuts the kernels down, then the server
        except OSError:
            pass
        _, alive = psutil.wait_procs(processes, timeout=30)
        killed = []
        for process in alive:
            try:
                killed.append(" ".join(process.cmdline()))
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything else left in the server's group
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.log.close()
        return killed




@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    try:
        specs = server.api("kernelspecs")
        assert list(specs["kernelspecs"]) == [KERNEL], (
            f"JupyterLab offers the kernels {list(specs['kernelspecs'])}, not only {KERNEL}: run `make venv`, "
            f"which installs it into .venv")
        yield server
    finally:
        killed = server.stop()
    assert not killed, f"processes that outlived JupyterLab's shutdown, killed: {killed}"


class LabPage:
    """A JupyterLab tab showing one notebook; requests to any host but 127.0.0.1 are aborted and recorded.

    What the reader would read off the screen (execution counts, errors) is read from the notebook's cell models
    (window.jupyterapp): JupyterLab attaches the cells of a long notebook to the page only as they scroll in.
    """

    def __init__(self, browser, lab: Lab, notebook: str):
        self.lab, self.outside = lab, []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.goto(lab.page_url(notebook), wait_until="load")
        self.page.wait_for_function(f"() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                    f"&& window.jupyterapp.shell.currentWidget.title.label === {notebook!r}")
        self.wait_idle()

    def _route(self, route):
        url = urlsplit(route.request.url)
        if url.scheme in {"http", "https", "ws", "wss"} and url.hostname != LOCAL_HOST:
            self.outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def wait_idle(self, timeout_ms: int = TIMEOUT_MS) -> None:
        """Wait until the notebook's kernel is started, connected and idle."""
        self.page.wait_for_function(_KERNEL_IDLE, timeout=timeout_ms)

    def cell(self, text: str):
        """The code cell whose source contains ``text``, scrolled into view, as a locator."""
        key = self.page.evaluate(_SHOW_CELL, text)
        assert key is not None, f"no cell contains {text!r}"
        return self.page.locator(f'[data-lab-test="{key}"]')

    def cells(self) -> list[dict]:
        return self.page.evaluate(_CELLS_STATE)

    def menu(self, *path: str) -> None:
        """Click through the main menu: menu("Run", "Run All Cells")."""
        self.page.locator(".lm-MenuBar-itemLabel").get_by_text(path[0], exact=True).click()
        for item in path[1:]:
            self.page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).click()

    def close(self, name: str) -> None:
        shots = os.environ.get("LAB_TEST_SCREENSHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(shots) / f"{name}.png"))
        self.context.close()
        assert not self.outside, f"requests that would have left the machine: {self.outside}"


_KERNEL_IDLE = """() => {
  const session = window.jupyterapp.shell.currentWidget.sessionContext.session;
  const kernel = session && session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

# Every code cell of the notebook shown: its execution count, and its outputs that are errors.
_CELLS_STATE = """() => {
  const cells = [];
  for (const cell of window.jupyterapp.shell.currentWidget.content.model.cells) {
    if (cell.type !== 'code') continue;
    cells.push({count: cell.executionCount, source: cell.sharedModel.getSource(),
                errors: cell.outputs.toJSON().filter(o => o.output_type === 'error')
                                             .map(o => `${o.ename}: ${o.evalue}`)});
  }
  return cells;
}"""

# Scroll to the first code cell whose source contains the text, as the reader would, and tag its node.
_SHOW_CELL = """async (text) => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  const index = notebook.widgets.findIndex(c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(text));
  if (index < 0) return null;
  await notebook.scrollToItem(index, 'center');
  notebook.widgets[index].node.dataset.labTest = `cell-${index}`;
  return `cell-${index}`;
}"""


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
        if all(c["count"] is not None for c in cells) and page.page.evaluate(_KERNEL_IDLE):
            return cells
        if time.monotonic() > deadline:
            pending = [c["source"][:80] for c in cells if c["count"] is None]
            raise AssertionError(f"cells not run after {RUN_ALL_TIMEOUT_S} s: {pending}")
        time.sleep(0.5)


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
