"""BGE-M3's sparse (lexical) weights for a whole packed batch in one vectorised pass.

The padded path (``M3Runner._lexical_weights``) works per row: special tokens and zeros
dropped, repeated tokens max-pooled, with numpy. A packed batch is one row of tokens, so here
the same happens for the batch at once: one key per (row, token id), one stable sort, one
``maximum.reduceat``. Same result, same order (ids ascending within a row);
tests/unit/runtime/test_gpu_path.py checks it against the per-row path.

Why on the host and not on the device: the reduction's output size depends on the data, so on
a GPU it forces the forward thread to wait for the device (``unique`` synchronises), which
would stop it from queueing the next batch's kernels (runtime/pipeline.py). The device copies
back one float per token (64 KiB for 16384 tokens, beside ColBERT's megabytes) without waiting,
and the pipeline's host thread reduces it while the next batch runs.
"""

from __future__ import annotations

import numpy as np

from predictor.core.types import SparseVector


def lexical_weights(ids: np.ndarray, weights: np.ndarray, lengths: np.ndarray,
                    unused_ids: np.ndarray) -> list[SparseVector]:
    """Per sequence of a packed batch: ``{token id: max weight}`` over its tokens with a
    positive weight that are not special. ``ids``/``weights``: (T,) for the whole batch;
    ``lengths``: (N,) tokens per sequence, summing to T."""
    n_rows = len(lengths)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    keep = (weights > 0) & ~np.isin(ids, unused_ids)
    keys = (rows[keep] << 32) | ids[keep].astype(np.int64)
    values = weights[keep].astype(np.float32, copy=False)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    if keys.size:
        firsts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        keys, values = keys[firsts], np.maximum.reduceat(values, firsts)
    return split_rows(keys & 0xFFFFFFFF, values, keys >> 32, n_rows)


def split_rows(indices: np.ndarray, values: np.ndarray, rows: np.ndarray,
               n_rows: int) -> list[SparseVector]:
    """Row-sorted (row, index, value) triples as one SparseVector per row."""
    bounds = np.searchsorted(rows, np.arange(n_rows + 1))
    return [SparseVector(indices=indices[a:b].astype(np.int64), values=values[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
