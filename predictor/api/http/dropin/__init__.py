"""Drop-in routes for clients of the five seed services (docs/compat.md).

One module per route family the seeds had and the core lacks, named by what it serves. Where a
seed's route shares its path with a core route (``/v1/embeddings``, ``/v1/sparse-embeddings``,
``/v1/hybrid-embeddings``, ``/v1/rerank``, ``/v1/models``, ``/stats``), there is no second
route: the core route accepts the seed's request and answers a superset of both shapes (SPEC
wins where they truly conflict; docs/compat.md says what a seed client sees). The modules
here hold only the seeds' own paths:

- ``health``: seed 001's ``GET /health`` (also what seeds 002 and 003 probe);
- ``vectorize``: seed 002's ``/vectorize``, ``/vectorize-batch``, ``/vectorize-hybrid``,
  ``/vectorize-batch-hybrid``, ``/rerank`` (ColBERT MaxSim);
- ``model_list``: seed 003's ``GET /models``;
- ``ollama``: seed 004's Ollama-style ``POST /api/embed``.

Seed 000 (``bge_inference_service``) needs none: every route it documents is a core route
(``/v1/embeddings``, ``/v1/sparse-embeddings``, ``/v1/hybrid-embeddings``, ``/v1/rerank``); the
differences SPEC imposes (sigmoid scores, ``document`` absent rather than ``null`` without
``return_documents``) are in docs/compat.md.

``--compat_routes false`` (``COMPAT_ROUTES=false``) leaves them all out.

``training``: seed 002's ``/fine-tune``, ``/fine-tune-lora``, ``/train-status/{job_id}``, served
only with ``--training`` (``TRAINING=true``), whatever ``--compat_routes`` says.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from predictor.api.http.dropin import health, model_list, ollama, training, vectorize
from predictor.api.http.registry import ServedModels
from predictor.settings import Settings

DROP_INS = (health, vectorize, model_list, ollama)


def compat_routers(served: ServedModels, settings: Settings, *,
                   gpu_available: Callable[[], bool] | None = None) -> list[APIRouter]:
    """The seeds' own routers (none when ``compat_routes`` is off), and the training routes
    when ``training`` is on (``gpu_available``: see ``training.build_routers``)."""
    routers = []
    if settings.compat_routes:
        routers = [router for module in DROP_INS for router in module.build_routers(served)]
    if settings.training:
        routers += training.build_routers(served, settings, gpu_available=gpu_available)
    return routers


def build_router(served: ServedModels, settings: Settings, *,
                 gpu_available: Callable[[], bool] | None = None) -> APIRouter:
    """All of them in one router, for ``app.install_routes``."""
    router = APIRouter()
    for sub in compat_routers(served, settings, gpu_available=gpu_available):
        router.include_router(sub)
    return router
