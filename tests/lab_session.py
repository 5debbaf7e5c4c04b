"""JupyterLab started as `make lab` starts it, and a notebook open in it in headless Chromium (tests/test_lab.py,
tests/test_assignments.py).

``Lab(tmp)`` serves the working copy tools/jupyter/workcopy.py makes (in ``tmp``), ``Lab(tmp, root=folder)`` a folder as
it is; either way with the configuration in tools/jupyter/ (127.0.0.1 only, the kernel factlib-book and no other,
started without asking, no news or update checks, no save into book/), on a free port with a random token, with
Jupyter's config, data, runtime, settings and workspace folders in ``tmp``; kernels import this checkout's factlib.
Notebooks render every cell at once (windowing off), so that what a reader would scroll to can be checked.
``stop()`` shuts the server down and waits for every process it started, kernels included.

``LabPage`` is a JupyterLab tab showing one notebook; the browser reaches 127.0.0.1 only (any other request is
aborted and recorded).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
LAB_CONFIG = ROOT / "tools" / "jupyter"  # on JUPYTER_CONFIG_PATH, as in `make lab`
LOCAL_HOST = "127.0.0.1"
TIMEOUT_MS = 60_000

sys.path.insert(0, str(LAB_CONFIG))
import workcopy  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL_HOST, 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server started as `make lab` starts it."""

    def __init__(self, tmp: Path, root: Path | None = None):
        if root is None:
            root = tmp / "_lab"
            workcopy.update(root)
        self.root = Path(root)
        jupyter = tmp / "jupyter"
        settings = jupyter / "settings" / "@jupyterlab" / "notebook-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
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

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method, data=data,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response.read()
        return json.loads(answer) if answer else None

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{quote(notebook)}?reset&token={self.token}"

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


class LabPage:
    """A JupyterLab tab showing one notebook; requests to any host but 127.0.0.1 are aborted and recorded.

    What the reader would read off the screen (execution counts, errors) is read from the notebook's cell models
    (window.jupyterapp).
    """

    def __init__(self, browser, lab: Lab, notebook: str):
        self.lab, self.outside = lab, []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.goto(lab.page_url(notebook), wait_until="load")
        label = Path(notebook).name
        self.page.wait_for_function(f"() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                    f"&& window.jupyterapp.shell.currentWidget.title.label === {label!r}")
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
        self.page.wait_for_function(KERNEL_IDLE, timeout=timeout_ms)

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

    def rendered_math(self, timeout_s: float = 60) -> dict:
        """Every markdown cell rendered and its math typeset: counts of typeset equations, MathJax errors, '>'
        glyphs, and the rendered text of the markdown cells."""
        self.page.evaluate(_RENDER_MARKDOWN)
        deadline, last = time.monotonic() + timeout_s, None
        while True:  # MathJax typesets cell by cell: wait until the counts stop moving
            report = self.page.evaluate(_MATH_REPORT)
            if report == last and report["pending"] == 0:
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"math still typesetting after {timeout_s} s: {report}")
            last = report
            time.sleep(1.0)

    def close(self, name: str) -> None:
        shots = os.environ.get("LAB_TEST_SCREENSHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(shots) / f"{name}.png"))
        self.context.close()
        assert not self.outside, f"requests that would have left the machine: {self.outside}"


KERNEL_IDLE = """() => {
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

# Render every markdown cell (a cell opened for editing shows its source instead).
_RENDER_MARKDOWN = """() => {
  for (const cell of window.jupyterapp.shell.currentWidget.content.widgets)
    if (cell.model.type === 'markdown') cell.rendered = true;
}"""

# Math in the rendered markdown cells: MathJax 3 (CHTML in JupyterLab, SVG in the feedback pages) marks errors with
# mjx-merror / data-mml-node="merror"; a '>' glyph is class mjx-c3E (CHTML) or data-c="3E" (SVG). "pending": math
# delimiters left in the text, not yet typeset.
MATH_REPORT_JS = """(root) => {
  const scope = root ? document.querySelectorAll(root) : [document.body];
  let containers = 0, errors = 0, gt = 0, pending = 0, text = '';
  for (const node of scope) {
    containers += node.querySelectorAll('mjx-container').length;
    errors += node.querySelectorAll('mjx-merror, [data-mml-node="merror"]').length;
    gt += node.querySelectorAll('mjx-container mjx-c.mjx-c3E, mjx-container [data-c="3E"]').length;
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const parent = walker.currentNode.parentElement;
      if (parent.closest('mjx-container, script, style, pre, code')) continue;
      text += walker.currentNode.textContent;
    }
  }
  pending = (text.match(/\\$\\$|\\\\\\(|\\\\\\[/g) || []).length;
  return {containers, errors, gt, pending, text};
}"""
_MATH_REPORT = f"() => ({MATH_REPORT_JS})('.jp-MarkdownCell .jp-RenderedMarkdown')"


# Math as JupyterLab and nbconvert take it out of the Markdown before parsing it: display, then inline.
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$|\$(?:[^$]|\n(?!\s*\n))+?\$", re.S)


def expected_gt(notebook: dict) -> int:
    """The '>' characters a reader should see in the notebook's typeset math: those in its math spans, less any
    quote marker ('>' opening a line of a quotation) that sits inside one."""
    count = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            text = re.sub(r"`[^`\n]+`", "", "".join(cell["source"]))
            for math in _MATH.findall(text):
                count += re.sub(r"\n[ \t]*>", "\n", math).count(">")
    return count
