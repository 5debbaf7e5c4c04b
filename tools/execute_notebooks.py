"""Re-run chapter notebooks in place and store their outputs, with the explorers' precomputed states.

Usage: python tools/execute_notebooks.py [NOTEBOOK ...]   (default: every book/*.ipynb)

The kernel is the interpreter running this script (the venv's), started in the notebook's folder,
as nbval does, so that `make test` sees the same working directory.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent.parent / "book"


class _Client(NotebookClient):
    """Stores no widget state for widgets closed during the run (factlib.progress closes a finished bar's):
    a closed widget is shown nowhere."""

    def handle_comm_msg(self, outs, msg, cell_index):
        super().handle_comm_msg(outs, msg, cell_index)
        if msg["msg_type"] == "comm_close":
            self.widget_state.pop(msg["content"]["comm_id"], None)
            self.widget_buffers.pop(msg["content"]["comm_id"], None)


def execute(path: Path, timeout: int) -> None:
    nb = nbformat.read(path, as_version=4)
    client = _Client(
        nb,
        kernel_name="python3",
        timeout=timeout,
        # JupyterLab shows each explorer in its first state from this snapshot until the reader runs the chapter.
        # The HTML book uses the explorers' own precomputed states (factlib/explorer.py) and leaves the snapshot
        # out of its pages (tools/offline_static.py).
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    nbformat.write(nb, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(BOOK.glob("*.ipynb"))
    sys.path.insert(0, str(BOOK.parent))
    from factlib.explorer import SNAPSHOT_ENV

    os.environ[SNAPSHOT_ENV] = "1"  # the kernels inherit it
    if not notebooks:
        print(f"no notebooks found in {BOOK}", file=sys.stderr)
        return 1
    for path in notebooks:
        start = time.perf_counter()
        print(f"executing {path} ...", flush=True)
        execute(path.resolve(), args.timeout)
        print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
