"""Turns embedding-route requests into ``Embedder.encode`` calls and results into bodies.

Bodies keep numpy arrays; ``NumpyJSONResponse`` serialises them without Python float lists.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from predictor.api.http.embeddings.protocol import (
    EmbeddingsRequest,
    HybridEmbeddingsRequest,
    SparseEmbeddingsRequest,
)
from predictor.api.params import resolve_input_type
from predictor.core.embedder import Embedder
from predictor.core.options import outputs_from_flags
from predictor.core.types import EncodeOptions, EncodeResult, Output, SparseVector


def _usage(result: EncodeResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}


def _sparse(vec: SparseVector) -> dict[str, Any]:
    return {"indices": vec.indices, "values": vec.values}


def _mapped_sparse(vec: SparseVector | None, result: EncodeResult) -> dict[str, Any]:
    assert vec is not None
    out = {"indices": vec.indices, "values": vec.values, "mapping": result.sparse_mapping,
           "index_space": result.sparse_index_space}
    if vec.tokens is not None:
        out["tokens"] = vec.tokens
    return out


def input_type(req) -> str | None:
    """``query``, ``passage`` or None (the model's default) from input_type / is_query."""
    return resolve_input_type(req.input_type, req.is_query)


_LITTLE_ENDIAN = {"float32": "<f4", "float16": "<f2"}


def b64_array(array: np.ndarray, embed_dtype: str) -> str:
    """A vector, or a matrix with its rows concatenated, as base64 of little-endian
    ``embed_dtype`` bytes (OpenAI's base64 encoding is ``float32``; vLLM's ``embed_dtype``
    ``float16`` halves a ColBERT response)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=_LITTLE_ENDIAN[embed_dtype])
                            .tobytes()).decode("ascii")


def _vectors(req) -> Any:
    """How this request's vectors go into the body: numpy as JSON numbers, or base64."""
    if req.encoding_format == "base64":
        return lambda array: b64_array(array, req.embed_dtype)
    return lambda array: array


async def create_embeddings(model: Embedder, req: EmbeddingsRequest) -> dict[str, Any]:
    model.check_dimensions(req.dimensions)
    # seed 001's return_* flags; with any of them the answer has its extended fields too
    extended = any(flag is not None for flag in (req.return_dense, req.return_sparse,
                                                 req.return_colbert))
    outputs = outputs_from_flags(req.return_dense, req.return_sparse, req.return_colbert)
    options = EncodeOptions(outputs=outputs, max_length=req.max_length, truncate=req.truncate,
                            sparse_mapping=req.sparse_token_mapping, input_type=input_type(req))
    result = await model.encode(req.input, options)
    vectors = _vectors(req)
    data = []
    for i, emb in enumerate(result.embeddings):
        item: dict[str, Any] = {"object": "embedding", "index": i}
        if emb.dense is not None:
            item["embedding"] = vectors(emb.dense)
        if extended:
            if emb.dense is not None:
                item["dense_embedding"] = item["embedding"]
            if emb.sparse is not None:
                item["sparse_embedding"] = _sparse(emb.sparse)
            if emb.colbert is not None:
                item["colbert_embedding"] = vectors(emb.colbert)
        data.append(item)
    return {"object": "list", "data": data, "model": model.name, "usage": _usage(result),
            "embedding_types": [o.value for o in Output if o in outputs]}  # seed 001


async def create_sparse_embeddings(model: Embedder,
                                   req: SparseEmbeddingsRequest) -> dict[str, Any]:
    options = EncodeOptions(outputs=frozenset({Output.SPARSE}), max_length=req.max_length,
                            truncate=req.truncate, sparse_mapping=req.sparse_token_mapping,
                            return_tokens=req.return_tokens, input_type=input_type(req))
    result = await model.encode(req.input, options)
    data = [{"object": "sparse_embedding", "index": i,
             "sparse": _mapped_sparse(emb.sparse, result)}
            for i, emb in enumerate(result.embeddings)]
    return {"object": "list", "data": data, "model": model.name, "usage": _usage(result)}


async def create_hybrid_embeddings(model: Embedder,
                                   req: HybridEmbeddingsRequest) -> dict[str, Any]:
    outputs = {Output.DENSE, Output.SPARSE} | ({Output.COLBERT} if req.return_colbert else set())
    options = EncodeOptions(outputs=frozenset(outputs), max_length=req.max_length,
                            truncate=req.truncate, sparse_mapping=req.sparse_token_mapping,
                            return_tokens=req.return_tokens, input_type=input_type(req))
    result = await model.encode(req.input, options)
    vectors = _vectors(req)
    data = []
    for i, emb in enumerate(result.embeddings):
        item = {"object": "hybrid_embedding", "index": i, "dense": vectors(emb.dense),
                "sparse": _mapped_sparse(emb.sparse, result)}
        if emb.colbert is not None:
            item["colbert"] = vectors(emb.colbert)
        data.append(item)
    return {"object": "list", "data": data, "model": model.name, "usage": _usage(result)}
