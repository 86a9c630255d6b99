"""Seed 002 (``embedding-service``): ``/vectorize``, ``/vectorize-batch``, ``/vectorize-hybrid``,
``/vectorize-batch-hybrid`` and the ColBERT MaxSim ``/rerank``. Its fine-tuning routes
(``/fine-tune``, ``/fine-tune-lora``, ``/train-status/{job_id}``) are in ``training.py``, served
with ``--training`` (docs/finetune.md).

- ``is_query`` chooses the model's query or passage form (``EncodeOptions.input_type``): E5
  models get ``query: `` / ``passage: ``, BGE-M3 no prefix, as in the seed. Its defaults are
  the seed's: true for ``/vectorize``, false for ``/vectorize-batch``.
- The hybrid routes return ``sparse`` as ``{token: weight}``, the token as FlagEmbedding's
  ``convert_id_to_token`` decodes it (a string occurring for two token ids keeps the larger
  weight); ``"sparse_keys": "token_id"`` gives ``{"<token id>": weight}`` instead, which is what
  the seed's code really returned. ``colbert`` is ``null`` unless ``return_colbert``.
- ``/rerank`` scores each candidate against the query with the embedder's ColBERT MaxSim (the
  query encoded once, as the seed), ``scores`` in candidate order; ``batch_size`` is accepted and
  unused (the engine batches on a token budget).

As in the seed, fields these routes do not know are ignored; ``model`` (optional, the first
embedder by default) picks a served embedder.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from predictor.api.http.disconnect import cancel_on_disconnect
from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.api.http.responses import NumpyJSONResponse
from predictor.core.self_rerank import maxsim
from predictor.core.types import EncodeOptions, Output, SparseVector


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="A served embedder; the first one by default.")


class TextRequest(_Request):
    text: str
    is_query: bool = Field(True, description="Query (true) or passage (false) form.")


class BatchTextRequest(_Request):
    items: list[str]
    is_query: bool = Field(False, description="Query (true) or passage (false) form.")


class HybridTextRequest(_Request):
    text: str
    return_colbert: bool = False
    sparse_keys: Literal["token", "token_id"] = Field(
        "token", description="Key 'sparse' by token string (as documented) or token id.")


class HybridBatchTextRequest(_Request):
    items: list[str]
    return_colbert: bool = False
    sparse_keys: Literal["token", "token_id"] = Field(
        "token", description="Key 'sparse' by token string (as documented) or token id.")


class MaxSimRequest(_Request):
    query: str
    candidates: list[str]
    batch_size: int | None = Field(None, description="Accepted and unused.")


class VectorResponse(BaseModel):
    vector: list[float]


class BatchVectorResponse(BaseModel):
    vectors: list[list[float]]


class HybridVector(BaseModel):
    dense: list[float]
    sparse: dict[str, float]
    colbert: list[list[float]] | None = None


class HybridVectorResponse(BaseModel):
    hybrid_vector: HybridVector


class BatchHybridVectorResponse(BaseModel):
    hybrid_vectors: list[HybridVector]


class ScoresResponse(BaseModel):
    scores: list[float]


def sparse_dict(vec: SparseVector, keys: str) -> dict[str, float]:
    """``{token: weight}`` (max over ids decoding alike) or ``{"<id>": weight}``."""
    values = vec.values.tolist()
    if keys == "token_id":
        return {str(i): w for i, w in zip(vec.indices.tolist(), values, strict=True)}
    out: dict[str, float] = {}
    for token, weight in zip(vec.tokens, values, strict=True):
        if weight > out.get(token, float("-inf")):
            out[token] = weight
    return out


async def _dense(served: ServedModels, req, texts: str | list[str], param: str):
    model = served.embedder(req.model)
    options = EncodeOptions(outputs=frozenset({Output.DENSE}),
                            input_type="query" if req.is_query else "passage")
    result = await model.encode(texts, options, param=param)
    return [emb.dense for emb in result.embeddings]


async def _hybrid(served: ServedModels, req, texts: str | list[str], param: str):
    model = served.embedder(req.model)
    outputs = {Output.DENSE, Output.SPARSE} | ({Output.COLBERT} if req.return_colbert else set())
    options = EncodeOptions(outputs=frozenset(outputs), sparse_mapping="tokenizer",
                            return_tokens=req.sparse_keys == "token")
    result = await model.encode(texts, options, param=param)
    return [{"dense": emb.dense, "sparse": sparse_dict(emb.sparse, req.sparse_keys),
             "colbert": emb.colbert} for emb in result.embeddings]


async def _maxsim(served: ServedModels, req: MaxSimRequest) -> dict[str, Any]:
    model = served.embedder(req.model)
    return {"scores": await maxsim(model, req.query, req.candidates)}


def build_routers(served: ServedModels) -> list[APIRouter]:
    router = APIRouter(tags=["compat: seed 002"], responses=ERROR_RESPONSES)

    @router.post("/vectorize", response_model=VectorResponse)
    async def vectorize(req: TextRequest, request: Request) -> NumpyJSONResponse:
        vectors = await cancel_on_disconnect(request, _dense(served, req, req.text, "text"))
        return NumpyJSONResponse({"vector": vectors[0]})

    @router.post("/vectorize-batch", response_model=BatchVectorResponse)
    async def vectorize_batch(req: BatchTextRequest, request: Request) -> NumpyJSONResponse:
        vectors = await cancel_on_disconnect(request, _dense(served, req, req.items, "items"))
        return NumpyJSONResponse({"vectors": vectors})

    @router.post("/vectorize-hybrid", response_model=HybridVectorResponse)
    async def vectorize_hybrid(req: HybridTextRequest, request: Request) -> NumpyJSONResponse:
        vectors = await cancel_on_disconnect(request, _hybrid(served, req, req.text, "text"))
        return NumpyJSONResponse({"hybrid_vector": vectors[0]})

    @router.post("/vectorize-batch-hybrid", response_model=BatchHybridVectorResponse)
    async def vectorize_batch_hybrid(req: HybridBatchTextRequest,
                                     request: Request) -> NumpyJSONResponse:
        vectors = await cancel_on_disconnect(request, _hybrid(served, req, req.items, "items"))
        return NumpyJSONResponse({"hybrid_vectors": vectors})

    @router.post("/rerank", response_model=ScoresResponse)
    async def rerank(req: MaxSimRequest, request: Request) -> NumpyJSONResponse:
        return NumpyJSONResponse(await cancel_on_disconnect(request, _maxsim(served, req)))

    return [router]
