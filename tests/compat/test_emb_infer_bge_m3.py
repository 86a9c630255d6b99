"""Seed 001 (emb-infer-bge-m3) drop-in, behind a Bearer token as the seed runs: its documented
requests replayed against a server with ``API_TOKEN`` set (docs/compat.md, seed 001).

The server's model directories are named ``bge-m3`` and ``bge-reranker-v2-m3``, as the Hugging
Face ids end, so seed 003's short name for our default reranker is tried end to end here too.
"""

from __future__ import annotations

import httpx
import pytest

from server_process import start_server, stop_server

TOKEN = "seed-001-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def seed_server(model_dirs, tmp_path_factory):
    m3, reranker = model_dirs
    root = tmp_path_factory.mktemp("seed001")
    (root / "bge-m3").symlink_to(m3, target_is_directory=True)
    (root / "bge-reranker-v2-m3").symlink_to(reranker, target_is_directory=True)
    srv = start_server(["--embedder", str(root / "bge-m3"),
                        "--reranker", str(root / "bge-reranker-v2-m3")],
                       root / "server.log", env={"API_TOKEN": TOKEN},
                       ready_models=("bge-m3", "bge-reranker"))
    yield srv
    stop_server(srv)


@pytest.fixture
def api(seed_server):
    with httpx.Client(base_url=seed_server.url, timeout=60) as c:
        yield c


def post(api, json, headers=HEADERS):
    r = api.post("/v1/embeddings", headers=headers, json=json)
    assert r.status_code == 200, r.text
    return r.json()


def dims(api) -> int:
    models = api.get("/v1/models", headers=HEADERS).json()["data"]
    return next(m["dimensions"] for m in models if m["id"] == "bge-m3")


def assert_vectors(item, dense: bool, sparse: bool, colbert: bool, dim: int) -> None:
    assert item["object"] == "embedding" and isinstance(item["index"], int)
    assert ("dense_embedding" in item) is dense and ("sparse_embedding" in item) is sparse
    assert ("colbert_embedding" in item) is colbert
    if dense:
        assert len(item["dense_embedding"]) == dim
    if sparse:  # SPEC's {"indices", "values"}, not the seed's {token_id: weight}
        vec = item["sparse_embedding"]
        assert len(vec["indices"]) == len(vec["values"]) > 0
    if colbert:
        assert item["colbert_embedding"] and all(len(v) == dim for v in item["colbert_embedding"])


def test_health_is_open_and_accepts_the_token(api):
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        r = api.get("/health", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ok"


def test_every_other_route_needs_the_token(api):
    calls = [("POST", "/v1/embeddings", {"input": ["Текст для векторизации"]}),
             ("GET", "/stats", None), ("GET", "/v1/models", None), ("GET", "/models", None),
             ("POST", "/vectorize", {"text": "Hello world"}),
             ("POST", "/rerank", {"query": "q", "candidates": ["c"]}),
             ("POST", "/api/embed", {"input": "什么是机器学习？"})]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = api.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["type"] == "authentication_error"
        assert api.request(method, path, json=body, headers=HEADERS).status_code == 200, path


def test_all_vector_types_with_the_flags(api):
    """The seed's "all types" example. Without flags SPEC answers OpenAI's dense-only shape
    (docs/compat.md), so a seed client asks for all three explicitly."""
    plain = post(api, {"input": ["Текст для векторизации", "Еще один текст"]})
    assert plain["embedding_types"] == ["dense"] and "embedding" in plain["data"][0]
    result = post(api, {"input": ["Текст для векторизации", "Еще один текст"],
                        "return_dense": True, "return_sparse": True, "return_colbert": True})
    assert result["embedding_types"] == ["dense", "sparse", "colbert"]
    assert len(result["data"]) == 2
    for emb_data in result["data"]:
        assert_vectors(emb_data, True, True, True, dims(api))


@pytest.mark.parametrize(("text", "dense", "sparse", "colbert"), [
    ("Запрос пользователя", True, False, False),
    ("Ключевые слова поиска", False, True, False),
    ("Сложный поисковый запрос", True, False, True),
])
def test_selective_vector_generation(api, text, dense, sparse, colbert):
    result = post(api, {"input": [text], "return_dense": dense, "return_sparse": sparse,
                        "return_colbert": colbert})
    expected = [name for name, on in (("dense", dense), ("sparse", sparse),
                                      ("colbert", colbert)) if on]
    assert result["embedding_types"] == expected
    [item] = result["data"]
    assert_vectors(item, dense, sparse, colbert, dims(api))
    assert ("embedding" in item) is dense


def test_batch_of_texts(api):
    result = post(api, {"input": ["Первый документ для индексации",
                                  "Второй документ для индексации",
                                  "Третий документ для индексации"],
                        "return_dense": True, "return_sparse": True, "return_colbert": False})
    assert len(result["data"]) == 3 and [d["index"] for d in result["data"]] == [0, 1, 2]
    assert result["embedding_types"] == ["dense", "sparse"]


def test_stats_has_the_seed_blocks(api):
    post(api, {"input": "warm up"})
    body = api.get("/stats", headers=HEADERS).json()
    batching, config = body["batching"], body["config"]
    assert isinstance(batching["queue_size"], int) and batching["processed_requests"] >= 1
    assert isinstance(batching["average_batch_size"], int | float)
    assert isinstance(batching["average_processing_time"], int | float)
    for key in ("batch_size", "timeout_ms", "max_queue_size"):
        assert isinstance(config[key], int | float)


def test_models_list(api):
    body = api.get("/v1/models", headers=HEADERS).json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {"bge-m3", "bge-reranker"}
    assert all(m["object"] == "model" for m in body["data"])


def test_seed_003_short_name_of_the_default_reranker(api):
    r = api.post("/v1/rerank", headers=HEADERS, json={
        "model": "bge-reranker-v2-m3",
        "query": "Natural language processing",
        "documents": [
            "NLP helps computers understand human language.",
            "Cooking pasta requires boiling water first.",
            "Text analysis is a core component of NLP.",
        ],
    })
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "bge-reranker" and len(r.json()["results"]) == 3
