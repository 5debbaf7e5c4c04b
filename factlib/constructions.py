"""Explicit weights that store a fact table in the one-layer transformer (chapter 4, Theorems 3 and 4).

Both constructions share the attention pattern. The S + R subject and relation tokens are split among the
heads; head h holds a *key-query memory* k_h, the least-norm vector with k_h . e_z = 1 on its tokens and
``sink`` on EOS, so that from the EOS query it scores its own tokens beta, EOS beta * sink and the rest about 0.
A head whose tokens are in the prompt attends to them; otherwise it rests on EOS, whose value is zero.

- ``attention_only`` (Theorem 3): the value/output map of a head is an associative memory sending e_s to a
  vector t_s whose logit is 1 on each of the R answers of s, and e_r to a vector t_r whose logit is 1 on
  each answer of A_r. The right answer a*(s, r) is the only one with both votes: the facts live in W_O W_V.
- ``attention_mlp`` (Theorem 4): the value/output maps only copy a code of s into one block of the residual
  coordinates and a code of r into another (the S subject codes in superposition when S exceeds the block);
  the MLP is the multi-input memory of ``memory.multi_input_memory``: random features of the superposed
  input with no Hermite component below degree k, and a Hebbian second layer over the S R facts with doubly
  centred outputs: the facts live in W2.

Every memory that needs only a few items exact (a head's tokens, a token's answers) solves a small
least-squares system instead of summing outer products; the memories that hold the S R facts in
superposition (the output vectors t_s in R^d, the MLP's second layer) are where the counting happens.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch

from ._validate import ArgumentTypeError, check_choice, check_float, check_int
from .capacity import find_capacity
from .config import generator
from .memory import hermite_free_coefficients, hermite_free_relu, multi_input_memory
from .models import ModelConfig, OneLayerTransformer
from .task import PopulationResult, TaskConfig, all_pairs, check_table, evaluate_population, pair_probabilities


@dataclass(frozen=True)
class ConstructionConfig:
    """Knobs of the constructions (chapter 4); the defaults are the ones the chapter verifies."""

    beta: float = 40.0          # key-query strength: the attention score of a head's own tokens
    sink: float = 0.75          # EOS's score as a fraction of beta: where a head rests when its tokens are absent
    scale: float = 10.0         # size of the memory's output: it dwarfs the fixed term u_a . e_EOS of the logits
    code_scale: float = 0.1     # attention + MLP: size of the codes attention writes (their direct logits are noise)
    feature_degree: int = 4     # attention + MLP: lowest Hermite degree of the MLP features (4 or 6; k + 2 neurons each)
    subject_share: float = 0.5  # attention + MLP: fraction of the d residual coordinates that hold subject codes
    seed: int = 0               # seed of the construction's random projections, codes and features

    def generator(self) -> torch.Generator:
        """The construction's own stream (seed 2^32 + seed), never the one that drew the embeddings."""
        return generator(2**32 + self.seed)

    def __post_init__(self):
        check_float("beta", self.beta, 0.0, low_open=True)
        check_float("sink", self.sink, 0.0, 1.0)
        check_float("scale", self.scale, 0.0, low_open=True)
        check_float("code_scale", self.code_scale, 0.0, low_open=True)
        check_float("subject_share", self.subject_share, 0.0, 1.0, low_open=True)
        check_choice("feature_degree", self.feature_degree, (4, 6))
        check_int("seed", self.seed, 0, 2**32 - 1)


