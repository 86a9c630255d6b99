"""GPU warm-up over the batch shapes before the model reports ready.

Why: the first forward of each shape on CUDA pays for kernel selection, cuBLAS workspaces and
the caching allocator's first blocks; without a warm-up the first requests after ``ready`` are
the slowest. Runs on the engine's worker thread (runtime/worker_setup.py), before ``ready``: one
short query, a few texts, and full batches up to the GPU token budget, with every output the
runner has. Nothing happens on CPU (there the sub-batch measurement is the warm-up).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from predictor.core.types import EncodeItem, ScoreItem

logger = logging.getLogger(__name__)

#: (sequences, tokens each): one short query, a few texts, 16384 tokens (the GPU budget).
SHAPES = ((1, 16), (1, 512), (8, 512), (32, 512))


def warm_up(runner: Any, shapes=SHAPES) -> list[tuple[int, int]]:
    """Run ``runner.run_batch`` over ``shapes`` on CUDA; returns the shapes run. A shape that
    runs out of memory ends the warm-up (logged): the engine splits such batches anyway.

    ``runner``: an ``EmbedderRunner`` or a ``RerankerRunner`` (core/ports.py); a cross-encoder
    is told by its ``tokenize_pairs`` (pairs are single sequences), an embedder gets items
    that ask for every output it has."""
    device = str(runner.device)
    if not device.startswith("cuda"):
        return []
    started = time.monotonic()
    token = _plain_token(runner)
    done = []
    for rows, width in shapes:
        width = min(width, int(runner.max_length))
        ids = [token] * width
        if hasattr(runner, "tokenize_pairs"):
            items = [ScoreItem(ids) for _ in range(rows)]
        else:
            items = [EncodeItem(ids, frozenset(runner.outputs)) for _ in range(rows)]
        try:
            runner.run_batch(items)
        except torch.cuda.OutOfMemoryError:
            logger.warning("warm-up stopped at %d x %d tokens: out of memory", rows, width)
            break
        done.append((rows, width))
    if done:
        torch.cuda.synchronize(device)
    logger.info("%s warmed up on %s over %s in %.2fs", type(runner).__name__, device, done,
                time.monotonic() - started)
    return done


def _plain_token(runner) -> int:
    """A token id that is no special token (so sparse weights have something to keep)."""
    tokenizer = runner.tokenizer
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return next(i for i in range(len(tokenizer)) if i not in special)
