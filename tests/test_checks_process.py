"""How every checker runs the student's function (factlib.checks): in a child process with a hard time limit, on
copies of its inputs, after the reference is computed, refusing calls into the library's own answer, and failing
with the misconception's message alone (no checker code, no reference call, in the traceback). The last test runs
checkers in a kernel started the way JupyterLab starts one (the factlib-book kernelspec, ipykernel)."""
import math
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import torch

from chapter_solutions import chapter_solutions
from factlib import bounds, capacity, memory
from factlib import task as ft
from factlib.checks import ch1, ch2, ch3, ch6, ch7

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parent.parent
LIMIT = "1.5"  # seconds per check in these tests
SLACK_S = 4.0  # fork, kill and reap on a busy two-core machine


_capacity = chapter_solutions(1)["test_predicted_capacity"]  # the chapter's own solution


def _swallows_everything(params, c):
    while True:
        try:
            time.sleep(100)
        except BaseException:  # the old in-process limit raised TimeoutError here, and this caught it
            pass


def _one_c_call(params, c):
    import hashlib  # one C call (OpenSSL's loop) that checks no signal: minutes, in constant memory
    return hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 2**31 - 1)


@pytest.mark.parametrize("endless", [
    lambda p, c: sum(range(10**12)),
    lambda p, c: time.sleep(1e6),
    _swallows_everything,
    _one_c_call,
], ids=["busy loop", "sleep", "catches the timeout", "one long C call"])
def test_nothing_outlasts_the_time_limit(monkeypatch, endless):
    monkeypatch.setenv("FACTLIB_CHECK_TIMEOUT", LIMIT)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"^test_predicted_capacity: your function did not return within {LIMIT} s"):
        ch1.test_predicted_capacity(endless)
    assert time.monotonic() - start < float(LIMIT) + SLACK_S
    ch1.test_predicted_capacity(_capacity)  # and the next check runs as usual


def test_the_time_limit_holds_outside_the_main_thread(monkeypatch):
    monkeypatch.setenv("FACTLIB_CHECK_TIMEOUT", LIMIT)
    errors = []

    def check():
        try:
            ch1.test_predicted_capacity(lambda p, c: sum(range(10**12)))
        except TimeoutError as err:
            errors.append(err)

    thread = threading.Thread(target=check)
    thread.start()
    thread.join(float(LIMIT) + SLACK_S)
    assert not thread.is_alive() and len(errors) == 1


@pytest.mark.parametrize("text", ["1e30", "nan", "NaN", "-1", "0", "inf", "soon", "", "3601"])
def test_the_time_limit_setting_is_checked(monkeypatch, text):
    monkeypatch.setenv("FACTLIB_CHECK_TIMEOUT", text)
    with pytest.raises(ValueError, match=r"^FACTLIB_CHECK_TIMEOUT must be a number of seconds in \(0, 3600\]; "
                                         rf"got {re.escape(repr(text))}$"):
        ch1.test_predicted_capacity(_capacity)


def test_an_in_place_change_cannot_reach_the_reference(capsys):
    def doubles_its_input(E, U, t):
        E.mul_(2)
        return U[t].T @ E

    with pytest.raises(AssertionError, match="times 2"):
        ch1.test_hebbian_memory(doubles_its_input)

    def zeroes_both(E, U, t):  # the reference computed after this call would be zero too
        E.zero_()
        U.zero_()
        return U[t].T @ E

    with pytest.raises(AssertionError):
        ch1.test_hebbian_memory(zeroes_both)
    assert "passed" not in capsys.readouterr().out


def test_what_the_function_changes_stays_in_the_child():
    seen = []

    def remembers(params, c):
        seen.append(params)
        return _capacity(params, c)

    ch1.test_predicted_capacity(remembers)
    assert seen == []  # the notebook's own objects are untouched by the check


