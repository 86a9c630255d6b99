"""Seed 004 (vllm-embedding-cpu) drop-in: Ollama-style /api/embed, requests from its README
(docs/compat.md, seed 004)."""

from __future__ import annotations

import base64

import numpy as np

ATOL = 1e-5
BATCH = ["机器学习是人工智能的一个分支", "今天天气很好", "机器学习使用算法从数据中学习模式"]


def test_single_text(client):
    r = client.post("/api/embed", json={"input": "什么是机器学习？", "encoding_format": "float"})
    assert r.status_code == 200, r.text
    results = r.json()
    assert set(results) == {"model", "embeddings", "total_duration", "load_duration",
                            "prompt_eval_count"}
    assert results["model"] == "bge-m3"
    [vector] = results["embeddings"]
    assert vector and all(isinstance(v, float) for v in vector)
    assert isinstance(results["total_duration"], int) and results["total_duration"] > 0
    assert isinstance(results["load_duration"], int) and results["load_duration"] > 0
    assert f"{results['total_duration'] / 1e9:.2f}"  # the README's client prints seconds


def test_batch_matches_the_openai_route(client):
    r = client.post("/api/embed", json={"input": BATCH, "encoding_format": "float"})
    assert r.status_code == 200, r.text
    results = r.json()
    assert len(results["embeddings"]) == 3
    core = client.post("/v1/embeddings", json={"input": BATCH}).json()
    np.testing.assert_allclose(results["embeddings"], [d["embedding"] for d in core["data"]],
                               atol=ATOL)
    assert results["prompt_eval_count"] == core["usage"]["prompt_tokens"]


def test_ollama_client_fields_and_base64(client):
    r = client.post("/api/embed", json={"model": "bge-m3", "input": ["hello"], "truncate": True,
                                        "keep_alive": "5m", "options": {"num_thread": 4}})
    assert r.status_code == 200, r.text
    floats = r.json()["embeddings"][0]
    r = client.post("/api/embed", json={"input": ["hello"], "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(r.json()["embeddings"][0]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats, atol=ATOL)


def test_errors_are_openai_shaped(client):
    for body, param in (({"input": ""}, "input[0]"), ({"input": []}, "input"),
                        ({"input": "x", "dimensions": 3}, "dimensions"),
                        ({"input": "x", "model": "nope"}, "model")):
        r = client.post("/api/embed", json=body)
        assert r.status_code in (400, 404), r.text
        assert r.json()["error"]["param"] == param
