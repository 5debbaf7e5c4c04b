"""Chapter 9's explorer: the attention maps of a two-layer transformer on the bigram task, by sequence, layer, head
and training step (live in JupyterLab, precomputed states in the HTML book; see factlib/explorer.py)."""
from __future__ import annotations

import copy

import ipywidgets as w
import torch

from .bigram import BigramStats, BigramTask, sample_batch
from .explorer import Explorer
from .induction import InductionTransformer, TrainConfig, evaluate, train
from .plots import PHONE_MAX_WIDTH, figure


def train_with_snapshots(model: InductionTransformer, task: BigramTask, stats: BigramStats, config: TrainConfig,
                         keep: tuple[int, ...]) -> tuple[dict[int, dict], list[dict]]:
    """Train ``model`` in place (``induction.train``) and keep a copy of its weights at the steps ``keep`` (each a
    multiple of ``config.eval_every``, or 0, or the last step); returns (snapshots by step, training rows)."""
    missing = [s for s in keep if s != 0 and s != config.steps and s % config.eval_every]
    if missing:
        raise ValueError(f"keep: steps {missing} are not evaluation steps (multiples of eval_every = "
                         f"{config.eval_every}, 0 or steps = {config.steps})")
    snapshots = {}

    def measure(m, step):
        if step in keep:
            snapshots[step] = copy.deepcopy(m.state_dict())
        return {}

    rows = train(model, task, stats, config, measure=measure)
    return snapshots, rows


def attention_explorer(model: InductionTransformer, snapshots: dict[int, dict], task: BigramTask,
                       stats: BigramStats, sequences: int = 4, seed: int = 7) -> Explorer:
    """Chapter 9: the attention weights beta_ts of one layer and head on one sequence at one training step,
    with the sequence's characters on the axes and its in-context positions marked."""
    steps = sorted(snapshots)
    batch = sample_batch(task, stats, sequences, seed)
    probe = InductionTransformer(model.cfg)
    controls = {
        "sequence": w.IntSlider(value=0, min=0, max=sequences - 1, description="sequence", continuous_update=False),
        "layer": w.IntSlider(value=2, min=1, max=model.cfg.layers, description="layer", continuous_update=False),
        "head": w.IntSlider(value=0, min=0, max=model.cfg.heads - 1, description="head", continuous_update=False),
        "step": w.SelectionSlider(options=steps, value=steps[-1], description="training step",
                                  continuous_update=False),
    }

    def draw(v: dict):
        probe.load_state_dict(snapshots[v["step"]])
        b = v["sequence"]
        with torch.no_grad():
            logits, maps = probe(batch.inputs[b:b + 1], attention=True)
        beta = maps[v["layer"] - 1][0, v["head"]].numpy()  # (T, T)
        chars = [repr(c)[1:-1] if c != " " else "␣" for c in stats.decode(batch.inputs[b])]
        fig, ax = figure(width=PHONE_MAX_WIDTH, height=4.2)
        image = ax.imshow(beta, cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(chars)), chars, fontsize=8)
        ax.set_yticks(range(len(chars)), chars, fontsize=8)
        ax.grid(False)
        marked = batch.in_context[b].nonzero().flatten().tolist()
        for t in marked:
            ax.get_yticklabels()[t].set_color("#D55E00")
        ax.set_xlabel("key position s (character)")
        ax.set_ylabel("query position t (orange: in-context)")
        ax.set_title(f"layer {v['layer']}, head {v['head']}, step {v['step']}")
        fig.colorbar(image, ax=ax, shrink=0.6, location="bottom", label=r"attention weight $\beta_{ts}$")
        pred = logits[0].argmax(-1)
        hits = sum(int(pred[t] == batch.answer[b, t]) for t in marked)
        acc = evaluate(probe, batch)["in_context"]
        diag = beta.diagonal(-1).mean()
        summary = (f"this sequence: {hits} of {len(marked)} in-context outputs predicted; all {sequences} "
                   f"sequences: {acc:.2f}\nmean weight on the previous token (layer {v['layer']}, head "
                   f"{v['head']}): {diag:.2f}")
        return [fig], summary

    return Explorer(controls, draw, rows=[["sequence", "layer"], ["head", "step"]],
                    grid={"sequence": list(range(sequences)), "layer": list(range(1, model.cfg.layers + 1)),
                          "head": list(range(model.cfg.heads)), "step": steps})
