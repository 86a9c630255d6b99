"""The JSON embedding routes against a real server process, driven as users drive them."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from predictor.core.sparse import hash_token

from fidelity import TEXTS, assert_dense_close, assert_sparse_close, reference


@pytest.fixture(scope="module")
def ref(flag_m3):
    return reference(flag_m3, TEXTS)


def assert_openai_error(response, status, param=None):
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize("prefix", ["", "/openai"])
def test_embeddings_openai_shape(client, ref, prefix):
    r = client.post(f"{prefix}/v1/embeddings", json={"input": TEXTS[:3], "model": "bge-m3"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "bge-m3"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for i, item in enumerate(body["data"]):
        assert item["object"] == "embedding"
        assert "sparse_embedding" not in item
        assert_dense_close(item["embedding"], ref["dense_vecs"][i])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 3


def test_usage_counts_real_tokens(client, flag_m3):
    r = client.post("/v1/embeddings", json={"input": ["hello world", "a"]})
    expected = sum(len(flag_m3.tokenizer(t)["input_ids"]) for t in ["hello world", "a"])
    assert r.json()["usage"]["prompt_tokens"] == expected


def test_model_by_hugging_face_id_path_and_omitted(client, server, m3_dir):
    for model in (str(m3_dir), m3_dir.name, None):
        body = {"input": "hi"} | ({"model": model} if model else {})
        assert client.post("/v1/embeddings", json=body).status_code == 200


def test_openai_sdk_float_and_base64(server, ref):
    from openai import OpenAI

    sdk = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    floats = sdk.embeddings.create(model="bge-m3", input=TEXTS[:2], encoding_format="float")
    assert len(floats.data) == 2 and floats.usage.prompt_tokens > 0
    for i, item in enumerate(floats.data):
        assert_dense_close(item.embedding, ref["dense_vecs"][i])
    # Asked for base64 explicitly, the SDK hands back the string...
    b64 = sdk.embeddings.create(model="bge-m3", input=TEXTS[:2], encoding_format="base64")
    for i, item in enumerate(b64.data):
        decoded = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
        assert_dense_close(decoded, ref["dense_vecs"][i])
    # ... and by default it requests base64 itself and decodes it to floats.
    default = sdk.embeddings.create(model="bge-m3", input=TEXTS[0])
    assert_dense_close(default.data[0].embedding, ref["dense_vecs"][0])
    openai_prefix = OpenAI(base_url=f"{server.url}/openai/v1", api_key="unused")
    assert openai_prefix.embeddings.create(model="bge-m3", input="x").data


def test_base64_is_little_endian_float32(client, ref):
    r = client.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert_dense_close(np.frombuffer(raw, dtype="<f4"), ref["dense_vecs"][0])


def test_return_flags_add_extension_fields(client, ref):
    r = client.post("/v1/embeddings", json={"input": TEXTS[3], "return_sparse": True,
                                            "return_colbert": True, "return_dense": False})
    item = r.json()["data"][0]
    assert "embedding" not in item and "dense_embedding" not in item
    sp = item["sparse_embedding"]
    assert_sparse_close(sp["indices"], sp["values"], ref["lexical_weights"][3])
    assert np.asarray(item["colbert_embedding"]).shape == ref["colbert_vecs"][3].shape


def test_sparse_embeddings_tokenizer_mapping_with_tokens(client, ref, flag_m3):
    r = client.post("/v1/sparse-embeddings", json={"input": [TEXTS[3], TEXTS[1]],
                                                   "return_tokens": True})
    assert r.status_code == 200, r.text
    body = r.json()
    for item, i in zip(body["data"], (3, 1), strict=True):
        sp = item["sparse"]
        assert sp["mapping"] == "tokenizer" and sp["index_space"] == len(flag_m3.tokenizer)
        assert_sparse_close(sp["indices"], sp["values"], ref["lexical_weights"][i])
        assert sp["tokens"] == [flag_m3.tokenizer.decode([j]) for j in sp["indices"]]
    assert body["usage"]["prompt_tokens"] > 0


def test_sparse_embeddings_hash_mapping(client, ref, flag_m3):
    r = client.post("/openai/v1/sparse-embeddings",
                    json={"input": TEXTS[3], "sparse_token_mapping": "hash"})
    sp = r.json()["data"][0]["sparse"]
    assert sp["mapping"] == "hash" and sp["index_space"] == 1 << 20
    expected: dict[int, float] = {}
    for token_id, weight in ref["lexical_weights"][3].items():
        key = hash_token(flag_m3.tokenizer.decode([int(token_id)]), 1 << 20)
        expected[key] = max(expected.get(key, 0.0), float(weight))
    assert_sparse_close(sp["indices"], sp["values"], expected)


def test_hybrid_embeddings(client, ref):
    r = client.post("/v1/hybrid-embeddings", json={"input": TEXTS[:2], "return_colbert": True})
    assert r.status_code == 200, r.text
    for i, item in enumerate(r.json()["data"]):
        assert item["index"] == i
        assert_dense_close(item["dense"], ref["dense_vecs"][i])
        assert_sparse_close(item["sparse"]["indices"], item["sparse"]["values"],
                            ref["lexical_weights"][i])
        assert np.asarray(item["colbert"]).shape == ref["colbert_vecs"][i].shape
    plain = client.post("/v1/hybrid-embeddings", json={"input": "x"}).json()["data"][0]
    assert "colbert" not in plain


def test_models_list(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert by_id["bge-m3"]["kind"] == "embedder" and by_id["bge-m3"]["max_model_len"] == 8192
    assert by_id["bge-reranker"]["kind"] == "reranker"
    assert client.get("/openai/v1/models").json() == body


@pytest.mark.parametrize("body, param", [
    ({"input": []}, "input"),
    ({"input": ""}, "input[0]"),
    ({"input": ["ok", "  "]}, "input[1]"),
    ({"input": 42}, None),
    ({"input": ["ok", 7]}, None),
    ({"input": [[1, 2, 3]]}, None),
    ({}, "input"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 32}, "dimensions"),
    ({"input": "x", "max_length": 0}, "max_length"),
    ({"input": "x", "max_length": 9000}, "max_length"),
    ({"input": "x", "unknown_field": 1}, "unknown_field"),
    ({"input": "x", "return_dense": False}, "return_dense"),
    ({"input": "x", "sparse_token_mapping": "bpe"}, "sparse_token_mapping"),
])
def test_bad_input_is_a_clear_400(client, body, param):
    assert_openai_error(client.post("/v1/embeddings", json=body), 400, param)


def test_unknown_model_is_404_and_wrong_kind_is_400(client):
    assert_openai_error(client.post("/v1/embeddings", json={"input": "x", "model": "gpt-4"}),
                        404, "model")
    err = assert_openai_error(client.post("/v1/embeddings", json={"input": "x",
                                                                  "model": "bge-reranker"}),
                              400, "model")
    assert "does not support embeddings" in err["message"]


def test_too_long_input_without_truncation(client):
    long_text = TEXTS[5]
    err = assert_openai_error(client.post("/v1/embeddings", json={
        "input": ["short", long_text], "truncate": False, "max_length": 64}), 400, "input[1]")
    assert err["code"] == "context_length_exceeded"
    ok = client.post("/v1/embeddings", json={"input": long_text, "max_length": 64})
    assert ok.status_code == 200 and ok.json()["usage"]["prompt_tokens"] == 64


def test_malformed_json_and_unknown_routes(client):
    r = client.post("/v1/embeddings", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert_openai_error(r, 400)
    assert_openai_error(client.get("/v1/nothing-here"), 404)


def test_server_keeps_serving_after_bad_requests(client, ref):
    for body in ({"input": []}, {"input": 1}, {"input": "x", "model": "nope"}):
        client.post("/v1/embeddings", json=body)
    r = client.post("/v1/embeddings", json={"input": TEXTS[0]})
    assert r.status_code == 200
    assert_dense_close(r.json()["data"][0]["embedding"], ref["dense_vecs"][0])
