"""Texts and comparisons shared by the fidelity tests."""

from __future__ import annotations

import numpy as np

ATOL = 1e-5

TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Dense, sparse and multi-vector retrieval from one forward pass.",
    "repeat repeat repeat repeat the repeated token keeps its maximum weight",
    "Ünïcödé text: 東京は日本の首都です。 Привет, мир! مرحبا بالعالم",
    " ".join(f"word{i % 37} token{i % 11}" for i in range(300)),  # ~long text
    "a",
    "Qdrant and Milvus store dense plus sparse vectors for hybrid search.",
]


def reference(flag_m3, texts, max_length=8192):
    return flag_m3.encode(texts, batch_size=4, max_length=max_length, return_dense=True,
                          return_sparse=True, return_colbert_vecs=True)


def assert_dense_close(ours, ref):
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float32), ref, atol=ATOL, rtol=0)


def assert_sparse_close(indices, values, ref_weights: dict):
    ours = {int(i): float(v) for i, v in zip(indices, values, strict=True)}
    ref = {int(k): float(v) for k, v in ref_weights.items()}
    assert list(indices) == sorted(set(indices)), "CSR indices ascending and unique"
    for key in ours.keys() | ref.keys():
        assert abs(ours.get(key, 0.0) - ref.get(key, 0.0)) <= ATOL, (key, ours.get(key),
                                                                        ref.get(key))


def assert_colbert_close(ours, ref):
    ours = np.asarray(ours, dtype=np.float32)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)
