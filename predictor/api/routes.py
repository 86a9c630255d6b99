"""Puts our JSON routes on KServe's FastAPI app, at ``/v1/...`` and ``/openai/v1/...``.

They are added before KServe adds its own, so ``GET /v1/models`` is ours (OpenAI shape), while
KServe's ``/v1/models/{name}:predict`` and the V2 routes stay KServe's.
"""

from __future__ import annotations

from fastapi import FastAPI

from . import models_router
from .embeddings import router as embeddings_router
from .error_handlers import install_error_handlers, reassert_error_handlers_on_startup
from .registry import ServedModels
from .v2_content_type import V2JsonContentType

PREFIXES = ("", "/openai")


def install_routes(app: FastAPI, served: ServedModels) -> None:
    routers = [embeddings_router.build_router(served), models_router.build_router(served)]
    for prefix in PREFIXES:
        for router in routers:
            app.include_router(router, prefix=prefix, include_in_schema=prefix == "")
    app.add_middleware(V2JsonContentType)
    install_error_handlers(app)
    reassert_error_handlers_on_startup(app)