LIBRARY_ANSWERS = [
    (ch1.test_hebbian_memory, lambda E, U, t: memory.hebbian_memory(E, U, t), "factlib.memory.hebbian_memory"),
    (ch1.test_recall_accuracy, lambda W, E, U, t: memory.recall_accuracy(W, E, U, t), "factlib.memory.recall_accuracy"),
    (ch1.test_predicted_capacity, capacity.predicted_capacity, "factlib.capacity.predicted_capacity"),
    (ch1.test_gradient_memory, lambda E, U, t, lr: memory.gradient_step_memory(E, U, t, lr),
     "factlib.memory.gradient_step_memory"),
    (ch1.test_gradient_memory, lambda E, U, t, lr: lr / len(t) * memory.centred_hebbian_memory(E, U, t),
     "factlib.memory.centred_hebbian_memory"),
    (ch2.test_relu_hermite, memory.relu_hermite_coefficient, "factlib.memory.relu_hermite_coefficient"),
    (ch3.test_information_bits, lambda S, R, D: ft.information_bits(ft.TaskConfig(S=S, R=R, D=D)),
     "factlib.task.information_bits"),
    (ch3.test_information_bits, lambda S, R, D: bounds.table_bits(S, R, D), "factlib.bounds.table_bits"),
    (ch6.test_growth_rates, lambda S, R, D: tuple(__import__("factlib.dynamics").dynamics.growth_rates(S, R, D)
                                                  .values()), "factlib.dynamics.growth_rates"),
    (ch7.test_fano_bits, bounds.fano_bits, "factlib.bounds.fano_bits"),
    (ch7.test_quantize, lambda w, bits: bounds.quantize(w, bits), "factlib.bounds.quantize"),
]


@pytest.mark.parametrize("checker, calls_the_library, name", LIBRARY_ANSWERS, ids=[c[2] for c in LIBRARY_ANSWERS])
def test_a_call_into_the_librarys_answer_is_refused(capsys, checker, calls_the_library, name):
    with pytest.raises(AssertionError, match=rf"^{checker.__name__}: your function calls {re.escape(name)}, the "
                                             "library's own answer to this exercise"):
        checker(calls_the_library)
    assert "passed" not in capsys.readouterr().out


def test_a_call_through_a_name_bound_earlier_or_inside_a_helper_is_refused():
    from factlib.memory import hebbian_memory as renamed

    def helper(E, U, t):
        return renamed(E, U, t)

    def hides_it(E, U, t):
        try:
            return helper(E, U, t)
        finally:
            pass

    with pytest.raises(AssertionError, match="calls factlib.memory.hebbian_memory"):
        ch1.test_hebbian_memory(hides_it)


def _failure(check, wrong):
    with pytest.raises((AssertionError, TimeoutError)) as err:
        check(wrong)
    return err.value, "".join(traceback.format_exception(err.value))


@pytest.mark.parametrize("check, wrong, reference_code", [
    (ch1.test_hebbian_memory, lambda E, U, t: (U[t].T @ E).T, "hebbian_memory(E, U, targets)"),
    (ch1.test_gradient_memory, lambda E, U, t, lr: -lr / len(t) * (U[t] - U.mean(0)).T @ E, "centred_hebbian_memory("),
    (ch3.test_information_bits, lambda S, R, D: S * R * math.log(D), "S * R * math.log2(D)"),
    (ch7.test_fano_bits, lambda S, R, D, a: S * R * math.log2(D), "bounds.fano_bits(S, R, D, acc)"),
], ids=["hebbian", "gradient", "information bits", "fano"])
def test_a_failing_check_never_prints_the_reference_call(check, wrong, reference_code):
    error, text = _failure(check, wrong)
    assert reference_code not in text
    assert not re.search(r"factlib[/\\]checks[/\\]ch\d\.py", text), text  # no frame of the checker's code
    assert error.__cause__ is None and error.__suppress_context__


