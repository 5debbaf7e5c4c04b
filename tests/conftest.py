"""Shared fixtures."""
import pytest
import torch

pytest_plugins = ["pytester"]  # runs pytest in a subprocess (tests of the nbval plugin)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch work on one thread: on a shared 2-core machine, torch's default of one thread per
    core oversubscribes the CPU and small kernels slow down by orders of magnitude."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
