"""BGE-M3's sparse (lexical) weights reduced on the device: only the non-zeros come back.

Today's host path (``M3Runner._lexical_weights``) copies every token's weight to the host and,
per row, drops special tokens and zeros and max-pools repeated tokens with numpy. Here the same
happens for the whole batch at once where the weights are: one key per (row, token id), a
sorted ``unique`` and a scatter-max, then only the surviving (row, id, weight) triples are
copied. Same result, same order (ids ascending within a row); tests/unit/runtime/test_gpu_path.py
checks it against the numpy path.
"""

from __future__ import annotations

import numpy as np
import torch

from predictor.core.types import SparseVector


def lexical_weights(ids: torch.Tensor, weights: torch.Tensor, cu_seqlens: torch.Tensor,
                    unused_ids: torch.Tensor) -> list[SparseVector]:
    """Per sequence of a packed batch: ``{token id: max weight}`` over its tokens with a
    positive weight that are not special. ``ids``/``weights`` are (T,), ``cu_seqlens`` (N+1,)."""
    n_rows = cu_seqlens.numel() - 1
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    rows = torch.repeat_interleave(torch.arange(n_rows, device=ids.device), lengths)
    keep = (weights > 0) & ~torch.isin(ids, unused_ids)
    ids, weights, rows = ids[keep].long(), weights[keep].float(), rows[keep]
    keys, inverse = torch.unique((rows << 32) | ids, sorted=True, return_inverse=True)
    values = torch.zeros(keys.numel(), dtype=torch.float32, device=weights.device)
    values.scatter_reduce_(0, inverse, weights, reduce="amax", include_self=True)
    keys, values = keys.cpu().numpy(), values.cpu().numpy()
    return split_rows(keys & 0xFFFFFFFF, values, keys >> 32, n_rows)


def split_rows(indices: np.ndarray, values: np.ndarray, rows: np.ndarray,
               n_rows: int) -> list[SparseVector]:
    """Row-sorted (row, index, value) triples as one SparseVector per row."""
    bounds = np.searchsorted(rows, np.arange(n_rows + 1))
    return [SparseVector(indices=indices[a:b].astype(np.int64), values=values[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
