"""The synthetic factual recall task (chapter 3, Figure 2 of the paper).

Token layout (shared by every module of factlib):

- input vocabulary: subjects ``[0, S)``, relations ``[S, S + R)``, noise tokens ``[S + R, S + R + n_noise)``,
  EOS ``= S + R + n_noise``; ``vocab_size = S + R + n_noise + 1``;
- output vocabulary: the ``R * D`` answers; relation r owns the answer set ``A_r = [r D, (r + 1) D)``.

A prompt is ``z_1 .. z_T`` (a tensor of length T): the subject and the relation sit at two distinct positions
drawn uniformly among the first T - 1, every other one of those positions holds a uniform noise token, and
``z_T`` (index T - 1) is EOS. The answer ``z_{T+1} = a*(s, r)`` is returned separately.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._validate import ArgumentTypeError, _shown, check_allocation, check_choice, check_float, check_int, \
    check_function
from .config import generator

SUBJECT_DISTRIBUTIONS = ("uniform", "zipf")


@dataclass(frozen=True)
class TaskConfig:
    """Sizes of the factual recall task (chapter 3, Definition "factual recall task")."""

    S: int                              # number of subjects
    R: int                              # number of relations
    D: int                              # answers per relation, |A_r|
    T: int = 32                         # prompt length, EOS included (the answer is token T + 1)
    n_noise: int | None = None          # number of noise tokens; None is replaced by S + R (the paper's default)
    subjects: str = "uniform"           # subject distribution p(s): "uniform" or "zipf"
    zipf_exponent: float = 1.0          # p(s) proportional to (s + 1)^(-zipf_exponent) when subjects == "zipf"
    distinct_answers: bool = False      # a*(., r) is a bijection from subjects onto A_r (needs D == S)

    def __post_init__(self):
        check_int("S", self.S, 1)
        check_int("R", self.R, 1)
        check_int("D", self.D, 1)
        check_int("T", self.T, 3)  # T - 1 >= 2 positions for the subject and the relation
        # resolved here, so cfg.n_noise is always an int (dataclasses.replace keeps the resolved value)
        n_noise = self.S + self.R if self.n_noise is None else check_int(
            "n_noise", self.n_noise, 1 if self.T > 3 else 0)
        object.__setattr__(self, "n_noise", n_noise)
        check_choice("subjects", self.subjects, SUBJECT_DISTRIBUTIONS)
        check_float("zipf_exponent", self.zipf_exponent, 0.0)
        if not isinstance(self.distinct_answers, bool):
            raise ValueError(f"distinct_answers must be True or False, got {self.distinct_answers!r}")
        if self.distinct_answers and self.D != self.S:
            raise ValueError(f"distinct_answers needs D == S (one answer per subject); got D={self.D}, S={self.S}")

    # the layout, named once
    @property
    def noise_offset(self) -> int:
        return self.S + self.R

    @property
    def eos(self) -> int:
        return self.S + self.R + self.n_noise

    @property
    def vocab_size(self) -> int:
        return self.S + self.R + self.n_noise + 1

    @property
    def num_answers(self) -> int:
        return self.R * self.D

    @property
    def num_facts(self) -> int:
        return self.S * self.R

    def relation_token(self, r):
        """Input token id of relation r (an int or a tensor of relation indices)."""
        return self.S + r


def check_task(cfg, name: str = "cfg") -> TaskConfig:
    """Return ``cfg`` if it is a ``TaskConfig``, else raise naming the argument ``name``."""
    if not isinstance(cfg, TaskConfig):
        raise ArgumentTypeError(f"{name} must be a TaskConfig, got {_shown(cfg)}")
    return cfg


def _check_pairs_size(cfg: TaskConfig, what: str, copies: int = 1) -> None:
    """Refuse S R (times ``copies``) long entries beyond ``_validate.MAX_BYTES``, before allocating them."""
    check_allocation({"S": cfg.S, "R": cfg.R}, copies * cfg.S * cfg.R, torch.int64, what)


def subject_probabilities(cfg: TaskConfig) -> torch.Tensor:
    """p(s) over the S subjects, float64 (S,): uniform, or Zipf p(s) proportional to (s + 1)^-exponent."""
    check_task(cfg)
    check_allocation({"S": cfg.S}, cfg.S, torch.float64, "the subject probabilities")
    if cfg.subjects == "uniform":
        return torch.full((cfg.S,), 1.0 / cfg.S, dtype=torch.float64)  # (S,)
    w = torch.arange(1, cfg.S + 1, dtype=torch.float64) ** (-cfg.zipf_exponent)  # (S,)
    return w / w.sum()


def pair_probabilities(cfg: TaskConfig) -> torch.Tensor:
    """p(s, r) = p(s) / R (relations are uniform and independent of the subject), float64 (S, R)."""
    check_task(cfg)
    return subject_probabilities(cfg)[:, None].expand(cfg.S, cfg.R) / cfg.R  # (S, R)


def information_bits(cfg: TaskConfig) -> float:
    """log2 of the number of possible fact tables (chapter 3, eq. "information content").

    S R log2 D for independent answers; R log2(S!) when each a*(., r) is a bijection (distinct answers).
    """
    check_task(cfg)
    if cfg.distinct_answers:
        return cfg.R * math.lgamma(cfg.S + 1) / math.log(2)
    return cfg.num_facts * math.log2(cfg.D)


def _gen(seed) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else generator(seed)


def fact_table(cfg: TaskConfig, seed: int | torch.Generator) -> torch.Tensor:
    """A random fact table a*(s, r), long (S, R): uniform in A_r independently for every (s, r).

    With ``cfg.distinct_answers`` each column is a uniformly random bijection of the subjects onto A_r.
    """
    check_task(cfg)
    _check_pairs_size(cfg, "the fact table (S, R) and its draw", copies=2)
    gen = _gen(seed)
    offsets = torch.arange(cfg.R) * cfg.D  # (R,) first answer of each A_r
    if cfg.distinct_answers:
        within = torch.stack([torch.randperm(cfg.S, generator=gen) for _ in range(cfg.R)], dim=1)  # (S, R)
    else:
        within = torch.randint(cfg.D, (cfg.S, cfg.R), generator=gen)  # (S, R)
    return offsets[None, :] + within  # (S, R)


def structured_fact_table(cfg: TaskConfig) -> torch.Tensor:
    """The table of the dynamics section (chapter 6): a*(s, r) = r D + floor(s D / S), long (S, R)."""
    check_task(cfg)
    _check_pairs_size(cfg, "the fact table (S, R)")
    s = torch.arange(cfg.S)[:, None]  # (S, 1)
    r = torch.arange(cfg.R)[None, :]  # (1, R)
    return r * cfg.D + (s * cfg.D) // cfg.S  # (S, R)


def check_table(cfg: TaskConfig, table: torch.Tensor) -> torch.Tensor:
    """Validate a fact table: shape (S, R), integer, and a*(s, r) in A_r for every pair. Returns it."""
    check_task(cfg)
    if not isinstance(table, torch.Tensor) or table.shape != (cfg.S, cfg.R):
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ValueError(f"table must be a tensor of shape (S, R) = ({cfg.S}, {cfg.R}); got {shape}")
    if table.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"table must be an integer tensor; got dtype {table.dtype}")
    if not bool(((table // cfg.D) == torch.arange(cfg.R, device=table.device)).all()):
        raise ValueError(f"table[s, r] must lie in A_r = [r D, (r + 1) D) with D = {cfg.D}")
    return table


def prompts_for_pairs(cfg: TaskConfig, subjects: torch.Tensor, relations: torch.Tensor,
                      seed: int | torch.Generator) -> torch.Tensor:
    """Prompts (B, T) long for given subjects (B,) and relations (B,): random positions and noise, EOS last.

    Positions: i uniform in [0, T - 1), j uniform among the other T - 2 positions of [0, T - 1).
    All draws come from one CPU generator; the result is on the CPU.
    """
    check_task(cfg)
    for name, value in (("subjects", subjects), ("relations", relations)):
        if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.is_complex():
            raise ArgumentTypeError(f"{name} must be an integer tensor (B,), got {_shown(value)}")
    gen = _gen(seed)
    subjects, relations = subjects.cpu().long(), relations.cpu().long()  # (B,), (B,)
    if subjects.shape != relations.shape or subjects.ndim != 1:
        raise ValueError(f"subjects and relations must be 1-D of equal length; got {tuple(subjects.shape)} "
                         f"and {tuple(relations.shape)}")
    B, L = subjects.shape[0], cfg.T - 1
    check_allocation({"B": B, "T": cfg.T}, 2 * B * cfg.T, torch.int64, "the prompts (B, T) and their noise draw")
    if B and (subjects.min() < 0 or subjects.max() >= cfg.S):
        raise ValueError(f"subjects must lie in [0, S-1] = [0, {cfg.S - 1}]")
    if B and (relations.min() < 0 or relations.max() >= cfg.R):
        raise ValueError(f"relations must lie in [0, R-1] = [0, {cfg.R - 1}]")
    tokens = torch.empty(B, cfg.T, dtype=torch.long)  # (B, T)
    if cfg.n_noise:
        tokens[:, :L] = cfg.noise_offset + torch.randint(cfg.n_noise, (B, L), generator=gen)  # (B, T-1)
    i = torch.randint(L, (B,), generator=gen)  # (B,) subject position
    j = torch.randint(L - 1, (B,), generator=gen)  # (B,) relation position, before skipping i
    j = j + (j >= i).long()  # (B,) uniform over [0, T-1) minus {i}
    rows = torch.arange(B)
    tokens[rows, i] = subjects
    tokens[rows, j] = cfg.relation_token(relations)
    tokens[:, L] = cfg.eos
    return tokens


def sample_pairs(cfg: TaskConfig, batch_size: int,
                 seed: int | torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(subjects, relations), each long (B,), drawn from p(s, r) = p(s) / R on the CPU."""
    check_task(cfg)
    batch_size = check_int("batch_size", batch_size, 1)
    check_allocation({"batch_size": batch_size, "T": cfg.T}, 2 * batch_size * cfg.T, torch.int64,
                     "a batch of prompts (batch_size, T) and its noise draw")
    gen = _gen(seed)
    if cfg.subjects == "uniform":
        subjects = torch.randint(cfg.S, (batch_size,), generator=gen)  # (B,)
    else:
        subjects = torch.multinomial(subject_probabilities(cfg), batch_size, replacement=True,
                                     generator=gen)  # (B,)
    relations = torch.randint(cfg.R, (batch_size,), generator=gen)  # (B,)
    return subjects, relations


