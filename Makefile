# Set-up, build and test of the book. On a fresh machine: `make book`, then `make test`.
# Needs Python 3.11 and, for `test`, apt (to install Chromium if missing).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON_BOOT := $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp
# The chapters' kernel: this environment's Python under a name of its own, installed inside .venv (--sys-prefix).
KERNEL := factlib-book
KERNELSPEC := $(VENV)/share/jupyter/kernels/$(KERNEL)/kernel.json

HTML := _build/html
# Chapters that train: their printed numbers depend on the processor's rounding and carry stated tolerances
# (tools/nbval_tolerance.py). `make test` runs these a second time with another choice of CPU kernels; chapter 2
# (the slowest, checked the same way by hand: see README) is left out of that second pass to keep `make test`
# within 15 minutes on two cores.
OTHER_KERNELS_CHAPTERS := book/01_linear_memory.ipynb book/05_training_transformers.ipynb book/07_lower_bounds.ipynb
NBVAL := -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# `make execute CHAPTERS=book/01_linear_memory.ipynb` re-runs one chapter; empty: all of them
CHAPTERS ?=

.PHONY: venv book build test unit-test nbval system-deps execute assignments lab clean

venv: $(VENV_STAMP) $(KERNELSPEC)

$(VENV_STAMP): requirements.txt $(wildcard pyproject.toml)
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(if $(wildcard pyproject.toml),$(PY) -m pip install -e .)
	touch $@

$(KERNELSPEC): $(VENV_STAMP)
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))"

book: venv build

# Notebooks are never executed here (execute_notebooks: off). -W turns every warning into an error;
# --all re-reads every page, so a warning cannot hide in an unchanged page of an incremental build.
# The old HTML goes first: a page or asset the book no longer makes must not survive from an earlier build.
build:
	rm -rf $(HTML)
	$(VENV)/bin/jupyter-book build . --all --warningiserror --keep-going --builder html
	@echo "Built $(HTML)/index.html"

system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	fi

# The unit tests and the chapters' nbval passes run side by side, one torch thread each (tests/conftest.py and the
# chapters set it), so that `make test` stays near 15 minutes on two cores; each prints its output when it ends.
test: book system-deps
	$(MAKE) --no-print-directory -j2 --output-sync=target unit-test nbval

unit-test nbval: export OMP_NUM_THREADS = 1
unit-test nbval: export MKL_NUM_THREADS = 1

unit-test: venv
	$(PY) -m pytest tests

# Every chapter against its stored outputs: exact, except the numbers of cells that state a tolerance.
# Then the training chapters again as a reader's other processor would run them: ATen's portable kernels
# (no AVX2/AVX-512) and MKL's processor-independent code path round differently from this machine's.
nbval: venv
	$(PY) $(NBVAL) book/
	ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE $(PY) $(NBVAL) $(OTHER_KERNELS_CHAPTERS)

# Re-run every chapter and store its outputs, widget snapshot and explorer states for the HTML (then commit the notebooks).
execute: venv
	$(PY) tools/execute_notebooks.py $(CHAPTERS)

# The course edition: one nbgrader assignment per chapter, generated from book/ into _assignments/ (git-ignored):
# source/ (the chapters, with solutions), release/ (the student version), gradebook.db. See book/instructors.md.
# Regenerating keeps submissions, grades and feedback; `make assignments ASSIGNMENTS="ch03 --force"` passes options on.
ASSIGNMENTS ?=
assignments: venv
	$(PY) tools/assignments.py $(ASSIGNMENTS)

# JupyterLab on this machine only (127.0.0.1), with the kernel $(KERNEL) as its only kernel, started without asking,
# and no news or update checks: tools/jupyter/, which tests/test_lab.py uses too. It serves LAB_DIR: by default _lab/,
# a working copy of the chapters in plain Markdown made and kept up to date by tools/jupyter/workcopy.py, never book/
# (a save into book/ is refused). `make lab LAB_DIR=_assignments/release/ch03` serves a folder as it is; it prints
# the address to open, token included. `make lab LAB_ARGS=--ServerApp.port=9000` passes options on.
LAB_DIR ?= _lab
LAB_ARGS ?=
lab: venv
	$(PY) tools/jupyter/workcopy.py "$(LAB_DIR)"
	@echo "Starting JupyterLab: open the http://127.0.0.1:...?token=... address it prints. Kernel: Python ($(KERNEL))."
	JUPYTER_CONFIG_PATH="$(CURDIR)/tools/jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
		$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(LAB_DIR)" $(LAB_ARGS)

# _assignments/ is left alone: it holds a course's submissions and grades (delete it by hand to start a course afresh)
clean:
	rm -rf _build .pytest_cache
