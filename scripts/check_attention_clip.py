"""Retrain one run of the stored paper-protocol subset and compare the batched trainer's function with the model's.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python scripts/check_attention_clip.py     # about a minute

The run is d = 45, (alpha, beta) = (1, 1), seed 2, S = R = 32, lr 1e-2, the paper's protocol (the release's model),
which ``scripts/paper_scale.py --cpu-subset --d 45`` stored as a success after 7808 steps with only 69.6 % of its
facts right on all of eight prompts. It prints the run's outcome (the batched trainer's evaluations and the
population check on ``OneLayerTransformer``), the accuracy of the two functions on 1024 fresh prompts, their largest
logit difference, each head's spread of attention scores over the vocabulary, and the fraction of prompts in which
some head's best token scores more than 80 below that head's best over the vocabulary: where the batched forward
clips, and so computes uniform attention instead of the model's softmax.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from factlib.batched import RunGroup  # noqa: E402
from factlib.task import TaskConfig  # noqa: E402
from factlib.trainer import Protocol, Run, train_group  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)
    run = Run(TaskConfig(S=32, R=32, D=8), d=45, H=8, d_h=5, m=45, lr=1e-2, seed=2)
    protocol = Protocol()
    group = RunGroup([run], "cpu", init=protocol.init, eos_residual=protocol.eos_residual,
                     embeddings=protocol.embeddings)
    (outcome,), (model,) = train_group(group, protocol, keep_models=True)
    check = RunGroup([run], "cpu", init=protocol.init, eos_residual=protocol.eos_residual,
                     embeddings=protocol.embeddings)
    t = check.tasks
    with torch.no_grad():
        for name, value in check.weights.items():
            own = getattr(model, name)
            value[0][tuple(slice(0, size) for size in own.shape)].copy_(own)
        tokens, answers = t.sample_tokens(step=5, batch_size=1024)  # (1, B, T), (1, B)
        batched = check.forward_tokens(tokens)[0]  # (B, A)
        per_model = model(tokens[0])  # (B, A)
        W = check.weights
        q = torch.einsum("d,hde->he", t.E[0, t.eos_index], W["W_Q"][0])
        kq = torch.einsum("hde,he->hd", W["W_K"][0], q) * check.score_scale[0]
        own = t.layout(run.task)  # the run's vocabulary in the group's layout
        scores = t.E[0, own] @ kq.T  # (V, H)
        best = scores.gather(0, tokens[0].reshape(-1, 1).expand(-1, run.H)).view(*tokens[0].shape, run.H).amax(1)
        clipped = (best < scores.amax(0) - 80).any(1)  # (B,)
    print(json.dumps({
        "reached": outcome.reached, "steps": outcome.steps, "facts_exact": outcome.facts_exact,
        "population_accuracy": outcome.population_accuracy,
        "accuracy_batched": round(float((batched.argmax(1) == answers[0]).float().mean()), 4),
        "accuracy_model": round(float((per_model.argmax(1) == answers[0]).float().mean()), 4),
        "max_logit_difference": round(float((batched - per_model).abs().max()), 3),
        "score_spread_per_head": [round(float(x), 1) for x in scores.amax(0) - scores.amin(0)],
        "prompts_clipped": round(float(clipped.float().mean()), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
