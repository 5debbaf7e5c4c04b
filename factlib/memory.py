"""Linear associative memories (chapter 1).

Inputs x in [N] have embeddings E[x] in R^d, outputs y in [M] have unembeddings U[y] in R^d, and a
memory W (d, d) recalls ``argmax_y U[y] . (W E[x])``. Conventions: E (N, d), U (M, d), targets (N,) long.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._validate import ArgumentTypeError, check_allocation, check_choice, check_float, check_int, check_tensor
from .config import generator
from .embeddings import memory_embeddings


def _check_memory_args(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, W: torch.Tensor | None = None) -> None:
    """E (N, d) and U (M, d) finite floating tensors of one dtype, targets (N,) in [0, M - 1], W (d, d) if given."""
    for name, X in (("E", E), ("U", U), ("targets", targets)):
        check_tensor(name, X)
    if E.ndim != 2 or U.ndim != 2:
        raise ValueError(f"E and U must be 2-D (N, d) and (M, d); got shapes {tuple(E.shape)}, {tuple(U.shape)}")
    if E.shape[1] != U.shape[1]:
        raise ValueError(f"E and U must share the embedding dimension d; got {E.shape[1]} and {U.shape[1]}")
    if targets.ndim != 1 or targets.shape[0] != E.shape[0]:
        raise ValueError(f"targets must have shape (N,) = ({E.shape[0]},); got {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be an integer tensor; got dtype {targets.dtype}")
    if len(targets) and (targets.min() < 0 or targets.max() >= U.shape[0]):
        raise ValueError(f"targets must lie in [0, M-1] = [0, {U.shape[0] - 1}]")
    for name, X in (("E", E), ("U", U)):
        check_tensor(name, X, floating=True, finite=True)
    if E.dtype != U.dtype:
        raise ArgumentTypeError(f"E and U must have the same dtype; got {E.dtype} and {U.dtype}")
    if W is not None:
        check_tensor("W", W, shape=(E.shape[1], E.shape[1]), floating=True, finite=True)
        if W.dtype != E.dtype:
            raise ArgumentTypeError(f"W must have the dtype of E and U ({E.dtype}); got {W.dtype}")
    for name, X in (("U", U), ("W", W)):
        if X is not None and X.device != E.device:
            raise ValueError(f"{name} must be on the device of E ({E.device}); got {X.device}")


def hebbian_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The outer-product memory W = sum_x U[f(x)] E[x]^T (Theorem 1's construction, eq. (1) of chapter 1)."""
    _check_memory_args(E, U, targets)
    return U[targets].T @ E  # (d, N) @ (N, d) -> (d, d)


def centred_hebbian_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """W = sum_x (U[f(x)] - mean_y U[y]) E[x]^T: the memory one gradient step writes (chapter 1, gradient lemma)."""
    _check_memory_args(E, U, targets)
    return (U[targets] - U.mean(dim=0)).T @ E  # (d, d)


def low_rank_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """A rank-m memory: the Hebbian memory read through a random map A (m, d) with N(0, 1/m) entries.

    W = (sum_x U[f(x)] (A E[x])^T) A, so u_y^T W e_x = sum_x' (u_y . u_f(x')) (A e_x' . A e_x): the inputs are
    compared after a random projection to R^m (chapter 1, rank-m part of Theorem 1).
    """
    _check_memory_args(E, U, targets)
    m = check_int("m", m, 1, E.shape[1])
    A = (torch.randn(m, E.shape[1], generator=generator(seed), dtype=torch.float64) / m**0.5)
    A = A.to(device=E.device, dtype=E.dtype)  # (m, d)
    return (U[targets].T @ (E @ A.T)) @ A  # (d, m) @ (m, d) -> (d, d), rank <= m


