"""Request and response schemas of the rerank routes (SPEC ``POST /v1/rerank``).

One request schema serves both generations of Cohere's API, Jina's and ours: it holds every
field the ``cohere`` SDK's ``Client.rerank`` (v1) and ``ClientV2.rerank`` (v2) may send, plus
our extensions (``raw_scores``, ``truncate``, ``max_length``, ``method``, ``weights``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["colbert", "dense", "sparse", "hybrid"]


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="The search query (never truncated).")
    documents: list[str | dict[str, Any]] = Field(
        description="Texts, or objects with a 'text' field (other fields are returned as given).")
    model: str | None = Field(
        None, description="A served reranker or embedder: name, Hugging Face id, or omitted.")
    top_n: int | None = Field(None, description="Return the best n results (at least 1; "
                                 "more than the documents returns them all).")
    return_documents: bool = Field(False, description="Echo each document in its result.")
    raw_scores: bool = Field(False, description="Cross-encoder: the raw logit, not its sigmoid.")
    rank_fields: list[str] | None = Field(
        None, description="Cohere v1: the object fields to rank on, in order ('text' by default).")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="Cohere v2: cut each document to this many tokens.")
    max_chunks_per_doc: int | None = Field(
        None, ge=1, description="Score a long document chunk by chunk (chunks of "
                                "max_tokens_per_doc, else as long as fits beside the query), "
                                "up to this many chunks; its score is its best chunk's.")
    relevant_spans: dict[str, Any] | None = Field(
        None, description="Cohere v2: only mode 'disabled' is supported.")
    priority: int | None = Field(None, description="Cohere v2: accepted and ignored.")
    truncate: bool = Field(True, description="Truncate pairs over max_length (else 400).")
    max_length: int | None = Field(
        None, ge=1, description="Token limit of a pair (cross-encoder) or of a text (embedder).")
    method: Method | None = Field(
        None, description="Embedder self-rerank: colbert (default), dense, sparse or hybrid.")
    weights: list[float] | None = Field(
        None, description="Hybrid self-rerank weights [dense, sparse, colbert]; [1, 1, 1].")


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str | None = None


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage
    meta: dict[str, Any]
