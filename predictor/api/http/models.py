"""``GET /v1/models`` and ``GET /v1/models/{id}``: the served models in OpenAI's shapes.

``GET /v1/models/{id}`` is also KServe's V1 model status route (``{"name", "ready"}``); ours
answers OpenAI's model object (what ``openai``'s ``models.retrieve`` reads) with KServe's
``name`` and ``ready`` beside it, and keeps KServe's statuses: 404 unknown, 503 not ready.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.api.http.responses import NumpyJSONResponse
from predictor.errors import ModelNotFoundError, NotReadyError

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


class ModelObject(ModelCard):
    name: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def model_card(model) -> ModelCard:
    facts = model.describe() if model.ready else {"kind": model.kind, "root": model.model_id}
    return ModelCard(id=model.name, created=_STARTED, owned_by="bge-predictor",
                     ready=bool(model.ready), **facts)


def model_list(served: ServedModels) -> dict:
    """The body of ``GET /v1/models`` (also seed 003's ``GET /models``: dropin/model_list.py)."""
    return ModelList(data=[model_card(model) for model in served.all()]).model_dump()


def build_router(served: ServedModels) -> APIRouter:
    router = APIRouter(tags=["models"], responses={401: ERROR_RESPONSES[401]})

    @router.get("/v1/models", response_model=ModelList)
    async def list_models() -> NumpyJSONResponse:
        return NumpyJSONResponse(model_list(served))

    @router.get("/v1/models/{model_id:path}", response_model=ModelObject,
                responses={404: ERROR_RESPONSES[404], 503: ERROR_RESPONSES[503]})
    async def retrieve_model(model_id: str) -> NumpyJSONResponse:
        """One model by any name it answers to (served name, Hugging Face id, alias)."""
        model = served.find(model_id)
        if model is None:
            raise ModelNotFoundError(model_id, param="model_id")
        if not model.ready:
            raise NotReadyError(model.name)
        card = model_card(model)
        return NumpyJSONResponse(ModelObject(**card.model_dump(), name=model.name).model_dump())

    return router
