"""The bigram task of chapter 9: global character bigrams from English text, plus in-context bigrams.

Global knowledge: a character bigram model (unigram ``pi_1``, transitions ``pi_b(j | i)``) estimated from three
Shakespeare plays stored in ``book/data/texts`` (their source and licence are in the README there). In-context
knowledge: K trigger tokens q_1 .. q_K (the K most frequent characters); each sequence draws its own outputs
o_k ~ pi_o(. | q_k) and follows the sequence-specific Markov chain

    p(j | i) = 1{j = o_k}  if i = q_k,   else  pi_b(j | i)        (chapter 9, eq. "bigram task")

(Bietti et al., 2023). With ``noise_prob`` alpha > 0 the token after a trigger is, with probability alpha, one fixed
"noise" token tau instead of o_k: a global association trigger -> tau that competes with the in-context one (the
noisy task of Chen, Bruna and Bietti, 2024).

A sequence has T + 1 tokens z_1 .. z_{T+1}; a model reads z_1 .. z_T and predicts z_2 .. z_{T+1}. Position t
(0-based, input z_{t+1}) is an *in-context* position if its token is a trigger q_k whose output o_k already
followed an earlier occurrence of q_k in the sequence: only there can the output be read from the context.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ._validate import ArgumentTypeError, check_choice, check_float, check_int
from .config import generator

#: the 32 characters of the chapter's vocabulary: line break, space, ' , . ? and the 26 letters
ALPHABET = "\n '.,?abcdefghijklmnopqrstuvwxyz"
#: the committed texts (book/data/texts/README.md says where they come from)
TEXT_DIR = Path(__file__).resolve().parents[1] / "book" / "data" / "texts"
TEXT_FILES = ("hamlet.txt", "macbeth.txt", "romeo_and_juliet.txt")
OUTPUT_DISTRIBUTIONS = ("uniform", "bigram")


def _check_alphabet(alphabet) -> str:
    if not isinstance(alphabet, str):
        raise ArgumentTypeError(f"alphabet must be a string of distinct characters, got {type(alphabet).__name__}")
    if len(alphabet) < 4 or len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet must hold at least 4 distinct characters, got {alphabet!r}")
    return alphabet


def normalise_text(text: str, alphabet: str = ALPHABET) -> str:
    """Lower-case ``text``, make each run of blanks one space (one line break if it holds one), drop every other
    character outside ``alphabet`` (chapter 9, "the text")."""
    if not isinstance(text, str):
        raise ArgumentTypeError(f"text must be a string, got {type(text).__name__}")
    alphabet = _check_alphabet(alphabet)
    text = re.sub(r"\s+", lambda m: "\n" if "\n" in m.group() else " ", text.lower())
    keep = set(alphabet)
    return "".join(ch for ch in text if ch in keep)


def load_text(files: tuple[str, ...] = TEXT_FILES, folder: Path | str = TEXT_DIR) -> str:
    """The committed plays, concatenated (unchanged; ``normalise_text`` prepares them)."""
    if isinstance(files, str) or not files:
        raise ValueError(f"files must be a non-empty tuple of file names, got {files!r}")
    parts = []
    for name in files:
        path = Path(folder) / name
        if not path.is_file():
            raise ValueError(f"files: {str(path)!r} does not exist (the texts live in {str(TEXT_DIR)!r})")
        parts.append(path.read_text(encoding="ascii"))
    return "\n".join(parts)


@dataclass(frozen=True)
class BigramStats:
    """Character statistics of a text: ``counts[i, j]`` pairs (i, j), ``unigram`` (N,) and row-stochastic
    ``bigram`` (N, N), ``bigram[i, j] = pi_b(j | i)`` (chapter 9, eq. "global bigrams")."""

    alphabet: str
    counts: torch.Tensor   # (N, N) int64
    unigram: torch.Tensor  # (N,) float64
    bigram: torch.Tensor   # (N, N) float64
    characters: int        # length of the normalised text

    @property
    def N(self) -> int:
        return len(self.alphabet)

    def decode(self, tokens) -> str:
        """The characters of a sequence of token ids."""
        return "".join(self.alphabet[int(t)] for t in tokens)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (L,) of a text made of the alphabet's characters."""
        index = {ch: i for i, ch in enumerate(self.alphabet)}
        bad = sorted(set(text) - set(index))
        if bad:
            raise ValueError(f"text holds characters outside the alphabet: {bad!r}")
        return torch.tensor([index[ch] for ch in text], dtype=torch.long)


