"""FastAPI routes of the rerank task: ``/v1/rerank`` (Cohere v1 / Jina) and ``/v2/rerank``
(Cohere v2). Same request schema and results; ``meta.api_version`` tells them apart."""

from __future__ import annotations

from fastapi import APIRouter, Request

from predictor.api.http.disconnect import cancel_on_disconnect
from predictor.api.http.registry import ServedModels
from predictor.api.http.rerank import serving
from predictor.api.http.rerank.protocol import RerankRequest, RerankResponse
from predictor.api.http.responses import NumpyJSONResponse


def build_router(served: ServedModels) -> APIRouter:
    router = APIRouter(tags=["rerank"])

    @router.post("/v1/rerank", response_model=RerankResponse)
    async def rerank_v1(req: RerankRequest, request: Request) -> NumpyJSONResponse:
        return NumpyJSONResponse(
            await cancel_on_disconnect(request, serving.rerank(served, req, "1")))

    @router.post("/v2/rerank", response_model=RerankResponse)
    async def rerank_v2(req: RerankRequest, request: Request) -> NumpyJSONResponse:
        return NumpyJSONResponse(
            await cancel_on_disconnect(request, serving.rerank(served, req, "2")))

    return router
