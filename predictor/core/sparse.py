"""Sparse vector index mappings and CSR packing (numpy only).

``tokenizer`` mapping: index = token id. ``hash`` mapping: index = first 8 bytes of SHA-256 of
the token's UTF-8 string, big-endian, modulo ``index_space``; tokens that collide keep the
maximum weight. Hashing gives an index space shared across tokenizers and models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from predictor.core.types import SparseVector

TOKENIZER = "tokenizer"
HASH = "hash"
MAPPINGS = (TOKENIZER, HASH)


@lru_cache(maxsize=262144)
def hash_token(token: str, index_space: int) -> int:
    digest = hashlib.sha256(token.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % index_space


def to_hash_space(vec: SparseVector, tokens: Sequence[str], index_space: int) -> SparseVector:
    """Re-index a tokenizer-space vector by hashed token strings (max on collision)."""
    hashed = np.fromiter((hash_token(t, index_space) for t in tokens), dtype=np.int64,
                         count=len(tokens))
    indices, inverse = np.unique(hashed, return_inverse=True)
    values = np.zeros(len(indices), dtype=np.float32)
    np.maximum.at(values, inverse, vec.values)
    merged_tokens = None
    if vec.tokens is not None:
        merged_tokens = [""] * len(indices)
        best = np.full(len(indices), -1.0, dtype=np.float32)
        for tok, pos, weight in zip(vec.tokens, inverse, vec.values, strict=True):
            if weight > best[pos]:
                best[pos], merged_tokens[pos] = weight, tok
    return SparseVector(indices=indices, values=values, tokens=merged_tokens)


def map_sparse(vec: SparseVector, mapping: str, index_space: int,
               token_strings: Callable[[np.ndarray], list[str]], with_tokens: bool
               ) -> SparseVector:
    """Apply the mapping to a tokenizer-space vector, adding token strings if asked."""
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown sparse mapping {mapping!r}")
    if mapping == TOKENIZER and not with_tokens:
        return vec
    tokens = token_strings(vec.indices)
    if mapping == TOKENIZER:
        return SparseVector(vec.indices, vec.values, tokens)
    base = SparseVector(vec.indices, vec.values, tokens if with_tokens else None)
    return to_hash_space(base, tokens, index_space)


def to_csr(vectors: Sequence[SparseVector]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack rows into CSR arrays (indices int64, values float32, offsets int64 of length N+1)."""
    offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(v.indices) for v in vectors])
    if not vectors:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), offsets
    indices = np.concatenate([v.indices for v in vectors]).astype(np.int64, copy=False)
    values = np.concatenate([v.values for v in vectors]).astype(np.float32, copy=False)
    return indices, values, offsets