def text_bigrams(text: str, alphabet: str = ALPHABET) -> BigramStats:
    """Unigram and bigram frequencies of ``normalise_text(text)``; every character of ``alphabet`` must occur
    and be followed by something (else its row of pi_b would be undefined)."""
    alphabet = _check_alphabet(alphabet)
    clean = normalise_text(text, alphabet)
    N = len(alphabet)
    if len(clean) < 2:
        raise ValueError("text must hold at least two characters of the alphabet")
    ids = torch.tensor([alphabet.index(ch) for ch in clean], dtype=torch.long)  # (L,)
    counts = torch.bincount(ids[:-1] * N + ids[1:], minlength=N * N).reshape(N, N)  # (N, N)
    followed = counts.sum(dim=1)  # (N,)
    missing = [alphabet[i] for i in range(N) if followed[i] == 0]
    if missing:
        raise ValueError(f"text: characters {missing!r} of the alphabet never occur before another character")
    unigram = torch.bincount(ids, minlength=N).double() / len(ids)  # (N,)
    bigram = counts.double() / followed.double()[:, None]  # (N, N)
    return BigramStats(alphabet, counts, unigram, bigram, len(clean))


@functools.cache
def shakespeare_bigrams() -> BigramStats:
    """``text_bigrams`` of the committed plays (computed once per process)."""
    return text_bigrams(load_text())


@dataclass(frozen=True)
class BigramTask:
    """The bigram task (chapter 9, Definition "bigram task"): K fixed triggers, sequences of T + 1 tokens."""

    K: int = 3                  # triggers: the K most frequent characters
    T: int = 64                 # tokens a model reads (the sequence has T + 1)
    outputs: str = "uniform"    # pi_o(. | q_k): "uniform" over the allowed tokens, or "bigram" (pi_b restricted)
    noise_prob: float = 0.0     # alpha: probability that a trigger is followed by the noise token instead of o_k

    def __post_init__(self):
        check_int("K", self.K, 1, 16)
        check_int("T", self.T, 2, 4096)
        check_choice("outputs", self.outputs, OUTPUT_DISTRIBUTIONS)
        check_float("noise_prob", self.noise_prob, 0.0, 1.0)


def triggers(task: BigramTask, stats: BigramStats) -> torch.Tensor:
    """The trigger tokens (K,): the K most frequent characters of the text, most frequent first."""
    if task.K + 2 > stats.N:
        raise ValueError(f"K must leave at least two non-trigger tokens: K = {task.K}, N = {stats.N}")
    return torch.argsort(stats.unigram, descending=True, stable=True)[: task.K]


def noise_token(task: BigramTask, stats: BigramStats) -> int | None:
    """The noise token tau of the noisy task (the most frequent non-trigger character), or None if alpha = 0."""
    if task.noise_prob == 0:
        return None
    return int(torch.argsort(stats.unigram, descending=True, stable=True)[task.K])


def output_tokens(task: BigramTask, stats: BigramStats) -> torch.Tensor:
    """The tokens an output o_k can be (M,): every token but the triggers and the noise token, so that a trigger
    is never followed by a trigger (no loops) and o_k is never confused with tau."""
    banned = set(triggers(task, stats).tolist())
    tau = noise_token(task, stats)
    if tau is not None:
        banned.add(tau)
    return torch.tensor([i for i in range(stats.N) if i not in banned], dtype=torch.long)


