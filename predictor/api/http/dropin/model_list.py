"""Seed 003 (``rerank-api``): ``GET /models``, and its short model names.

Its other routes are core routes: ``POST /v1/rerank`` (the core adds seed 003's ``meta`` fields
``processing_time_ms``, ``total_documents`` and ``returned_documents`` next to Cohere's),
``POST /v1/embeddings``, ``GET /health`` (``health.py``).

``GET /models`` is the OpenAI list ``{"object": "list", "data": [{"id", "object", "created",
"owned_by", ...}]}`` as seed 003's API reference shows it, the same body as ``GET /v1/models``.

Short names: ``model`` resolves through ``registry.aliases_of``: the served name, the Hugging
Face id, its last segment (``BAAI/bge-m3`` → ``bge-m3``, ``BAAI/bge-reranker-v2-m3`` →
``bge-reranker-v2-m3``: seed 003's short names for our default models) and ``model.aliases``
(where ``runtime.families.SHORT_NAMES`` puts seed 003's other short names, such as
``jina-reranker-v2-multilingual``, for models served with ``--model``).
"""

from __future__ import annotations

from fastapi import APIRouter

from predictor.api.http.models import ModelList, model_list
from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.api.http.responses import NumpyJSONResponse


def build_routers(served: ServedModels) -> list[APIRouter]:
    router = APIRouter(tags=["compat: seed 003"], responses=ERROR_RESPONSES)

    @router.get("/models", response_model=ModelList, summary="Served models (seed 003)")
    async def models() -> NumpyJSONResponse:
        return NumpyJSONResponse(model_list(served))

    return [router]
