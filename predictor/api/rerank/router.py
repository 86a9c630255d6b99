"""FastAPI routes of the rerank task: ``/v1/rerank`` (Cohere v1 / Jina) and ``/v2/rerank``
(Cohere v2). Same request schema and results; ``meta.api_version`` tells them apart."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..disconnect import cancel_on_disconnect
from ..registry import ServedModels
from ..responses import NumpyJSONResponse
from . import serving
from .protocol import RerankRequest, RerankResponse


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
