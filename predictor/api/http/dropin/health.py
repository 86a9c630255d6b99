"""Seed 001 (``emb-infer-bge-m3``): ``GET /health``.

Its other routes are core routes: ``POST /v1/embeddings`` with ``return_dense`` /
``return_sparse`` / ``return_colbert`` (answering ``dense_embedding`` / ``sparse_embedding`` /
``colbert_embedding`` and ``embedding_types``), ``GET /stats`` (the ``batching`` and ``config``
blocks of its README), ``GET /v1/models``; its Bearer auth is the core ``--api_token``.

``/health`` is open without a token (like the KServe probes, ``auth.OPEN_PATHS``): seed 001
clients send their token anyway, which is accepted. Seed 001 answered ``{"status": "ok"}`` and
seed 002 ``{"status": "ok", "model": ...}`` (seed 003 probes the same path); the body here is a
superset of both. 200 once every model is loaded, else a 503 error.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.api.http.responses import NumpyJSONResponse
from predictor.errors import NotReadyError


class ModelHealth(BaseModel):
    id: str
    kind: str
    ready: bool


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always 'ok' on a 200.")
    model: str | None = Field(description="The default embedder (else the first model).")
    models: list[ModelHealth]


def health_body(served: ServedModels) -> dict:
    models = served.all()
    default = next((m for m in models if m.kind == "embedder"), models[0] if models else None)
    return Health(status="ok", model=default.name if default is not None else None,
                  models=[ModelHealth(id=m.name, kind=m.kind, ready=bool(m.ready))
                          for m in models]).model_dump()


def build_routers(served: ServedModels) -> list[APIRouter]:
    router = APIRouter(tags=["compat: seed 001"], responses=ERROR_RESPONSES)

    @router.get("/health", response_model=Health, summary="Service health (seeds 001-003)")
    async def health() -> NumpyJSONResponse:
        for model in served.all():
            if not model.ready:
                raise NotReadyError(model.name)
        return NumpyJSONResponse(health_body(served))

    return [router]
