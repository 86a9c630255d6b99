"""``GET /v1/models``: the served models in OpenAI's list shape."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from .openapi import ERROR_RESPONSES
from .registry import ServedModels
from .responses import NumpyJSONResponse

_STARTED = int(time.time())


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    ready: bool
    kind: str
    root: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def model_list(served: ServedModels) -> dict:
    """The body of ``GET /v1/models`` (also seed 003's ``GET /models``, api/compat)."""
    data = []
    for model in served.all():
        entry = {"id": model.name, "object": "model", "created": _STARTED,
                 "owned_by": "bge-predictor", "ready": bool(model.ready)}
        if model.ready:
            entry.update(model.describe())
        else:
            entry.update({"kind": model.kind, "root": model.model_id})
        data.append(entry)
    return {"object": "list", "data": data}


def build_router(served: ServedModels) -> APIRouter:
    router = APIRouter(tags=["models"], responses={401: ERROR_RESPONSES[401]})

    @router.get("/v1/models", response_model=ModelList)
    async def list_models() -> NumpyJSONResponse:
        return NumpyJSONResponse(model_list(served))

    return router
