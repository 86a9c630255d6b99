"""Turns rerank requests into ``Reranker.score`` or embedder self-rerank calls
(``core/self_rerank.py``), and the scores into Cohere/Jina-shaped bodies.

``relevance_score``: for a cross-encoder, the sigmoid of its logit (0..1, like Cohere's), or the
logit itself with ``raw_scores``. For the embedder, always the raw similarity of the method
(``raw_scores`` changes nothing): a sigmoid of a cosine or of a lexical overlap would squash
every score into a narrow band around 0.6-0.7 and mean nothing.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from predictor.api.http.registry import ServedModels
from predictor.api.http.rerank.protocol import RerankRequest
from predictor.core.embedder import Embedder
from predictor.core.limits import check_document_count
from predictor.core.reranker import Reranker
from predictor.core.self_rerank import self_rerank
from predictor.errors import BadRequestError, ModelNotFoundError, WrongModelKindError

DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere bills one search unit per query and 100 documents


def resolve_model(served: ServedModels, requested: str | None) -> Reranker | Embedder:
    """The named reranker or embedder's service; with no name, the first reranker, else the
    embedder."""
    if requested is None or not requested.strip():
        for kind in ("reranker", "embedder"):
            try:
                return served.service(served.get(None, kind))
            except ModelNotFoundError:
                continue
        raise ModelNotFoundError("<any reranker>")
    model = served.find(requested)
    if model is None:
        raise ModelNotFoundError(requested)
    if model.kind not in ("reranker", "embedder"):
        raise WrongModelKindError(requested, "reranking")
    return served.service(served.get(requested, model.kind))


def document_text(document: str | dict[str, Any], i: int, rank_fields: list[str] | None) -> str:
    if isinstance(document, str):
        return document
    param = f"documents[{i}]"
    if not rank_fields:
        text = document.get("text")
        if not isinstance(text, str):
            raise BadRequestError(f"{param} must be a string or an object with a string 'text' "
                                  "field.", param=param)
        return text
    # Cohere v1: rank on the named fields, in order, one "field: value" line each
    lines = [f"{name}: {document[name]}" for name in rank_fields if document.get(name) is not None]
    if not lines:
        raise BadRequestError(f"{param} has none of the rank_fields "
                              f"({', '.join(rank_fields)}).", param=param)
    return "\n".join(lines)


def validate(req: RerankRequest, max_documents: int) -> list[str]:
    """The documents' texts; every limit of the request checked (each a 400)."""
    if not req.query.strip():
        raise BadRequestError("'query' is empty.", param="query")
    if not req.documents:
        raise BadRequestError("'documents' must be a non-empty list.", param="documents")
    check_document_count(len(req.documents), max_documents, "documents")
    texts = [document_text(doc, i, req.rank_fields) for i, doc in enumerate(req.documents)]
    for i, text in enumerate(texts):
        if not text.strip():
            raise BadRequestError(f"documents[{i}] is empty.", param=f"documents[{i}]")
    # A top_n beyond the documents returns them all, as Cohere, Jina, vLLM and Infinity do
    # (langchain-cohere sends top_n=3 whatever the number of documents).
    if req.top_n is not None and req.top_n < 1:
        raise BadRequestError(f"top_n must be at least 1, got {req.top_n}.", param="top_n")
    if req.relevant_spans and req.relevant_spans.get("mode", "disabled") != "disabled":
        raise BadRequestError("relevant_spans are not supported by this server.",
                              param="relevant_spans", code="unsupported_parameter")
    return texts


async def rerank(served: ServedModels, req: RerankRequest, api_version: str) -> dict[str, Any]:
    started = time.monotonic()
    model = resolve_model(served, req.model)
    texts = validate(req, model.max_documents)
    meta: dict[str, Any] = {"api_version": {"version": api_version}}
    warnings = []
    if req.max_chunks_per_doc is not None and not isinstance(model, Reranker):
        warnings.append("max_chunks_per_doc is ignored when reranking with an embedder: "
                        "documents over the length limit are truncated, not chunked.")
    if isinstance(model, Reranker):
        for name in ("method", "weights"):
            if getattr(req, name) is not None:
                raise BadRequestError(
                    f"'{name}' applies to reranking with an embedder; '{model.name}' is a "
                    "cross-encoder.", param=name, code="unsupported_parameter")
        result = await model.score([req.query], texts, normalize=not req.raw_scores,
                                   max_length=req.max_length,
                                   max_document_tokens=req.max_tokens_per_doc,
                                   truncate=req.truncate, max_chunks=req.max_chunks_per_doc)
        scores, tokens = result.scores, result.num_tokens
        if result.chunks is not None:
            meta["chunks"] = {"max_chunks_per_doc": req.max_chunks_per_doc,
                              "scored": sum(result.chunks), "per_document": result.chunks}
            if result.truncated:
                warnings.append(f"{result.truncated} document(s) had more than "
                                f"{req.max_chunks_per_doc} chunks; the rest was not scored.")
        elif result.truncated:
            warnings.append(f"{result.truncated} document(s) were truncated to fit the "
                            "model's length limit.")
    else:
        result = await self_rerank(model, req.query, texts, method=req.method,
                                   weights=req.weights, max_length=req.max_length,
                                   max_document_tokens=req.max_tokens_per_doc,
                                   truncate=req.truncate)
        scores, tokens = result.scores, result.num_tokens
        meta["method"] = result.method
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if req.top_n is not None:
        order = order[:req.top_n]
    results = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
        if req.return_documents:
            doc = req.documents[i]
            item["document"] = {"text": doc} if isinstance(doc, str) else doc
        results.append(item)
    elapsed_ms = (time.monotonic() - started) * 1000
    meta |= {
        "billed_units": {"search_units": math.ceil(len(texts) / DOCUMENTS_PER_SEARCH_UNIT)},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
        "timing": {"total_ms": round(elapsed_ms, 3)},
        # seed 003's meta fields (api/http/dropin/model_list.py)
        "processing_time_ms": round(elapsed_ms),
        "total_documents": len(texts), "returned_documents": len(results),
    }
    if warnings:
        meta["warnings"] = warnings
    return {"id": str(uuid.uuid4()), "model": model.name, "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "meta": meta}
