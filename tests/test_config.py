"""Profiles, devices, seeded generators and the shared argument checks (factlib.config, factlib._validate)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlib import config
from factlib._validate import check_choice, check_float, check_int

FAST = settings(max_examples=40, deadline=None)


# --- profiles ---------------------------------------------------------------------------------------------

def test_profile_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv("FACTLIB_PROFILE", "full")
    assert config.resolve_profile("quick") == "quick"
    monkeypatch.setenv("FACTLIB_PROFILE", "quick")
    assert config.resolve_profile("full") == "full"


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("FACTLIB_PROFILE", "full")
    assert config.resolve_profile() == "full"


def test_profile_defaults_to_quick(monkeypatch):
    monkeypatch.delenv("FACTLIB_PROFILE", raising=False)
    assert config.resolve_profile() == "quick"


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_bad_profile_names_argument_and_choices(monkeypatch, source):
    if source == "environment":
        monkeypatch.setenv("FACTLIB_PROFILE", "medium")
        call = config.resolve_profile
    else:
        monkeypatch.delenv("FACTLIB_PROFILE", raising=False)
        call = lambda: config.resolve_profile("medium")  # noqa: E731
    with pytest.raises(ValueError, match="profile") as err:
        call()
    for allowed in config.PROFILES:
        assert allowed in str(err.value)
    assert "medium" in str(err.value)


# --- devices ----------------------------------------------------------------------------------------------

def _mps_available():
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


@pytest.mark.skipif(torch.cuda.is_available() or _mps_available(), reason="an accelerator is present")
def test_auto_device_is_cpu_without_accelerator():
    assert config.device("auto") == torch.device("cpu")
    assert config.device() == torch.device("cpu")


def test_cpu_device():
    assert config.device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="cuda is available")
def test_cuda_unavailable_raises():
    with pytest.raises(ValueError, match="cuda"):
        config.device("cuda")


@pytest.mark.skipif(_mps_available(), reason="mps is available")
def test_mps_unavailable_raises():
    with pytest.raises(ValueError, match="mps"):
        config.device("mps")


@pytest.mark.parametrize("name", ["tpu", "CPU", "", "gpu"])
def test_bad_device_name_raises(name):
    with pytest.raises(ValueError, match="device") as err:
        config.device(name)
    for allowed in config.DEVICES:
        assert allowed in str(err.value)


# --- generators -------------------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 2**63 - 1))
def test_generator_is_reproducible(seed):
    a = torch.randn(5, generator=config.generator(seed))
    b = torch.randn(5, generator=config.generator(seed))
    assert torch.equal(a, b)


def test_generator_seeds_differ():
    a = torch.randn(8, generator=config.generator(0))
    b = torch.randn(8, generator=config.generator(1))
    assert not torch.equal(a, b)


def test_generator_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    torch.randn(4, generator=config.generator(7))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("seed", [-1, -(2**40), 1.5, 1.0, "3", None, True, 2**63])
def test_bad_seed_raises_naming_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        config.generator(seed)


# --- shared argument checks -------------------------------------------------------------------------------

def test_check_int_accepts_and_returns_int():
    assert check_int("n", 5, 1, 10) == 5
    assert type(check_int("n", torch.tensor(3), 1)) is int
    assert check_int("n", 1, 1, 1) == 1


@pytest.mark.parametrize("value, expect", [
    (0, r"n must be an integer in \[1, 10\], got 0"),
    (11, r"n must be an integer in \[1, 10\], got 11"),
    (2.0, r"n must be an integer in \[1, 10\], got 2\.0"),
    (True, r"n must be an integer in \[1, 10\], got True"),
    (False, r"n must be an integer"),
    ("4", r"n must be an integer in \[1, 10\]"),
])
def test_check_int_message_names_argument_and_range(value, expect):
    with pytest.raises(ValueError, match=expect):
        check_int("n", value, 1, 10)


def test_check_int_one_sided_ranges():
    with pytest.raises(ValueError, match="k must be an integer >= 3"):
        check_int("k", 2, 3)
    with pytest.raises(ValueError, match="k must be an integer <= 3"):
        check_int("k", 4, None, 3)
    assert check_int("k", -10**9) == -10**9


@FAST
@given(low=st.integers(-50, 50), width=st.integers(0, 50), value=st.integers(-120, 120))
def test_check_int_range_property(low, width, value):
    high = low + width
    if low <= value <= high:
        assert check_int("v", value, low, high) == value
    else:
        with pytest.raises(ValueError, match=rf"v must be an integer in \[{low}, {high}\]"):
            check_int("v", value, low, high)


def test_check_float_accepts():
    assert check_float("lr", 2, 0.0, low_open=True) == 2.0
    assert check_float("p", 1.0, 0.0, 1.0) == 1.0
    assert check_float("p", 0.0, 0.0, 1.0) == 0.0


@pytest.mark.parametrize("value, kwargs, expect", [
    (0.0, dict(low=0.0, low_open=True), r"lr must be a number > 0\.0, got 0\.0"),
    (-1, dict(low=0.0), r"lr must be a number >= 0\.0, got -1"),
    (1.5, dict(low=0.0, high=1.0, low_open=True), r"lr must be a number in \(0\.0, 1\.0\], got 1\.5"),
    (1.5, dict(low=0.0, high=1.0), r"lr must be a number in \[0\.0, 1\.0\]"),
    (float("nan"), dict(), r"lr must be a number, got nan"),
    (float("inf"), dict(low=0.0), r"lr must be a number >= 0\.0"),
    ("fast", dict(low=0.0), r"lr must be a number >= 0\.0, got 'fast'"),
    (None, dict(), r"lr must be a number"),
])
def test_check_float_message_names_argument_and_range(value, kwargs, expect):
    with pytest.raises(ValueError, match=expect):
        check_float("lr", value, **kwargs)


def test_check_choice():
    assert check_choice("optimizer", "sgd", ("adam", "sgd")) == "sgd"
    with pytest.raises(ValueError, match=r"optimizer must be one of adam, sgd; got 'rmsprop'"):
        check_choice("optimizer", "rmsprop", ("adam", "sgd"))
    # a generator of choices is consumed once but still listed in the message
    with pytest.raises(ValueError, match=r"x must be one of 1, 2"):
        check_choice("x", 3, (i for i in (1, 2)))
