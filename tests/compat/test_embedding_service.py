"""Seed 002 (embedding-service) drop-in: /vectorize, /vectorize-batch, /vectorize-hybrid,
/vectorize-batch-hybrid and the ColBERT MaxSim /rerank, replayed from its README against the
shared server (docs/compat.md, seed 002)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from predictor.api.http.dropin import vectorize as seed002
from predictor.api.http.registry import ServedModels
from predictor.core.types import Embedding, EncodeResult

ATOL = 1e-5


def openai_dense(client, texts):
    body = client.post("/v1/embeddings", json={"input": texts}).json()
    return [d["embedding"] for d in body["data"]]


def test_vectorize_single(client):
    r = client.post("/vectorize", json={"text": "Hello world", "is_query": True})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"vector"}
    np.testing.assert_allclose(r.json()["vector"], openai_dense(client, ["Hello world"])[0],
                               atol=ATOL)


def test_vectorize_batch(client):
    items = ["Hello world", "Machine learning is great"]
    r = client.post("/vectorize-batch", json={"items": items, "is_query": False})
    assert r.status_code == 200, r.text
    vectors = r.json()["vectors"]
    assert len(vectors) == 2
    np.testing.assert_allclose(vectors, openai_dense(client, items), atol=ATOL)


def test_vectorize_hybrid(client):
    r = client.post("/vectorize-hybrid", json={"text": "Hello world", "return_colbert": True})
    assert r.status_code == 200, r.text
    vec = r.json()["hybrid_vector"]
    assert set(vec) == {"dense", "sparse", "colbert"}
    dim = len(vec["dense"])
    assert vec["colbert"] and all(len(row) == dim for row in vec["colbert"])
    # {token: weight}: the tokens and weights of the core's sparse route, max per string
    core = client.post("/v1/sparse-embeddings", json={"input": "Hello world",
                                                       "return_tokens": True}).json()
    sparse = core["data"][0]["sparse"]
    expected: dict[str, float] = {}
    for token, weight in zip(sparse["tokens"], sparse["values"], strict=True):
        expected[token] = max(weight, expected.get(token, 0.0))
    assert vec["sparse"].keys() == expected.keys()
    np.testing.assert_allclose([vec["sparse"][t] for t in expected], list(expected.values()),
                               atol=ATOL)


def test_vectorize_hybrid_without_colbert_and_by_token_id(client):
    r = client.post("/vectorize-hybrid", json={"text": "Hello world", "sparse_keys": "token_id"})
    vec = r.json()["hybrid_vector"]
    assert vec["colbert"] is None
    core = client.post("/v1/sparse-embeddings", json={"input": "Hello world"}).json()
    sparse = core["data"][0]["sparse"]
    expected = dict(zip(map(str, sparse["indices"]), sparse["values"], strict=True))
    assert vec["sparse"] == pytest.approx(expected, abs=ATOL)


def test_vectorize_batch_hybrid(client):
    r = client.post("/vectorize-batch-hybrid", json={"items": ["Text 1", "Text 2"],
                                                     "return_colbert": True})
    assert r.status_code == 200, r.text
    vectors = r.json()["hybrid_vectors"]
    assert len(vectors) == 2
    for vec in vectors:
        assert vec["dense"] and vec["sparse"] and vec["colbert"]


def test_rerank_maxsim_scores_in_candidate_order(client):
    body = {
        "query": "What is hybrid search?",
        "candidates": [
            "Hybrid search combines dense and sparse vectors.",
            "ColBERT uses late interaction for better precision.",
            "Unrelated text about cooking.",
        ],
        "batch_size": 12,
    }
    r = client.post("/rerank", json=body)
    assert r.status_code == 200, r.text
    scores = r.json()["scores"]
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    # the same MaxSim as the core's embedder self-rerank (fidelity-tested there)
    core = client.post("/v1/rerank", json={"model": "bge-m3", "method": "colbert",
                                           "query": body["query"],
                                           "documents": body["candidates"]}).json()
    by_index = {res["index"]: res["relevance_score"] for res in core["results"]}
    np.testing.assert_allclose(scores, [by_index[i] for i in range(3)], atol=ATOL)


def test_rerank_edge_cases(client):
    assert client.post("/rerank", json={"query": "q", "candidates": []}).json() == {"scores": []}
    r = client.post("/rerank", json={"query": " ", "candidates": ["x"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "query"
    r = client.post("/rerank", json={"query": "q", "candidates": ["x", ""]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "candidates[1]"
    r = client.post("/vectorize", json={"text": ""})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("text")
    r = client.post("/vectorize-hybrid", json={"text": "x", "model": "bge-reranker"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_task_mismatch"


def test_is_query_reaches_the_encoder(client):
    """is_query picks the query or passage form (E5 prefixes); BGE-M3 has none, so the vectors
    agree, and the flag arrives as EncodeOptions.input_type."""
    q = client.post("/vectorize", json={"text": "Hello world", "is_query": True}).json()
    p = client.post("/vectorize", json={"text": "Hello world", "is_query": False}).json()
    np.testing.assert_allclose(q["vector"], p["vector"], atol=ATOL)

    seen = []

    class Recorder:
        name, kind, ready, model_id, aliases = "e5", "embedder", True, "intfloat/e5", ()

        @property
        def service(self):  # the registry hands the routes a served model's service
            return self

        async def encode(self, texts, options, param="input"):
            seen.append(options.input_type)
            n = 1 if isinstance(texts, str) else len(texts)
            return EncodeResult([Embedding(1, dense=np.zeros(2, np.float32))] * n, n)

    served = ServedModels([Recorder()])
    for req in (seed002.TextRequest(text="a"), seed002.TextRequest(text="a", is_query=False),
                seed002.BatchTextRequest(items=["a"]),
                seed002.BatchTextRequest(items=["a"], is_query=True)):
        asyncio.run(seed002._dense(served, req, "a", "text"))
    assert seen == ["query", "passage", "passage", "query"]
