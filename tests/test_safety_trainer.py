"""Bad inputs of the transformer trainer (``factlib.trainer``, ``factlib.batched``), named in the error:
``config.check_device`` names an unavailable or unknown device ("device 'cuda' was requested but this torch build has
no CUDA"), ``_validate.check_allocation`` refuses a step too large for memory from the arguments, with the bytes it
would need, and ``_validate.check_float`` refuses NaN and negative scales.
"""
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from factlib import batched, trainer
from factlib.task import TaskConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASK = TaskConfig(4, 4, 2)
RUN = trainer.Run(TASK, 8, 2, 2, 4, 1e-2)
SHORT = trainer.Protocol(steps=8, batch_size=16, eval_every=8, eval_size=16, population_repeats=0)

CASES = [
    pytest.param("train_runs cuda", lambda: trainer.train_runs([RUN], SHORT, device="cuda"), ValueError,
                 r"^device 'cuda' was requested but this torch build has no CUDA",
                 marks=pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch")),
    ("train_runs tpu", lambda: trainer.train_runs([RUN], SHORT, device="tpu"), ValueError, r"^device must"),
    ("train_runs protocol str", lambda: trainer.train_runs([RUN], "fast"), TypeError, r"^protocol must be a Protocol"),
    ("tradeoff_grid Hs empty", lambda: trainer.tradeoff_grid(TASK, 8, 2, [], [4], protocol=SHORT), ValueError,
     r"^Hs must"),
    ("tradeoff_grid ms empty", lambda: trainer.tradeoff_grid(TASK, 8, 2, [2], [], protocol=SHORT), ValueError,
     r"^ms must"),
    ("init_weights scale NaN", lambda: batched.init_weights(RUN, scale=math.nan), ValueError, r"^scale must"),
    ("init_weights scale -1", lambda: batched.init_weights(RUN, scale=-1), ValueError, r"^scale must"),
    ("init_weights scale True", lambda: batched.init_weights(RUN, scale=True), TypeError, r"^scale must"),
]


@pytest.mark.parametrize("name, call, error, message", CASES,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in CASES])
def test_trainer_bad_inputs_are_named(name, call, error, message):
    with pytest.raises(error, match=message):
        call()


SIZE_CODE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))  # a blow-up fails here instead of swapping
from factlib import trainer
from factlib.task import TaskConfig
try:
    trainer.train_runs([trainer.Run(TaskConfig(8, 8, 2, T=10**6), 8, 2, 2, 4, 1e-2)], trainer.Protocol(batch_size=4096))
except ValueError as err:
    print(err)
    sys.exit(0)
sys.exit(1)
"""


def test_a_step_too_large_for_memory_is_refused_from_its_sizes():
    """Prompts of 10^6 tokens in batches of 4096: one step's random draws alone would take 33 GB; refused at once,
    naming the sizes and the bytes. (A 10^5-token prompt in batches of 1024 takes 0.8 GB a step and is trained.)"""
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SIZE_CODE)], capture_output=True, text=True,
                              timeout=30, cwd=Path(__file__).resolve().parents[1],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("train_runs started training instead of refusing the step from its sizes")
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "T = 1000000" in proc.stdout and "32.8 GB" in proc.stdout, proc.stdout
