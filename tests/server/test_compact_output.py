"""Compact vectors: ``encoding_format: base64`` with ``embed_dtype`` on the JSON routes, and
``embed_dtype: float16`` (FP16 outputs) on V2 REST and gRPC, against a real server."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from fidelity import TEXTS
from server_process import triton_grpc

SUBSET = [TEXTS[0], TEXTS[2], TEXTS[4]]
# Rounding an L2-normalised vector to float16 moves each element by at most ~2**-11 of it.
F16_ATOL = 1e-3


@pytest.fixture(scope="module")
def floats(server):
    """The float32 JSON answer every compact form is checked against."""
    r = httpx.post(f"{server.url}/v1/embeddings", timeout=60,
                   json={"input": SUBSET, "return_colbert": True})
    assert r.status_code == 200, r.text
    return [(np.asarray(d["dense_embedding"], np.float32),
             np.asarray(d["colbert_embedding"], np.float32)) for d in r.json()["data"]]


def decode(b64: str, dtype: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=dtype).reshape(-1, dim)


@pytest.mark.parametrize(("embed_dtype", "le", "atol"),
                         [(None, "<f4", 1e-6), ("float32", "<f4", 1e-6), ("float16", "<f2",
                                                                          F16_ATOL)])
def test_embeddings_base64_dense_and_colbert(client, floats, embed_dtype, le, atol):
    body = {"input": SUBSET, "encoding_format": "base64", "return_colbert": True}
    if embed_dtype:
        body["embed_dtype"] = embed_dtype
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == 200, r.text
    for item, (dense, colbert) in zip(r.json()["data"], floats, strict=True):
        dim = dense.shape[0]
        assert isinstance(item["embedding"], str) and item["dense_embedding"] == item["embedding"]
        np.testing.assert_allclose(decode(item["embedding"], le, dim)[0], dense, atol=atol)
        # one string per text: the rows concatenated, row count implied by the length
        rows = decode(item["colbert_embedding"], le, colbert.shape[1])
        assert rows.shape == colbert.shape
        np.testing.assert_allclose(rows, colbert, atol=atol)


def test_float_format_is_unchanged_by_embed_dtype(client, floats):
    r = client.post("/v1/embeddings", json={"input": SUBSET[0], "embed_dtype": "float16"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["data"][0]["embedding"], floats[0][0], atol=1e-6)


def test_openai_sdk_float16_base64(server, floats):
    from openai import OpenAI

    sdk = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    out = sdk.embeddings.create(model="bge-m3", input=SUBSET, encoding_format="base64",
                                extra_body={"embed_dtype": "float16"})
    for item, (dense, _) in zip(out.data, floats, strict=True):
        vec = np.frombuffer(base64.b64decode(item.embedding), "<f2")
        np.testing.assert_allclose(vec, dense, atol=F16_ATOL)


def test_hybrid_base64(client, floats):
    plain = client.post("/v1/hybrid-embeddings", json={"input": SUBSET, "return_colbert": True})
    compact = client.post("/v1/hybrid-embeddings",
                          json={"input": SUBSET, "return_colbert": True,
                                "encoding_format": "base64", "embed_dtype": "float16"})
    assert compact.status_code == 200, compact.text
    for p, c, (dense, colbert) in zip(plain.json()["data"], compact.json()["data"], floats,
                                      strict=True):
        assert c["sparse"] == p["sparse"]
        np.testing.assert_allclose(decode(c["dense"], "<f2", dense.shape[0])[0], dense,
                                   atol=F16_ATOL)
        np.testing.assert_allclose(decode(c["colbert"], "<f2", colbert.shape[1]), colbert,
                                   atol=F16_ATOL)
    # float16 base64 ColBERT is far smaller than JSON numbers
    assert len(compact.content) * 4 < len(plain.content)


@pytest.mark.parametrize("route", ["/v1/embeddings", "/v1/hybrid-embeddings"])
@pytest.mark.parametrize("value", ["int8", "bfloat16", 16, None])
def test_unknown_embed_dtype_is_400(client, route, value):
    r = client.post(route, json={"input": "x", "encoding_format": "base64",
                                 "embed_dtype": value})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "embed_dtype"


def _v2(server, params, outputs=None):
    body = {"inputs": [{"name": "text", "shape": [len(SUBSET)], "datatype": "BYTES",
                        "data": SUBSET}],
            "parameters": {"return_colbert": True, **params}}
    if outputs:
        body["outputs"] = outputs
    return httpx.post(f"{server.url}/v2/models/bge-m3/infer", json=body, timeout=60)


def test_v2_rest_binary_fp16(server, floats):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
    text = httpclient.InferInput("text", [len(SUBSET)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in SUBSET], dtype=object))
    outputs = [httpclient.InferRequestedOutput(n, binary_data=True)
               for n in ("dense", "colbert", "colbert_offsets")]
    result = client.infer("bge-m3", [text], outputs=outputs,
                          parameters={"return_colbert": True, "embed_dtype": "float16"})
    check_fp16(result.as_numpy, floats)
    # binary_data_output with a JSON request body works too (no tritonclient)
    r = _v2(server, {"embed_dtype": "float16", "binary_data_output": True})
    assert r.status_code == 200, r.text
    json_len = int(r.headers["inference-header-content-length"])  # JSON header, raw tensors
    head = json.loads(r.content[:json_len])
    assert {o["name"]: o["datatype"] for o in head["outputs"]} == {
        "dense": "FP16", "colbert": "FP16", "colbert_offsets": "INT64"}


def test_v2_fp16_in_json_is_a_clear_400_and_bad_values_too(server):
    r = _v2(server, {"embed_dtype": "float16"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "embed_dtype", r.text
    assert "binary" in r.json()["error"]["message"]
    r = _v2(server, {"embed_dtype": "float16"},
            outputs=[{"name": "dense", "parameters": {"binary_data": False}}])
    assert r.status_code == 400, r.text
    r = _v2(server, {"embed_dtype": "half"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "embed_dtype", r.text
    # float32 (the default, named) is the plain JSON answer
    r = _v2(server, {"embed_dtype": "float32"})
    assert r.status_code == 200 and r.json()["outputs"][0]["datatype"] == "FP32", r.text


def test_v2_grpc_fp16(server, floats):
    fp16, fp32, bad = triton_grpc([
        {"url": server.grpc_url, "model": "bge-m3",
         "inputs": [{"name": "text", "data": SUBSET}],
         "parameters": {"return_colbert": True, "embed_dtype": "float16"}},
        {"url": server.grpc_url, "model": "bge-m3",
         "inputs": [{"name": "text", "data": SUBSET}], "parameters": {"return_colbert": True}},
        {"url": server.grpc_url, "model": "bge-m3",
         "inputs": [{"name": "text", "data": SUBSET}], "parameters": {"embed_dtype": "x"}},
    ])
    check_fp16(fp16["outputs"].__getitem__, floats)
    assert fp32["outputs"]["dense"].dtype == np.float32
    assert "embed_dtype" in bad["error"]["message"]


def check_fp16(get, floats):
    dense, colbert, offsets = get("dense"), get("colbert"), get("colbert_offsets")
    assert dense.dtype == np.float16 and colbert.dtype == np.float16
    for i, (ref_dense, ref_colbert) in enumerate(floats):
        np.testing.assert_allclose(dense[i], ref_dense, atol=F16_ATOL)
        np.testing.assert_allclose(colbert[offsets[i]:offsets[i + 1]], ref_colbert,
                                   atol=F16_ATOL)
