"""The chapters' explorers. Each calls the same factlib functions as the chapter text, so what the reader sees
live is what the book computes. Each is an :class:`~factlib.explorer.Explorer`: live in a kernel, and in the HTML
book a set of precomputed states on the grid it names (see factlib/explorer.py)."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from .embeddings import memory_embeddings
from .explorer import Explorer
from .memory import hebbian_accuracy_prediction, hebbian_memory, low_rank_memory, margins
from .plots import COLORS, PHONE_MAX_WIDTH, figure

#: width of an explorer's figures (inches): on a phone they keep 8 pt text legible (factlib/explorer.py)
EXPLORER_WIDTH = PHONE_MAX_WIDTH


def _margin_histograms(ax, series, xlabel: str, title: str, title_size: float | None = None) -> None:
    """Overlaid histograms of per-input margins (label, margins (N,)), each labelled with its accuracy (the
    fraction of margins above zero), and the line at zero where recall flips."""
    for (label, gap), color in zip(series, COLORS):
        acc = (gap > 0).float().mean().item()
        ax.hist(gap.numpy(), bins=40, alpha=0.55, color=color, label=f"{label}: accuracy {acc:.3f}")
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of inputs")
    ax.set_title(title, fontsize=title_size)
    ax.legend(loc="upper left", fontsize=8)


def memory_explorer(d: int = 32, N: int = 200, rank: int = 32, seed: int = 0) -> Explorer:
    """Chapter 1: recall accuracy and margin histogram of the Hebbian memory (full and rank-m) for f*(x) = x."""
    sliders = {
        "d": w.IntSlider(value=d, min=4, max=128, step=1, description="d", continuous_update=False),
        "N": w.IntSlider(value=N, min=2, max=2000, step=1, description="N", continuous_update=False),
        "rank": w.IntSlider(value=rank, min=1, max=128, step=1, description="rank m", continuous_update=False),
        "seed": w.IntSlider(value=seed, min=0, max=20, step=1, description="seed", continuous_update=False),
    }

    def draw(v: dict):
        d, N, seed = v["d"], v["N"], v["seed"]
        rank = min(v["rank"], d)
        E, U = memory_embeddings(N, N, d, seed)  # (N, d), (N, d)
        targets = torch.arange(N)
        W_full = hebbian_memory(E, U, targets)  # (d, d)
        W_low = low_rank_memory(E, U, targets, rank, seed + 1)  # (d, d), rank <= m
        fig, ax = figure(width=EXPLORER_WIDTH, height=3.0)
        _margin_histograms(ax, [(f"full (rank {d})", margins(W_full, E, U, targets)),
                                (f"rank {rank}", margins(W_low, E, U, targets))],
                           "margin: right score minus best wrong score",
                           f"d={d}, N={N}: predicted accuracy (full) {hebbian_accuracy_prediction(N, d):.3f}",
                           title_size=9)
        return [fig], None

    return Explorer(sliders, draw, rows=[["d", "N"], ["rank", "seed"]],
                    grid={"d": (16, 32, 64), "N": (50, 200, 800), "rank": (4, 8, 32)})


# ---- chapter 3: the factual recall task ------------------------------------------------------------------------

TOKEN_COLORS = {"subject": COLORS[0], "relation": COLORS[1], "noise": "#BBBBBB", "EOS": "#333333", "answer": COLORS[2]}


def draw_prompt(ax, task, tokens: torch.Tensor, answer: int, y: float = 0.0, label: str | None = None) -> None:
    """Draw one prompt (T,) as a row of coloured boxes at height y, then an arrow to its answer (chapter 3)."""
    from .task import answer_name, token_names

    names = token_names(task, tokens)
    kinds = ["subject" if t < task.S else "relation" if t < task.noise_offset else "noise" if t < task.eos else "EOS"
             for t in tokens.tolist()]
    for i, (name, kind) in enumerate(zip(names, kinds)):
        ax.add_patch(plt.Rectangle((i, y), 0.92, 0.8, color=TOKEN_COLORS[kind], alpha=0.9 if kind != "noise" else 0.5))
        ax.text(i + 0.46, y + 0.4, name, ha="center", va="center", fontsize=8,
                color="white" if kind in ("subject", "relation", "EOS") else "black")
    T = len(names)
    ax.annotate("", xy=(T + 0.6, y + 0.4), xytext=(T, y + 0.4), arrowprops={"arrowstyle": "->", "lw": 1.2})
    ax.add_patch(plt.Rectangle((T + 0.7, y), 1.4, 0.8, color=TOKEN_COLORS["answer"]))
    ax.text(T + 1.4, y + 0.4, answer_name(task, answer), ha="center", va="center", fontsize=8, color="white")
    if label:
        ax.text(-0.3, y + 0.4, label, ha="right", va="center", fontsize=8)


def draw_prompts(task, tokens: torch.Tensor, answers: torch.Tensor, title: str = "", width: float | None = None):
    """Figure with one row per prompt (B, T) and its answer; returns (fig, ax). ``width`` in inches (default:
    wide enough for T tokens)."""
    B, T = tokens.shape
    fig, ax = figure(width=width or max(5.0, 0.32 * (T + 4)), height=0.45 * B + 0.9)
    for b in range(B):
        draw_prompt(ax, task, tokens[b], int(answers[b]), y=B - 1 - b, label=f"prompt {b + 1}")
    ax.set_xlim(-2.2, T + 2.3)
    ax.set_ylim(-0.3, B + 0.1)
    ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in TOKEN_COLORS.values()]
    ax.legend(handles, list(TOKEN_COLORS), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=5, fontsize=8)
    if title:
        ax.set_title(title)
    return fig, ax


def prompt_explorer(S: int = 8, R: int = 3, D: int = 4, T: int = 12, seed: int = 0) -> Explorer:
    """Chapter 3: sample prompts of the factual recall task and show each with its answer and the fact table."""
    from .task import TaskConfig, fact_table, information_bits, sample_batch

    sliders = {
        "S": w.IntSlider(value=S, min=1, max=24, description="S", continuous_update=False),
        "R": w.IntSlider(value=R, min=1, max=6, description="R", continuous_update=False),
        "D": w.IntSlider(value=D, min=1, max=8, description="D", continuous_update=False),
        "T": w.IntSlider(value=T, min=3, max=20, description="T", continuous_update=False),
        "subjects": w.Dropdown(options=["uniform", "zipf"], value="uniform", description="p(s)"),
        "seed": w.IntSlider(value=seed, min=0, max=20, description="seed", continuous_update=False),
    }

    def draw(v: dict):
        S, R, D, T, subjects, seed = (v[k] for k in sliders)
        task = TaskConfig(S=S, R=R, D=D, T=T, subjects=subjects)
        table = fact_table(task, seed)  # (S, R)
        tokens, answers, s, r = sample_batch(task, table, 4, seed + 1)  # (4, T), (4,), (4,), (4,)
        fig, ax = draw_prompts(task, tokens, answers, width=EXPLORER_WIDTH,
                               title=f"S={S}, R={R}, D={D}: {task.num_facts} facts, {information_bits(task):.0f} bits")
        ax.title.set_fontsize(9)
        prompts = fig
        fig, ax = figure(width=EXPLORER_WIDTH, height=1.3 + 0.3 * R)
        ax.imshow((table % D).T.numpy(), cmap="viridis", vmin=0, vmax=max(D - 1, 1), aspect="auto")
        ax.scatter(s.numpy(), r.numpy(), marker="s", s=60, facecolors="none", edgecolors="red", label="sampled")
        ax.set_xlabel("subject s")
        ax.set_ylabel("relation r")
        ax.set_title("fact table: index of a*(s, r) in A_r", fontsize=9)
        ax.grid(False)
        ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.01, 1.0))
        return [prompts, fig], None

    return Explorer(sliders, draw, rows=[["S", "R", "D"], ["T", "subjects", "seed"]],
                    grid={"S": (4, 8, 16), "R": (1, 3, 6), "T": (6, 12)})


# ---- chapter 4: the constructions --------------------------------------------------------------------------------

def draw_constructions():
    """Schematic of the two constructions (the paper's Figure 3, redrawn): where the facts are stored."""
    fig, axes = figure(ncols=2, width=3.8, height=4.0)

    def box(ax, x, y, w_, h, text, color, text_color="white"):
        ax.add_patch(plt.Rectangle((x, y), w_, h, color=color, alpha=0.9))
        ax.text(x + w_ / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5, color=text_color)

    def arrow(ax, x0, y0, x1, y1, text=""):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "lw": 1.1})
        if text:
            ax.text((x0 + x1) / 2 + 0.05, (y0 + y1) / 2, text, fontsize=8, ha="left", va="center")

    for ax, title, facts_in_mlp in [(axes[0], "attention only (Theorem 3)", False),
                                    (axes[1], "attention + MLP (Theorem 4)", True)]:
        for i, (name, kind) in enumerate([("n", "noise"), ("s", "subject"), ("n", "noise"), ("r", "relation"),
                                          ("n", "noise"), ("EOS", "EOS")]):
            box(ax, 0.1 + 0.62 * i, 0.1, 0.52, 0.45, name, TOKEN_COLORS[kind],
                "black" if kind == "noise" else "white")
        box(ax, 0.1, 1.15, 1.6, 0.6, "subject heads\nK-Q memory: s", COLORS[0])
        box(ax, 1.95, 1.15, 1.6, 0.6, "relation heads\nK-Q memory: r", COLORS[1])
        arrow(ax, 0.85, 0.58, 0.9, 1.13)
        arrow(ax, 2.1, 0.58, 2.7, 1.13)
        arrow(ax, 3.45, 0.58, 3.3, 1.13, "query")
        if facts_in_mlp:
            box(ax, 0.1, 2.15, 3.45, 0.55, "$W_O W_V$: copy codes of s and r", "#888888")
            box(ax, 0.1, 3.05, 3.45, 0.7, "MLP: random features of the pair (s, r)\n$W_2$ = memory of the $S R$ facts",
                COLORS[3])
            arrow(ax, 1.8, 2.72, 1.8, 3.03)
            arrow(ax, 1.8, 3.77, 1.8, 4.1)
        else:
            box(ax, 0.1, 2.15, 3.45, 0.9, "$W_O W_V$: memory of the facts\ns -> votes for its R answers\n"
                "r -> votes for its answer set A_r", COLORS[3])
            arrow(ax, 1.8, 3.07, 1.8, 4.1)
        arrow(ax, 0.9, 1.77, 0.9, 2.13)
        arrow(ax, 2.75, 1.77, 2.75, 2.13)
        box(ax, 0.1, 4.12, 3.45, 0.45, "logits $u_a^\\top h$: $a^*(s, r)$ wins", COLORS[2])
        ax.set_xlim(0, 3.7)
        ax.set_ylim(0, 4.7)
        ax.axis("off")
        ax.set_title(title)
    return fig, axes


