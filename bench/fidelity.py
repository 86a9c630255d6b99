"""How close the served outputs are to an fp32 reference (for fp16 on GPU: target cosine >= 0.999).

The reference is FlagEmbedding itself in fp32 on the same device: ``BGEM3FlagModel.encode`` and
``FlagReranker.compute_score``. Where FlagEmbedding is not installed (the offline GPU kit), it is
the same model loaded by ``predictor.runtime.flag_free`` (checked against FlagEmbedding on CPU
in tests/unit/runtime/test_gpu_path.py) in fp32, one text at a time (no padding), post-processed as
``M3Embedder.encode`` does. The served side is our running server, asked over HTTP, so the
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
    served = post_json(base_url, "/v1/hybrid-embeddings",
                       {"model": "bge-m3", "input": texts, "return_colbert": True})["data"]
    ranked = post_json(base_url, "/v1/rerank", {"model": "bge-reranker", "query": query,
                                                "documents": texts, "raw_scores": True})
    served_scores = np.zeros(len(texts))
    for r in ranked["results"]:
        served_scores[r["index"]] = r["relevance_score"]

    ref, ref_scores = _reference(m3_dir, rr_dir, device, texts, query)
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


def _reference(m3_dir: pathlib.Path, rr_dir: pathlib.Path, device: str, texts: list[str],
               query: str) -> tuple[dict, np.ndarray]:
    """fp32 outputs: FlagEmbedding's own, or the FlagEmbedding-free equivalent."""
    try:
        from FlagEmbedding import BGEM3FlagModel, FlagReranker
    except ImportError:
        return _reference_flag_free(m3_dir, rr_dir, device, texts, query)
    m3 = BGEM3FlagModel(str(m3_dir), use_fp16=False, devices=device)
    ref = m3.encode(texts, max_length=8192, return_dense=True, return_sparse=True,
                    return_colbert_vecs=True)
    del m3
    reranker = FlagReranker(str(rr_dir), use_fp16=False, devices=device)
    scores = np.asarray(reranker.compute_score([[query, t] for t in texts], max_length=8192))
    return ref, scores


def _reference_flag_free(m3_dir: pathlib.Path, rr_dir: pathlib.Path, device: str,
                         texts: list[str], query: str) -> tuple[dict, np.ndarray]:
    import torch

    from predictor.runtime.flag_free import BGEM3FlagModel, FlagReranker

    m3 = BGEM3FlagModel(str(m3_dir), use_fp16=False)
    model = m3.model.float().to(device).eval()
    tok = m3.tokenizer
    special = {tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
    ref: dict = {"dense_vecs": [], "lexical_weights": [], "colbert_vecs": []}
    with torch.inference_mode():
        for text in texts:
            ids = tok(text, truncation=True, max_length=8192, return_tensors="pt")["input_ids"]
            ids = ids.to(device)
            out = model({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                        return_dense=True, return_sparse=True, return_colbert_vecs=True)
            ref["dense_vecs"].append(out["dense_vecs"][0].float().cpu().numpy())
            weights: dict[int, float] = {}
            for tid, w in zip(ids[0].tolist(), out["sparse_vecs"][0, :, 0].float().tolist(),
                              strict=True):
                if w > 0 and tid not in special:
                    weights[tid] = max(w, weights.get(tid, 0.0))
            ref["lexical_weights"].append(weights)
            ref["colbert_vecs"].append(out["colbert_vecs"][0].float().cpu().numpy())
    del model, m3
    rr = FlagReranker(str(rr_dir), use_fp16=False)
    model = rr.model.float().to(device).eval()
    scores = []
    with torch.inference_mode():
        for text in texts:
            enc = rr.tokenizer(query, text, truncation="only_second", max_length=8192,
                               return_tensors="pt").to(device)
            scores.append(float(model(**enc).logits.view(-1)[0].float()))
    return ref, np.asarray(scores)
