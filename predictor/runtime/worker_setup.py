"""What a model's engine worker thread does once, before its first batch.

1. Take the CPUs for torch on this thread (runtime/threads.py: why not on the main thread).
2. On CPU, unless ``--sub_batches off``, measure the forward call's fixed cost here, on the
   thread and with the threads that will run the batches, so batches can be split by length
   (runtime/sub_batches.py). This is also the model's warm-up. It runs the model as it is
   served, in its dtype: a bf16 or int8 forward has another fixed cost than a float32 one.
3. On CUDA, warm up over the batch shapes (runtime/warmup.py).
"""

from __future__ import annotations

import logging
from typing import Any

from predictor.runtime.sub_batches import SplitByLength
from predictor.runtime.threads import use_cpus_here
from predictor.runtime.warmup import warm_up

logger = logging.getLogger(__name__)


def prepare_worker(runner: Any, threads: int | None = None) -> None:
    """``runner``: the engine's runner, a ``SplitByLength`` on CPU (then measured here).
    ``threads``: this worker's share of the CPUs when several CPU workers split them."""
    if threads is None:
        threads = use_cpus_here()
    else:
        import torch

        torch.set_num_threads(threads)
    warm_up(runner)  # CUDA: the batch shapes before ready (warmup.py); nothing on CPU
    if isinstance(runner, SplitByLength):
        cost = runner.measure()
        logger.info("%s (%s) on %d threads: a forward call costs as much as %.0f tokens; "
                    "batches are split by length where padding costs more",
                    type(runner.runner).__name__, runner.precision.dtype, threads, cost)
