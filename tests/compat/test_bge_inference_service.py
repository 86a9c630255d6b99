"""Seed 000 (bge_inference_service) drop-in: its documented requests, replayed verbatim against
the core routes, answer its documented shapes (docs/compat.md, seed 000)."""

from __future__ import annotations


def is_floats(values, length=None) -> bool:
    return (isinstance(values, list) and all(isinstance(v, float) for v in values)
            and (length is None or len(values) == length))


def dimensions(client) -> int:
    models = client.get("/v1/models").json()["data"]
    return next(m["dimensions"] for m in models if m["id"] == "bge-m3")


def test_dense_embeddings_openai_compatible(client):
    r = client.post("/v1/embeddings", json={
        "model": "bge-m3",
        "input": ["Текст для обработки"],
        "encoding_format": "float",
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "bge-m3"
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert is_floats(item["embedding"], dimensions(client))
    usage = body["usage"]
    assert isinstance(usage["prompt_tokens"], int) and isinstance(usage["total_tokens"], int)


def test_sparse_embeddings(client):
    r = client.post("/v1/sparse-embeddings", json={"input": "Как зарегистрировать облигации?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["model"], str)
    [item] = body["data"]
    assert item["index"] == 0
    sparse = item["sparse"]
    assert sparse["indices"] and all(isinstance(i, int) for i in sparse["indices"])
    assert is_floats(sparse["values"], len(sparse["indices"]))
    assert sparse["mapping"] == "tokenizer" and isinstance(sparse["index_space"], int)
    assert max(sparse["indices"]) < sparse["index_space"]


def test_hybrid_embeddings_as_the_rag_pipeline_reads_them(client):
    r = client.post("/v1/hybrid-embeddings", json={"input": "Мой вопрос"})
    assert r.status_code == 200, r.text
    hybrid_data = r.json()["data"][0]
    assert is_floats(hybrid_data["dense"], dimensions(client))
    sparse = hybrid_data["sparse"]  # what the seed hands to Qdrant as a sparse query
    assert len(sparse["indices"]) == len(sparse["values"]) > 0


def test_rerank_cohere_style(client):
    r = client.post("/v1/rerank", json={
        "query": "регистрация выпуска",
        "documents": [
            "Инструкция по регистрации ценных бумаг...",
            "Кулинарный рецепт пиццы",
        ],
        "top_n": 1,
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["model"], str)
    [result] = body["results"]
    assert result["index"] in (0, 1) and isinstance(result["relevance_score"], float)
    # the seed shows "document": null; SPEC's Cohere shape leaves it out (docs/compat.md)
    assert result.get("document") is None


def test_rag_pipeline_rerank_step(client):
    """Step 3 of the seed's RAG example: rerank retrieved texts, keep the best 5."""
    texts = [f"Документ номер {i} о выпуске облигаций" for i in range(8)]
    rerank_req = {"query": "Мой вопрос", "documents": texts, "top_n": 5}
    top_hits = client.post("/v1/rerank", json=rerank_req).json()["results"]
    assert len(top_hits) == 5
    scores = [hit["relevance_score"] for hit in top_hits]
    assert scores == sorted(scores, reverse=True)
    assert len({hit["index"] for hit in top_hits}) == 5