@dataclass
class BigramBatch:
    """Sampled sequences and what each position asks of a model (chapter 9, "where the output is in context")."""

    tokens: torch.Tensor      # (B, T + 1) long: z_1 .. z_{T+1}
    outputs: torch.Tensor     # (B, K) long: each sequence's o_k
    trigger: torch.Tensor     # (B, T) bool: input z_t is a trigger
    in_context: torch.Tensor  # (B, T) bool: a trigger whose output already followed it earlier in the sequence
    answer: torch.Tensor      # (B, T) long: the in-context output o_k at trigger positions, -1 elsewhere

    @property
    def inputs(self) -> torch.Tensor:
        return self.tokens[:, :-1]  # (B, T)

    @property
    def targets(self) -> torch.Tensor:
        return self.tokens[:, 1:]  # (B, T)


def sample_batch(task: BigramTask, stats: BigramStats, batch_size: int,
                 seed: int | torch.Generator) -> BigramBatch:
    """``batch_size`` sequences of the bigram task, drawn on the CPU from ``seed`` (or a generator)."""
    B = check_int("batch_size", batch_size, 1, 1 << 20)
    T = task.T
    gen = seed if isinstance(seed, torch.Generator) else generator(seed)
    q = triggers(task, stats)  # (K,)
    allowed = output_tokens(task, stats)  # (M,)
    if task.outputs == "uniform":
        weights = torch.ones(task.K, len(allowed), dtype=torch.float64)  # (K, M)
    else:
        weights = stats.bigram[q][:, allowed]  # (K, M)
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
    o = allowed[torch.multinomial(weights, B, replacement=True, generator=gen).T]  # (B, K)
    cdf = stats.bigram.cumsum(dim=1)  # (N, N)
    cdf[:, -1] = 1.0  # rounding: the last bin closes [0, 1), so searchsorted stays below N
    slot = torch.full((stats.N,), -1, dtype=torch.long)  # (N,): token -> its trigger index, -1 if none
    slot[q] = torch.arange(task.K)
    tau = noise_token(task, stats)
    tokens = torch.empty(B, T + 1, dtype=torch.long)  # (B, T + 1)
    tokens[:, 0] = torch.multinomial(stats.unigram, B, replacement=True, generator=gen)
    in_context = torch.zeros(B, T, dtype=torch.bool)  # (B, T)
    seen = torch.zeros(B, task.K, dtype=torch.bool)  # (B, K): o_k has followed q_k
    uniform = torch.rand(T, 2, B, generator=gen, dtype=torch.float64)  # (T, 2, B)
    noise = uniform[:, 1] < task.noise_prob if tau is not None else torch.zeros(T, B, dtype=torch.bool)  # (T, B)
    rows = torch.arange(B)
    for t in range(T):
        prev = tokens[:, t]  # (B,)
        k = slot[prev]  # (B,)
        is_trigger = k >= 0  # (B,)
        k = k.clamp(min=0)
        nxt = torch.searchsorted(cdf[prev], uniform[t, 0, :, None]).squeeze(1)  # (B,): a draw from pi_b(. | prev)
        forced = o[rows, k]  # (B,)
        noisy = is_trigger & noise[t]  # (B,)
        if tau is not None:
            forced = forced.masked_fill(noisy, tau)
        tokens[:, t + 1] = torch.where(is_trigger, forced, nxt)
        in_context[:, t] = is_trigger & seen[rows, k]
        seen[rows, k] |= is_trigger & ~noisy
    k = slot[tokens[:, :-1]]  # (B, T)
    trigger = k >= 0  # (B, T)
    answer = torch.where(trigger, o.gather(1, k.clamp(min=0)), torch.full_like(k, -1))  # (B, T)
    return BigramBatch(tokens, o, trigger, in_context, answer)
