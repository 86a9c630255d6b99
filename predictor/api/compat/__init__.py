"""Drop-in routes for clients of the five seed services (docs/compat.md).

One module per seed, apart from the core. Where a seed's route shares its path with a core route
(``/v1/embeddings``, ``/v1/sparse-embeddings``, ``/v1/hybrid-embeddings``, ``/v1/rerank``,
``/v1/models``, ``/stats``), there is no second route: the core route accepts the seed's request
and answers a superset of both shapes (SPEC wins where they truly conflict; docs/compat.md says
what a seed client sees). The modules here hold only the seeds' own paths:

- ``seed000``: none (every route of seed 000 is a core route);
- ``seed001``: ``GET /health`` (also what seeds 002 and 003 probe);
- ``seed002``: ``/vectorize``, ``/vectorize-batch``, ``/vectorize-hybrid``,
  ``/vectorize-batch-hybrid``, ``/rerank`` (ColBERT MaxSim);
- ``seed003``: ``GET /models``;
- ``seed004``: Ollama-style ``POST /api/embed``.

``--compat_routes false`` (``COMPAT_ROUTES=false``) leaves them all out.

``training``: seed 002's ``/fine-tune``, ``/fine-tune-lora``, ``/train-status/{job_id}``, served
only with ``--training`` (``TRAINING=true``), whatever ``--compat_routes`` says.
"""

from __future__ import annotations

from fastapi import APIRouter

from ...settings import Settings
from ..registry import ServedModels
from . import seed000, seed001, seed002, seed003, seed004, training

SEEDS = (seed000, seed001, seed002, seed003, seed004)


def compat_routers(served: ServedModels, settings: Settings) -> list[APIRouter]:
    """The seeds' own routers (none when ``compat_routes`` is off), and the training routes
    when ``training`` is on."""
    routers = []
    if getattr(settings, "compat_routes", True):
        routers = [router for seed in SEEDS for router in seed.build_routers(served)]
    if getattr(settings, "training", False):
        routers += training.build_routers(served, settings)
    return routers


def build_router(served: ServedModels, settings: Settings) -> APIRouter:
    """All of them in one router, for ``routes.install_routes``."""
    router = APIRouter()
    for sub in compat_routers(served, settings):
        router.include_router(sub)
    return router
