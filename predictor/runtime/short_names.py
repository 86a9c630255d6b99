"""Short names of well-known models, served as aliases beside the id's last segment."""

from __future__ import annotations

# Short names of well-known models (seed 003's list) where they differ from the id's last
# segment; the last segment itself is always an alias (``api/registry.aliases_of``).
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "hotchpotch/japanese-reranker-cross-encoder-large-v1": ("japanese-reranker-large",),
    "hotchpotch/japanese-reranker-cross-encoder-base-v1": ("japanese-reranker-base",),
    "hotchpotch/japanese-reranker-cross-encoder-small-v1": ("japanese-reranker-small",),
    "hotchpotch/japanese-bge-reranker-v2-m3-v1": ("japanese-bge-v2-m3",),
    "jinaai/jina-reranker-v2-base-multilingual": ("jina-reranker-v2-multilingual",),
    "alibaba-nlp/gte-multilingual-reranker-base": ("gte-multilingual-reranker",),
    "mixedbread-ai/mxbai-rerank-large-v1": ("mxbai-rerank-large",),
    "jinaai/jina-reranker-v1-turbo-en": ("jina-reranker-turbo",),
    "mu-kindai/japanese-simcse-bert-large-unsup": ("japanese-simcse-large",),
    "sonoisa/sentence-luke-japanese-base-lite": ("luke-japanese-base",),
    "pkshatech/glucose-base-ja-v2": ("glucose-ja-v2",),
    "nvidia/nv-embed-v2": ("nv-embed-v2",),
    "intfloat/e5-mistral-7b-instruct": ("e5-mistral-7b",),
    "mixedbread-ai/mxbai-embed-large-v1": ("mxbai-embed-large",),
}


def short_names(model_id: str) -> tuple[str, ...]:
    return SHORT_NAMES.get(model_id.strip().rstrip("/").lower(), ())
