"""Reranking with the BGE-M3 embedder itself, from its own outputs.

Scores are exactly those of FlagEmbedding's ``BGEM3FlagModel.compute_score`` (see
``M3Embedder.compute_score_single_device`` and ``EncoderOnlyEmbedderM3Model.compute_*_score``):

- ``dense``: dot product of the L2-normalised CLS vectors (their cosine);
- ``sparse``: sum over the token ids present in both texts of ``q_weight * d_weight`` (lexical
  weights max-pooled per token id, special tokens dropped);
- ``colbert`` (MaxSim): for each query token vector, the best dot product with any document
  token vector, summed and divided by the number of query token vectors;
- ``hybrid``: ``(w_dense * dense + w_sparse * sparse + w_colbert * colbert) / sum(w)``, weights
  ``[1, 1, 1]`` unless the request gives ``weights`` (FlagEmbedding's
  ``weights_for_different_modes``).

One difference is deliberate: FlagEmbedding's batched ColBERT score lets a document's padding
positions (zero vectors) take part in the max, so a query token whose similarities to a short
document are all negative scores 0 instead of its best similarity, depending on the batch. We
compute MaxSim on the real tokens only, which is ``compute_score`` on an unpadded batch.

The query is encoded once, the documents in one other ``encode`` call queued at the same time
(so both usually ride the same batch); only the outputs the method needs are computed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from predictor.core import limits
from predictor.core.embedder import Embedder
from predictor.core.types import Embedding, EncodeOptions, EncodeResult, Output
from predictor.errors import BadRequestError

METHODS = ("colbert", "dense", "sparse", "hybrid")
DEFAULT_METHOD = "colbert"
DEFAULT_WEIGHTS = (1.0, 1.0, 1.0)  # dense, sparse, colbert: as compute_score's default

_OUTPUTS = {"dense": frozenset({Output.DENSE}), "sparse": frozenset({Output.SPARSE}),
            "colbert": frozenset({Output.COLBERT}),
            "hybrid": frozenset({Output.DENSE, Output.SPARSE, Output.COLBERT})}


@dataclass(slots=True)
class SelfScores:
    scores: list[float]
    num_tokens: int
    method: str = DEFAULT_METHOD  # the method used (the default depends on the model)


def check_weights(method: str, weights: Sequence[float] | None) -> tuple[float, float, float]:
    if weights is None:
        return DEFAULT_WEIGHTS
    if method != "hybrid":
        raise BadRequestError("'weights' applies only to method 'hybrid'.", param="weights")
    if len(weights) != 3:
        raise BadRequestError("'weights' must be three numbers: [dense, sparse, colbert].",
                              param="weights")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise BadRequestError("'weights' must be non-negative numbers with a positive sum.",
                              param="weights")
    return (float(weights[0]), float(weights[1]), float(weights[2]))


def dense_score(q: Embedding, d: Embedding) -> float:
    assert q.dense is not None and d.dense is not None
    return float(np.dot(q.dense.astype(np.float64), d.dense.astype(np.float64)))


def sparse_score(q: Embedding, d: Embedding) -> float:
    assert q.sparse is not None and d.sparse is not None
    _, qi, di = np.intersect1d(q.sparse.indices, d.sparse.indices, assume_unique=True,
                               return_indices=True)
    return float(np.dot(q.sparse.values[qi].astype(np.float64),
                        d.sparse.values[di].astype(np.float64)))


def colbert_score(q: Embedding, d: Embedding) -> float:
    assert q.colbert is not None and d.colbert is not None
    sims = q.colbert.astype(np.float64) @ d.colbert.astype(np.float64).T
    return float(sims.max(axis=1).sum() / q.colbert.shape[0])


def method_score(method: str, weights: tuple[float, float, float], q: Embedding,
                 d: Embedding) -> float:
    if method == "dense":
        return dense_score(q, d)
    if method == "sparse":
        return sparse_score(q, d)
    if method == "colbert":
        return colbert_score(q, d)
    w_dense, w_sparse, w_colbert = weights
    return ((w_colbert * colbert_score(q, d) + w_sparse * sparse_score(q, d)
             + w_dense * dense_score(q, d)) / (w_dense + w_sparse + w_colbert))


async def _encode_both(model: Embedder, query: str, documents: list[str],
                       query_options: EncodeOptions, document_options: EncodeOptions
                       ) -> list[EncodeResult]:
    """Both ``encode`` calls at once; if one fails, the other is cancelled."""
    tasks = [asyncio.ensure_future(model.encode(query, query_options, param="query")),
             asyncio.ensure_future(model.encode(documents, document_options, param="documents"))]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def self_rerank(model: Embedder, query: str, documents: list[str], *, method: str | None,
                      weights: Sequence[float] | None, max_length: int | None = None,
                      max_document_tokens: int | None = None,
                      truncate: bool = True) -> SelfScores:
    """Score ``documents`` against ``query`` with the embedder ``model`` (input order)."""
    if method is None:  # ColBERT when the model has that head, else dense (e.g. BGE v1.5, E5)
        method = DEFAULT_METHOD if Output.COLBERT in model.outputs else "dense"
    if method not in METHODS:
        raise BadRequestError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.",
                              param="method")
    w = check_weights(method, weights)
    outputs = _OUTPUTS[method]
    query_options = EncodeOptions(outputs=outputs, max_length=max_length, truncate=truncate,
                                  sparse_mapping="tokenizer", input_type="query")
    document_options = replace(query_options, input_type="passage")
    if max_document_tokens is not None:
        # the per-document cap counts the document's own tokens, as for the cross-encoder
        limit = min(max_length or model.max_length, max_document_tokens + model.special_tokens)
        document_options = replace(document_options, max_length=limit, truncate=True)
    q_result, d_result = await _encode_both(model, query, documents, query_options,
                                            document_options)
    q = q_result.embeddings[0]
    scores = [method_score(method, w, q, d) for d in d_result.embeddings]
    return SelfScores(scores=scores, num_tokens=q_result.prompt_tokens + d_result.prompt_tokens,
                      method=method)


async def maxsim(model: Embedder, query: str, candidates: list[str],
                 param: str = "candidates") -> list[float]:
    """ColBERT MaxSim of each candidate against ``query`` (seed 002's ``/rerank``): no
    candidates, no scores; every candidate checked (count, empty) before any work."""
    if not query.strip():
        raise BadRequestError("'query' is empty.", param="query")
    if not candidates:
        return []
    limits.check_document_count(len(candidates), model.settings.max_rerank_documents, param)
    for i, text in enumerate(candidates):
        if not text.strip():
            raise BadRequestError(f"{param}[{i}] is empty.", param=f"{param}[{i}]")
    result = await self_rerank(model, query, candidates, method="colbert", weights=None)
    return result.scores
