"""Random Gaussian, normalised and one-hot embeddings (factlib.embeddings)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlib.config import generator
from factlib.embeddings import gaussian_embeddings, memory_embeddings, orthogonal_embeddings

FAST = settings(max_examples=30, deadline=None)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
sizes = st.integers(1, 40)


@FAST
@given(n=sizes, d=sizes, seed=st.integers(0, 10**6), normalize=st.booleans())
def test_gaussian_shape_and_dtype(n, d, seed, normalize):
    X = gaussian_embeddings(n, d, seed, normalize=normalize)
    assert X.shape == (n, d)
    assert X.dtype == torch.float32
    assert torch.isfinite(X).all()


@FAST
@given(n=sizes, d=sizes, seed=st.integers(0, 10**6))
def test_normalized_rows_have_unit_norm(n, d, seed):
    X = gaussian_embeddings(n, d, seed, normalize=True, dtype=torch.float64)
    assert torch.allclose(X.norm(dim=1), torch.ones(n, dtype=torch.float64), atol=1e-12)


def test_unnormalized_entries_have_variance_one_over_d():
    n, d = 4000, 25  # 100 000 entries: the sample variance is within ~0.5 % of 1/d
    X = gaussian_embeddings(n, d, seed=0, normalize=False, dtype=torch.float64)
    assert abs(X.mean().item()) < 0.01 / d**0.5
    assert X.var().item() * d == pytest.approx(1.0, rel=0.05)
    # and the squared norms concentrate around 1 without being exactly 1
    sq = X.pow(2).sum(dim=1)
    assert sq.mean().item() == pytest.approx(1.0, rel=0.05)
    assert sq.std().item() > 0.1


def test_normalize_changes_only_the_norm():
    raw = gaussian_embeddings(10, 6, 3, normalize=False, dtype=torch.float64)
    unit = gaussian_embeddings(10, 6, 3, normalize=True, dtype=torch.float64)
    assert torch.allclose(unit, raw / raw.norm(dim=1, keepdim=True))


@FAST
@given(n=sizes, d=sizes, seed=st.integers(0, 2**63 - 1))
def test_same_seed_same_tensor(n, d, seed):
    assert torch.equal(gaussian_embeddings(n, d, seed), gaussian_embeddings(n, d, seed))


@FAST
@given(seed=st.integers(0, 10**6), other=st.integers(0, 10**6))
def test_different_seeds_differ(seed, other):
    if seed != other:
        assert not torch.equal(gaussian_embeddings(4, 8, seed), gaussian_embeddings(4, 8, other))


def test_generator_argument_is_used_and_advanced():
    gen = generator(5)
    first = gaussian_embeddings(3, 4, gen)
    second = gaussian_embeddings(3, 4, gen)
    assert torch.equal(first, gaussian_embeddings(3, 4, 5))
    assert not torch.equal(first, second)


def test_dtype_and_device_honoured():
    X = gaussian_embeddings(3, 4, 0, dtype=torch.float64, device=torch.device("cpu"))
    assert X.dtype == torch.float64 and X.device.type == "cpu"
    # values do not depend on the dtype asked for: drawn in float64 then cast
    assert torch.equal(gaussian_embeddings(3, 4, 0, dtype=torch.float32), X.float())
    # the meta device stands in for an accelerator: the tensor must land where it was asked
    assert gaussian_embeddings(3, 4, 0, device="meta").device.type == "meta"
    assert orthogonal_embeddings(3, device="meta").device.type == "meta"
    assert orthogonal_embeddings(3, 5, dtype=torch.float16).dtype == torch.float16


@FAST
@given(n=sizes, extra=st.integers(0, 10))
def test_orthogonal_embeddings_are_one_hot(n, extra):
    d = n + extra
    X = orthogonal_embeddings(n, d)
    assert X.shape == (n, d)
    for i in range(n):
        for j in range(d):
            assert X[i, j].item() == (1.0 if i == j else 0.0)
    assert torch.equal(X @ X.T, torch.eye(n))
    assert orthogonal_embeddings(n).shape == (n, n)


@pytest.mark.parametrize("n, d", [(0, 4), (-1, 4), (2.0, 4), (3, 0), (3, 1.5), (True, 3), (3, None)])
def test_gaussian_invalid_sizes_raise(n, d):
    name = "n" if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1) else "d"
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        gaussian_embeddings(n, d, 0)


@pytest.mark.parametrize("n, d, name", [(0, None, "n"), (3, 2, "d"), (2.5, None, "n"), (3, 3.0, "d")])
def test_orthogonal_invalid_sizes_raise(n, d, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        orthogonal_embeddings(n, d)


@pytest.mark.parametrize("seed", [-1, 0.5])
def test_gaussian_invalid_seed_raises(seed):
    with pytest.raises(ValueError, match="seed"):
        gaussian_embeddings(2, 2, seed)


@FAST
@given(N=sizes, M=sizes, d=st.integers(2, 20), seed=st.integers(0, 10**6))
def test_memory_embeddings(N, M, d, seed):
    E, U = memory_embeddings(N, M, d, seed)
    assert E.shape == (N, d) and U.shape == (M, d)
    # E is the first draw from the seed's generator, U the second: not the same vectors
    gen = generator(seed)
    assert torch.equal(E, gaussian_embeddings(N, d, gen))
    assert torch.equal(U, gaussian_embeddings(M, d, gen))
    k = min(N, M)
    assert not torch.equal(E[:k], U[:k])
    E2, U2 = memory_embeddings(N, M, d, seed)
    assert torch.equal(E, E2) and torch.equal(U, U2)
    assert torch.allclose(U.norm(dim=1), torch.ones(M), atol=1e-5)


def test_memory_embeddings_passes_options():
    E, U = memory_embeddings(3, 4, 5, 0, normalize=False, dtype=torch.float64)
    assert E.dtype == U.dtype == torch.float64
    assert not torch.allclose(E.norm(dim=1), torch.ones(3, dtype=torch.float64))
