"""`make lab`'s server setting that needs Python (the others are in jupyter_server_config.json): a file inside the
repository's book/ is never saved, whatever folder the server serves. JupyterLab's autosave and Ctrl+S then show an
error instead of writing into the chapters."""
import os
from pathlib import Path

from tornado.web import HTTPError

BOOK = (Path(__file__).resolve().parent.parent.parent / "book").resolve()


def refuse_saves_into_book(model, path, contents_manager, **kwargs):
    target = Path(os.path.join(contents_manager.root_dir, path.lstrip("/"))).resolve()
    if target == BOOK or BOOK in target.parents:
        raise HTTPError(403, f"{path} is in the repository's book/, which JupyterLab does not write: work in the "
                             "copy that `make lab` serves (_lab/)")


c = get_config()  # noqa: F821 (Jupyter's config loader defines it)
c.ContentsManager.pre_save_hook = refuse_saves_into_book