def construction_explorer(construction: str = "attention_mlp", S: int = 16, R: int = 4, D: int = 4, d: int = 64,
                          H: int = 16, d_h: int = 4, m: int = 4096) -> Explorer:
    """Chapter 4: build a construction at the chosen sizes; show its accuracy on every pair, its parameter
    count and the accuracy of each block's logits alone (which block holds the facts). The MLP width m is used
    by the attention + MLP construction only: the control is off for the attention-only one."""
    from .constructions import attention_mlp, attention_only, head_load, predicted_min_width, verify
    from .models import ModelConfig, block_logits, parameter_count
    from .task import TaskConfig, fact_table, sample_batch

    sliders = {
        "construction": w.Dropdown(options=["attention_only", "attention_mlp"], value=construction,
                                   description="construction"),
        "S": w.IntSlider(value=S, min=2, max=64, description="S", continuous_update=False),
        "R": w.IntSlider(value=R, min=1, max=16, description="R", continuous_update=False),
        "D": w.IntSlider(value=D, min=2, max=16, description="D", continuous_update=False),
        "d": w.IntSlider(value=d, min=8, max=256, step=8, description="d", continuous_update=False),
        "H": w.IntSlider(value=H, min=1, max=64, description="H", continuous_update=False),
        "d_h": w.IntSlider(value=d_h, min=1, max=32, description="d_h", continuous_update=False),
        "m": w.IntSlider(value=m, min=4, max=4096, step=4, description="m", continuous_update=False),
    }

    def draw(v: dict):
        construction, S, R, D, d, H, d_h, m = (v[k] for k in sliders)
        task = TaskConfig(S=S, R=R, D=D)
        table = fact_table(task, 0)  # (S, R)
        cfg = ModelConfig.for_task(task, d=d, H=H, d_h=d_h, m=m if construction == "attention_mlp" else 0)
        model = (attention_only if construction == "attention_only" else attention_mlp)(task, table, cfg)
        result = verify(model, task, table, repeats=4)
        tokens, answers, *_ = sample_batch(task, table, 1024, 1)  # (B, T), (B,)
        with torch.no_grad():
            parts = block_logits(model, tokens)  # name -> (B, R D)
        block_acc = {name: (logits.argmax(1) == answers).float().mean().item() for name, logits in parts.items()}
        count = parameter_count(cfg)
        accuracy, ax = figure(width=3.6, height=2.8)
        ax.bar(list(block_acc), list(block_acc.values()), color=[COLORS[7], COLORS[0], COLORS[3]])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy of that block's logits alone")
        ax.set_title(f"all blocks: {result.accuracy:.3f} ({result.method})", fontsize=9)
        params, ax = figure(width=3.6, height=2.8)
        ax.bar(["attention", "MLP"], [count["attention"], count["mlp"]], color=[COLORS[0], COLORS[3]])
        ax.set_ylabel("parameters")
        ax.set_title(f"{count['total']} parameters for {task.num_facts} facts", fontsize=9)
        lines = [f"head load {head_load(task, H)} tokens; every pair right: {result.all_correct}"]
        if construction == "attention_only":
            lines.append("The attention-only construction has no MLP (m = 0): the MLP width m changes nothing here.")
        else:
            # eq-mlp-condition assumes the right answer's gap 1 - 1/D; a relation that gives one answer to a share p
            # of its subjects leaves that answer's pairs a gap of only about 1 - p
            share = max((table[:, r] == a).float().mean().item() for r in range(R) for a in table[:, r].unique())
            lines.append(f"MLP threshold (eq-mlp-condition) m = {predicted_min_width(task, d):.0f}; it assumes a gap "
                         f"1 - 1/D = {1 - 1 / D:.2f}, and here one relation gives one answer to {share:.0%} of the "
                         f"subjects (gap about {1 - share:.2f})")
        return [accuracy, params], "\n".join(lines)

    return Explorer(sliders, draw, rows=[["construction", "S", "R", "D"], ["d", "H", "d_h", "m"]],
                    grid={"construction": ("attention_only", "attention_mlp"), "S": (8, 16, 32), "R": (2, 4, 8),
                          "m": (1024, 4096)},
                    unused=lambda v: {"m"} if v["construction"] == "attention_only" else set())


