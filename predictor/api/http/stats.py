"""``GET /stats``: batching summary in seed 001's shape, plus per-model detail."""

from __future__ import annotations

from fastapi import APIRouter

from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.api.http.responses import NumpyJSONResponse
from predictor.settings import Settings


def build_router(served: ServedModels, settings: Settings) -> APIRouter:
    router = APIRouter(tags=["monitoring"], responses={401: ERROR_RESPONSES[401]})

    @router.get("/stats")
    async def stats() -> NumpyJSONResponse:
        per_model = {model.name: model.stats() for model in served.all()}
        engines = [m.batcher for m in served.all() if m.batcher is not None]
        batches = sum(e.stats.batches for e in engines)
        items = sum(e.stats.items for e in engines)
        busy = sum(e.stats.busy_seconds for e in engines)
        body = {
            "batching": {
                "queue_size": sum(e.queue_size for e in engines),
                "processed_requests": sum(e.stats.requests for e in engines),
                "average_batch_size": round(items / batches, 3) if batches else 0,
                "average_processing_time": round(busy / batches, 6) if batches else 0,
            },
            "config": {
                "batch_size": settings.max_batch_size,
                "max_batch_tokens": max((e.max_batch_tokens for e in engines),
                                        default=settings.max_batch_tokens),
                "timeout_ms": settings.batch_wait_ms,
                "max_queue_size": settings.max_queue_size,
                "request_timeout_s": settings.request_timeout,
            },
            "models": per_model,
        }
        return NumpyJSONResponse(body)

    return router
