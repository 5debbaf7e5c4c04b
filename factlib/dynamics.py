"""Sequential learning of the factual recall task (chapter 6: Theorems 5-6 and Figure 5 of the paper).

The model of the dynamics section reads the prompt with one attention head whose only query is EOS:

    logits(z) = V^T sum_j (x_T^T A x_j) x_j                       (chapter 6, eq. (eq-linear-model))

with embeddings x_j, A (d, d) and V (d, R D). With one-hot embeddings (d = vocab_size) the attention score of
token t is the single entry A[EOS, t], so the model only sees the bag of tokens of the prompt:
``logits = (counts * A[EOS]) @ V``. The population loss is therefore an average over the S R pairs (s, r) and
the noise-token counts; with the paper's symmetric initialisation all noise tokens keep equal weights, so the
counts can be replaced by their mean exactly (chapter 6, Lemma "noise tokens stay tied"). ``population`` builds
that exact design (``noise="mean"``), an exhaustive one for tiny tasks (``"enumerate"``) and a fixed sample
(``"sample"``) for models whose noise tokens are not tied (minibatch training, random embeddings).

The second half is the theory: the reduced gradient flow of the symmetric model, its growth rates, plateau
levels and escape times (chapter 6, Theorems "global convergence" and "sequential learning").
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np
import torch

from ._validate import ArgumentTypeError, check_choice, check_dtype, check_float, check_int
from .config import check_device, generator
from .embeddings import gaussian_embeddings
from .task import TaskConfig, all_pairs, prompts_for_pairs, sample_batch, structured_fact_table

SCHEDULES = ("constant", "cosine")
MODELS = ("linear", "softmax")
METHODS = ("population", "minibatch")
NOISE_DESIGNS = ("mean", "enumerate", "sample")


@dataclass(frozen=True)
class DynamicsConfig:
    """The protocol of Figure 5 (chapter 6). Defaults: the paper's left panel.

    ``schedule="constant"`` is what the authors' training loop ran (it builds a cosine schedule but steps with
    the constant rate); chapter 6 shows why a cosine decay to zero over 2^13 steps stops in the plateau.
    """

    S: int = 16                 # subjects
    R: int = 4                  # relations
    D: int = 8                  # answers per relation
    n_noise: int = 20           # noise tokens
    T: int = 32                 # prompt length, EOS included
    model: str = "linear"       # "linear": linear attention, one-hot embeddings; "softmax": softmax, random ones
    d: int | None = None        # embedding dimension of the softmax model (None: vocab_size, as one-hot)
    init_scale: float = 1e-5    # A and V start at init_scale times the all-ones matrix
    lr: float = 0.1             # (peak) learning rate of plain gradient descent
    schedule: str = "constant"  # "constant" or "cosine" (decay from lr to 0 over ``steps``)
    steps: int = 2**13          # gradient steps
    batch_size: int = 1024      # prompts per minibatch (method "minibatch")
    eval_every: int = 64        # evaluate the three losses every this many steps (and at the end)
    eval_repeats: int = 64      # noise draws per (s, r) pair in the evaluation set of sampled runs
    seed: int = 0               # embeddings, evaluation set and minibatches all come from this seed

    def __post_init__(self):
        self.task()  # validates S, R, D, T, n_noise
        check_choice("model", self.model, MODELS)
        if self.d is not None:
            check_int("d", self.d, 1, 4096)
        check_float("init_scale", self.init_scale, 0.0, 10.0, low_open=True)
        check_float("lr", self.lr, 0.0, 1e4, low_open=True)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("steps", self.steps, 1, 10**7)
        check_int("batch_size", self.batch_size, 1, 10**7)
        check_int("eval_every", self.eval_every, 1, 10**7)
        check_int("eval_repeats", self.eval_repeats, 1, 10**5)
        check_int("seed", self.seed, 0, 2**63 - 1)

    def task(self) -> TaskConfig:
        return TaskConfig(self.S, self.R, self.D, T=self.T, n_noise=self.n_noise)

    @property
    def embed_dim(self) -> int:
        return self.task().vocab_size if self.d is None or self.model == "linear" else self.d


# ---------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------

def learning_rates(cfg: DynamicsConfig) -> np.ndarray:
    """eta_k for k = 0 .. steps - 1: constant, or lr (1 + cos(pi k / steps)) / 2 (optax's cosine decay)."""
    k = np.arange(cfg.steps)
    if cfg.schedule == "constant":
        return np.full(cfg.steps, cfg.lr)
    return cfg.lr * 0.5 * (1.0 + np.cos(np.pi * k / cfg.steps))


def elapsed_time(cfg: DynamicsConfig) -> np.ndarray:
    """Gradient-flow time after k steps, tau_k = eta_0 + ... + eta_{k-1}, for k = 0 .. steps; shape (steps + 1,)."""
    return np.concatenate([[0.0], np.cumsum(learning_rates(cfg))])


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------

@dataclass
class AttentionModel:
    """One attention head read at EOS and a value/unembedding matrix (chapter 6, eq. (eq-linear-model)).

    ``E`` (vocab_size, d) are the frozen embeddings, None for one-hot ones (E = identity, d = vocab_size,
    skipped in the products), ``A`` (d, d) and ``V`` (d, R D) the trained weights, ``eos`` the id of EOS,
    ``attention`` "linear" or "softmax".
    """

    E: torch.Tensor | None
    A: torch.Tensor
    V: torch.Tensor
    eos: int
    attention: str = "linear"

    @property
    def vocab_size(self) -> int:
        return self.A.shape[0] if self.E is None else self.E.shape[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x @ E for a (..., vocab_size) tensor of token weights: the weighted sum of embeddings, (..., d)."""
        return x if self.E is None else x @ self.E

    def scores(self) -> torch.Tensor:
        """Attention score x_EOS^T A x_t of every token t of the vocabulary; shape (vocab_size,)."""
        if self.E is None:
            return self.A[self.eos]  # (vocab,) one-hot: the row of EOS
        return self.E @ (self.A.T @ self.E[self.eos])  # (vocab, d) @ (d,) -> (vocab,)

    def logits_from_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """Logits (B, R D) from bags of tokens ``counts`` (B, vocab_size): the model only sees the bag."""
        s = self.scores()  # (vocab,)
        if self.attention == "linear":
            h = self.embed(counts * s)  # (B, vocab) -> (B, d)
        else:
            w = counts * torch.exp(s - s.max())  # (B, vocab) unnormalised attention mass per token type
            h = self.embed(w) / w.sum(dim=1, keepdim=True)  # (B, d)
        return h @ self.V  # (B, R D)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, R D) of prompts ``tokens`` (B, T), through the bag of tokens."""
        return self.logits_from_counts(token_counts(tokens, self.vocab_size).to(self.V.dtype))


def attention_logits(X: torch.Tensor, A: torch.Tensor, V: torch.Tensor, attention: str = "linear") -> torch.Tensor:
    """The model written as in the paper, position by position: X (B, T, d) embedded prompts -> logits (B, M).

    linear:  h = sum_j (x_T^T A x_j) x_j;   softmax: h = sum_j softmax_j(x_T^T A x_j) x_j;   logits = V^T h.
    Used to check the bag-of-tokens shortcut; training uses ``AttentionModel.logits_from_counts``.
    """
    check_choice("attention", attention, MODELS)
    scores = torch.einsum("bd,de,bte->bt", X[:, -1], A, X)  # (B, T): x_T^T A x_j
    if attention == "softmax":
        scores = torch.softmax(scores, dim=1)  # (B, T)
    h = torch.einsum("bt,btd->bd", scores, X)  # (B, d)
    return h @ V  # (B, M)


def token_counts(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bag of tokens: counts[b, t] = number of positions of prompt b holding token t; float (B, vocab_size)."""
    counts = torch.zeros(tokens.shape[0], vocab_size, device=tokens.device)  # (B, vocab)
    return counts.scatter_add_(1, tokens, torch.ones_like(tokens, dtype=counts.dtype))


def init_model(cfg: DynamicsConfig, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float64) -> AttentionModel:
    """The paper's initialisation: A and V are ``init_scale`` times all-ones; embeddings one-hot or random.

    The random (unit-norm Gaussian) embeddings of the softmax model are drawn from ``generator(cfg.seed)``.
    """
    task = cfg.task()
    d = cfg.embed_dim
    E = None if cfg.model == "linear" else \
        gaussian_embeddings(task.vocab_size, d, generator(cfg.seed), dtype=dtype).to(device)  # (vocab, d)
    A = torch.full((d, d), cfg.init_scale, dtype=dtype, device=device)  # (d, d)
    V = torch.full((d, task.num_answers), cfg.init_scale, dtype=dtype, device=device)  # (d, R D)
    return AttentionModel(E, A, V, task.eos, cfg.model)


# ---------------------------------------------------------------------------------------------------------
# Populations: weighted bags of tokens
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Population:
    """A weighted set of prompts as bags of tokens: the population, or a fixed stand-in for it.

    ``counts`` (P, vocab_size), ``answers`` (P,) long, ``weights`` (P,) summing to one, ``method`` how the
    noise counts were covered ("mean", "enumerate", "sample", or "batch" for a minibatch).
    """

    counts: torch.Tensor
    answers: torch.Tensor
    weights: torch.Tensor
    D: int
    method: str

    def to(self, device, dtype=torch.float64) -> "Population":
        return replace(self, counts=self.counts.to(device, dtype), answers=self.answers.to(device),
                       weights=self.weights.to(device, dtype))


def _compositions(total: int, parts: int):
    """All vectors of ``parts`` non-negative integers summing to ``total`` (stars and bars)."""
    for bars in combinations(range(total + parts - 1), parts - 1):
        edges = (-1,) + bars + (total + parts - 1,)
        yield [edges[i + 1] - edges[i] - 1 for i in range(parts)]


def population(cfg: DynamicsConfig, table: torch.Tensor | None = None, noise: str = "mean",
               repeats: int | None = None, seed: int | torch.Generator | None = None,
               max_rows: int = 200_000) -> Population:
    """The population of prompts of the task as weighted bags of tokens (chapter 6, eq. (eq-population)).

    Every pair (s, r) gets weight p(s, r) = 1 / (S R); the T - 3 noise tokens of a prompt are covered by
    - ``"mean"``: one bag with the expected count (T - 3) / n_noise of each noise token. Exact for any model in
      which all noise tokens carry the same weights (Lemma "noise tokens stay tied"): then only their total
      count, always T - 3, enters the logits.
    - ``"enumerate"``: every count vector with its multinomial probability; exact for every model, but the
      number of bags is C(T - 3 + n_noise - 1, n_noise - 1), so only for tiny tasks (at most ``max_rows`` rows).
    - ``"sample"``: ``repeats`` prompts per pair drawn with ``factlib.task`` (seeded), equal weights; an unbiased
      stand-in with every pair covered the same number of times.
    Positions do not matter: both models see the bag of tokens. ``table`` defaults to the structured table.
    """
    task = cfg.task()
    check_choice("noise", noise, NOISE_DESIGNS)
    table = structured_fact_table(task) if table is None else table
    s, r = all_pairs(task)  # (S R,), (S R,)
    P = s.shape[0]
    base = torch.zeros(P, task.vocab_size, dtype=torch.float64)  # (S R, vocab)
    base[torch.arange(P), s] = 1.0
    base[torch.arange(P), task.relation_token(r)] = 1.0
    base[:, task.eos] = 1.0
    answers = table.cpu()[s, r]  # (S R,)
    n_fill = task.T - 3
    noise_ids = slice(task.noise_offset, task.eos)
    if noise == "mean":
        counts = base.clone()
        counts[:, noise_ids] = n_fill / task.n_noise
        return Population(counts, answers, torch.full((P,), 1.0 / P, dtype=torch.float64), task.D, "mean")
    if noise == "enumerate":
        n_bags = math.comb(n_fill + task.n_noise - 1, task.n_noise - 1)
        if n_bags * P > max_rows:
            raise ValueError(f"noise='enumerate' needs S R C(T-3+n_noise-1, n_noise-1) = {n_bags * P} rows, more than "
                             f"max_rows = {max_rows}; use noise='mean' (tied noise weights) or 'sample'")
        bags = torch.tensor(list(_compositions(n_fill, task.n_noise)), dtype=torch.float64)  # (n_bags, n_noise)
        log_p = (math.lgamma(n_fill + 1) - torch.lgamma(bags + 1).sum(1)
                 - n_fill * math.log(task.n_noise))  # (n_bags,) multinomial probabilities
        counts = base.repeat_interleave(n_bags, dim=0)  # (S R n_bags, vocab)
        counts[:, noise_ids] = bags.repeat(P, 1)
        weights = (torch.exp(log_p).repeat(P) / P)  # (S R n_bags,)
        return Population(counts, answers.repeat_interleave(n_bags), weights / weights.sum(), task.D, "enumerate")
    repeats = check_int("repeats", repeats if repeats is not None else cfg.eval_repeats, 1, 10**5)
    gen = generator(cfg.seed) if seed is None else seed if isinstance(seed, torch.Generator) else generator(seed)
    s_rep, r_rep = s.repeat(repeats), r.repeat(repeats)  # (S R repeats,)
    tokens = prompts_for_pairs(task, s_rep, r_rep, gen)  # (S R repeats, T)
    counts = token_counts(tokens, task.vocab_size).double()  # (S R repeats, vocab)
    n = counts.shape[0]
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)  # (n,)
    return Population(counts, table.cpu()[s_rep, r_rep], weights, task.D, "sample")


# ---------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Losses:
    """The three losses of Figure 5 and the accuracy, averaged with the population weights."""

    total: float     # -log p(a* | z)
    relation: float  # -log sum_{a in A_r} p(a | z): is the answer of the right type?
    subject: float   # -log sum_{a : a = a* mod D} p(a | z): is it the right answer index for the subject?
    accuracy: float  # argmax = a*, ties shared equally among the tied answers


def partial_log_probs(logits: torch.Tensor, answers: torch.Tensor, D: int) -> tuple[torch.Tensor, ...]:
    """Per-prompt log p(a*), log p(A_r) and log p(a = a* mod D), each (B,) (chapter 6, eq. (eq-partial-losses)).

    Answers are laid out as a = r D + k (relation r, index k), so the (B, R D) log-probabilities reshape to
    (B, R, D): relation r is a row, the subject's answer index k a column.
    """
    logp = torch.log_softmax(logits, dim=-1)  # (B, R D)
    B = logits.shape[0]
    rows = torch.arange(B, device=logits.device)
    grid = logp.reshape(B, -1, D)  # (B, R, D)
    total = logp[rows, answers]  # (B,)
    relation = torch.logsumexp(grid[rows, answers // D], dim=-1)  # (B,) log sum_{a in A_r} p(a)
    subject = torch.logsumexp(grid[rows, :, answers % D], dim=-1)  # (B,) log sum_{r'} p(r' D + k)
    return total, relation, subject


def tie_aware_accuracy(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Per-prompt accuracy (B,): 1 / (number of maximal logits) if a* is among them, else 0."""
    top = logits.max(dim=-1, keepdim=True).values  # (B, 1)
    is_top = logits == top  # (B, M)
    hit = is_top.gather(1, answers[:, None]).squeeze(1)  # (B,)
    return hit.to(logits.dtype) / is_top.sum(dim=-1).to(logits.dtype)


def evaluate(model: AttentionModel, pop: Population) -> Losses:
    """The three losses and the accuracy of ``model`` on ``pop`` (a population or a fixed evaluation set)."""
    with torch.no_grad():
        logits = model.logits_from_counts(pop.counts)  # (P, R D)
        total, relation, subject = partial_log_probs(logits, pop.answers, pop.D)  # (P,) each
        acc = tie_aware_accuracy(logits, pop.answers)  # (P,)
        w = pop.weights
        return Losses(total=-float(w @ total), relation=-float(w @ relation), subject=-float(w @ subject),
                      accuracy=float(w @ acc))


def loss_and_grad(model: AttentionModel, pop: Population) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Loss L = sum_p w_p CE(logits_p, a*_p) and its gradients (dL/dA, dL/dV) (chapter 6, eq. (eq-gradients)).

    Linear attention: closed form. With G = w (softmax - onehot) (P, M), scores s_t = x_EOS^T A x_t and
    bags c (P, vocab): dL/dV = ((c * s) E)^T G and dL/dA = x_EOS (g^T E) with g_t = sum_p c_pt <E_t V, G_p>.
    For one-hot E only row EOS of dL/dA is non-zero. Softmax attention: autograd.
    """
    if model.attention == "softmax":
        A = model.A.detach().requires_grad_(True)
        V = model.V.detach().requires_grad_(True)
        probe = replace(model, A=A, V=V)
        logp = torch.log_softmax(probe.logits_from_counts(pop.counts), dim=-1)  # (P, M)
        loss = -(pop.weights * logp[torch.arange(len(pop.answers)), pop.answers]).sum()
        gA, gV = torch.autograd.grad(loss, (A, V))
        return float(loss.detach()), gA, gV
    with torch.no_grad():
        h = model.embed(pop.counts * model.scores())  # (P, d)
        G = torch.softmax(h @ model.V, dim=-1)  # (P, M) probabilities, then dL/dlogits
        rows = torch.arange(len(pop.answers), device=G.device)
        loss = -(pop.weights * torch.log(G[rows, pop.answers])).sum()
        G[rows, pop.answers] -= 1.0
        G *= pop.weights[:, None]  # (P, M)
        gV = h.T @ G  # (d, M)
        back = G @ model.V.T  # (P, d)
        g_scores = (pop.counts * (back if model.E is None else back @ model.E.T)).sum(0)  # (vocab,)
        gA = torch.zeros_like(model.A)  # (d, d)
        if model.E is None:
            gA[model.eos] = g_scores  # one-hot: only the row of EOS moves
        else:
            gA = torch.outer(model.E[model.eos], g_scores @ model.E)
        return float(loss), gA, gV


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Curve:
    """Losses along training, evaluated at ``steps`` (after that many updates), and the final model."""

    steps: np.ndarray           # (n,)
    total_loss: np.ndarray      # (n,)
    relation_loss: np.ndarray   # (n,)
    subject_loss: np.ndarray    # (n,)
    accuracy: np.ndarray        # (n,)
    method: str
    config: DynamicsConfig
    model: AttentionModel
    snapshots: dict[int, AttentionModel] = field(default_factory=dict)

    def rows(self, **extra) -> list[dict]:
        """One dict per evaluation: step, the three losses, accuracy, plus ``extra`` keys (method, seed...)."""
        return [{**extra, "step": int(k), "total_loss": round(float(t), 6), "relation_loss": round(float(r), 6),
                 "subject_loss": round(float(s), 6), "accuracy": round(float(a), 6)}
                for k, t, r, s, a in zip(self.steps, self.total_loss, self.relation_loss, self.subject_loss,
                                         self.accuracy)]


def train(cfg: DynamicsConfig, method: str = "population", device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float64, keep: tuple[int, ...] = (), progress: bool = False) -> Curve:
    """Plain gradient descent on the model of ``cfg`` (chapter 6, Figure 5).

    ``method="population"``: every step uses the population gradient. For the linear model that is the exact
    design ``population(noise="mean")`` (exact because noise tokens stay tied, see ``population``), so this
    is gradient descent on the true population loss, a discretisation of gradient flow. The softmax model
    has untied (random) embeddings and uses a fixed sample of ``eval_repeats`` prompts per pair instead.
    ``method="minibatch"``: the paper's protocol, a fresh batch of ``batch_size`` prompts each step, sampled
    with ``factlib.task.sample_batch``, and evaluation on a fixed sample of ``eval_repeats`` prompts per pair.
    ``keep`` lists steps at which a copy of the model is stored in ``Curve.snapshots``.
    """
    check_choice("method", method, METHODS)
    if not isinstance(cfg, DynamicsConfig):
        raise ArgumentTypeError(f"cfg must be a DynamicsConfig, got {type(cfg).__name__}")
    device, dtype = check_device(device), check_dtype("dtype", dtype)
    with _one_cpu_thread(device):
        return _train(cfg, method, device, dtype, keep, progress)


@contextmanager
def _one_cpu_thread(device):
    """Run on one torch thread on the CPU, then restore the count. The tensors here are tiny (at most
    1024 x 41 per step), so threads only add synchronisation; on a busy 2-core machine two threads made a
    run 70 times slower than one (measured: 60 s against 0.8 s for the exact-gradient run of Figure 5)."""
    previous = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(cfg: DynamicsConfig, method: str, device, dtype, keep, progress) -> Curve:
    task = cfg.task()
    table = structured_fact_table(task)
    gen = generator(cfg.seed)
    model = init_model(cfg, device, dtype)
    exact = cfg.model == "linear" and method == "population"
    eval_pop = population(cfg, table, "mean" if exact else "sample", seed=gen).to(device, dtype)
    train_pop = eval_pop if method == "population" else None
    lrs = learning_rates(cfg)
    eval_steps = set(range(0, cfg.steps, cfg.eval_every)) | {cfg.steps}
    record: dict[str, list] = {k: [] for k in ("steps", "total", "relation", "subject", "accuracy")}
    snapshots = {}

    def log(step: int) -> None:
        if step in eval_steps:
            out = evaluate(model, eval_pop)
            for key, value in zip(record, (step, out.total, out.relation, out.subject, out.accuracy)):
                record[key].append(value)
        if step in keep:
            snapshots[step] = replace(model, A=model.A.clone(), V=model.V.clone())

    iterator = range(cfg.steps)
    if progress:
        from .progress import progress_bar
        iterator = progress_bar(iterator, desc=f"{cfg.model}/{method}")
    for k in iterator:
        log(k)
        if record["total"] and not math.isfinite(record["total"][-1]):
            raise FloatingPointError(f"training diverged: the loss is {record['total'][-1]} at step {k} "
                                     f"(lr {cfg.lr}, {cfg.model} model, {method}); use a smaller lr")
        if train_pop is None:
            tokens, answers, _, _ = sample_batch(task, table, cfg.batch_size, gen, device)  # (B, T), (B,)
            counts = token_counts(tokens, task.vocab_size).to(dtype)  # (B, vocab)
            weights = torch.full((cfg.batch_size,), 1.0 / cfg.batch_size, dtype=dtype, device=device)
            batch = Population(counts, answers, weights, task.D, "batch")
        else:
            batch = train_pop
        _, gA, gV = loss_and_grad(model, batch)
        model.A -= lrs[k] * gA
        model.V -= lrs[k] * gV
    log(cfg.steps)
    if not math.isfinite(record["total"][-1]) or not (torch.isfinite(model.A).all() and torch.isfinite(model.V).all()):
        raise FloatingPointError(f"training diverged: the loss is {record['total'][-1]} after {cfg.steps} steps "
                                 f"(lr {cfg.lr}, {cfg.model} model, {method}); use a smaller lr")
    return Curve(np.array(record["steps"]), np.array(record["total"]), np.array(record["relation"]),
                 np.array(record["subject"]), np.array(record["accuracy"]), method, cfg, model, snapshots)


# ---------------------------------------------------------------------------------------------------------
# Theory: the reduced gradient flow of the symmetric model (chapter 6, Theorems 5-6)
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Direction:
    """One of the two directions the symmetric model learns (chapter 6, eq. (eq-reduced-flow)).

    A token of this kind appears in a fraction ``1 / n`` of the prompts and picks one of ``k`` groups of
    answers (relation: n = R, k = R, the set A_r; subject: n = S, k = D, the answer index). ``kappa`` is the
    logit gap per unit of value weight and ``rate`` the linear growth rate c = (kappa / n) (k - 1) / k.
    """

    name: str
    n: int
    k: int
    kappa: float

    @property
    def rate(self) -> float:
        return self.kappa / self.n * (self.k - 1) / self.k

    def loss(self, gap: np.ndarray) -> np.ndarray:
        """Partial loss log(1 + (k - 1) e^{-gap}) at logit gap ``gap`` (relation-only or subject-only loss)."""
        return np.logaddexp(0.0, np.log(self.k - 1) - np.asarray(gap, dtype=float)) if self.k > 1 else 0.0 * gap

    def half_gap(self) -> float:
        """The gap at which the partial loss is half its plateau value log k: log((k - 1) / (sqrt k - 1))."""
        return math.log((self.k - 1) / (math.sqrt(self.k) - 1))


def directions(S: int, R: int, D: int) -> dict[str, Direction]:
    """The relation and subject directions of the structured task (chapter 6, Lemma "two directions").

    kappa is one over the norm of the centred indicator of the m answers the token points to (m = D answers
    of A_r for a relation, m = R answers r' D + k for a subject): kappa^2 = R D / (m (R D - m)).
    """
    S, R, D = check_int("S", S, 1), check_int("R", R, 2), check_int("D", D, 2)
    return {
        "relation": Direction("relation", R, R, math.sqrt(R / (D * (R - 1)))),
        "subject": Direction("subject", S, D, math.sqrt(D / (R * (D - 1)))),
    }


def growth_rates(S: int, R: int, D: int) -> dict[str, float]:
    """Linear-phase growth rates (chapter 6, eq. (eq-rates)).

    c_relation = (1 / R) sqrt((R - 1) / (R D)),   c_subject = (1 / S) sqrt((D - 1) / (R D)).
    """
    return {name: d.rate for name, d in directions(S, R, D).items()}


def relation_first(S: int, R: int, D: int) -> bool:
    """Whether the relation is learned first: c_relation > c_subject, i.e. S sqrt(R - 1) > R sqrt(D - 1)."""
    S, R, D = check_int("S", S, 1), check_int("R", R, 1), check_int("D", D, 1)
    return S * math.sqrt(R - 1) > R * math.sqrt(D - 1)


def plateau_levels(S: int, R: int, D: int) -> dict[str, float]:
    """Loss levels of the stages (chapter 6, Theorem "sequential learning").

    initial: log(R D), uniform over all answers; intermediate: log D when the relation is learned first
    (p(a | r), uniform over A_r: the hallucination stage), log R when the subject is; final: 0.
    """
    rates = growth_rates(S, R, D)
    first = "relation" if rates["relation"] > rates["subject"] else "subject"
    return {"initial": math.log(R * D), "intermediate": math.log(D if first == "relation" else R), "final": 0.0,
            "first": first}


def _check_symmetric(S: int, D: int) -> None:
    if S % D:
        raise ValueError(f"the reduced flow needs D to divide S (each answer index shared by S / D subjects); "
                         f"got S={S}, D={D}")


def reduced_flow(S: int, R: int, D: int, init_scale: float, times) -> dict[str, np.ndarray]:
    """Exact gradient flow of the symmetric model from ``init_scale`` times all-ones (chapter 6, eq. (eq-theta)).

    Each direction is a pair (a, mu) with a^2 - mu^2 = eps^2 conserved, written a = eps cosh(theta),
    mu = eps sinh(theta); the logit gap is x = kappa eps^2 sinh(2 theta) / 2 and
    d theta / dt = (kappa / n) (k - 1) / (e^x + k - 1). Returns the gaps and the three losses at ``times``
    (gradient-flow time: sum of learning rates), each (len(times),). Needs D | S.
    """
    from scipy.integrate import solve_ivp

    _check_symmetric(S, D)
    eps = check_float("init_scale", init_scale, 0.0, 10.0, low_open=True)
    try:
        times = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"times must be a 1-D sequence of numbers, got {type(times).__name__}") from None
    if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0) or \
            (times.size and times[0] < 0):
        raise ValueError("times must be a non-decreasing 1-D sequence of finite non-negative numbers")
    out = {}
    for name, dr in directions(S, R, D).items():
        def rhs(t, theta, dr=dr):
            gap = dr.kappa * eps**2 * np.sinh(2 * theta) / 2
            return dr.kappa / dr.n * (dr.k - 1) / (np.exp(np.minimum(gap, 700.0)) + dr.k - 1)

        sol = solve_ivp(rhs, (0.0, float(times[-1]) if times.size else 0.0), [0.0], t_eval=times,
                        rtol=1e-10, atol=1e-12, method="LSODA")
        theta = sol.y[0]
        gap = dr.kappa * eps**2 * np.sinh(2 * theta) / 2
        out[f"{name}_gap"] = gap
        out[f"{name}_loss"] = dr.loss(gap)
    out["total_loss"] = out["relation_loss"] + out["subject_loss"]
    return out


def escape_time(S: int, R: int, D: int, init_scale: float, direction: str) -> float:
    """Gradient-flow time at which a partial loss falls to half its plateau value (chapter 6, eq. (eq-escape)).

    t* = (1 / c) int_0^{theta*} (e^{x(u)} + k - 1) / k du  with x(theta*) = half_gap(); for small eps,
    t* = (1 / c) [ln(1 / eps) + (1/2) ln(4 x* / kappa) + O(1 / k)]. Needs D | S.
    """
    from scipy.integrate import quad

    _check_symmetric(S, D)
    eps = check_float("init_scale", init_scale, 0.0, 10.0, low_open=True)
    dr = directions(S, R, D)[check_choice("direction", direction, ("relation", "subject"))]
    x_star = dr.half_gap()
    theta_star = 0.5 * math.asinh(2 * x_star / (dr.kappa * eps**2))
    integral, _ = quad(lambda u: math.expm1(dr.kappa * eps**2 * math.sinh(2 * u) / 2), 0.0, theta_star,
                       limit=200)
    return (theta_star + integral / dr.k) / dr.rate


def leading_escape_time(S: int, R: int, D: int, init_scale: float, direction: str) -> float:
    """Leading-order escape time ln(1 / eps) / c (chapter 6, eq. (eq-escape-leading))."""
    eps = check_float("init_scale", init_scale, 0.0, 1.0, low_open=True)
    c = growth_rates(S, R, D)[check_choice("direction", direction, ("relation", "subject"))]
    return math.log(1.0 / eps) / c


def time_to_step(cfg: DynamicsConfig, t: float) -> float | None:
    """The (fractional) step at which gradient descent with ``cfg``'s schedule has covered flow time ``t``.

    None if the schedule's total time sum_k eta_k is smaller than ``t``: the run ends before getting there.
    """
    t = check_float("t", t, 0.0)
    tau = elapsed_time(cfg)  # (steps + 1,)
    if t > tau[-1]:
        return None
    return float(np.interp(t, tau, np.arange(len(tau))))


def predicted_escape_steps(cfg: DynamicsConfig) -> dict[str, float | None]:
    """Predicted escape steps of the relation and subject directions under ``cfg``'s learning-rate schedule."""
    return {name: time_to_step(cfg, escape_time(cfg.S, cfg.R, cfg.D, cfg.init_scale, name))
            for name in ("relation", "subject")}


def predicted_curve(cfg: DynamicsConfig, steps) -> dict[str, np.ndarray]:
    """The reduced gradient flow evaluated at the flow times of gradient-descent ``steps`` of ``cfg``."""
    steps = np.asarray(steps)
    if (steps.ndim != 1 or steps.dtype.kind not in "iuf" or not np.isfinite(steps).all() or np.any(steps < 0)
            or np.any(steps > cfg.steps) or np.any(steps != np.round(steps))):
        raise ValueError(f"steps must be a 1-D array of integers in [0, {cfg.steps}]")
    return reduced_flow(cfg.S, cfg.R, cfg.D, cfg.init_scale, elapsed_time(cfg)[steps.astype(int)])