def test_what_the_function_prints_is_shown_and_its_own_errors_name_it(capsys):
    def chatty(params, c):
        print("trying", params)
        return _capacity(params, c)

    ch1.test_predicted_capacity(chatty)
    out = capsys.readouterr().out
    assert out.startswith("trying 64.0\n") and out.endswith("All tests in test_predicted_capacity passed!\n")

    def broken(params, c):
        return [][0]

    with pytest.raises(IndexError, match=r"^test_predicted_capacity: your function raised IndexError: list index out "
                                         r"of range\n.*in broken\n +return \[\]\[0\]"):
        ch1.test_predicted_capacity(broken)

    def stub(params, c):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match=r"replace `raise NotImplementedError\(\)` with your code"):
        ch1.test_predicted_capacity(stub)


def test_a_function_that_ends_its_process_does_not_end_the_notebook():
    with pytest.raises(RuntimeError, match=r"^test_predicted_capacity: your function ended the checker's process "
                                           r"\(exit status 3\)"):
        ch1.test_predicted_capacity(lambda p, c: os._exit(3))
    with pytest.raises(RuntimeError, match="^test_predicted_capacity: your function raised SystemExit: 1"):
        ch1.test_predicted_capacity(lambda p, c: sys.exit(1))
    ch1.test_predicted_capacity(_capacity)


# --- in a kernel started as JupyterLab starts it --------------------------------------------------------------

KERNEL_CODE = {
    "setup": "import os, time, torch\nfrom factlib.checks import ch1\n"
             "os.environ['FACTLIB_CHECK_TIMEOUT'] = '2'\n"
             "torch.set_num_threads(2)\n"
             "x = torch.randn(800, 800)\n"
             "for _ in range(5):\n    x = torch.tanh(x @ x / 800)  # torch's thread pool in use",
    "pass": "ch1.test_hebbian_memory(lambda E, U, t: U[t].T @ E)",
    "loop": "ch1.test_predicted_capacity(lambda p, c: sum(range(10**12)))",
    "wrong": "ch1.test_hebbian_memory(lambda E, U, t: (U[t].T @ E).T)",
    "torch after": "print(float(torch.tanh(x @ x).sum()) == float(torch.tanh(x @ x).sum()), torch.get_num_threads())",
}


@pytest.fixture(scope="module")
def kernel():
    jupyter_client = pytest.importorskip("jupyter_client")
    from jupyter_client.kernelspec import KernelSpecManager

    if "factlib-book" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("kernel factlib-book not installed: run `make venv`")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    manager, client = jupyter_client.manager.start_new_kernel(kernel_name="factlib-book", env=env)
    yield client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def _run(client, code: str, timeout: float = 60) -> tuple[str, list]:
    """Execute in the kernel; returns (printed text, error outputs)."""
    client.execute(code)
    text, errors = "", []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text += content["text"]
        elif kind == "error":
            errors.append(content)
        elif kind == "status" and content["execution_state"] == "idle":
            return text, errors


def test_checks_in_a_jupyter_kernel(kernel):
    assert _run(kernel, KERNEL_CODE["setup"])[1] == []
    assert _run(kernel, KERNEL_CODE["pass"]) == ("All tests in test_hebbian_memory passed!\n", [])
    start = time.monotonic()
    text, errors = _run(kernel, KERNEL_CODE["loop"])
    assert time.monotonic() - start < 2 + SLACK_S
    assert [e["ename"] for e in errors] == ["TimeoutError"]
    text, errors = _run(kernel, KERNEL_CODE["wrong"])
    assert [e["ename"] for e in errors] == ["AssertionError"]
    shown = "\n".join(errors[0]["traceback"])
    assert "W is the transpose of the memory" in shown
    assert "ref = hebbian_memory" not in shown and not re.search(r"checks[/\\]ch1\.py", shown), shown
    assert _run(kernel, KERNEL_CODE["torch after"]) == ("True 2\n", [])  # the kernel's torch is untouched
