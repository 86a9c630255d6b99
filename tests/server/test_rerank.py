"""Reranking: /v1/rerank, /v2/rerank (Cohere v1 and v2 shapes), V2 infer, embedder self-rerank.

Fidelity references are FlagEmbedding's own ``FlagReranker.compute_score`` and
``BGEM3FlagModel.compute_score`` on the same random-weight model directories.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from server_process import triton_grpc

ATOL = 1e-5
QUERY = "Which city is the capital of France?"
DOCS = [
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Paris",
    "Kubernetes schedules containers onto nodes in a cluster. " * 12,
    "Der schnelle braune Fuchs springt über den faulen Hund.",
]
LONG_DOC = "Photosynthesis converts light energy into chemical energy in plants. " * 40


def post_all(url: str, calls: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Send every (path, body) at the same moment, so that their pairs share engine batches."""
    barrier = threading.Barrier(len(calls))

    def send(call):
        path, body = call
        with httpx.Client(base_url=url, timeout=120) as c:
            barrier.wait()
            return c.post(path, json=body)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(send, calls))


def pair_tokens(tokenizer, query: str, docs: list[str]) -> int:
    return sum(len(tokenizer(query, doc)["input_ids"]) for doc in docs)


def assert_ranked(body: dict, expected: list[float], top_n: int | None = None) -> None:
    """Results sorted by score (ties by index), carrying original indices and scores."""
    results = body["results"]
    order = sorted(range(len(expected)), key=lambda i: (-expected[i], i))[:top_n]
    assert [r["index"] for r in results] == order
    got = [r["relevance_score"] for r in results]
    np.testing.assert_allclose(got, [expected[i] for i in order], rtol=0, atol=ATOL)


