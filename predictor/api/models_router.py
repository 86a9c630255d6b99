"""``GET /v1/models``: the served models in OpenAI's list shape."""

from __future__ import annotations

import time

from fastapi import APIRouter

from .registry import ServedModels
from .responses import NumpyJSONResponse

_STARTED = int(time.time())


def build_router(served: ServedModels) -> APIRouter:
    router = APIRouter(tags=["models"])

    @router.get("/v1/models")
    async def list_models() -> NumpyJSONResponse:
        data = []
        for model in served.all():
            entry = {"id": model.name, "object": "model", "created": _STARTED,
                     "owned_by": "bge-predictor", "ready": bool(model.ready)}
            if model.ready:
                entry.update(model.describe())
            else:
                entry.update({"kind": model.kind, "root": model.model_id})
            data.append(entry)
        return NumpyJSONResponse({"object": "list", "data": data})

    return router