def draw_losses(ax, steps, total, relation, subject, R: int, D: int, style: str = "-", label: str = "",
                alpha: float = 1.0) -> None:
    """Chapter 6: the three losses of Figure 5 on ``ax``, with dashed guides at log(R D) and log D."""
    import math

    for y in (math.log(R * D), math.log(D)):
        ax.axhline(y, color="gray", ls="--", lw=0.8)
    for values, name, color in [(total, "total", COLORS[3]), (relation, "relation-only", COLORS[1]),
                                (subject, "subject-only", COLORS[0])]:
        ax.plot(steps, values, style, color=color, alpha=alpha, label=f"{name}{label}")
    ax.set_xlabel("steps of gradient descent")
    ax.set_ylabel("cross-entropy loss (nats)")


def sequential_learning_explorer(S: int = 16, R: int = 4, D: int = 8, lr: float = 0.1, init_scale: float = 1e-5,
                                 steps: int = 8192) -> Explorer:
    """Chapter 6: exact-gradient training of the linear-attention model; detected stages and predicted escapes."""
    import math

    from .dynamics import DynamicsConfig, predicted_escape_steps, train
    from .stages import describe, find_stages

    sliders = {
        "S": w.IntSlider(value=S, min=2, max=64, description="S", continuous_update=False),
        "R": w.IntSlider(value=R, min=2, max=16, description="R", continuous_update=False),
        "D": w.IntSlider(value=D, min=2, max=16, description="D", continuous_update=False),
        "lr": w.FloatLogSlider(value=lr, base=10, min=-2, max=0.5, step=0.1, description="lr",
                               continuous_update=False),
        "init_scale": w.FloatLogSlider(value=init_scale, base=10, min=-9, max=-0.5, step=0.5, description="init",
                                       continuous_update=False),
        "steps": w.IntSlider(value=steps, min=1024, max=16384, step=1024, description="steps",
                             continuous_update=False),
    }

    def draw(v: dict):
        S, R, D, lr, init_scale, steps = (v[k] for k in sliders)
        cfg = DynamicsConfig(S=S, R=R, D=D, lr=lr, init_scale=init_scale, steps=steps, eval_every=steps // 128)
        curve = train(cfg, "population")
        stages = find_stages(curve.steps, curve.total_loss, floor=0.0)
        fig, ax = figure(width=EXPLORER_WIDTH, height=3.4)
        draw_losses(ax, curve.steps, curve.total_loss, curve.relation_loss, curve.subject_loss, R, D)
        ax.axhline(math.log(R), color="gray", ls=":", lw=0.8)
        for e in stages.escapes:
            if e is not None:
                ax.axvline(e, color="black", lw=0.8, alpha=0.6)
        note = "theory needs D | S"
        if S % D == 0:
            predicted = predicted_escape_steps(cfg)
            for step in predicted.values():
                if step is not None:
                    ax.axvline(step, color="black", ls=":", lw=1.2)
            note = "predicted escapes: " + ", ".join(
                f"{k} {'never' if v is None else f'{v:.0f}'}" for k, v in predicted.items())
        ax.set_title(f"S={S}, R={R}, D={D}, lr={lr:.3g}, init={init_scale:.1e}", fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
        return [fig], describe(stages, R, D) + "\n" + note + " (dotted lines; solid lines: detected escapes)"

    return Explorer(sliders, draw, rows=[["S", "R", "D"], ["lr", "init_scale", "steps"]],
                    grid={"S": (4, 16), "R": (4, 16), "D": (4, 8), "init_scale": (1e-9, 1e-5, 1e-2)})


def tradeoff_explorer(cells: dict, facts: int, H: int | None = None, m: int | None = None) -> Explorer:
    """Chapter 5: a small (H, m) grid of trained models, from cached results: ``cells`` maps (H, m) to a dict with
    "accuracy", "params", "curve" ([(step, accuracy), ...]) and "blocks" ({"attention": acc, "mlp": acc}: the
    accuracy of each block's logits alone). Shows the grid's final accuracies with the chosen cell outlined, its
    training curve among the others, and which block answers; no training happens when a slider moves."""
    import numpy as np

    Hs, ms = sorted({h for h, _ in cells}), sorted({k for _, k in cells})
    sliders = {
        "H": w.SelectionSlider(options=Hs, value=Hs[len(Hs) // 2] if H is None else H, description="heads H",
                               continuous_update=False),
        "m": w.SelectionSlider(options=ms, value=ms[len(ms) // 2] if m is None else m, description="MLP width m",
                               continuous_update=False),
    }
    def draw(v: dict):
        h, k = v["H"], v["m"]
        cell = cells[(h, k)]
        figs, axes = zip(*(figure(width=2.55, height=2.9) for _ in range(3)))
        grid = np.array([[cells[(a, b)]["accuracy"] for a in Hs] for b in ms])  # (len(ms), len(Hs))
        axes[0].imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for i, b in enumerate(ms):
            for j, a in enumerate(Hs):
                axes[0].text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                             color="black" if grid[i, j] > 0.6 else "white")
        axes[0].add_patch(plt.Rectangle((Hs.index(h) - 0.5, ms.index(k) - 0.5), 1, 1, fill=False, ec=COLORS[1], lw=2.5))
        axes[0].set_xticks(range(len(Hs)), Hs)
        axes[0].set_yticks(range(len(ms)), ms)
        axes[0].set_xlabel("heads $H$")
        axes[0].set_ylabel("MLP width $m$")
        axes[0].set_title("final accuracy", fontsize=9)
        axes[0].grid(False)
        for other in cells.values():
            steps, acc = zip(*other["curve"])
            axes[1].plot(steps, acc, color="#BBBBBB", lw=0.8)
        steps, acc = zip(*cell["curve"])
        axes[1].plot(steps, acc, color=COLORS[1], lw=2)
        axes[1].axhline(0.99, color="black", ls=":", lw=0.8)
        axes[1].set_ylim(0, 1.02)
        axes[1].set_xlabel("Adam steps")
        axes[1].set_ylabel("accuracy on fresh prompts")
        axes[1].set_title(f"H = {h}, m = {k}", fontsize=9)
        names = list(cell["blocks"])
        axes[2].bar(names, [cell["blocks"][n] for n in names], color=[COLORS[0], COLORS[3]][:len(names)])
        axes[2].set_ylim(0, 1.05)
        axes[2].set_ylabel("accuracy of that block's logits alone")
        axes[2].set_title("where the facts are", fontsize=9)
        return list(figs), (f"H = {h}, m = {k}: {cell['params']} parameters for {facts} facts "
                       f"({facts / cell['params']:.3f} facts per parameter); final accuracy {cell['accuracy']:.3f}")

    return Explorer(sliders, draw, rows=[["H", "m"]], grid={"H": Hs, "m": ms})


# ---- chapter 2: MLP memories -------------------------------------------------------------------------------------

def mlp_explorer(d: int = 16, alpha: int = 2, N: int = 200, M: int = 0, seed: int = 0) -> Explorer:
    """Chapter 2: train one MLP memory of width m = alpha d on N pairs (M outputs; M = 0 means M = N, f*(x) = x)
    with the recipe of Figure 1 (right), and show its margins beside those of Theorem 2's one-step construction
    on the same first layer. Small sizes: a slider move trains for about a second on a CPU."""
    from .memory import TrainConfig, mlp_forward, random_features_memory, rf_accuracy_prediction, rf_scores, \
        score_margins, train_mlp_memory
    from .train import many_to_one_targets, mlp_init

    sliders = {
        "d": w.IntSlider(value=d, min=4, max=32, step=1, description="d", continuous_update=False),
        "alpha": w.IntSlider(value=alpha, min=1, max=8, step=1, description="alpha = m/d", continuous_update=False),
        "N": w.IntSlider(value=N, min=8, max=1000, step=1, description="N", continuous_update=False),
        "M": w.IntSlider(value=M, min=0, max=64, step=1, description="M (0: M = N)", continuous_update=False),
        "seed": w.IntSlider(value=seed, min=0, max=20, step=1, description="seed", continuous_update=False),
    }
    def draw(v: dict):
        d, alpha, N, seed = (v[k] for k in ("d", "alpha", "N", "seed"))
        M = N if v["M"] < 2 else v["M"]
        m = alpha * d
        E, U = memory_embeddings(N, M, d, seed)  # (N, d), (M, d)
        targets = many_to_one_targets(N, M)  # (N,)
        res = train_mlp_memory(E, U, targets, mlp_init(m, d, seed + 1).float(),
                               TrainConfig(lr=3e-2, steps=1024, patience=256))
        W1, W2 = random_features_memory(E, U, targets, m, seed + 1)  # (m, d), (d, m)
        trained = score_margins(mlp_forward(E, res.W1, res.b1, res.W2) @ U.T, targets)  # (N,)
        built = score_margins(rf_scores(E, U, W1, W2), targets)  # (N,)
        fig, ax = figure(width=EXPLORER_WIDTH, height=3.0)
        _margin_histograms(ax, [("trained (Adam)", trained / trained.abs().max()),
                                ("one-step construction", built / built.abs().max())],
                           "margin (right minus best wrong score), scaled to [-1, 1]",
                           f"d={d}, m={m}, N={N}, M={M}: N / (m d) = {N / (m * d):.2f}", title_size=9)
        predicted = rf_accuracy_prediction(N, d, m, None if M == N else M)
        return [fig], (f"{2 * m * d + m} trained parameters (2 m d + m) for {N} pairs; training stopped after "
                       f"{res.steps} steps at accuracy {res.accuracy:.3f}.\nConstruction: predicted accuracy "
                       f"{predicted:.3f} (Gaussian model of the chapter).")

    return Explorer(sliders, draw, rows=[["d", "alpha", "N"], ["M", "seed"]],
                    grid={"alpha": (1, 2, 4), "N": (100, 200, 400)})


# ---- chapter 7: lower bounds -----------------------------------------------------------------------------------

def bounds_explorer(S: int = 64, R: int = 16, D: int = 8, p: int = 8, accuracy: float = 1.0) -> Explorer:
    """Chapter 7: the parameters a table (S, R, D) needs at p bits per parameter and a given accuracy (Corollary 1
    and Theorem 8, as reconstructed) beside the predicted sizes of chapter 4's two constructions. Formulas only:
    a slider move costs milliseconds."""
    from .bounds import construction_parameters, fano_bits, table_bits

    sliders = {
        "S": w.IntSlider(value=S, min=2, max=512, description="S", continuous_update=False),
        "R": w.IntSlider(value=R, min=1, max=64, description="R", continuous_update=False),
        "D": w.IntSlider(value=D, min=2, max=64, description="D", continuous_update=False),
        "p": w.IntSlider(value=p, min=1, max=32, description="bits p", continuous_update=False),
        "accuracy": w.FloatSlider(value=accuracy, min=0.5, max=1.0, step=0.005, readout_format=".3f",
                                  description="accuracy", continuous_update=False),
    }
    def draw(v: dict):
        S, R, D, p, acc = (v[k] for k in sliders)
        bits = fano_bits(S, R, D, acc)
        sizes = {name: construction_parameters(S, R, D, name) for name in ("attention_only", "attention_mlp")}
        bars = {f"bound at\n{p} bits": bits / p, "bound at\n2 bits": bits / 2,
                "attention\nonly": sizes["attention_only"]["params"], "attention\n+ MLP": sizes["attention_mlp"]["params"]}
        fig, ax = figure(width=EXPLORER_WIDTH, height=2.8)
        shown = {k: v for k, v in bars.items() if 0 < v < float("inf")}
        ax.bar(list(shown), list(shown.values()), color=[COLORS[7], "#888888", COLORS[0], COLORS[3]][:len(shown)])
        ax.set_yscale("log")
        ax.set_ylabel("parameters")
        ax.set_title(f"S R = {S * R} facts, {bits:.0f} bits needed at accuracy {acc:.3f}", fontsize=9)
        lines = [f"table: {table_bits(S, R, D):.0f} bits; Theorem 8 at accuracy {acc:.3f}: {bits:.0f} bits, "
                 f"so P >= {bits / p:.0f} parameters at p = {p} bits"]
        for name, size in sizes.items():
            if size["params"] == float("inf"):
                lines.append(f"{name}: no width d <= 4096 meets the chapter 4 conditions")
                continue
            ratio = size["params"] / (bits / p) if bits > 0 else float("inf")
            lines.append(f"{name}: d = {size['d']}, H = {size['H']}, d_h = {size['d_h']}, m = {size['m']}: "
                         f"{size['params']:.3g} parameters, {ratio:.3g} x the bound")
        return [fig], "\n".join(lines)

    return Explorer(sliders, draw, rows=[["S", "R", "D"], ["p", "accuracy"]],
                    grid={"S": (16, 64, 256), "R": (4, 16, 64), "p": (2, 8), "accuracy": (0.9, 1.0)})
