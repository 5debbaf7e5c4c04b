"""Shared fixtures."""
import os

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"  # Debian's package: `make system-deps`
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

pytest_plugins = ["pytester"]  # runs pytest in a subprocess (tests of the nbval plugin)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch work on one thread: on a shared 2-core machine, torch's default of one thread per
    core oversubscribes the CPU and small kernels slow down by orders of magnitude."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright (the HTML and JupyterLab tests); skips where it is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: run `make system-deps` (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Never Playwright's own browser download: the system Chromium only.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
