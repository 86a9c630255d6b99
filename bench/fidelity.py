"""How close the served outputs are to an fp32 reference (for fp16 on GPU: target cosine >= 0.999).

The reference is FlagEmbedding itself in fp32 on the same device: ``BGEM3FlagModel.encode`` and
``FlagReranker.compute_score``. The served side is our running server, asked over HTTP, so the
whole path (fp16 weights, our batching, post-processing, JSON) is what gets compared.
"""

from __future__ import annotations

import pathlib

import numpy as np

from .modes.http_load import post_json

COSINE_TARGET = 0.999


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def check(base_url: str, m3_dir: pathlib.Path, rr_dir: pathlib.Path, device: str,
          texts: list[str], query: str) -> dict:
    from FlagEmbedding import BGEM3FlagModel, FlagReranker

    served = post_json(base_url, "/v1/hybrid-embeddings",
                       {"model": "bge-m3", "input": texts, "return_colbert": True})["data"]
    ranked = post_json(base_url, "/v1/rerank", {"model": "bge-reranker", "query": query,
                                                "documents": texts, "raw_scores": True})
    served_scores = np.zeros(len(texts))
    for r in ranked["results"]:
        served_scores[r["index"]] = r["relevance_score"]

    m3 = BGEM3FlagModel(str(m3_dir), use_fp16=False, devices=device)
    ref = m3.encode(texts, max_length=8192, return_dense=True, return_sparse=True,
                    return_colbert_vecs=True)
    dense_cos = _cos(np.array([d["dense"] for d in served], dtype=np.float32),
                     np.asarray(ref["dense_vecs"], dtype=np.float32))
    colbert_cos = np.concatenate([
        _cos(np.array(d["colbert"], dtype=np.float32), np.asarray(r, dtype=np.float32))
        for d, r in zip(served, ref["colbert_vecs"], strict=True)])
    sparse_diff = 0.0
    for d, r in zip(served, ref["lexical_weights"], strict=True):
        got = dict(zip(d["sparse"]["indices"], d["sparse"]["values"], strict=True))
        want = {int(k): float(v) for k, v in r.items()}
        for key in set(got) | set(want):
            sparse_diff = max(sparse_diff, abs(got.get(key, 0.0) - want.get(key, 0.0)))
    del m3
    reranker = FlagReranker(str(rr_dir), use_fp16=False, devices=device)
    ref_scores = np.asarray(reranker.compute_score([[query, t] for t in texts], max_length=8192))
    out = {
        "texts": len(texts),
        "dense_cosine_min": round(float(dense_cos.min()), 6),
        "colbert_cosine_min": round(float(colbert_cos.min()), 6),
        "colbert_cosine_mean": round(float(colbert_cos.mean()), 6),
        "sparse_max_abs_diff": round(sparse_diff, 6),
        "rerank_logit_max_abs_diff": round(float(np.abs(served_scores - ref_scores).max()), 6),
    }
    out["cosine_target_met"] = min(out["dense_cosine_min"], out["colbert_cosine_min"]) >= (
        COSINE_TARGET)
    return out