def scores(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """All recall scores gamma[x, y] = U[y]^T W E[x]; shape (N, M)."""
    check_tensor("W", W, shape=(E.shape[1], E.shape[1]))
    return (E @ W.T) @ U.T  # (N, d) @ (d, d) @ (d, M) -> (N, M)


def recall_accuracy(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of inputs x whose highest-scoring output is f(x)."""
    _check_memory_args(E, U, targets, W)
    return (scores(W, E, U).argmax(dim=1) == targets).float().mean().item()


def margins(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-input margin: score of the right output minus the best wrong one; recall is correct iff > 0. (N,)"""
    _check_memory_args(E, U, targets, W)
    if U.shape[0] < 2:
        raise ValueError("margins need at least two outputs (M >= 2)")
    gamma = scores(W, E, U)  # (N, M)
    right = gamma.gather(1, targets[:, None]).squeeze(1)  # (N,)
    wrong = gamma.scatter(1, targets[:, None], float("-inf")).amax(dim=1)  # (N,)
    return right - wrong


def hebbian_accuracy_prediction(N: int, d: int, M: int | None = None, m: int | None = None) -> float:
    """Predicted recall accuracy of the Hebbian memory with unit-norm random embeddings (chapter 1).

    Model: the right score is 1 + sigma Z_0, each of the M - 1 wrong scores is sigma Z_y, all independent
    standard normals, with sigma^2 = N / d^2 + 1 / d (the cross-talk of the other N - 1 memories, plus the
    overlap of two random unit vectors). The rank-m memory compares inputs after a random projection to
    R^m, where two of them overlap by ~ 1/sqrt(m) rather than 1/sqrt(d): that adds (N / d + 1) / m to
    sigma^2, and makes the signal noisy: the right score is |A e_x|^2 + sigma Z_0, |A e_x|^2 ~ 1 + sqrt(2/m) Z_1.
    A rough model for small m (it treats shared terms as independent). With tau^2 = sigma^2 (+ 2 / m),
    P(correct) = E_Z[ Phi((1 + tau Z) / sigma)^(M-1) ].
    """

    N = check_int("N", N, 1)
    d = check_int("d", d, 1)
    M = N if M is None else check_int("M", M, 1)
    variance = N / d**2 + 1 / d + (0.0 if m is None else (N / d + 1) / check_int("m", m, 1, d))
    return gaussian_recall_probability(variance, variance + (0.0 if m is None else 2 / m), M)


def gaussian_recall_probability(sigma2: float, tau2: float, M: int) -> float:
    """P(correct) = E_Z[ Phi((1 + tau Z) / sigma)^(M - 1) ]: the right score 1 + tau Z beats M - 1 independent
    wrong scores sigma Z_y (the Gaussian model of chapters 1 and 2), by quadrature over Z."""
    from scipy.stats import norm  # scipy is imported here only, to keep `import factlib.memory` light

    sigma2 = check_float("sigma2", sigma2, 0.0, low_open=True)
    tau2 = check_float("tau2", tau2, 0.0)
    M = check_int("M", M, 1)
    z = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    log_cdf = torch.as_tensor(norm.logcdf(((1 + tau2**0.5 * z) / sigma2**0.5).numpy()))
    density = torch.exp(-z**2 / 2) / (2 * torch.pi) ** 0.5 * (z[1] - z[0])
    return float((density * torch.exp((M - 1) * log_cdf)).sum())


def cross_entropy_loss(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Population cross-entropy of the memory, x uniform over [N]."""
    _check_memory_args(E, U, targets)
    check_tensor("W", W, shape=(E.shape[1], E.shape[1]), floating=True)
    return F.cross_entropy(scores(W, E, U), targets)


def gradient_step_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, lr: float = 1.0) -> torch.Tensor:
    """W after one full-batch gradient step of size ``lr`` from W = 0 on the cross-entropy (computed by autograd)."""
    _check_memory_args(E, U, targets)
    lr = check_float("lr", lr, 0.0, low_open=True)
    W = torch.zeros(E.shape[1], E.shape[1], dtype=E.dtype, device=E.device, requires_grad=True)  # (d, d)
    (grad,) = torch.autograd.grad(cross_entropy_loss(W, E, U, targets), W)
    return -lr * grad


@dataclass(frozen=True)
class TrainConfig:
    """How a linear memory is trained: full-batch optimisation of the cross-entropy from W = 0."""

    lr: float = 1.0            # Adam step size; the argmax is scale-free, so large steps are harmless
    steps: int = 1024          # step budget
    optimizer: str = "adam"    # "adam" or "sgd"
    threshold: float = 0.99    # stop as soon as recall accuracy reaches this
    patience: int | None = 128  # window for giving up: no gain in it, or too slow a gain (None: never)
    check_every: int = 8       # how often accuracy is read (it costs nothing: it reuses the forward pass)

    def __post_init__(self):
        check_float("lr", self.lr, 0.0, low_open=True)
        check_int("steps", self.steps, 1)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_float("threshold", self.threshold, 0.0, 1.0, low_open=True)
        if self.patience is not None:
            check_int("patience", self.patience, 1)
        check_int("check_every", self.check_every, 1)


#: The recipe of the paper's Figure 1 (left): Adam, lr 1000, 2^12 steps, stop at 99 %.
PAPER_RECIPE = TrainConfig(lr=1000.0, steps=4096, patience=None)


def _hopeless(history: list[tuple[int, float]], step: int, best_step: int, config: TrainConfig) -> bool:
    """Give up when nothing improved for ``patience`` steps, or when the last ``patience`` steps' rate of
    progress, continued over the whole remaining budget, would still end below the threshold."""
    if step - best_step >= config.patience:
        return True
    old = [acc for s, acc in history if s <= step - config.patience]
    if not old:
        return False
    rate = (history[-1][1] - old[-1]) / config.patience
    return history[-1][1] + rate * (config.steps - step) < config.threshold


@dataclass(frozen=True)
class TrainResult:
    W: torch.Tensor     # (d, d) final memory
    accuracy: float     # best recall accuracy seen
    steps: int          # steps taken
    reached: bool       # accuracy >= threshold


def _fit(params: list[torch.Tensor], logits_fn, targets: torch.Tensor, config: TrainConfig) -> tuple[float, int]:
    """The one-configuration training loop shared by the linear and MLP memories: full-batch cross-entropy,
    accuracy read every ``check_every`` steps, the best parameters kept (copied into ``params`` at the end),
    stop at the threshold or when ``_hopeless``. Returns (best accuracy, steps taken)."""
    opt = (torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD)(params, lr=config.lr)
    best, best_step, best_params = -1.0, 0, [p.detach().clone() for p in params]
    history: list[tuple[int, float]] = []  # (step, best accuracy so far) at each check
    step = 0
    for step in range(config.steps + 1):
        logits = logits_fn()  # (N, M)
        if step % config.check_every == 0 or step == config.steps:
            # accuracy of the current parameters, read off the forward pass we need anyway
            acc = (logits.detach().argmax(dim=1) == targets).float().mean().item()
            if acc > best:
                best, best_step, best_params = acc, step, [p.detach().clone() for p in params]
            if best >= config.threshold or step == config.steps:
                break
            history.append((step, best))
            if config.patience is not None and _hopeless(history, step, best_step, config):
                break
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(logits, targets).backward()
        opt.step()
    with torch.no_grad():
        for p, b in zip(params, best_params):
            p.copy_(b)
    return best, step


def train_linear_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor,
                        config: TrainConfig = TrainConfig()) -> TrainResult:
    """Train W (d, d) from zero by full-batch cross-entropy; stops at the threshold or when progress stalls.

    One configuration at a time, with autograd and ``torch.optim``: the plain reference that the batched
    engine (``factlib.train.train_memories``) is tested against.
    """
    _check_memory_args(E, U, targets)
    if not isinstance(config, TrainConfig):
        raise ArgumentTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    d = E.shape[1]
    W = torch.zeros(d, d, dtype=E.dtype, device=E.device, requires_grad=True)  # (d, d)
    best, steps = _fit([W], lambda: scores(W, E, U), targets, config)
    return TrainResult(W=W.detach(), accuracy=best, steps=steps, reached=best >= config.threshold)


def mlp_init(m: int, d: int, seed: int) -> torch.Tensor:
    """First-layer weights W1 (m, d) of an MLP memory: i.i.d. N(0, 1/d), drawn on the CPU from ``seed``."""
    m, d = check_int("m", m, 1), check_int("d", d, 1)
    check_allocation({"m": m, "d": d}, m * d, torch.float64, "the first layer W1 (m, d)")
    return torch.randn(m, d, generator=generator(seed), dtype=torch.float64).div_(d**0.5)  # (m, d)


def mlp_forward(E: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor) -> torch.Tensor:
    """The MLP memory F(e) = W2 relu(W1 e + b1) applied to every row of E (N, d): returns (N, d)."""
    return torch.relu(E @ W1.T + b1) @ W2.T  # (N, m) -> (N, d)


@dataclass(frozen=True)
class MLPTrainResult:
    W1: torch.Tensor    # (m, d)
    b1: torch.Tensor    # (m,)
    W2: torch.Tensor    # (d, m)
    accuracy: float     # best recall accuracy seen
    steps: int          # steps taken
    reached: bool       # accuracy >= threshold


def train_mlp_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, W1: torch.Tensor,
                     config: TrainConfig = TrainConfig()) -> MLPTrainResult:
    """Train the MLP memory W2 relu(W1 e + b1) from first layer ``W1`` (m, d), b1 = 0 and W2 = 0, by full-batch
    cross-entropy (chapter 2); the same loop and stopping rule as ``train_linear_memory``."""
    _check_memory_args(E, U, targets)
    check_tensor("W1", W1, floating=True, finite=True)
    if not isinstance(config, TrainConfig):
        raise ArgumentTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if W1.ndim != 2 or W1.shape[1] != E.shape[1]:
        raise ValueError(f"W1 must have shape (m, d) with d = {E.shape[1]}; got {tuple(W1.shape)}")
    m, d = W1.shape
    W1 = W1.to(device=E.device, dtype=E.dtype).clone().requires_grad_(True)  # (m, d)
    b1 = torch.zeros(m, dtype=E.dtype, device=E.device, requires_grad=True)  # (m,)
    W2 = torch.zeros(d, m, dtype=E.dtype, device=E.device, requires_grad=True)  # (d, m)
    best, steps = _fit([W1, b1, W2], lambda: mlp_forward(E, W1, b1, W2) @ U.T, targets, config)
    return MLPTrainResult(W1=W1.detach(), b1=b1.detach(), W2=W2.detach(), accuracy=best, steps=steps,
                          reached=best >= config.threshold)


# ---- MLP memories by construction (chapter 2) --------------------------------------------------------------------

#: activations of the random-features memory: the ReLU; the ReLU less its Hermite components of degree 0
#: and 1 (relu(t) - 1/sqrt(2 pi) - t/2 = |t|/2 - 1/sqrt(2 pi)), whose kernel has no constant and no linear part;
#: and "relu-deg<k>" (k = 4, 6), the even ReLU combination ``hermite_free_relu(k)`` with no Hermite component of
#: degree below k (chapter 2, eq. "degree-k cap"; chapter 4, Theorem 4's multi-input memory)
ACTIVATIONS = ("relu", "relu-high", "relu-deg4", "relu-deg6")


#: the largest Hermite degree ``relu_hermite_coefficient`` computes (its double factorial is exact: its cost grows
#: as k^2, about 5 ms at 10^4; |c_k| ~ k^(-5/4) is below 1e-5 there) and ``kernel_overlap_variance`` (an exact int)
MAX_HERMITE_DEGREE = 10_000
MAX_OVERLAP_DEGREE = 1_000


def relu_hermite_coefficient(k: int) -> float:
    """c_k = E[relu(g) He_k(g)] / sqrt(k!) for g ~ N(0, 1), He_k the probabilists' Hermite polynomial (chapter 2).

    Closed form: c_0 = 1/sqrt(2 pi), c_1 = 1/2, c_k = He_{k-2}(0) / sqrt(2 pi k!) for k >= 2, zero for odd k >= 3;
    sum_k c_k^2 = E[relu(g)^2] = 1/2. k in [0, ``MAX_HERMITE_DEGREE``].
    """
    k = check_int("k", k, 0, MAX_HERMITE_DEGREE)
    if k == 1:
        return 0.5
    phi0 = 1 / math.sqrt(2 * math.pi)
    if k == 0:
        return phi0
    if k % 2:
        return 0.0
    j = (k - 2) // 2  # He_{2j}(0) = (-1)^j (2j - 1)!!
    double_factorial = math.prod(range(2 * j - 1, 0, -2)) if j else 1
    # He_{k-2}(0) / sqrt(k!), computed in logs: k! overflows a float beyond k = 170
    log_value = math.log(double_factorial) - 0.5 * math.lgamma(k + 1)
    return (-1) ** j * phi0 * math.exp(log_value)


def _gauss_grid() -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes g (n,) on [-12, 12] and weights (n,): the N(0, 1) density times dg."""
    g = torch.linspace(-12, 12, 48001, dtype=torch.float64)  # (n,)
    return g, torch.exp(-g**2 / 2) / (2 * torch.pi) ** 0.5 * (g[1] - g[0])


def _hermite(j: int, t: torch.Tensor) -> torch.Tensor:
    """The normalised probabilists' Hermite polynomial He_j(t) / sqrt(j!), by the three-term recurrence."""
    prev, cur = torch.ones_like(t), t.clone()
    if j == 0:
        return prev
    for i in range(1, j):  # He_{i+1} = t He_i - i He_{i-1}
        prev, cur = cur, t * cur - i * prev
    return cur / math.sqrt(math.factorial(j))


_FREE_RELU: dict = {}


def hermite_free_relu(k: int, spacing: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets b (k/2 + 1,) and weights gamma (k/2 + 1,) of the even ReLU combination (chapters 2 and 4)

        g_k(t) = sum_i gamma_i (relu(t - b_i) + relu(-t - b_i)),   b_i = i * spacing,

    whose Hermite components of degree 0, 2, ..., k - 2 vanish (odd degrees vanish because g_k is even), scaled
    so that E g_k(g)^2 = 1 for g ~ N(0, 1). Its kernel E g_k(w.e) g_k(w.e') = sum_{j >= k} a_j^2 rho^j for unit
    e, e' with rho = e.e'. The k/2 constraints on k/2 + 1 weights leave one direction, found by an SVD of the
    Hermite coefficients computed by quadrature. Each feature costs k + 2 ReLU neurons.
    """
    k = check_int("k", k, 2)
    if k % 2:
        raise ValueError(f"k must be even (g_k is an even function); got {k}")
    spacing = check_float("spacing", spacing, 0.0, low_open=True)
    if (k, spacing) not in _FREE_RELU:
        g, weight = _gauss_grid()
        b = spacing * torch.arange(k // 2 + 1, dtype=torch.float64)  # (k/2 + 1,)
        pieces = torch.relu(g[:, None] - b) + torch.relu(-g[:, None] - b)  # (n, k/2 + 1)
        coeffs = torch.stack([(weight[:, None] * pieces * _hermite(j, g)[:, None]).sum(0)
                              for j in range(0, k, 2)])  # (k/2, k/2 + 1): Hermite coefficients of each piece
        gamma = torch.linalg.svd(coeffs).Vh[-1]  # (k/2 + 1,): the null direction
        gamma = gamma / (weight * (pieces @ gamma) ** 2).sum().sqrt()
        _FREE_RELU[(k, spacing)] = (b, gamma)
    return _FREE_RELU[(k, spacing)]


def hermite_free_coefficients(k: int, degrees: int = 40) -> torch.Tensor:
    """Normalised Hermite coefficients a_j = E[g_k(g) He_j(g)] / sqrt(j!), j = 0 .. degrees, of ``hermite_free_relu(k)``
    (chapters 2 and 4), by quadrature; float64 (degrees + 1,). a_j = 0 for j < k and for odd j. Over all j,
    sum_j a_j^2 = E g_k^2 = 1 (the kinks make the tail slow: degrees <= 40 hold about 0.77 of it at k = 4), and
    the kernel E g_k(w.e) g_k(w.e') of unit e, e' is kappa(rho) = sum_j a_j^2 rho^j (Mehler), rho = e.e';
    for |rho| <= 1/2 the terms beyond degree 40 add less than 2^-40.
    """
    k = check_choice("k", k, (4, 6))
    degrees = check_int("degrees", degrees, 0, 80)
    g, weight = _gauss_grid()  # (n,), (n,)
    values = activation(f"relu-deg{k}", g)  # (n,)
    return torch.stack([(weight * values * _hermite(j, g)).sum() for j in range(degrees + 1)])  # (degrees + 1,)


def activation(name: str, t: torch.Tensor) -> torch.Tensor:
    """The activation ``name`` (one of ``ACTIVATIONS``) applied elementwise to t."""
    check_choice("activation", name, ACTIVATIONS)
    if name == "relu":
        return torch.relu(t)
    if name == "relu-high":
        return torch.relu(t) - relu_hermite_coefficient(0) - relu_hermite_coefficient(1) * t
    b, gamma = (x.to(t) for x in hermite_free_relu(int(name.removeprefix("relu-deg"))))
    return ((torch.relu(t[..., None] - b) + torch.relu(-t[..., None] - b)) * gamma).sum(-1)  # (..., k/2 + 1) -> (...)


def random_features_memory(E: torch.Tensor, U: torch.Tensor, targets: torch.Tensor, m: int, seed: int,
                           centred: bool = True, act: str = "relu") -> tuple[torch.Tensor, torch.Tensor]:
    """Theorem 2's construction (chapter 2): a random first layer and a one-gradient-step second layer.

    W1 (m, d) has i.i.d. N(0, 1) entries (``mlp_init`` times sqrt(d), so w_j . e ~ N(0, 1) for a unit e),
    and W2 = (1/N) sum_x (U[f(x)] - mean_y U[y]) sigma(W1 e_x)^T (d, m): the step of size 1 that the
    cross-entropy takes from W2 = 0 with W1 fixed. ``centred=False`` drops the mean unembedding (the plain
    Hebbian sum). Returns (W1, W2); the memory is F(e) = W2 sigma(W1 e), read by ``rf_scores``.
    """
    _check_memory_args(E, U, targets)
    m = check_int("m", m, 1)
    d = E.shape[1]
    W1 = (mlp_init(m, d, seed) * d**0.5).to(device=E.device, dtype=E.dtype)  # (m, d)
    features = activation(act, E @ W1.T)  # (N, m)
    outputs = U[targets] - (U.mean(dim=0) if centred else 0.0)  # (N, d)
    return W1, outputs.T @ features / len(targets)  # (d, N) @ (N, m) -> (d, m)


def rf_scores(E: torch.Tensor, U: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor, act: str = "relu") -> torch.Tensor:
    """Scores gamma[x, y] = U[y] . W2 sigma(W1 E[x]) of a random-features memory; shape (N, M)."""
    return activation(act, E @ W1.T) @ W2.T @ U.T  # (N, m) -> (N, d) -> (N, M)


def score_margins(gamma: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Margins from a score matrix gamma (N, M): right score minus the best wrong one, (N,); > 0 iff recalled."""
    if gamma.ndim != 2 or gamma.shape[1] < 2 or targets.shape != (gamma.shape[0],):
        raise ValueError(f"gamma must be (N, M) with M >= 2 and targets (N,); got {tuple(gamma.shape)}, "
                         f"{tuple(targets.shape)}")
    right = gamma.gather(1, targets[:, None]).squeeze(1)  # (N,)
    wrong = gamma.scatter(1, targets[:, None], float("-inf")).amax(dim=1)  # (N,)
    return right - wrong


#: Hermite degrees of the kernel whose variance ``rf_noise_variance`` sums (degree j weighs d^-j: beyond 8 negligible)
KERNEL_DEGREES = 8


def _activation_moments(act: str) -> dict:
    """E sigma^2, Var sigma, Var(sigma^2) and the squared Hermite coefficients c_j^2, j = 0 .. KERNEL_DEGREES,
    of an activation under g ~ N(0, 1), by quadrature."""
    g, weight = _gauss_grid()  # (n,), (n,)
    s = activation(act, g)
    mean, second = float((weight * s).sum()), float((weight * s**2).sum())
    csq = [float((weight * s * _hermite(j, g)).sum()) ** 2 for j in range(KERNEL_DEGREES + 1)]
    return {"second": second, "var": second - mean**2, "csq": csq, "var_sq": float((weight * s**4).sum()) - second**2}


def kernel_overlap_variance(j: int) -> int:
    """d^j Var(rho^j) for rho ~ N(0, 1/d), the overlap of two random unit vectors (chapter 2, eq. "degree-k cap"):
    (2j - 1)!! - ((j - 1)!!)^2 for even j, (2j - 1)!! for odd j (1, 2, 15, 96 for j = 1, 2, 3, 4);
    j in [1, ``MAX_OVERLAP_DEGREE``]."""
    j = check_int("j", j, 1, MAX_OVERLAP_DEGREE)
    double_factorial = lambda n: math.prod(range(n, 0, -2)) if n > 0 else 1
    return double_factorial(2 * j - 1) - (double_factorial(j - 1) ** 2 if j % 2 == 0 else 0)


def rf_noise_variance(N: int, d: int, m: int, M: int | None = None, act: str = "relu") -> tuple[float, float]:
    """(sigma^2, tau^2) of the Gaussian model of the random-features memory, relative to its signal (chapter 2).

    The right score is S (1 + tau Z_0), each wrong one S sigma Z_y, with S = Var sigma(g) the signal left after
    centring and, for the kernel k(e, e') = (1/m) sum_j sigma(w_j . e) sigma(w_j . e'),
    V = Var_{e'} k(e', e) ~ sum_{j >= 1} c_j^4 Var(rho^j) + E[sigma^2] Var[sigma] / m (``kernel_overlap_variance``:
    c_1^4 / d + 2 c_2^4 / d^2 + ... + 96 c_4^4 / d^4 + ..., degrees up to KERNEL_DEGREES):
    sigma^2 = N (1/d + 1/M_block) V / S^2 + 1/d (M_block = M for a many-to-one map, M < N; absent when M = N,
    whether M is passed or not: then no other input shares an output), and
    tau^2 = sigma^2 + Var[sigma^2] / (m S^2) (the fluctuation of k(e_x, e_x) over the m features).
    """
    N, d, m = check_int("N", N, 1), check_int("d", d, 1), check_int("m", m, 1)
    mo = _activation_moments(act)
    kernel = sum(mo["csq"][j] ** 2 * kernel_overlap_variance(j) / d**j for j in range(1, KERNEL_DEGREES + 1))
    V = kernel + mo["second"] * mo["var"] / m
    M = N if M is None else check_int("M", M, 2)
    block = 1 / M if M < N else 0.0  # the inputs sharing an output add a block term only if some do
    sigma2 = N * (1 / d + block) * V / mo["var"] ** 2 + 1 / d
    return sigma2, sigma2 + mo["var_sq"] / (m * mo["var"] ** 2)


def rf_accuracy_prediction(N: int, d: int, m: int, M: int | None = None, act: str = "relu") -> float:
    """Predicted recall accuracy of ``random_features_memory``: E_Z[Phi((1 + tau Z) / sigma)^(M - 1)] with
    (sigma^2, tau^2) from ``rf_noise_variance`` (M = N outputs if M is None). A rough model, like chapter 1's."""
    sigma2, tau2 = rf_noise_variance(N, d, m, M, act)
    return gaussian_recall_probability(sigma2, tau2, N if M is None else M)


# ---- the multi-input memory (chapter 4, Theorem 4) -------------------------------------------------------------------

def pair_inputs(Cs: torch.Tensor, Cr: torch.Tensor) -> torch.Tensor:
    """The superposed inputs x(s, r) = (Cs[s] + Cr[r]) / sqrt(2) of the multi-input memory; (S, R, d).

    Unit norm when the codes are unit vectors with Cs[s] . Cr[r] = 0 (codes in disjoint coordinate blocks).
    """
    check_tensor("Cs", Cs, ndim=2, floating=True, finite=True)
    check_tensor("Cr", Cr, shape=(None, Cs.shape[1]), floating=True, finite=True)
    return (Cs[:, None] + Cr[None]) / 2**0.5  # (S, 1, d) + (1, R, d) -> (S, R, d)


def _check_pairs(X: torch.Tensor, U: torch.Tensor, table: torch.Tensor) -> None:
    check_tensor("X", X, ndim=3, floating=True, finite=True)
    check_tensor("U", U, shape=(None, X.shape[2]), floating=True, finite=True)
    check_tensor("table", table, shape=(X.shape[0], X.shape[1]))
    if table.dtype not in (torch.int64, torch.int32) or table.min() < 0 or table.max() >= U.shape[0]:
        raise ValueError(f"table must be an integer (S, R) tensor with entries in [0, M-1] = [0, {U.shape[0] - 1}]")


def multi_input_memory(X: torch.Tensor, U: torch.Tensor, table: torch.Tensor, m: int, seed: int,
                       act: str = "relu-deg4") -> tuple[torch.Tensor, torch.Tensor]:
    """Theorem 4's MLP memory (chapter 4, eq. "multi-input memory"): stores a*(s, r) = table[s, r] for inputs
    X[s, r] (S, R, d) of unit norm, typically ``pair_inputs`` of a subject and a relation code.

    W1 (m, d) has i.i.d. N(0, 1) entries; the features phi(s, r) = act(W1 x(s, r)) have no Hermite component
    of degree below k (``act = "relu-deg<k>"``), so the kernel ((rho_s + rho_r) / 2)^j, j >= k, gives a pair
    that shares only r (or only s) with x(s, r) a weight of at most 2^-k. The second layer is the Hebbian sum
    over the S R facts W2 = (1 / Z) sum_{s, r} Y(s, r) phi(s, r)^T with outputs centred over the subjects,
    Y(s, r) = u_{a*(s, r)} - mean_s' u_{a*(s', r)}: the S - 1 pairs that share r are many, and centring removes
    exactly the part of their sum that the shared relation makes coherent. (The R - 1 pairs sharing s are few
    and are not centred: a second centring over r would also give every answer outside A_r the score
    +1/(R D), which ties with the right answer's (1 - 1/D)(1 - 1/R) at R = D = 2.) A relation whose S answers
    all agree (D = 1, or S = 1) is left uncentred: its coherent sum points at the right answer, and centring
    would erase the signal.
    Z makes the mean score of the right answers 1. Returns (W1, W2 (d, m)); the memory is F(x) = W2 act(W1 x),
    read by ``multi_input_scores``.
    """
    _check_pairs(X, U, table)
    m = check_int("m", m, 1)
    check_choice("act", act, ACTIVATIONS)
    d = X.shape[2]
    W1 = (mlp_init(m, d, seed) * d**0.5).to(X)  # (m, d): rows N(0, I)
    features = activation(act, X @ W1.T)  # (S, R, m)
    Y = U[table]  # (S, R, d)
    varied = (table != table[:1]).any(dim=0).to(Y)  # (R,): 1 where the relation's answers are not all equal
    Y = Y - varied[None, :, None] * Y.mean(0, keepdim=True)  # (S, R, d): centred over the subjects
    W2 = torch.einsum("srd,srm->dm", Y, features)  # (d, m)
    right = ((features @ W2.T) * U[table]).sum(-1).mean()  # mean score of the right answers
    return W1, W2 / right


def multi_input_scores(X: torch.Tensor, U: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor,
                       act: str = "relu-deg4") -> torch.Tensor:
    """Scores gamma[s, r, a] = U[a] . W2 act(W1 X[s, r]) of a multi-input memory; (S, R, M)."""
    return activation(act, X @ W1.T) @ W2.T @ U.T  # (S, R, m) -> (S, R, d) -> (S, R, M)


def multi_input_accuracy(X: torch.Tensor, U: torch.Tensor, table: torch.Tensor, W1: torch.Tensor,
                         W2: torch.Tensor, act: str = "relu-deg4") -> float:
    """Fraction of the S R pairs whose top score is a*(s, r): an exact check over every pair (chapter 4)."""
    _check_pairs(X, U, table)
    return (multi_input_scores(X, U, W1, W2, act).argmax(-1) == table).double().mean().item()


def rf_identity_recall(N: int, d: int, m: int, seed: int = 0, act: str = "relu-deg4") -> float:
    """Recall accuracy of ``random_features_memory`` storing f*(x) = x for N unit Gaussian inputs in R^d
    (chapter 2, "beyond d^2"): float64, embeddings from ``memory_embeddings(N, N, d, seed)``."""
    E, U = memory_embeddings(check_int("N", N, 2), N, check_int("d", d, 1), seed, dtype=torch.float64)
    targets = torch.arange(N)
    W1, W2 = random_features_memory(E, U, targets, m, seed + 1, act=act)
    return (rf_scores(E, U, W1, W2, act).argmax(dim=1) == targets).double().mean().item()
