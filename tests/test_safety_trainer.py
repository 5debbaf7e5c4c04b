"""Bad inputs of the transformer trainer (``factlib.trainer``), named in the error (issue 25, item 8 and item 5).

These fail until ``trainer.py`` checks its arguments: ``config.check_device`` names an unavailable or unknown
device ("device 'cuda' was requested but this torch build has no CUDA"), ``_validate.check_allocation`` refuses a
size from the arguments with the bytes it would need, and ``_validate.check_float`` refuses NaN and negative scales.
"""
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from factlib import trainer
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
    ("init_weights scale NaN", lambda: trainer.init_weights(RUN, scale=math.nan), ValueError, r"^scale must"),
    ("init_weights scale -1", lambda: trainer.init_weights(RUN, scale=-1), ValueError, r"^scale must"),
    ("init_weights scale True", lambda: trainer.init_weights(RUN, scale=True), TypeError, r"^scale must"),
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
    trainer.train_runs([trainer.Run(TaskConfig(8, 8, 2, T=10**5), 8, 2, 2, 4, 1e-2)])
except ValueError as err:
    print(err)
    sys.exit(0)
sys.exit(1)
"""


def test_a_run_of_1e5_tokens_is_refused_from_its_sizes():
    """A 10^5-token prompt with the paper's protocol: refused at once, naming its sizes and the bytes (the
    trainer ran 84 s for a single step of it under an 8 GB cap, and for minutes with the default protocol)."""
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SIZE_CODE)], capture_output=True, text=True,
                              timeout=30, cwd=Path(__file__).resolve().parents[1],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("train_runs started training a 10^5-token run instead of refusing it from its sizes")
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "T = 100000" in proc.stdout and ("GB" in proc.stdout or "TB" in proc.stdout), proc.stdout
