"""Fuzzing over the wire (hypothesis): V2 binary REST bodies and gRPC ModelInfer messages, built
from near-valid pieces, never get a 5xx / INTERNAL, and every HTTP error is in the error shape."""

from __future__ import annotations

import json
import struct

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DATATYPES = st.sampled_from(["BYTES", "FP32", "INT64", "INT8", "BOOL", "FP16", "UINT8", "bytes",
                             "", "FP99"])
SMALL_INTS = st.one_of(st.integers(-3, 12), st.sampled_from([2**31, 2**63 - 1, -(2**63)]))
JSON_SCALARS = st.one_of(st.none(), st.booleans(), SMALL_INTS, st.floats(allow_nan=False),
                         st.text(max_size=8))
PARAMS = st.dictionaries(
    st.sampled_from(["max_length", "truncate", "return_dense", "return_sparse",
                     "return_colbert", "input_type", "is_query", "sparse_token_mapping",
                     "binary_data_output", "x"]),
    st.one_of(JSON_SCALARS, st.sampled_from(["9" * 5000, "query", "hash", "true", "-1"])),
    max_size=3)


def _element(text: bytes) -> bytes:
    return struct.pack("<I", len(text)) + text


@st.composite
def binary_requests(draw):
    """(body, header length value): a header JSON and binary data, each piece maybe wrong."""
    elements = draw(st.lists(st.binary(max_size=12), max_size=4))
    data = b"".join(_element(e) for e in elements)
    data = draw(st.sampled_from([data, data[:-1], data + b"\0", b"", data[:3]]))
    tensor = {"name": draw(st.one_of(st.just("text"), JSON_SCALARS)),
              "shape": draw(st.one_of(st.just([len(elements)]), st.lists(SMALL_INTS, max_size=3),
                                      JSON_SCALARS)),
              "datatype": draw(st.one_of(DATATYPES, JSON_SCALARS)),
              "parameters": draw(st.one_of(
                  st.just({"binary_data_size": len(data)}),
                  st.fixed_dictionaries({"binary_data_size": st.one_of(SMALL_INTS,
                                                                       JSON_SCALARS)}),
                  JSON_SCALARS))}
    if draw(st.booleans()):
        tensor["data"] = draw(st.lists(JSON_SCALARS, max_size=3))
    header = draw(st.one_of(
        st.fixed_dictionaries({"inputs": st.just([tensor])},
                              optional={"parameters": st.one_of(PARAMS, JSON_SCALARS),
                                        "outputs": st.one_of(
                                            st.lists(st.fixed_dictionaries(
                                                {"name": st.sampled_from(
                                                    ["dense", "sparse_values", "nope"])}),
                                                max_size=2), JSON_SCALARS),
                                        "id": JSON_SCALARS}),
        st.lists(JSON_SCALARS, max_size=2), JSON_SCALARS))
    raw = json.dumps(header).encode()
    length = draw(st.one_of(st.just(str(len(raw))), st.integers(-5, len(raw) + 40).map(str),
                            st.from_regex(r"[0-9a-z+.-]{1,6}", fullmatch=True)))
    return raw + data, length


def _assert_error_shape(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}, err


def test_v2_binary_decoder_fuzz(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        @FUZZ
        @given(binary_requests())
        def check(request):
            body, length = request
            r = client.post("/v2/models/bge-m3/infer", content=body,
                            headers={"inference-header-content-length": length,
                                     "content-type": "application/octet-stream"})
            _assert_error_shape(r)

        check()


def _grpc_params(values: dict) -> dict:
    params = {}
    for key, value in values.items():
        if isinstance(value, bool):
            params[key] = pb.InferParameter(bool_param=value)
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            params[key] = pb.InferParameter(int64_param=value)
        elif isinstance(value, str):
            params[key] = pb.InferParameter(string_param=value)
    return params


@st.composite
def grpc_requests(draw):
    texts = draw(st.lists(st.binary(max_size=12), max_size=4))
    datatype = draw(DATATYPES)
    shape = draw(st.one_of(st.just([len(texts)]), st.lists(SMALL_INTS, max_size=3)))
    shape = [max(min(d, 2**62), -(2**62)) for d in shape]
    contents = draw(st.sampled_from(["bytes", "fp32", "none"]))
    tensor = pb.ModelInferRequest.InferInputTensor(name=draw(st.sampled_from(["text", "", "q"])),
                                                   datatype=datatype, shape=shape)
    raw = []
    if contents == "bytes":
        tensor.contents.bytes_contents.extend(texts)
    elif contents == "fp32":
        tensor.contents.fp32_contents.extend([0.5] * len(texts))
    else:
        raw = [draw(st.sampled_from([b"".join(_element(t) for t in texts), b"\x05\0\0\0ab",
                                     b"", b"\xff" * 6]))]
    outputs = [pb.ModelInferRequest.InferRequestedOutputTensor(name=name)
               for name in draw(st.lists(st.sampled_from(["dense", "colbert", "x"]),
                                         max_size=2))]
    return pb.ModelInferRequest(
        model_name=draw(st.sampled_from(["bge-m3", "bge-reranker", "nope"])),
        inputs=draw(st.sampled_from([[tensor], [tensor, tensor], []])),
        raw_input_contents=raw, outputs=outputs,
        parameters=_grpc_params(draw(PARAMS)))


BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


def test_grpc_model_infer_fuzz(server):
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = GRPCInferenceServiceStub(channel)

        @FUZZ
        @given(grpc_requests())
        def check(request):
            try:
                stub.ModelInfer(request, timeout=60)
            except grpc.RpcError as exc:
                assert exc.code() not in BAD_CODES, (exc.code(), exc.details(), request)

        check()


@pytest.mark.parametrize("model", ["bge-m3", "bge-reranker"])
def test_server_still_serves_after_fuzzing(server, model):
    assert httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=10).status_code == 200
