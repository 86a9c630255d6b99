"""BGE-M3's sparse (lexical) weights for a whole packed batch, reduced on the device without
making the host wait.

The padded path (``M3Runner._lexical_weights``) works per row on the host: special tokens and
zeros dropped, repeated tokens max-pooled, with numpy. For a packed batch the same happens for
the batch at once where the weights are (:func:`reduce_on_device`): one key per (row, token
id), one sort, a segment max (``scatter_reduce``). Every tensor keeps the batch's token count
as its size, so nothing depends on the data: the forward thread queues it and goes on to the
next batch (a ``unique`` or a boolean selection would make it wait for the device, which the
pipeline must not). What comes back is three arrays of one entry per token (13 bytes each:
208 KiB for 16384 tokens, beside ColBERT's megabytes); :func:`split_rows` keeps the first
entry of each key on the host, by one vectorised selection, after the batch's CUDA event.

Same result, same order (ids ascending within a row): tests/unit/runtime/test_gpu_path.py
checks it against the per-row path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from predictor.core.types import SparseVector

#: The key of a dropped token: sorts after every real (row, id) key.
_DROPPED = torch.iinfo(torch.int64).max


@dataclass
class ReducedSparse:
    """Per token, sorted by (row, id): its key, whether it starts a new key, and at the
    position of each key's rank the key's max weight."""

    keys: torch.Tensor  # (T,) int64: row << 32 | id, or _DROPPED
    firsts: torch.Tensor  # (T,) bool
    maxima: torch.Tensor  # (T,) float32; entry k: the k-th key's max weight


def reduce_on_device(ids: torch.Tensor, weights: torch.Tensor, cu_seqlens: torch.Tensor,
                     unused_ids: torch.Tensor) -> ReducedSparse:
    """``ids``/``weights``: (T,) for the packed batch; ``cu_seqlens``: (N + 1,) int32;
    ``unused_ids``: the special token ids, on the same device."""
    total = ids.numel()
    n_rows = cu_seqlens.numel() - 1
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    rows = torch.repeat_interleave(torch.arange(n_rows, device=ids.device), lengths,
                                   output_size=total)  # output_size: no wait for the device
    keep = (weights > 0) & ~torch.isin(ids, unused_ids)
    keys = torch.where(keep, (rows << 32) | ids.long(), _DROPPED)
    keys, order = torch.sort(keys, stable=True)
    firsts = torch.ones(total, dtype=torch.bool, device=ids.device)
    firsts[1:] = keys[1:] != keys[:-1]
    rank = torch.cumsum(firsts, 0) - 1
    maxima = torch.zeros(total, dtype=torch.float32, device=weights.device)
    maxima.scatter_reduce_(0, rank, weights[order].float(), reduce="amax", include_self=False)
    return ReducedSparse(keys, firsts, maxima)


def split_rows(keys: np.ndarray, firsts: np.ndarray, maxima: np.ndarray,
               n_rows: int) -> list[SparseVector]:
    """The host copies of a :class:`ReducedSparse` as one SparseVector per row."""
    starts = np.flatnonzero(firsts & (keys != _DROPPED))
    keys = keys[starts]
    values = maxima[: len(starts)]  # keys are ranked in order, dropped ones last
    bounds = np.searchsorted(keys >> 32, np.arange(n_rows + 1))
    indices = (keys & 0xFFFFFFFF).astype(np.int64)
    return [SparseVector(indices=indices[a:b], values=values[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
