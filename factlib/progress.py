"""Progress bars: tqdm's widget bar while a notebook cell runs, one line of text once it is done.

``progress_bar`` takes tqdm's arguments. In a terminal or a script it is tqdm's text bar. In a Jupyter kernel
it is ``tqdm.notebook``'s widget bar, shown under a display id; when the bar closes, that display is replaced by
the bar's final line (``desc: 100%|██████████| 12/12 [00:31<00:00, 2.6s/it]``) and the bar's widgets are closed
(tools/execute_notebooks.py stores no state for closed widgets).

A kernel cannot tell a reader's JupyterLab from nbclient storing a chapter's outputs, so both see the same
thing: a live widget while the work runs, then the line. The stored output, nbval and the HTML book hold one
line of text, never a widget snapshot of a finished bar nor a stream of carriage-return updates.
"""
from __future__ import annotations

import sys
from functools import cache

from tqdm.auto import tqdm as _auto_tqdm


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar (same arguments as ``tqdm.tqdm``): the widget-then-line bar in a Jupyter kernel, else text."""
    notebook = sys.modules.get("tqdm.notebook")  # tqdm.auto imports it only in a kernel with ipywidgets
    if notebook is not None and issubclass(_auto_tqdm, notebook.tqdm_notebook):
        return _notebook_line_bar()(iterable, **kwargs)
    return _auto_tqdm(iterable, **kwargs)


@cache
def _notebook_line_bar() -> type:
    from IPython.display import display
    from tqdm.notebook import tqdm_notebook

    class NotebookLineBar(tqdm_notebook):
        """``tqdm.notebook``'s bar, displayed under a display id that its final text line replaces on close."""

        def __init__(self, *args, **kwargs):
            kwargs["display"] = False  # displayed here instead, with a display id
            kwargs.pop("delay", None)  # shown at once: a delayed bar would be displayed without the id
            super().__init__(*args, **kwargs)
            self._handle = None
            if not self.disable:
                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def close(self):
            handle, self._handle = getattr(self, "_handle", None), None
            super().close()
            if handle is None:
                return
            leave = self.leave if self.leave is not None else abs(getattr(self, "pos", 0)) == 0
            line = self.format_meter(**self.format_dict) if leave else ""
            handle.update({"text/plain": line}, raw=True)
            for widget in (*self.container.children, self.container):
                for model in (getattr(widget, "style", None), widget.layout, widget):
                    if model is not None:
                        model.close()

    return NotebookLineBar