def assign_heads(task: TaskConfig, H: int) -> list[torch.Tensor]:
    """Input token ids each head attends to (chapter 4): relations on H_r heads, subjects on the other H - H_r.

    H_r is chosen to make the largest head load, max(ceil(R / H_r), ceil(S / (H - H_r))), as small as possible.
    With H = 1 the single head holds every subject and relation. Returns H long tensors (some may be empty).
    """
    _check_task(task)
    H = check_int("H", H, 1)
    subjects = torch.arange(task.S)
    relations = task.relation_token(torch.arange(task.R))
    if H == 1:
        return [torch.cat([subjects, relations])]
    H_r = min(range(1, H), key=lambda h: max(-(-task.R // h), -(-task.S // (H - h))))
    return list(torch.tensor_split(relations, H_r)) + list(torch.tensor_split(subjects, H - H_r))


def head_load(task: TaskConfig, H: int) -> int:
    """The largest number of tokens one head holds under ``assign_heads``."""
    return max(len(tokens) for tokens in assign_heads(task, H))


def _set_key_query(model: OneLayerTransformer, heads: list[torch.Tensor], cfg: ConstructionConfig) -> None:
    """Head h scores token z by beta * k_h . e_z, where the key-query memory k_h is the least-norm vector with
    k_h . e_z = 1 for the head's tokens and k_h . e_EOS = sink (exactly: at most d - 1 tokens per head).

    Every other token scores beta * k_h . e_z, a random number of order beta |k_h| / sqrt(d).
    """
    E, eos, d_h = model.E, model.cfg.vocab_size - 1, model.cfg.d_h
    e_eos = E[eos] / (E[eos] @ E[eos])  # (d,): e_EOS . e_eos = 1, so the query below is exactly beta
    for h, tokens in enumerate(heads):
        if len(tokens) == 0:
            continue  # an idle head: its output memory is empty, so its output is zero
        rows = E[torch.cat([tokens, torch.tensor([eos])])].double()  # (n + 1, d)
        wanted = torch.ones(len(tokens) + 1, dtype=rows.dtype)  # (n + 1,)
        wanted[-1] = cfg.sink
        model.W_Q.data[h, :, 0] = cfg.beta * d_h ** 0.5 * e_eos  # (d,): W_Q^T e_EOS = beta sqrt(d_h) e_1
        model.W_K.data[h, :, 0] = (torch.linalg.pinv(rows) @ wanted).to(E)  # (d,): the key k_h


def random_codes(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """n unit vectors in R^k (n, k), float64: orthonormal when n <= k, otherwise independent uniform directions."""
    G = torch.randn(max(n, k), k, generator=gen, dtype=torch.float64)  # (max(n, k), k)
    if n <= k:
        return torch.linalg.qr(G)[0][:n]  # (n, k): n orthonormal rows of a random orthogonal matrix
    return G / G.norm(dim=1, keepdim=True)


def _set_values(model: OneLayerTransformer, heads: list[torch.Tensor], targets: torch.Tensor,
                gen: torch.Generator) -> None:
    """Head h's value/output map sends e_z to targets[z] for each of its tokens z (least squares).

    W_V^T = A_h = G_h P_h: P_h (n, d) is an orthonormal basis of the span of the head's n token embeddings
    (with e_EOS projected out, so EOS's value is zero) and G_h (d_h, n) maps it into the head's d_h
    dimensions: an isometry when n <= d_h, a random N(0, 1/d_h) matrix otherwise. W_O then solves
    W_O^T A_h e_z = targets[z] in the least-squares sense: exactly when n <= d_h, and otherwise with
    cross-talk between the tokens (a memory in superposition). A foreign token's value is small: only its
    component along the head's tokens, of order sqrt(n / d), gets through. targets is (V, d).
    """
    E, eos, d_h = model.E, model.cfg.vocab_size - 1, model.cfg.d_h
    e_eos = (E[eos] / E[eos].norm()).double()  # (d,)
    for h, tokens in enumerate(heads):
        if len(tokens) == 0:
            continue  # an idle head: zero value, zero output
        own = E[tokens].double()  # (n, d)
        P = torch.linalg.qr((own - torch.outer(own @ e_eos, e_eos)).T)[0].T  # (min(n, d), d) orthonormal rows
        k = P.shape[0]
        G = random_codes(k, d_h, gen).T if k <= d_h else torch.randn(d_h, k, generator=gen, dtype=P.dtype) / d_h ** 0.5
        A = G @ P  # (d_h, d)
        model.W_V.data[h] = A.T.to(E)  # (d, d_h)
        keys = own @ A.T  # (n, d_h): what the head's tokens look like after W_V
        model.W_O.data[h] = (torch.linalg.pinv(keys) @ targets[tokens].double()).to(E)  # (d_h, n) @ (n, d)


def _own_answer_targets(U: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """For each row of ``answers`` (n, k), the least-norm t in R^d with u_a . t = 1 for its k answers; (n, d).

    The Hebbian sum of the k unembeddings gives these k logits 1 plus cross-talk; solving the k x k Gram
    system removes it, and every other answer still gets a small random logit (superposition).
    """
    rows = U[answers].double()  # (n, k, d)
    return (torch.linalg.pinv(rows) @ torch.ones(*answers.shape, 1, dtype=rows.dtype)).squeeze(-1).to(U)  # (n, d)


def attention_only(task: TaskConfig, table: torch.Tensor, model_cfg: ModelConfig,
                   cfg: ConstructionConfig = ConstructionConfig()) -> OneLayerTransformer:
    """Theorem 3's construction (chapter 4): attention selects s and r, W_O W_V stores the facts; MLP off.

    Targets: subject s writes a vector with logit ``scale`` on each of its R answers a*(s, .), relation r one
    with logit ``scale`` on each answer of A_r; a*(s, r) collects both votes, every other answer at most one.
    """
    table = check_table(task, table)
    _check_model(task, model_cfg)
    model = OneLayerTransformer(model_cfg)
    U = model.U  # (R D, d)
    targets = torch.zeros(task.vocab_size, model_cfg.d, dtype=U.dtype)  # (V, d)
    targets[:task.S] = _own_answer_targets(U, table.cpu())  # (S, d): votes for the R answers of s
    targets[task.S:task.S + task.R] = _own_answer_targets(U, torch.arange(task.num_answers).reshape(task.R, task.D))
    heads = assign_heads(task, model_cfg.H)
    _set_key_query(model, heads, cfg)
    _set_values(model, heads, cfg.scale * targets, cfg.generator())
    return model


def code_blocks(d: int, subject_share: float = 0.5) -> tuple[slice, slice]:
    """Residual coordinates of the subject codes and of the relation codes (attention + MLP construction)."""
    d = check_int("d", d, 2)
    subject_share = check_float("subject_share", subject_share, 0.0, 1.0, low_open=True)
    k1 = min(max(1, round(subject_share * d)), d - 1)
    return slice(0, k1), slice(k1, d)


def attention_mlp(task: TaskConfig, table: torch.Tensor, model_cfg: ModelConfig,
                  cfg: ConstructionConfig = ConstructionConfig()) -> OneLayerTransformer:
    """Theorem 4's construction (chapter 4): attention copies codes of s and r, the MLP stores the facts.

    Needs d >= 2 and m >= k + 2 (m // (k + 2) features of k + 2 ReLUs each, k = ``cfg.feature_degree``;
    leftover neurons stay zero).
    """
    table = check_table(task, table)
    _check_model(task, model_cfg)
    if model_cfg.d < 2 or model_cfg.m < cfg.feature_degree + 2:
        raise ValueError(f"attention_mlp needs d >= 2 and m >= feature_degree + 2 = {cfg.feature_degree + 2}; "
                         f"got d={model_cfg.d}, m={model_cfg.m}")
    gen = cfg.generator()
    model = OneLayerTransformer(model_cfg)
    E, U, d = model.E, model.U, model_cfg.d
    sub, rel = code_blocks(d, cfg.subject_share)
    k1, k2 = sub.stop - sub.start, rel.stop - rel.start

    # attention: subject s writes a unit code in the subject block, relation r one in the relation block
    targets = torch.zeros(task.vocab_size, d, dtype=E.dtype)  # (V, d)
    targets[:task.S, sub] = random_codes(task.S, k1, gen).to(E)  # (S, k1)
    targets[task.S:task.S + task.R, rel] = random_codes(task.R, k2, gen).to(E)  # (R, k2)
    heads = assign_heads(task, model_cfg.H)
    _set_key_query(model, heads, cfg)
    _set_values(model, heads, cfg.code_scale * targets, gen)

    # MLP: the multi-input memory (memory.multi_input_memory) on the attention output x(s, r) of the clean
    # prompt (s, r, EOS), read as x / (code_scale sqrt 2), about (c_s + c_r) / sqrt 2; feature j is
    # g_k(w_j . x') = sum_i gamma_i (relu(w_j . x' - b_i) + relu(-w_j . x' - b_i)): k + 2 ReLU neurons
    s, r = all_pairs(task)  # (S R,), (S R,)
    clean = torch.stack([s, task.relation_token(r), torch.full_like(s, task.eos)], dim=1)  # (S R, 3)
    with torch.no_grad():
        x = model.attention(E[clean])[0].double() / (cfg.code_scale * 2**0.5)  # (S R, d)
    X, U64 = x.reshape(task.S, task.R, d), U.double()  # (S, R, d), (A, d)
    k = cfg.feature_degree
    n_feat = model_cfg.m // (k + 2)
    W1m, W2m = multi_input_memory(X, U64, table.cpu(), n_feat, 2**32 + cfg.seed, act=f"relu-deg{k}")  # (m', d), (d, m')
    offsets, gamma = hermite_free_relu(k)  # (k/2 + 1,) each
    rows = W1m / (cfg.code_scale * 2**0.5)  # (m', d): reads the residual, whose EOS part b1 cancels
    W1 = torch.stack([rows, -rows], dim=1)[:, :, None].expand(-1, -1, len(offsets), -1)  # (m', 2, k/2 + 1, d)
    bias = -(W1 @ E[-1].double()) - offsets  # (m', 2, k/2 + 1)
    W2 = cfg.scale * W2m[:, :, None, None] * gamma  # (d, m', 1, k/2 + 1): mean right score ``scale``
    used = n_feat * (k + 2)
    model.W1.data[:used] = W1.reshape(used, d).to(E)
    model.b1.data[:used] = bias.reshape(used).to(E)
    model.W2.data[:, :used] = W2.expand(-1, -1, 2, -1).reshape(d, used).to(E)
    return model


def _check_model(task: TaskConfig, model_cfg: ModelConfig) -> None:
    if model_cfg.vocab_size != task.vocab_size or model_cfg.num_answers != task.num_answers:
        raise ValueError("model_cfg must fit the task: use ModelConfig.for_task(task, ...); got vocab_size "
                         f"{model_cfg.vocab_size} (task {task.vocab_size}), num_answers {model_cfg.num_answers} "
                         f"(task {task.num_answers})")


def worst_case_margins(model: OneLayerTransformer, task: TaskConfig, table: torch.Tensor,
                       chunk: int = 64) -> torch.Tensor:
    """A lower bound, over every prompt of each pair, on logit(a*(s, r)) - max other logit; (S, R).

    For attention-only models (MLP weights zero). The model has no positional embeddings, so a prompt is the
    multiset {s, r, EOS} plus T - 3 noise tokens. For one head and one wrong answer y, the head's contribution
    to the margin is a ratio (A + sum_i a_{n_i}) / (B + sum_i b_{n_i}) over the noise tokens n_i, which is
    smallest when all T - 3 noise tokens equal the same worst one; summing the per-head minima gives a bound
    that holds for every prompt (exact when H = 1). A pair whose bound is > 0 is right on every prompt.
    """
    table = check_table(task, table)
    if model.cfg.m and bool((model.W2 != 0).any()):
        raise ValueError("worst_case_margins covers attention-only models; this model's MLP is not zero")
    k = task.T - 3
    with torch.no_grad():
        E, U = model.E.double(), model.U.double()
        W_Q, W_K, W_V, W_O = (p.detach().double() for p in (model.W_Q, model.W_K, model.W_V, model.W_O))
        q = torch.einsum("d,hde->he", E[task.eos], W_Q)  # (H, d_h)
        scores = torch.einsum("he,vd,hde->hv", q, E, W_K) / model.cfg.d_h ** 0.5  # (H, V)
        values = torch.einsum("vd,hde,hef,af->hva", E, W_V, W_O, U)  # (H, V, A): logits of each value
        base = E[task.eos] @ U.T  # (A,): the residual's fixed logits
        noise = torch.arange(task.noise_offset, task.eos)  # (n_noise,)
        s_all, r_all = all_pairs(task)
        out = torch.empty(task.num_facts, dtype=E.dtype)
        for start in range(0, task.num_facts, chunk):
            s, r = s_all[start:start + chunk], r_all[start:start + chunk]  # (P,)
            right = table.cpu()[s, r].to(E.device)  # (P,)
            fixed = torch.stack([s, task.relation_token(r), torch.full_like(s, task.eos)], dim=1).to(E.device)  # (P, 3)
            P = len(s)
            # weights relative to the largest of s, r, EOS (so B >= 1; float64, exponents capped: no overflow)
            top = scores[:, fixed].amax(dim=2, keepdim=True)  # (H, P, 1)
            w_fixed = torch.exp(scores[:, fixed] - top)  # (H, P, 3)
            v_fixed = values[:, fixed]  # (H, P, 3, A)
            gap_fixed = v_fixed.gather(3, right[None, :, None, None].expand(len(q), -1, 3, 1)) - v_fixed  # (H, P, 3, A)
            A = (w_fixed[..., None] * gap_fixed).sum(dim=2)  # (H, P, A)
            B = w_fixed.sum(dim=2)[..., None]  # (H, P, 1)
            v_noise = values[:, noise]  # (H, n_noise, A)
            gap_noise = v_noise[:, :, right].permute(0, 2, 1)[..., None] - v_noise[:, None]  # (H, P, n_noise, A)
            w_noise = k * torch.exp((scores[:, None, noise] - top).clamp(max=700.0))[..., None]  # (H, P, n_noise, 1)
            worst = ((A[:, :, None] + w_noise * gap_noise) / (B[:, :, None] + w_noise)).amin(dim=2).sum(dim=0)  # (P, A)
            margin = (base[right][:, None] - base[None, :]) + worst  # (P, A)
            margin[torch.arange(P), right] = float("inf")
            out[start:start + chunk] = margin.amin(dim=1).cpu()
    return out.reshape(task.S, task.R)


def certified_population(model: OneLayerTransformer, task: TaskConfig, table: torch.Tensor) -> PopulationResult:
    """Population result from ``worst_case_margins``: a pair counts as right only if its bound is > 0.

    Covers every (s, r) and every placement and choice of noise tokens; method "worst-case margin".
    """
    certified = (worst_case_margins(model, task, table) > 0).double()  # (S, R)
    return PopulationResult(pair_accuracy=certified, accuracy=float((pair_probabilities(task) * certified).sum()),
                            worst_pair=float(certified.min()), all_correct=bool(certified.all()), repeats=0,
                            method="worst-case margin")


def verify(model: OneLayerTransformer, task: TaskConfig, table: torch.Tensor, repeats: int = 8,
           seed: int = 0) -> PopulationResult:
    """Accuracy on every (s, r) pair (chapter 4): the worst-case certificate for attention-only models, else
    ``repeats`` sampled prompts per pair. The result's ``method`` says which was used."""
    if model.cfg.m == 0 or not bool((model.W2 != 0).any()):
        return certified_population(model, task, table)
    return evaluate_population(model, task, table, repeats=repeats, seed=seed, device=model.E.device)


def clean_population(model: OneLayerTransformer, task: TaskConfig, table: torch.Tensor) -> PopulationResult:
    """Accuracy on the S R clean prompts (s, r, EOS), no noise tokens (chapter 4, method "clean").

    These are the inputs x-bar(s, r) of thm-attention-mlp: a positive clean margin on every pair is what the
    theorem asks of the MLP, and large beta then carries it to every prompt.
    """
    table = check_table(task, table)
    s, r = all_pairs(task)  # (S R,), (S R,)
    tokens = torch.stack([s, task.relation_token(r), torch.full_like(s, task.eos)], dim=1)  # (S R, 3)
    with torch.no_grad():
        hit = (model(tokens.to(model.E.device)).argmax(dim=1).cpu() == table.cpu()[s, r]).double()  # (S R,)
    pair_accuracy = hit.reshape(task.S, task.R)  # (S, R)
    return PopulationResult(pair_accuracy=pair_accuracy, accuracy=float((pair_probabilities(task) * pair_accuracy).sum()),
                            worst_pair=float(pair_accuracy.min()), all_correct=bool(pair_accuracy.all()), repeats=1,
                            method="clean")


CONSTRUCTIONS = {"attention_only": attention_only, "attention_mlp": attention_mlp}


def smallest_size(task: TaskConfig, table: torch.Tensor, construction: str, base: ModelConfig, size: str,
                  low: int, high: int, cfg: ConstructionConfig = ConstructionConfig(), repeats: int = 8,
                  guess: int | None = None, clean: bool = False) -> tuple[int, dict[int, bool]]:
    """Smallest value of ``size`` ("d", "H", "d_h" or "m") in [low, high] at which ``construction`` is right on
    every pair (``verify``; with ``clean``, on the S R clean prompts of ``clean_population``), the other sizes as
    in ``base``; assumes success is monotone in the size.

    Returns (smallest, tried): tried maps each value tested to its outcome; smallest is high + 1 if even
    ``high`` fails. Embeddings are redrawn for each d (same seed), so d is the least clean of the four.
    """
    build = CONSTRUCTIONS[check_choice("construction", construction, CONSTRUCTIONS)]
    check_choice("size", size, ("d", "H", "d_h", "m"))

    def fails(n: int) -> bool:
        model = build(task, table, replace(base, **{size: n}), cfg)
        if clean:
            return not clean_population(model, task, table).all_correct
        return not verify(model, task, table, repeats=repeats).all_correct

    last_failure, tried = find_capacity(fails, low, high, guess=guess)
    return last_failure + 1, {n: not failed for n, failed in tried.items()}


def _check_task(task) -> None:
    if not isinstance(task, TaskConfig):
        raise ArgumentTypeError(f"task must be a factlib.task.TaskConfig, got {type(task).__name__}")


def predicted_max_head_load(task: TaskConfig, d: int, H: int, sink: float = ConstructionConfig.sink) -> float:
    """Largest head load n the key-query memories tolerate (chapter 4, eq. "selection condition").

    A foreign token scores k_h . e_z ~ N(0, (n + sink^2) / d); the head must rank all of them below EOS's
    sink, over about H V comparisons: sink >= sqrt(2 ln(H V) (n + sink^2) / d).
    """
    _check_task(task)
    d, H = check_int("d", d, 1), check_int("H", H, 1)
    sink = check_float("sink", sink, 0.0, low_open=True)
    return d * sink ** 2 / (2 * math.log(H * task.vocab_size)) - sink ** 2


def predicted_min_d(task: TaskConfig, H: int | None = None, sink: float = ConstructionConfig.sink) -> float:
    """Smallest d at which the attention-only construction is predicted to work (chapter 4).

    Output condition (eq. "output condition"): a subject's vote gives a foreign answer ~ N(0, R / d) over about
    S R D cases, a relation's vote ~ N(0, D / d) over R^2 D cases, and both must stay below the margin 1.
    With H given, also the selection condition for the head load n of ``assign_heads``:
    d >= 2 ln(H V) (n + sink^2) / sink^2 (``predicted_max_head_load`` solved for d).
    """
    _check_task(task)
    H = None if H is None else check_int("H", H, 1)
    sink = check_float("sink", sink, 0.0, low_open=True)
    d = max(2 * task.R * math.log(task.S * task.R * task.D), 2 * task.D * math.log(task.R ** 2 * task.D))
    if H is not None:
        d = max(d, 2 * math.log(H * task.vocab_size) * (head_load(task, H) + sink ** 2) / sink ** 2)
    return d


@functools.cache
def overlap_slope(k: int) -> float:
    """kappa_k'(1/2) / 2: how much the kernel of two pairs sharing r moves per unit overlap c_s . c_s' of their
    subject codes (chapter 4); kappa_k(rho) = sum_j a_j^2 rho^j from ``memory.hermite_free_coefficients``."""
    a2 = hermite_free_coefficients(k) ** 2  # (41,)
    j = torch.arange(len(a2), dtype=a2.dtype)  # (41,)
    return float((a2 * j * 0.5 ** (j - 1)).sum()) / 2


def predicted_min_features(task: TaskConfig, d: int, cfg: ConstructionConfig = ConstructionConfig()) -> float:
    """Features m' the multi-input MLP memory needs (chapter 4, eq. "MLP condition"); m = (k + 2) m' neurons.

    A threshold estimate, no proof: with outputs centred over the subjects the right answer scores about
    1 - 1/D and a wrong one about 0 or less, a gap g = 1 - 1/D (1 when D = 1). At finite m' the kernel's
    fluctuations add noise of variance about 2 (S / D + S R / d) / m' (the S / D pairs that share the relation
    and an answer, then every pair with weight 1 / d). When the S subject codes outnumber the k1 coordinates
    of their block they overlap, and the S / D pairs sharing r and an answer leak c_s . c_s' through the
    kernel's slope: a variance 2 (S / D) ``overlap_slope(k)``^2 / k1 that no m' removes. Setting the Gaussian
    tail of the gap, over the S R^2 D comparisons, to about one expected failure gives
    m' = 2 (S / D + S R / d) / (g^2 / (2 ln(S R^2 D)) - floor); inf when the floor leaves no room.
    """
    _check_task(task)
    d = check_int("d", d, 2)
    if not isinstance(cfg, ConstructionConfig):
        raise ArgumentTypeError(f"cfg must be a ConstructionConfig, got {type(cfg).__name__}")
    sub, _ = code_blocks(d, cfg.subject_share)
    k1 = sub.stop - sub.start
    gap = 1 - 1 / task.D if task.D > 1 else 1.0
    events = 2 * math.log(task.S * task.R ** 2 * task.D)
    floor = 2 * task.S / task.D * overlap_slope(cfg.feature_degree) ** 2 / k1 if task.S > k1 else 0.0
    room = gap ** 2 / events - floor
    return 2 * (task.S / task.D + task.num_facts / d) / room if room > 0 else math.inf


def predicted_min_width(task: TaskConfig, d: int, cfg: ConstructionConfig = ConstructionConfig()) -> float:
    """MLP width m = (k + 2) ceil(m') of the attention + MLP construction, m' from ``predicted_min_features``;
    inf when no width suffices."""
    features = predicted_min_features(task, d, cfg)
    return (cfg.feature_degree + 2) * math.ceil(features) if math.isfinite(features) else math.inf