def sample_batch(cfg: TaskConfig, table: torch.Tensor, batch_size: int,
                 seed: int | torch.Generator, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch from the task distribution (chapter 3, Definition "factual recall task").

    Returns ``tokens`` (B, T), ``answers`` (B,) = a*(s, r), ``subjects`` (B,), ``relations`` (B,), all long and
    on ``device``. Draws happen on the CPU from the seed (or the generator, which advances), so a seed gives
    the same batch on every device.
    """
    table = check_table(cfg, table)
    gen = _gen(seed)
    subjects, relations = sample_pairs(cfg, batch_size, gen)  # (B,), (B,)
    tokens = prompts_for_pairs(cfg, subjects, relations, gen)  # (B, T)
    answers = table.cpu()[subjects, relations]  # (B,)
    return tuple(x.to(device) for x in (tokens, answers, subjects, relations))


def prompt_probability(cfg: TaskConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Exact probability of each prompt (B, T) under the task distribution, float64 (B,).

    P(z) = p(s) / R * 1 / ((T - 1)(T - 2)) * n_noise^-(T - 3) for a well-formed prompt, else 0.
    """
    check_task(cfg)
    if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.is_complex():
        raise ArgumentTypeError(f"tokens must be an integer tensor (B, T), got {_shown(tokens)}")
    tokens = tokens.cpu().long()  # (B, T)
    if tokens.ndim != 2 or tokens.shape[1] != cfg.T:
        raise ValueError(f"tokens must have shape (B, T) with T = {cfg.T}; got {tuple(tokens.shape)}")
    body = tokens[:, :-1]  # (B, T-1)
    is_s = body < cfg.S  # (B, T-1)
    is_r = (body >= cfg.S) & (body < cfg.noise_offset)  # (B, T-1)
    is_n = (body >= cfg.noise_offset) & (body < cfg.eos)  # (B, T-1)
    ok = (is_s.sum(1) == 1) & (is_r.sum(1) == 1) & (is_n.sum(1) == cfg.T - 3) & (tokens[:, -1] == cfg.eos)  # (B,)
    s = torch.where(is_s, body, 0).sum(1).clamp(max=cfg.S - 1)  # (B,) the subject where ok
    p_s = subject_probabilities(cfg)[s]  # (B,)
    log_rest = -math.log(cfg.R) - math.log((cfg.T - 1) * (cfg.T - 2)) - (cfg.T - 3) * math.log(max(cfg.n_noise, 1))
    return torch.where(ok, p_s * math.exp(log_rest), torch.zeros((), dtype=torch.float64))


def all_pairs(cfg: TaskConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (s, r) pair once, subject-major: subjects (S R,), relations (S R,), long."""
    check_task(cfg)
    _check_pairs_size(cfg, "every (s, r) pair (subjects and relations, S R each)", copies=2)
    s, r = torch.meshgrid(torch.arange(cfg.S), torch.arange(cfg.R), indexing="ij")  # (S, R), (S, R)
    return s.reshape(-1), r.reshape(-1)


@dataclass(frozen=True)
class PopulationResult:
    """Accuracy of a model on every (s, r) pair (chapter 3, "population evaluation")."""

    pair_accuracy: torch.Tensor  # (S, R) fraction of the ``repeats`` prompts of each pair answered right
    accuracy: float              # sum_{s,r} p(s, r) pair_accuracy[s, r]: the population accuracy estimate
    worst_pair: float            # min over pairs of pair_accuracy
    all_correct: bool            # every prompt of every pair answered right
    repeats: int                 # prompts (positions and noise drawn afresh) per pair
    method: str = "sampled"      # how the positions and noise were covered


def evaluate_population(model: Callable[[torch.Tensor], torch.Tensor], cfg: TaskConfig, table: torch.Tensor,
                        repeats: int = 16, seed: int = 0, batch_size: int = 4096,
                        device: torch.device | str = "cpu") -> PopulationResult:
    """Run ``model`` (tokens (B, T) -> logits (B, R D)) on every (s, r) pair, ``repeats`` prompts each.

    Every pair is covered (not a random subset of pairs); for each, the positions of s and r and the noise
    tokens are drawn ``repeats`` times. A prompt counts as right when the argmax logit is a*(s, r).
    """
    check_function("model", model, "a function of tokens (B, T) -> logits (B, R D)")
    table = check_table(cfg, table)
    repeats = check_int("repeats", repeats, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    _check_pairs_size(cfg, f"every (s, r) pair {repeats} times (subjects and relations)", copies=2 * repeats)
    gen = generator(seed)
    subjects, relations = all_pairs(cfg)  # (S R,), (S R,)
    subjects, relations = subjects.repeat(repeats), relations.repeat(repeats)  # (S R repeats,)
    correct = torch.zeros(cfg.S, cfg.R, dtype=torch.long)  # (S, R)
    with torch.no_grad():
        for start in range(0, subjects.shape[0], batch_size):
            s, r = subjects[start:start + batch_size], relations[start:start + batch_size]  # (B,), (B,)
            tokens = prompts_for_pairs(cfg, s, r, gen).to(device)  # (B, T)
            logits = model(tokens)  # (B, R D)
            if logits.shape != (s.shape[0], cfg.num_answers):
                raise ValueError(f"model must return logits of shape (B, R D) = ({s.shape[0]}, {cfg.num_answers}); "
                                 f"got {tuple(logits.shape)}")
            hit = (logits.argmax(dim=1).cpu() == table.cpu()[s, r]).long()  # (B,)
            correct.index_put_((s, r), hit, accumulate=True)
    pair_accuracy = correct.double() / repeats  # (S, R)
    return PopulationResult(
        pair_accuracy=pair_accuracy,
        accuracy=float((pair_probabilities(cfg) * pair_accuracy).sum()),
        worst_pair=float(pair_accuracy.min()),
        all_correct=bool((correct == repeats).all()),
        repeats=repeats,
    )


def token_names(cfg: TaskConfig, tokens: torch.Tensor) -> list[str]:
    """Readable names of input tokens (one prompt, (T,)): s3, r1, n7, EOS."""
    check_task(cfg)
    if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.ndim != 1:
        raise ArgumentTypeError(f"tokens must be a 1-D integer tensor (one prompt), got {_shown(tokens)}")
    names = []
    for t in tokens.tolist():
        if t < cfg.S:
            names.append(f"s{t}")
        elif t < cfg.noise_offset:
            names.append(f"r{t - cfg.S}")
        elif t < cfg.eos:
            names.append(f"n{t - cfg.noise_offset}")
        elif t == cfg.eos:
            names.append("EOS")
        else:
            raise ValueError(f"token ids must lie in [0, vocab_size-1] = [0, {cfg.vocab_size - 1}]; got {t}")
    return names


def answer_name(cfg: TaskConfig, answer: int) -> str:
    """Readable name of an answer id: a{r}.{k} is the k-th answer of relation r's set A_r."""
    check_task(cfg)
    answer = check_int("answer", answer, 0, cfg.num_answers - 1)
    return f"a{answer // cfg.D}.{answer % cfg.D}"
