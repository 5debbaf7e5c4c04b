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


def execute(path: Path, timeout: int) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # widget state of an earlier run
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        # The explorers store their precomputed states for the HTML book in their own output
        # (factlib/explorer.py); a widget snapshot would only show each explorer's first state.
        store_widget_state=False,
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
