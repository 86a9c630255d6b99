"""Seed 004 (``vllm-embedding-cpu``): Ollama-style ``POST /api/embed``.

``{"input": str | [str], "encoding_format"?: "float" | "base64", "model"?}`` →
``{"model", "embeddings": [[...], ...], "total_duration", "load_duration",
"prompt_eval_count"}``: durations in nanoseconds (this request's, and the model's load time),
``prompt_eval_count`` the request's tokens. Ollama's own request fields (``truncate``,
``dimensions``, ``options``, ``keep_alive``) are accepted too, so Ollama clients work;
``options`` and ``keep_alive`` are ignored. Unknown fields are ignored, as in the seed.

The vectors are BGE-M3's dense (CLS) vectors, as on ``/v1/embeddings``; the seed mean-pooled
the last hidden state instead, so vectors it stored differ (docs/compat.md).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from predictor.api.http.disconnect import cancel_on_disconnect
from predictor.api.http.embeddings.serving import b64_array
from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.api.http.responses import NumpyJSONResponse
from predictor.core.embedder import Embedder
from predictor.core.types import EncodeOptions, Output


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] = Field(description="A text or a list of texts.")
    model: str | None = Field(None, description="A served embedder; the first one by default.")
    encoding_format: Literal["float", "base64"] = "float"
    truncate: bool = Field(True, description="Truncate texts over the limit (else 400).")
    dimensions: int | None = Field(None, description="Rejected unless the model's own.")
    options: dict[str, Any] | None = Field(None, description="Ollama: accepted, ignored.")
    keep_alive: str | float | None = Field(None, description="Ollama: accepted, ignored.")


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float] | str]
    total_duration: int = Field(description="Nanoseconds spent on this request.")
    load_duration: int = Field(description="Nanoseconds the model took to load.")
    prompt_eval_count: int = Field(description="Tokens in the input.")


async def embed(served: ServedModels, req: EmbedRequest, started_ns: int) -> dict[str, Any]:
    served_model = served.get(req.model, "embedder")
    model = served.service(served_model)
    assert isinstance(model, Embedder)
    model.check_dimensions(req.dimensions)
    options = EncodeOptions(outputs=frozenset({Output.DENSE}), truncate=req.truncate)
    result = await model.encode(req.input, options)
    vectors = [emb.dense for emb in result.embeddings]
    if req.encoding_format == "base64":
        vectors = [b64_array(v, "float32") for v in vectors]
    return {"model": model.name, "embeddings": vectors,
            "total_duration": time.perf_counter_ns() - started_ns,
            "load_duration": int(served_model.load_seconds * 1e9),
            "prompt_eval_count": result.prompt_tokens}


def build_routers(served: ServedModels) -> list[APIRouter]:
    router = APIRouter(tags=["compat: seed 004"], responses=ERROR_RESPONSES)

    @router.post("/api/embed", response_model=EmbedResponse, summary="Ollama-style embeddings")
    async def api_embed(req: EmbedRequest, request: Request) -> NumpyJSONResponse:
        started = time.perf_counter_ns()
        return NumpyJSONResponse(await cancel_on_disconnect(request, embed(served, req, started)))

    return [router]
