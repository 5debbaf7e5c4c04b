"""Every factlib module imports on its own, first, in a fresh interpreter: no import cycle hides behind the order
in which other modules happen to load it (the package reads bottom-up, DESIGN.md)."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import factlib

ROOT = Path(factlib.__file__).resolve().parent.parent

# one interpreter for all modules (torch loads once); before each module every factlib module is forgotten, so
# each one is imported first, as if alone
SCRIPT = """
import sys, importlib
failures = []
for name in sys.argv[1:]:
    for key in [k for k in sys.modules if k == "factlib" or k.startswith("factlib.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except Exception as err:
        failures.append(f"{name}: {type(err).__name__}: {err}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_each_module_imports_alone():
    names = [m.name for m in pkgutil.walk_packages(factlib.__path__, "factlib.") if m.name != "factlib.__main__"]
    assert "factlib.trainer" in names and "factlib.scaling_figures" in names
    out = subprocess.run([sys.executable, "-c", SCRIPT, *names], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_figures_and_scaling_modules_do_not_import_each_other():
    # the registry (figures) imports the figure definitions; nothing below it imports the registry
    for name in ("batched", "streams", "trainer", "searches", "scaling_figures"):
        text = (ROOT / "factlib" / f"{name}.py").read_text()
        assert "from .figures" not in text and "import figures" not in text, name
