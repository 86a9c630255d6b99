"""Several models in one server process, chosen by the request's ``model`` field.

One real ``python -m predictor`` serves BGE-M3 and the demo reranker (SPEC flags), a dense
BGE v1.5 and an E5 (``--model``), and a GTE and a BERT cross-encoder (``--models_config``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import family_fixtures as ff
import httpx
import numpy as np
import pytest
import torch

try:
    from server_process import start_server, stop_server
except ImportError:  # older checkouts keep the helpers in conftest
    from conftest import start_server, stop_server

ATOL = 1e-5
TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.",
         "Kubernetes schedules containers onto nodes in a cluster. " * 5]
NAMES = ("bge-m3", "bge-reranker", "gte", "ms-marco", "bge-small", "multilingual-e5-small")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return ff.zoo(tmp_path_factory)


@pytest.fixture(scope="module")
def zoo_server(model_dirs, zoo, tmp_path_factory) -> Iterator:
    m3, reranker = model_dirs
    tmp = tmp_path_factory.mktemp("zoo-server")
    config = tmp / "models.yaml"
    config.write_text(
        "models:\n"
        f"  - name: gte\n    path: {zoo['gte']}\n    kind: embedder\n"
        f"  - name: ms-marco\n    path: {zoo['cross']}\n"
        "    aliases: [cross-encoder/ms-marco-MiniLM-L-6-v2, marco]\n")
    srv = start_server(
        ["--embedder", str(m3), "--reranker", str(reranker),
         "--model", f"name=bge-small,path={zoo['bge']},aliases=bge-en|BAAI/bge-small-en-v1.5",
         "--model", str(zoo["e5"]), "--models_config", str(config)],
        tmp / "server.log", ready_models=NAMES)
    yield srv
    stop_server(srv)


@pytest.fixture
def client(zoo_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=zoo_server.url, timeout=60) as c:
        yield c


def embed(client, model, texts=TEXTS, **extra) -> np.ndarray:
    body = {"input": list(texts), **extra}
    if model is not None:
        body["model"] = model
    resp = client.post("/v1/embeddings", json=body)
    assert resp.status_code == 200, resp.text
    return np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)


def error(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    return resp.json()["error"]


# --------------------------------------------------------------------------- listing

def test_every_model_is_listed_and_ready(client):
    data = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert tuple(data) == NAMES
    kinds = {name: (m["kind"], m["family"]) for name, m in data.items()}
    assert kinds == {"bge-m3": ("embedder", "bge-m3"), "bge-reranker": ("reranker",
                                                                        "cross-encoder"),
                     "bge-small": ("embedder", "bge"), "multilingual-e5-small": ("embedder",
                                                                                 "e5"),
                     "gte": ("embedder", "gte"), "ms-marco": ("reranker", "cross-encoder")}
    assert data["bge-m3"]["outputs"] == ["dense", "sparse", "colbert"]
    assert data["bge-small"]["outputs"] == ["dense"]
    assert data["bge-small"]["aliases"] == ["bge-en", "BAAI/bge-small-en-v1.5"]
    assert data["multilingual-e5-small"]["query_prefix"] == "query: "
    assert data["multilingual-e5-small"]["passage_prefix"] == "passage: "
    assert set(client.get("/v2/models").json()["models"]) == set(NAMES)
    for name in NAMES:
        assert client.get(f"/v2/models/{name}/ready").status_code == 200
    assert client.get("/openai/v1/models").json()["data"][2]["id"] == "gte"


# --------------------------------------------------------------------------- routing

def test_embedder_by_name_hf_id_alias_path_and_default(client, zoo):
    reference = embed(client, "bge-small")
    for model in ("bge-en", "BAAI/bge-small-en-v1.5", "BGE-SMALL-EN-V1.5", str(zoo["bge"]),
                  "bge-small-en-v1.5"):
        resp = client.post("/v1/embeddings", json={"model": model, "input": TEXTS})
        assert resp.status_code == 200, (model, resp.text)
        assert resp.json()["model"] == "bge-small"
        np.testing.assert_allclose(np.array([d["embedding"] for d in resp.json()["data"]]),
                                   reference, atol=1e-6)
    assert client.post("/v1/embeddings", json={"input": "x"}).json()["model"] == "bge-m3"
    assert client.post("/v1/embeddings",
                       json={"model": "multilingual-e5-small", "input": "x"}).json()["model"] \
        == "multilingual-e5-small"
    for name, dim in (("bge-m3", 64), ("bge-small", 32), ("gte", 32)):
        assert embed(client, name, ["x"]).shape == (1, dim)


def test_reranker_by_name_alias_and_default(client):
    docs = ["The giant panda is a bear.", "Paris is in France."]
    scores = {}
    for model in ("ms-marco", "marco", "cross-encoder/ms-marco-MiniLM-L-6-v2", "ms-marco-tiny-L2",
                  None):
        body = {"query": "what is a panda?", "documents": docs}
        if model is not None:
            body["model"] = model
        resp = client.post("/v1/rerank", json=body)
        assert resp.status_code == 200, resp.text
        scores[model] = (resp.json()["model"],
                         sorted((r["index"], r["relevance_score"]) for r in resp.json()["results"]))
    assert scores[None][0] == "bge-reranker"  # the first reranker is the default
    for model, result in scores.items():
        if model is not None:
            assert result == scores["ms-marco"], model


def test_unknown_model_is_404_and_wrong_kind_is_400(client):
    for path, body in (("/v1/embeddings", {"input": "x"}), ("/v1/rerank",
                                                           {"query": "q", "documents": ["d"]}),
                       ("/v1/sparse-embeddings", {"input": "x"})):
        err = error(client.post(path, json={**body, "model": "no-such-model"}), 404)
        assert err["code"] == "model_not_found"
    err = error(client.post("/v1/embeddings", json={"model": "marco", "input": "x"}), 400)
    assert err["code"] == "model_task_mismatch"
    err = error(client.post("/v1/sparse-embeddings", json={"model": "bge-reranker",
                                                           "input": "x"}), 400)
    assert err["code"] == "model_task_mismatch"
    resp = client.post("/v2/models/ms-marco/infer", json={
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]})
    assert resp.status_code == 400, resp.text
    # /v1/rerank with an embedder is self-reranking (core/self_rerank.py): a dense-only
    # model has no ColBERT vectors, so asking for them is a 400; by default it ranks by dense.
    err = error(client.post("/v1/rerank", json={"model": "bge-en", "query": "q",
                                                "documents": ["d"], "method": "colbert"}), 400)
    assert err["code"] == "unsupported_output"
    resp = client.post("/v1/rerank", json={"model": "bge-en", "query": "q", "documents": ["d"],
                                           "method": "dense"})
    assert resp.status_code == 200 and resp.json()["model"] == "bge-small", resp.text
    assert client.post("/v2/models/no-such-model/infer", json={"inputs": []}).status_code == 404


# --------------------------------------------------------------------------- families over HTTP

def test_bge_query_instruction_over_http(client, zoo):
    from FlagEmbedding import FlagAutoModel

    from predictor.runtime.families import BGE_EN_QUERY

    flag = FlagAutoModel.from_finetuned(str(zoo["bge"]), use_fp16=False, devices="cpu",
                                        query_instruction_for_retrieval=BGE_EN_QUERY)
    queries, passages = flag.encode_queries(TEXTS), flag.encode_corpus(TEXTS)
    np.testing.assert_allclose(embed(client, "bge-small", input_type="query"), queries,
                               atol=ATOL)
    np.testing.assert_allclose(embed(client, "bge-small", is_query=True), queries, atol=ATOL)
    np.testing.assert_allclose(embed(client, "bge-small"), passages, atol=ATOL)
    np.testing.assert_allclose(embed(client, "bge-small", input_type="document"), passages,
                               atol=ATOL)
    resp = client.post("/v1/embeddings", json={"model": "bge-small", "input": "hello world",
                                               "input_type": "query", "encoding_format":
                                               "base64"})
    vector = np.frombuffer(base64.b64decode(resp.json()["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(vector, queries[0], atol=ATOL)


def test_e5_prefixes_over_http(client, zoo):
    from FlagEmbedding import FlagAutoModel
    from transformers import AutoTokenizer

    flag = FlagAutoModel.from_finetuned(str(zoo["e5"]), use_fp16=False, devices="cpu",
                                        query_instruction_for_retrieval="query: ",
                                        passage_instruction_for_retrieval="passage: ")
    queries, passages = flag.encode_queries(TEXTS), flag.encode_corpus(TEXTS)
    e5 = "multilingual-e5-small"
    np.testing.assert_allclose(embed(client, e5, input_type="query"), queries, atol=ATOL)
    np.testing.assert_allclose(embed(client, e5, input_type="search_query"), queries, atol=ATOL)
    np.testing.assert_allclose(embed(client, e5, input_type="passage"), passages, atol=ATOL)
    np.testing.assert_allclose(embed(client, e5, is_query=False), passages, atol=ATOL)
    np.testing.assert_allclose(embed(client, e5), passages, atol=ATOL)  # default: passage
    # usage counts the prefix: the tokens the model really saw
    tok = AutoTokenizer.from_pretrained(str(zoo["e5"]))
    usage = client.post("/v1/embeddings", json={"model": e5, "input": TEXTS[:2],
                                                "input_type": "query"}).json()["usage"]
    assert usage["prompt_tokens"] == sum(len(tok("query: " + t)["input_ids"])
                                         for t in TEXTS[:2])
    # the V2 tensor route gives the same (default, passage) vectors
    resp = client.post(f"/v2/models/{e5}/infer", json={"inputs": [
        {"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}]})
    assert resp.status_code == 200, resp.text
    (out,) = resp.json()["outputs"]
    assert out["name"] == "dense" and out["shape"] == [len(TEXTS), 32]
    np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), passages, atol=ATOL)


def test_gte_and_cross_encoder_from_the_config_file(client, zoo):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    st = SentenceTransformer(str(zoo["gte"]), device="cpu")
    np.testing.assert_allclose(embed(client, "gte", input_type="query"), st.encode(TEXTS),
                               atol=ATOL)
    docs = ["The giant panda is a bear.", "Paris is in France.", TEXTS[2]]
    ce = CrossEncoder(str(zoo["cross"]), device="cpu", activation_fn=torch.nn.Identity())
    reference = ce.predict([("what is a panda?", d) for d in docs])
    resp = client.post("/v1/rerank", json={"model": "marco", "query": "what is a panda?",
                                           "documents": docs, "raw_scores": True})
    assert resp.status_code == 200, resp.text
    ours = sorted((r["index"], r["relevance_score"]) for r in resp.json()["results"])
    np.testing.assert_allclose([s for _, s in ours], reference, atol=ATOL)
    resp = client.post("/v1/rerank", json={"model": "marco", "query": "what is a panda?",
                                           "documents": docs})
    ours = sorted((r["index"], r["relevance_score"]) for r in resp.json()["results"])
    np.testing.assert_allclose([s for _, s in ours], 1 / (1 + np.exp(-reference)), atol=ATOL)


def test_dense_only_models_refuse_sparse_and_colbert(client):
    for body in ({"return_sparse": True}, {"return_colbert": True},
                 {"return_dense": True, "return_sparse": True}):
        err = error(client.post("/v1/embeddings", json={"model": "bge-small", "input": "x",
                                                        **body}), 400)
        assert err["code"] == "unsupported_output" and err["param"].startswith("return_")
    for path in ("/v1/sparse-embeddings", "/v1/hybrid-embeddings"):
        err = error(client.post(path, json={"model": "gte", "input": "x"}), 400)
        assert err["code"] == "unsupported_output"
    resp = client.post("/v2/models/bge-small/infer", json={
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
        "parameters": {"return_sparse": True}})
    assert resp.status_code == 400, resp.text
    meta = client.get("/v2/models/bge-small").json()
    assert [o["name"] for o in meta["outputs"]] == ["dense"]
    # the M3 model beside them still has all three
    resp = client.post("/v1/hybrid-embeddings", json={"model": "bge-m3", "input": "hello world",
                                                      "return_colbert": True})
    assert resp.status_code == 200 and resp.json()["data"][0]["colbert"]


def test_bad_input_type_is_400(client):
    err = error(client.post("/v1/embeddings", json={"model": "multilingual-e5-small",
                                                    "input": "x", "input_type": "banana"}), 400)
    assert err["param"] == "input_type"
    err = error(client.post("/v1/embeddings", json={"model": "multilingual-e5-small",
                                                    "input": "x", "input_type": "query",
                                                    "is_query": False}), 400)
    assert err["param"] == "is_query"
    # M3 has no prefixes: input_type is accepted and changes nothing
    np.testing.assert_allclose(embed(client, "bge-m3", input_type="query"),
                               embed(client, "bge-m3"), atol=1e-6)


def test_v2_input_type_parameter_selects_the_prefix(client):
    e5 = "multilingual-e5-small"
    tensor = {"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}
    for params, expected in (({"input_type": "query"}, embed(client, e5, input_type="query")),
                             ({"is_query": "false"}, embed(client, e5, input_type="passage"))):
        resp = client.post(f"/v2/models/{e5}/infer", json={"inputs": [tensor],
                                                           "parameters": params})
        assert resp.status_code == 200, resp.text
        (out,) = resp.json()["outputs"]
        np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), expected,
                                   atol=ATOL)
    resp = client.post(f"/v2/models/{e5}/infer", json={"inputs": [tensor],
                                                       "parameters": {"input_type": "banana"}})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input_type"


def test_org_slash_name_falls_back_to_the_served_name(client):
    """A model loaded from a directory (as KServe's /mnt/models) still answers to its HF id."""
    for model in ("BAAI/bge-m3", "someorg/bge-small"):
        assert client.post("/v1/embeddings", json={"model": model, "input": "x"}).status_code \
            == 200, model
    assert client.post("/v1/embeddings", json={"model": "BAAI/nope", "input": "x"}).status_code \
        == 404


def test_self_rerank_with_a_dense_only_model_defaults_to_dense(client):
    resp = client.post("/v1/rerank", json={"model": "bge-small", "query": "what is a panda?",
                                           "documents": ["The giant panda is a bear.", "Paris"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["meta"]["method"] == "dense"
