"""Live checks against a deployed predictor (hack/kind-e2e.sh runs them on a kind cluster).

Environment:
  E2E_BASE_URL            the embedder's base URL, e.g. http://127.0.0.1:8080 (required)
  E2E_RERANKER_BASE_URL   the reranker's base URL (default: E2E_BASE_URL, for a pod serving both)
  E2E_EMBEDDER_NAME       served embedder name (default bge-m3)
  E2E_RERANKER_NAME       served reranker name (default bge-reranker)
  E2E_API_TOKEN           bearer token, when the deployment sets one

Run: ``E2E_BASE_URL=http://127.0.0.1:8080 pytest -m e2e tests/e2e``
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.e2e

EMBEDDER_URL = os.environ.get("E2E_BASE_URL", "").rstrip("/")
RERANKER_URL = os.environ.get("E2E_RERANKER_BASE_URL", "").rstrip("/") or EMBEDDER_URL
EMBEDDER_NAME = os.environ.get("E2E_EMBEDDER_NAME", "bge-m3")
RERANKER_NAME = os.environ.get("E2E_RERANKER_NAME", "bge-reranker")
TOKEN = os.environ.get("E2E_API_TOKEN", "")

if not EMBEDDER_URL:
    pytest.skip(
        "E2E_BASE_URL is not set: these tests need a live deployment (hack/kind-e2e.sh)",
        allow_module_level=True,
    )


def _client(base_url: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def embedder() -> Iterator[httpx.Client]:
    with _client(EMBEDDER_URL) as client:
        yield client


@pytest.fixture(scope="module")
def reranker() -> Iterator[httpx.Client]:
    with _client(RERANKER_URL) as client:
        yield client


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


@pytest.mark.parametrize(
    ("which", "name"), [("embedder", EMBEDDER_NAME), ("reranker", RERANKER_NAME)]
)
def test_v2_health_and_model_ready(request, which: str, name: str) -> None:
    client: httpx.Client = request.getfixturevalue(which)
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    r = client.get(f"/v2/models/{name}/ready")
    assert r.status_code == 200, r.text
    meta = client.get(f"/v2/models/{name}")
    assert meta.status_code == 200, meta.text
    assert meta.json()["name"] == name


def test_openai_embeddings(embedder: httpx.Client) -> None:
    r = embedder.post("/v1/embeddings", json={"input": ["hello", "world"], "model": EMBEDDER_NAME})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1]
    dims = {len(d["embedding"]) for d in body["data"]}
    assert len(dims) == 1 and dims.pop() > 1
    for d in body["data"]:
        assert math.isclose(_norm(d["embedding"]), 1.0, abs_tol=1e-3)
    assert body["usage"]["prompt_tokens"] > 0


def test_v2_infer_dense(embedder: httpx.Client) -> None:
    payload = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "world"]}]
    }
    r = embedder.post(f"/v2/models/{EMBEDDER_NAME}/infer", json=payload)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    dense = outputs["dense"]
    assert dense["datatype"] == "FP32"
    n, dim = dense["shape"]
    assert n == 2 and dim > 1 and len(dense["data"]) == n * dim


def test_rerank(reranker: httpx.Client) -> None:
    r = reranker.post(
        "/v1/rerank",
        json={
            "model": RERANKER_NAME,
            "query": "what is the capital of France?",
            "documents": ["Paris is the capital of France.", "Bananas are yellow."],
            "return_documents": True,
        },
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert sorted(x["index"] for x in results) == [0, 1]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all("text" in x["document"] for x in results)


def test_unknown_model_is_404(embedder: httpx.Client) -> None:
    r = embedder.post("/v1/embeddings", json={"input": "hi", "model": "no-such-model"})
    assert r.status_code == 404, r.text
    assert "error" in r.json()
