"""The folder `make lab` serves: never the repository's book/, by default a working copy of its chapters.

    python tools/jupyter/workcopy.py [DIR]      (DIR: _lab by default; `make lab LAB_DIR=...`)

- DIR inside book/ is refused: JupyterLab's autosave would write into the repository's chapters.
- DIR = _lab, or a working copy this script made earlier (it holds ``.factlib-workcopy.json``), or a folder that does
  not exist yet, is a working copy of the chapters: each chapter as plain Markdown that JupyterLab renders, with the
  book's numbers (tools/myst_markdown.py), and with its stored outputs; and ``data/``, the stored results the chapters
  read. A chapter that is missing is written; a chapter the reader has not changed since it was written is brought up
  to date with book/; a chapter the reader has changed is kept as it is, with a note if book/ has a newer version
  (delete the copy to get it). ``data/`` always follows book/.
- Any other folder (an assignment release, say) is served as it is.

The server (tools/jupyter/jupyter_server_config.py) also refuses to save a file inside book/, whatever it serves.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent
ROOT = TOOLS.parent
BOOK = ROOT / "book"
DEFAULT = ROOT / "_lab"
#: the working copy's record: chapter file -> sha256 of the text written
RECORD = ".factlib-workcopy.json"


def inside_book(path: Path) -> bool:
    path = path.resolve()
    return path == BOOK.resolve() or BOOK.resolve() in path.parents


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf8")).hexdigest()


def update(dest: Path) -> list[str]:
    """Create or update the working copy ``dest``; returns notes for the reader (chapters kept as they are)."""
    sys.path.insert(0, str(TOOLS))
    from myst_markdown import convert_chapters

    dest.mkdir(parents=True, exist_ok=True)
    record_path = dest / RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    chapters = {p.stem: p for p in sorted(BOOK.glob("0[0-9]_*.ipynb"))}
    plain = convert_chapters({stem: json.loads(p.read_text(encoding="utf8")) for stem, p in chapters.items()})
    notes = []
    for stem, notebook in plain.items():
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        target = dest / chapters[stem].name
        if target.exists() and record.get(target.name) != _sha(target.read_text(encoding="utf8")):
            if record.get(target.name) != _sha(text):
                notes.append(f"{target} has your changes and is kept; book/{target.name} has changed since it was "
                             "copied: delete the copy (or move it away) to get the new version")
            continue
        target.write_text(text, encoding="utf8")
        record[target.name] = _sha(text)
    if (dest / "data").exists():
        shutil.rmtree(dest / "data")
    shutil.copytree(BOOK / "data", dest / "data", ignore=shutil.ignore_patterns("*.lock"))
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    dest = Path(args[0]) if args else DEFAULT
    if inside_book(dest):
        print(f"error: {dest} is the repository's book/: JupyterLab would save into the chapters. Serve the working "
              "copy (make lab), or another folder (make lab LAB_DIR=...)", file=sys.stderr)
        return 2
    if dest.resolve() == DEFAULT.resolve() or (dest / RECORD).exists() or not dest.exists():
        for note in update(dest):
            print(f"note: {note}")
        print(f"JupyterLab serves {dest}: a working copy of the chapters (your edits stay there, book/ is untouched)")
    else:
        print(f"JupyterLab serves {dest} as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
