"""Puts our JSON routes and middleware on KServe's FastAPI app.

Routes exist at ``/v1/...`` and ``/openai/v1/...``. They are added before KServe adds its own,
so ``GET /v1/models`` is ours (OpenAI shape), while KServe's ``/v1/models/{name}:predict`` and
the V2 routes stay KServe's. Middleware, outermost first: request counting, bearer auth, body
size limit, lone-surrogate check, plain-JSON V2 content type. (``cli.py`` adds KServe's
``V2JsonResponseType`` around them all: api/http does not import api/kserve.)
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from predictor.api.http import dropin, models, stats
from predictor.api.http.embeddings import router as embeddings_router
from predictor.api.http.error_handlers import (
    install_error_handlers,
    reassert_error_handlers_on_startup,
)
from predictor.api.http.middleware import BearerAuth, BodyLimit, CountRequests, RejectLoneSurrogates
from predictor.api.http.openapi import install_openapi
from predictor.api.http.registry import ServedModels
from predictor.api.http.rerank import router as rerank_router
from predictor.api.http.v2_content_type import V2JsonContentType
from predictor.settings import Settings

PREFIXES = ("", "/openai")


def install_routes(app: FastAPI, served: ServedModels, settings: Settings, *,
                   gpu_available: Callable[[], bool] | None = None) -> None:
    """``gpu_available``: whether this process sees a CUDA GPU (the composition root knows;
    the training routes refuse Q-LoRA without one)."""
    routers = [embeddings_router.build_router(served), models.build_router(served),
               rerank_router.build_router(served)]
    for prefix in PREFIXES:
        for router in routers:
            app.include_router(router, prefix=prefix, include_in_schema=prefix == "")
    app.include_router(stats.build_router(served, settings))
    app.include_router(dropin.build_router(served, settings,  # seed drop-in routes
                                           gpu_available=gpu_available))
    app.add_middleware(V2JsonContentType)  # added first = innermost
    app.add_middleware(RejectLoneSurrogates)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(BearerAuth, token=settings.api_token,
                       repository_api=settings.repository_api)
    app.add_middleware(CountRequests)
    install_openapi(app)
    install_error_handlers(app)
    reassert_error_handlers_on_startup(app)
