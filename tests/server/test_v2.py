"""KServe V2 (REST and gRPC, through tritonclient) and V1 for the embedder."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from fidelity import TEXTS, assert_colbert_close, assert_dense_close, assert_sparse_close, reference
from server_process import triton_grpc

SUBSET = [TEXTS[0], TEXTS[3], TEXTS[4]]


@pytest.fixture(scope="module")
def ref(flag_m3):
    return reference(flag_m3, SUBSET)


def check_tensors(get, ref, n):
    """``get(name)`` returns an output as numpy; check CSR/ColBERT layout and values."""
    dense = get("dense")
    assert dense.shape == (n, ref["dense_vecs"].shape[1]) and dense.dtype == np.float32
    assert_dense_close(dense, ref["dense_vecs"])
    idx, val, off = get("sparse_indices"), get("sparse_values"), get("sparse_offsets")
    assert idx.dtype == np.int64 and val.dtype == np.float32 and off.dtype == np.int64
    assert off.shape == (n + 1,) and off[0] == 0 and off[-1] == len(idx) == len(val)
    for i in range(n):
        assert_sparse_close(idx[off[i]:off[i + 1]], val[off[i]:off[i + 1]],
                            ref["lexical_weights"][i])
    colbert, coff = get("colbert"), get("colbert_offsets")
    assert coff.shape == (n + 1,) and coff[-1] == colbert.shape[0]
    for i in range(n):
        assert_colbert_close(colbert[coff[i]:coff[i + 1]], ref["colbert_vecs"][i])


def _params():
    return {"return_dense": True, "return_sparse": True, "return_colbert": True}


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_http(server, ref, binary):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
    assert client.is_server_live() and client.is_model_ready("bge-m3")
    meta = client.get_model_metadata("bge-m3")
    assert {o["name"] for o in meta["outputs"]} >= {"dense", "sparse_indices", "colbert"}
    text = httpclient.InferInput("text", [len(SUBSET)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in SUBSET], dtype=object),
                             binary_data=binary)
    names = ["dense", "sparse_indices", "sparse_values", "sparse_offsets", "colbert",
             "colbert_offsets"]
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = client.infer("bge-m3", [text], outputs=outputs, parameters=_params())
    check_tensors(result.as_numpy, ref, len(SUBSET))


def _grpc_call(server, texts, **extra):
    return {"url": server.grpc_url, "model": "bge-m3",
            "inputs": [{"name": "text", "data": texts}], **extra}


def test_tritonclient_grpc(server, ref):
    ready, full, dense_only = triton_grpc([
        {"op": "ready", "url": server.grpc_url, "model": "bge-m3"},
        _grpc_call(server, SUBSET, parameters=_params()),
        _grpc_call(server, SUBSET[:1], outputs=["dense"]),
    ])
    assert ready["ready"] is True
    check_tensors(full["outputs"].__getitem__, ref, len(SUBSET))
    # Outputs chosen by the requested outputs when no return_* parameter is given.
    assert list(dense_only["outputs"]) == ["dense"]
    assert_dense_close(dense_only["outputs"]["dense"][0], ref["dense_vecs"][0])


def test_grpc_bad_input_is_invalid_argument_and_server_lives_on(server):
    bad_utf8 = "b64:" + base64.b64encode(b"\xff\xfe bad").decode()
    non_utf8, empty, unknown, ok = triton_grpc([
        _grpc_call(server, ["fine", bad_utf8]),
        _grpc_call(server, [""]),
        {**_grpc_call(server, ["x"]), "model": "no-such-model"},
        _grpc_call(server, ["fine"]),
    ])
    assert non_utf8["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "inputs[0][1] is not valid UTF-8" in non_utf8["error"]["message"]
    assert empty["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "empty" in empty["error"]["message"]
    assert unknown["error"]["status"] == "StatusCode.NOT_FOUND"
    assert ok["outputs"]["dense"].shape[0] == 1


def test_v2_rest_json_errors_are_openai_shaped(client):
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [1]}]}
    r = client.post("/v2/models/bge-m3/infer", json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post("/v2/models/missing/infer", json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = client.post("/v2/models/bge-m3/infer", json={"inputs": "nope"})
    assert r.status_code == 400 and "error" in r.json()
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    r = client.post("/v2/models/bge-m3/infer",
                    json={"inputs": [text], "parameters": {"return_dense": "maybe"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "return_dense"


def test_v2_default_is_dense_only_and_reports_tokens(client, ref):
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": [SUBSET[0]]}
    r = client.post("/v2/models/bge-m3/infer", json={"inputs": [text]})
    body = r.json()
    assert [o["name"] for o in body["outputs"]] == ["dense"]
    assert_dense_close(np.asarray(body["outputs"][0]["data"]).reshape(1, -1), ref["dense_vecs"][:1])
    assert body["parameters"]["prompt_tokens"] > 0


def test_v1_instances(client, ref):
    r = client.post("/v1/models/bge-m3:predict",
                    json={"instances": [SUBSET[0], {"text": SUBSET[1]}],
                          "parameters": {"return_sparse": True}})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert_dense_close(preds[0]["dense"], ref["dense_vecs"][0])
    assert_sparse_close(preds[1]["sparse"]["indices"], preds[1]["sparse"]["values"],
                        ref["lexical_weights"][1])
    bad = client.post("/v1/models/bge-m3:predict", json={"instances": []})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "instances"
