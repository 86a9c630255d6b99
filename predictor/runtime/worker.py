"""What a model's engine worker thread does once, before its first batch.

1. Take the CPUs for torch on this thread (runtime/threads.py: why not on the main thread).
2. On CPU, unless ``--sub_batches off``, measure the forward call's fixed cost here, on the
   thread and with the threads that will run the batches, so batches can be split by length
   (runtime/sub_batches.py). This is also the model's warm-up.
"""

from __future__ import annotations

import logging
from typing import Any

from .sub_batches import SplitByLength
from .threads import use_cpus_here

logger = logging.getLogger(__name__)


def prepare_worker(runner: Any, threads: int | None = None) -> None:
    """``runner``: the engine's runner, a ``SplitByLength`` on CPU (then measured here).
    ``threads``: this worker's share of the CPUs when several CPU workers split them."""
    if threads is None:
        threads = use_cpus_here()
    else:
        import torch

        torch.set_num_threads(threads)
    if isinstance(runner, SplitByLength):
        cost = runner.measure()
        logger.info("%s on %d threads: a forward call costs as much as %.0f tokens; batches "
                    "are split by length where padding costs more",
                    type(runner.runner).__name__, threads, cost)
