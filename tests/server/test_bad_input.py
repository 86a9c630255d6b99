"""Bad input over the wire gets a 400 / INVALID_ARGUMENT naming the problem, never a 500:
lone surrogates on every JSON route, malformed V2 binary bodies, absurd parameters."""

from __future__ import annotations

import json
import struct

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

SURROGATE_BODIES = [
    ("/v1/embeddings", b'{"model": "bge-m3", "input": "\\ud800"}'),
    ("/openai/v1/embeddings", b'{"model": "bge-m3", "input": ["ok", "x\\udc00y"]}'),
    ("/v1/sparse-embeddings", b'{"input": "\\ud800"}'),
    ("/v1/hybrid-embeddings", b'{"input": "\\ud800"}'),
    ("/v1/rerank", b'{"query": "\\ud800", "documents": ["a"]}'),
    ("/rerank", b'{"query": "q", "documents": ["\\uDBFF"]}'),
    ("/v1/models/bge-m3:predict", b'{"instances": ["\\ud800"]}'),
    ("/v2/models/bge-m3/infer",
     b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}'),
]


def _error(r: httpx.Response) -> dict:
    assert r.status_code == 400, r.text
    return r.json()["error"]


@pytest.mark.parametrize(("path", "body"), SURROGATE_BODIES)
def test_lone_surrogate_is_a_400(server, path, body):
    r = httpx.post(server.url + path, content=body, timeout=60,
                   headers={"content-type": "application/json"})
    err = _error(r)
    assert err["code"] == "invalid_unicode" and "surrogate" in err["message"]


def test_paired_surrogates_and_escaped_backslashes_still_work(server):
    body = b'{"input": ["\\ud83d\\ude00 emoji", "\\\\ud800 is text here"]}'
    r = httpx.post(server.url + "/v1/embeddings", content=body, timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2


ELEMENT = struct.pack("<I", 5) + b"hello"


def _input(size, shape=(1,), datatype="BYTES"):
    return {"name": "text", "shape": list(shape), "datatype": datatype,
            "parameters": {"binary_data_size": size}}


def _binary(server, header, data=b"", header_length=None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = str(len(raw)) if header_length is None else header_length
    return httpx.post(f"{server.url}/v2/models/bge-m3/infer", content=raw + data, timeout=60,
                      headers={"inference-header-content-length": length,
                               "content-type": "application/octet-stream"})


BINARY_CASES = {
    "header length not a number": ({"inputs": [_input(10)]}, ELEMENT, "abc",
                                   "Inference-Header-Content-Length"),
    "header length negative": ({"inputs": [_input(10)]}, ELEMENT, "-3",
                               "Inference-Header-Content-Length"),
    "header length past the body": ({"inputs": [_input(10)]}, ELEMENT, "99999", "only"),
    "binary_data_size too small": ({"inputs": [_input(3)]}, ELEMENT, None, "length prefix"),
    "binary_data_size negative": ({"inputs": [_input(-1)]}, ELEMENT, None, "binary_data_size"),
    "binary_data_size a string": ({"inputs": [_input("9")]}, ELEMENT, None, "binary_data_size"),
    "binary_data_size oversized": ({"inputs": [_input(100)]}, ELEMENT, None,
                                   "runs past the end"),
    "binary_data_size short of the body": ({"inputs": [_input(9)]}, ELEMENT + b"extra", None,
                                           "bytes follow"),
    "length prefix past the data": ({"inputs": [_input(9)]}, struct.pack("<I", 50) + b"hello",
                                    None, "claims 50 bytes"),
    "shape mismatch": ({"inputs": [_input(9, shape=(2,))]}, ELEMENT, None, "needs 2"),
    "negative shape": ({"inputs": [_input(9, shape=(-5,))]}, ELEMENT, None, "non-negative"),
    "header is a list": ([1, 2], b"", None, "must be an object"),
    "header not JSON": (b"{nope", b"", None, "not valid JSON"),
    "inputs missing": ({"outputs": []}, b"", None, "inputs"),
    "FP32 of the wrong size": ({"inputs": [_input(5, datatype="FP32")]}, b"\0" * 5, None,
                               "needs 4 bytes"),
    "unknown datatype": ({"inputs": [_input(9, datatype="FP99")]}, ELEMENT, None, "datatype"),
    "invalid UTF-8 element": ({"inputs": [_input(6)]}, struct.pack("<I", 2) + b"\xff\xfe", None,
                              "not valid UTF-8"),
}


@pytest.mark.parametrize("case", list(BINARY_CASES))
def test_malformed_v2_binary_is_a_400_naming_it(server, case):
    header, data, header_length, words = BINARY_CASES[case]
    err = _error(_binary(server, header, data, header_length))
    assert words in err["message"], err
    assert err["type"] == "invalid_request_error"


def test_well_formed_v2_binary_still_works(server):
    two = ELEMENT + struct.pack("<I", 5) + b"world"
    r = _binary(server, {"inputs": [_input(len(two), shape=(2,))]}, two)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"][0] == 2


def _v2_json(server, inputs_extra=None, **parameters):
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"],
              **(inputs_extra or {})}
    return httpx.post(f"{server.url}/v2/models/bge-m3/infer", timeout=60,
                      json={"inputs": [tensor], "parameters": parameters})


def test_v2_json_negative_shape_and_huge_max_length(server):
    assert _error(_v2_json(server, {"shape": [-5]}))["param"] == "inputs[0].shape"
    err = _error(_v2_json(server, max_length="9" * 5000))
    assert err["param"] == "max_length" and len(err["message"]) < 200


def _grpc_code(server, request) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(server.grpc_url) as channel:
        try:
            GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def _grpc_request(shape=(1,), **parameters) -> pb.ModelInferRequest:
    text = pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=list(shape),
        contents=pb.InferTensorContents(bytes_contents=[b"hello"]))
    params = {k: pb.InferParameter(string_param=v) for k, v in parameters.items()}
    return pb.ModelInferRequest(model_name="bge-m3", inputs=[text], parameters=params)


def test_grpc_bad_parameters_and_shapes_are_invalid_argument(server):
    code, details = _grpc_code(server, _grpc_request(max_length="9" * 5000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "max_length" in details
    code, details = _grpc_code(server, _grpc_request(shape=(-5,)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "shape" in details
    assert _grpc_code(server, _grpc_request())[0] == grpc.StatusCode.OK
