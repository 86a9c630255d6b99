"""Seed 003 (rerank-api) drop-in: /v1/rerank with its ``meta``, /models, /health, short model
names; requests from its README (docs/compat.md, seed 003). The seed's default reranker,
``jina-reranker-v2-multilingual``, is not served by the test server: those examples name
``bge-reranker`` instead. The short name of our default reranker, ``bge-reranker-v2-m3``, is
replayed end to end in test_emb_infer_bge_m3.py (a server whose directories carry the hub names).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from predictor.api.http.dropin import compat_routers
from predictor.api.http.registry import ServedModels
from predictor.settings import Settings


def test_rerank_with_meta(client):
    r = client.post("/v1/rerank", json={
        "model": "bge-reranker",  # the seed names jina-reranker-v2-multilingual
        "query": "What is machine learning?",
        "documents": [
            "Machine learning is a branch of artificial intelligence.",
            "Today is a beautiful sunny day.",
            "Deep learning is a method of machine learning.",
        ],
        "top_n": 2,
        "return_documents": True,
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "bge-reranker"
    assert len(body["results"]) == 2
    for result in body["results"]:
        assert isinstance(result["index"], int) and 0 <= result["relevance_score"] <= 1
        # SPEC's {"text": ...} where the seed had the bare string (docs/compat.md)
        assert isinstance(result["document"]["text"], str)
    meta = body["meta"]
    assert isinstance(meta["processing_time_ms"], int) and meta["processing_time_ms"] >= 0
    assert meta["total_documents"] == 3 and meta["returned_documents"] == 2
    assert meta["api_version"] == {"version": "1"}  # Cohere's object, not the seed's "v1"


def test_rerank_python_client_example(client):
    query = "machine learning algorithms"
    docs = [
        "Machine learning is a subset of artificial intelligence",
        "Today's weather is sunny and warm",
        "Neural networks are powerful ML algorithms",
        "Cooking requires fresh ingredients",
    ]
    results = client.post("/v1/rerank", json={
        "model": "bge-reranker",  # the seed names bce-reranker-base_v1
        "query": query, "documents": docs, "top_n": 5 - 1, "return_documents": True,
    }).json()
    assert len(results["results"]) == 4 and results["meta"]["returned_documents"] == 4
    for result in results["results"]:
        f"Score: {result['relevance_score']:.3f} - {result['document']}"  # noqa: B018


@pytest.mark.parametrize("text", ["Natural language processing is fascinating.",
                                  ["First text to embed", "Second text to embed",
                                   "Third text to embed"]])
def test_embeddings_by_short_name(client, text):
    r = client.post("/v1/embeddings", json={"model": "bge-m3", "input": text})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "bge-m3"
    assert len(body["data"]) == (1 if isinstance(text, str) else 3)
    for i, item in enumerate(body["data"]):
        assert item["object"] == "embedding" and item["index"] == i and item["embedding"]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_models(client):
    r = client.get("/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == client.get("/v1/models").json()
    assert body["object"] == "list"
    for card in body["data"]:
        assert card["object"] == "model" and isinstance(card["created"], int)
        assert isinstance(card["id"], str) and isinstance(card["owned_by"], str)


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert {m["id"] for m in r.json()["models"]} == {"bge-m3", "bge-reranker"}


def model(name, model_id, kind):
    return SimpleNamespace(name=name, model_id=model_id, kind=kind, aliases=(), ready=True)


def test_short_names_of_the_default_models_resolve():
    """Seed 003's short names for the hub models we serve by default."""
    served = ServedModels([model("bge-m3", "BAAI/bge-m3", "embedder"),
                           model("bge-reranker", "BAAI/bge-reranker-v2-m3", "reranker")])
    assert served.get("bge-m3", "embedder").name == "bge-m3"
    assert served.get("BAAI/bge-m3", "embedder").name == "bge-m3"
    assert served.get("bge-reranker-v2-m3", "reranker").name == "bge-reranker"
    assert served.get("BGE-Reranker-v2-M3", "reranker").name == "bge-reranker"


def test_compat_routes_can_be_turned_off():
    served = ServedModels([])
    paths = {route.path for router in compat_routers(served, Settings()) for route in router.routes}
    assert {"/health", "/models", "/vectorize", "/vectorize-batch", "/vectorize-hybrid",
            "/vectorize-batch-hybrid", "/rerank", "/api/embed"} <= paths
    assert compat_routers(served, Settings(compat_routes=False)) == []
