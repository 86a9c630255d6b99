"""Seed 000 (``bge_inference_service``, port 8011): every route it documents is a core route.

- ``POST /v1/embeddings`` ``{"model", "input", "encoding_format"}``: the core OpenAI route.
- ``POST /v1/sparse-embeddings`` ``{"input"}`` → ``{"model", "data": [{"index", "sparse":
  {"indices", "values", "mapping", "index_space"}}]}``: the core route (plus ``object``,
  ``usage``).
- ``POST /v1/hybrid-embeddings`` ``{"input"}`` → ``data[i].dense``, ``data[i].sparse``: core.
- ``POST /v1/rerank`` ``{"query", "documents", "top_n"}`` → ``{"model", "results": [{"index",
  "relevance_score"}]}``: core. Differences SPEC imposes (sigmoid scores, ``document`` absent
  rather than ``null`` without ``return_documents``) are in docs/compat.md.

So this module adds no route; it exists so that each seed has its place in the package.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..registry import ServedModels


def build_routers(served: ServedModels) -> list[APIRouter]:
    return []
