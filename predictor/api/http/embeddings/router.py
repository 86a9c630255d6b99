"""FastAPI routes of the embedding task."""

from __future__ import annotations

from fastapi import APIRouter, Request

from predictor.api.http.disconnect import cancel_on_disconnect
from predictor.api.http.embeddings import serving
from predictor.api.http.embeddings.protocol import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    HybridEmbeddingsRequest,
    HybridEmbeddingsResponse,
    SparseEmbeddingsRequest,
    SparseEmbeddingsResponse,
)
from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.api.http.responses import NumpyJSONResponse


def build_router(served: ServedModels) -> APIRouter:
    router = APIRouter(tags=["embeddings"], responses=ERROR_RESPONSES)

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse)
    async def embeddings(req: EmbeddingsRequest, request: Request) -> NumpyJSONResponse:
        model = served.embedder(req.model)
        return NumpyJSONResponse(
            await cancel_on_disconnect(request, serving.create_embeddings(model, req)))

    @router.post("/v1/sparse-embeddings", response_model=SparseEmbeddingsResponse)
    async def sparse_embeddings(req: SparseEmbeddingsRequest,
                                request: Request) -> NumpyJSONResponse:
        model = served.embedder(req.model)
        return NumpyJSONResponse(
            await cancel_on_disconnect(request, serving.create_sparse_embeddings(model, req)))

    @router.post("/v1/hybrid-embeddings", response_model=HybridEmbeddingsResponse)
    async def hybrid_embeddings(req: HybridEmbeddingsRequest,
                                request: Request) -> NumpyJSONResponse:
        model = served.embedder(req.model)
        return NumpyJSONResponse(
            await cancel_on_disconnect(request, serving.create_hybrid_embeddings(model, req)))

    return router
