"""The models this server serves, looked up by the request's ``model`` field.

A model answers to its served name, its Hugging Face id or path, and the id's last segment
(``BAAI/bge-m3`` → ``bge-m3``), case-insensitively. A requested ``org/name`` that matches
nothing whole is tried by its last segment too, so a model KServe loaded from ``/mnt/models``
and named ``bge-m3`` still answers to ``BAAI/bge-m3``. No ``model`` means the first of the kind.

The registry holds the served models (their lifecycle: name, ``ready``, ``describe()``,
``stats()``) and hands the routes their services (``core.embedder.Embedder``,
``core.reranker.Reranker``): ``embedder()``, ``reranker()``, ``service()``.
"""

from __future__ import annotations

from typing import Any, cast

from predictor.core.embedder import Embedder
from predictor.core.reranker import Reranker
from predictor.errors import ModelNotFoundError, NotReadyError, WrongModelKindError

TASKS = {"embedder": "embeddings", "reranker": "reranking"}


def aliases_of(model: Any) -> set[str]:
    names = {model.name, getattr(model, "model_id", model.name)}
    names |= {name.rstrip("/").rsplit("/", 1)[-1] for name in list(names)}
    names |= set(getattr(model, "aliases", ()))
    return {name.lower() for name in names if name}


class ServedModels:
    def __init__(self, models: list[Any]):
        self.models = list(models)

    def all(self) -> list[Any]:
        return list(self.models)

    def find(self, requested: str | None) -> Any | None:
        if requested is None:
            return None
        key = requested.strip().lower()
        for model in self.models:
            if model.name.lower() == key:
                return model
        for model in self.models:
            if key in aliases_of(model):
                return model
        if "/" in key.rstrip("/"):
            return self.find(key.rstrip("/").rsplit("/", 1)[-1])
        return None

    def get(self, requested: str | None, kind: str) -> Any:
        """The model of ``kind`` the request names (or the first of that kind)."""
        if requested is None or (isinstance(requested, str) and not requested.strip()):
            for model in self.models:
                if model.kind == kind:
                    return model
            raise ModelNotFoundError(f"<any {kind}>")
        model = self.find(requested)
        if model is None:
            raise ModelNotFoundError(requested)
        if model.kind != kind:
            raise WrongModelKindError(requested, TASKS[kind])
        return model

    @staticmethod
    def service(model: Any) -> Embedder | Reranker:
        """The service of a served model; 503 while it is not loaded."""
        if model.service is None:
            raise NotReadyError(model.name)
        return model.service

    def embedder(self, requested: str | None) -> Embedder:
        """The embedder service the request names (or the first embedder)."""
        return cast(Embedder, self.service(self.get(requested, "embedder")))

    def reranker(self, requested: str | None) -> Reranker:
        """The reranker service the request names (or the first reranker)."""
        return cast(Reranker, self.service(self.get(requested, "reranker")))