def assert_error(resp: httpx.Response, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


# -- cross-encoder ------------------------------------------------------------------------

def test_cross_encoder_matches_flag_reranker_under_concurrency(server, flag_reranker):
    """Concurrent requests of different sizes and lengths, through every route: the scores
    equal FlagReranker.compute_score for each pair, whatever batch the pairs landed in."""
    docs_b = [LONG_DOC, "Paris is in France.", "hello world"]
    docs_c = DOCS[::-1] + ["Tokyo is the capital of Japan."]
    calls = [
        ("/v1/rerank", {"query": QUERY, "documents": DOCS}),
        ("/openai/v1/rerank", {"query": "plants and light", "documents": docs_b,
                               "raw_scores": True, "model": "bge-reranker"}),
        ("/v2/rerank", {"query": "capital of Japan", "documents": docs_c, "top_n": 3,
                        "return_documents": True}),
    ]
    responses = post_all(server.url, calls)
    references = [
        flag_reranker.compute_score([[QUERY, d] for d in DOCS], normalize=True, max_length=8192),
        flag_reranker.compute_score([["plants and light", d] for d in docs_b], normalize=False,
                                    max_length=8192),
        flag_reranker.compute_score([["capital of Japan", d] for d in docs_c], normalize=True,
                                    max_length=8192),
    ]
    tok = flag_reranker.tokenizer
    for (path, body), resp, ref in zip(calls, responses, references, strict=True):
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert_ranked(out, ref, body.get("top_n"))
        assert out["model"] == "bge-reranker" and out["id"]
        tokens = pair_tokens(tok, body["query"], body["documents"])
        assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
        meta = out["meta"]
        assert meta["api_version"]["version"] == ("2" if path.startswith("/v2") else "1")
        assert meta["billed_units"]["search_units"] == 1
        assert meta["tokens"]["input_tokens"] == tokens and meta["timing"]["total_ms"] > 0
        if not body.get("raw_scores"):
            assert all(0 < r["relevance_score"] < 1 for r in out["results"])
        if body.get("return_documents"):
            assert all(r["document"] == {"text": body["documents"][r["index"]]}
                       for r in out["results"])
        else:
            assert all("document" not in r for r in out["results"])


def test_long_document_truncated_on_the_document_side(client, flag_reranker):
    """Over max_length, the document is cut (as FlagReranker does), never dropped; with
    truncate=false it is a 400 naming the document."""
    docs = ["short one", LONG_DOC]
    resp = client.post("/v1/rerank", json={"query": QUERY, "documents": docs, "max_length": 48,
                                           "raw_scores": True})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert_ranked(out, flag_reranker.compute_score([[QUERY, d] for d in docs], normalize=False,
                                                   max_length=48))
    assert out["usage"]["prompt_tokens"] == len(flag_reranker.tokenizer(QUERY, docs[0])[
        "input_ids"]) + 48
    assert "truncated" in " ".join(out["meta"]["warnings"])
    resp = client.post("/v1/rerank", json={"query": QUERY, "documents": docs, "max_length": 48,
                                           "truncate": False})
    assert_error(resp, 400, "documents[1]")


def test_model_limit_is_8192(client):
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["bge-reranker"]["max_model_len"] == 8192


# -- embedder self-rerank -----------------------------------------------------------------

def test_self_rerank_matches_bgem3_compute_score(server, flag_m3):
    """Every method against BGEM3FlagModel.compute_score (same lengths, 8192), concurrently."""
    weights = [0.4, 0.2, 0.4]
    calls = [("/v1/rerank", {"model": "bge-m3", "query": QUERY, "documents": DOCS,
                             **extra})
             for extra in ({}, {"method": "dense"}, {"method": "sparse"},
                           {"method": "hybrid"}, {"method": "hybrid", "weights": weights})]
    responses = post_all(server.url, calls)
    pairs = [[QUERY, d] for d in DOCS]
    # compute_score's default lengths are 512; ours are the model's own (8192). Its batched
    # ColBERT score can also let padding win a max (see core/self_rerank.py); not with these texts.
    kwargs = {"max_query_length": 8192, "max_passage_length": 8192}
    ref = flag_m3.compute_score(pairs, **kwargs)
    ref_w = flag_m3.compute_score(pairs, weights_for_different_modes=weights, **kwargs)
    expected = [ref["colbert"], ref["dense"], ref["sparse"], ref["colbert+sparse+dense"],
                ref_w["colbert+sparse+dense"]]
    assert max(ref["sparse"]) > 0  # the demo model's sparse head is not all zeros
    tok = flag_m3.tokenizer
    tokens = len(tok(QUERY)["input_ids"]) + sum(len(tok(d)["input_ids"]) for d in DOCS)
    for (_, body), resp, exp in zip(calls, responses, expected, strict=True):
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["model"] == "bge-m3"
        assert out["meta"]["method"] == body.get("method", "colbert")
        assert out["usage"]["prompt_tokens"] == tokens
        assert_ranked(out, exp)  # raw similarities, no sigmoid


def test_self_rerank_encodes_the_query_once():
    """The query goes to the embedder in exactly one encode call, as one text."""
    import asyncio

    from predictor.core.self_rerank import self_rerank
    from predictor.core.types import Embedding, EncodeResult, SparseVector

    calls = []

    class FakeEmbedder:
        async def encode(self, texts, options, param="input"):
            texts = [texts] if isinstance(texts, str) else list(texts)
            calls.append((param, texts))
            embs = [Embedding(num_tokens=3, dense=np.ones(4, np.float32) / 2,
                              sparse=SparseVector(np.array([5], np.int64),
                                                  np.array([0.5], np.float32)),
                              colbert=np.ones((2, 4), np.float32) / 2) for _ in texts]
            return EncodeResult(embeddings=embs, prompt_tokens=3 * len(texts))

    result = asyncio.run(self_rerank(FakeEmbedder(), "q", ["a", "b", "c"], method="hybrid",
                                     weights=None))
    assert sorted(calls) == [("documents", ["a", "b", "c"]), ("query", ["q"])]
    assert result.num_tokens == 12
    np.testing.assert_allclose(result.scores, [(1 + 0.25 + 1) / 3] * 3)


# -- clients: cohere SDK v1 and v2, tritonclient ------------------------------------------

def test_cohere_sdk_v1_and_v2(server):
    import cohere

    v1 = cohere.Client(api_key="any", base_url=server.url)
    docs = ["Paris is the capital of France.", {"text": "Tokyo is in Japan.", "id": "doc-7"},
            "Bananas are yellow."]
    res = v1.rerank(model="bge-reranker", query=QUERY, documents=docs, top_n=2,
                    return_documents=True)
    assert len(res.results) == 2 and res.id
    assert res.results[0].relevance_score >= res.results[1].relevance_score
    for r in res.results:
        assert 0 < r.relevance_score < 1
        expected = docs[r.index]
        assert r.document.text == (expected if isinstance(expected, str) else expected["text"])
    assert res.meta.api_version.version == "1" and res.meta.billed_units.search_units == 1

    v2 = cohere.ClientV2(api_key="any", base_url=f"{server.url}/openai")
    res2 = v2.rerank(model="bge-reranker", query=QUERY, documents=[d for d in docs
                                                                   if isinstance(d, str)])
    assert [r.index for r in res2.results] != [] and len(res2.results) == 2
    assert res2.meta.api_version.version == "2"
    res3 = v2.rerank(model="bge-m3", query=QUERY, documents=["Paris", "Tokyo", "Bananas"],
                     top_n=1, max_tokens_per_doc=16)
    assert len(res3.results) == 1 and res3.meta.billed_units.search_units == 1

    # top_n beyond the documents returns them all (as Cohere does); below 1 stays a 400.
    assert len(v2.rerank(model="bge-reranker", query=QUERY, documents=["a"], top_n=5).results) == 1
    with pytest.raises(cohere.BadRequestError):
        v2.rerank(model="bge-reranker", query=QUERY, documents=["a"], top_n=0)


def test_v1_v2_infer_http_and_grpc(server, flag_reranker):
    import tritonclient.http as httpclient

    docs = DOCS[:3]
    logits = flag_reranker.compute_score([[QUERY, d] for d in docs], normalize=False,
                                         max_length=8192)
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
    meta = client.get_model_metadata("bge-reranker")
    assert {i["name"] for i in meta["inputs"]} == {"query", "documents"}
    query = httpclient.InferInput("query", [1], "BYTES")
    query.set_data_from_numpy(np.array([QUERY.encode()], dtype=object))
    documents = httpclient.InferInput("documents", [len(docs)], "BYTES")
    documents.set_data_from_numpy(np.array([d.encode() for d in docs], dtype=object),
                                  binary_data=True)
    result = client.infer("bge-reranker", [query, documents],
                          parameters={"normalize": False})
    scores = result.as_numpy("scores")
    assert scores.dtype == np.float32 and scores.shape == (len(docs),)
    np.testing.assert_allclose(scores, logits, rtol=0, atol=ATOL)

    v1 = httpx.post(f"{server.url}/v1/models/bge-reranker:predict", timeout=60, json={
        "instances": [{"query": QUERY, "document": d} for d in docs],
        "parameters": {"normalize": False}})
    assert v1.status_code == 200, v1.text
    np.testing.assert_allclose(v1.json()["predictions"], logits, rtol=0, atol=ATOL)

    sigmoid = 1 / (1 + np.exp(-np.asarray(logits)))
    inputs = [{"name": "query", "data": [QUERY] * len(docs)}, {"name": "documents", "data": docs}]
    normalized, raw, missing = triton_grpc([
        {"url": server.grpc_url, "model": "bge-reranker", "inputs": inputs},
        {"url": server.grpc_url, "model": "bge-reranker", "inputs": inputs,
         "parameters": {"normalize": False}},
        {"url": server.grpc_url, "model": "bge-reranker", "inputs": inputs[1:]},
    ])
    np.testing.assert_allclose(normalized["outputs"]["scores"], sigmoid, rtol=0, atol=ATOL)
    np.testing.assert_allclose(raw["outputs"]["scores"], logits, rtol=0, atol=ATOL)
    assert missing["error"]["status"] == "StatusCode.INVALID_ARGUMENT"


# -- bad input ----------------------------------------------------------------------------

BAD = [
    ({"query": QUERY, "documents": []}, 400, "documents"),
    ({"query": QUERY}, 400, "documents"),
    ({"query": "", "documents": ["a"]}, 400, "query"),
    ({"query": "   ", "documents": ["a"]}, 400, "query"),
    ({"query": QUERY, "documents": ["a", " "]}, 400, "documents[1]"),
    ({"query": QUERY, "documents": ["a", {"title": "no text"}]}, 400, "documents[1]"),
    ({"query": QUERY, "documents": ["a", "b"], "top_n": 0}, 400, "top_n"),
    ({"query": QUERY, "documents": ["a", "b"], "top_n": -1}, 400, "top_n"),
    ({"query": QUERY, "documents": ["a"] * 1001}, 400, "documents"),
    ({"query": QUERY, "documents": ["a"], "model": "bge-m3", "method": "bm25"}, 400, "method"),
    ({"query": QUERY, "documents": ["a"], "model": "bge-m3", "method": "hybrid",
      "weights": [1, 2]}, 400, "weights"),
    ({"query": QUERY, "documents": ["a"], "model": "bge-m3", "weights": [1, 1, 1]}, 400,
     "weights"),
    ({"query": QUERY, "documents": ["a"], "method": "dense"}, 400, "method"),
    ({"query": QUERY, "documents": ["a"], "max_length": 10**6}, 400, "max_length"),
    ({"query": QUERY, "documents": ["a"], "unknown_field": 1}, 400, "unknown_field"),
    ({"query": QUERY, "documents": ["a"], "model": "no-such-model"}, 404, "model"),
]


def test_bad_input_is_a_clear_4xx_and_the_server_lives_on(client):
    for body, status, param in BAD:
        for path in ("/v1/rerank", "/v2/rerank"):
            assert_error(client.post(path, json=body), status, param)
    # wrong model kind: the reranker asked for embeddings; the embedder given reranker inputs
    for path in ("/v1/embeddings", "/openai/v1/sparse-embeddings"):
        error = assert_error(client.post(path, json={"model": "bge-reranker", "input": "x"}),
                             400, "model")
        assert error["code"] == "model_task_mismatch"
    v2 = {"inputs": [{"name": "query", "shape": [1], "datatype": "BYTES", "data": ["q"]},
                     {"name": "documents", "shape": [1], "datatype": "BYTES", "data": ["d"]}]}
    assert_error(client.post("/v2/models/bge-m3/infer", json=v2), 400)
    assert_error(client.post("/v2/models/bge-reranker/infer", json={"inputs": v2["inputs"][:1]}),
                 400)
    assert_error(client.post("/v1/models/bge-reranker:predict", json={"instances": ["q"]}), 400,
                 "instances")
    ok = client.post("/v1/rerank", json={"query": QUERY, "documents": ["a", "b"], "top_n": 2})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2
