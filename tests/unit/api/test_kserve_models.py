"""The KServe wrappers and their tensor codecs without a server: ``InferRequest`` objects (and
V1 dicts) straight into ``predict``, fake runners behind the real services and engine."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fake_runners import RELEVANT, FakeEmbedderRunner, FakeRerankerRunner
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from predictor.api.kserve.embedder import EmbedderModel
from predictor.api.kserve.reranker import RerankerModel
from predictor.api.kserve.tensors import decode_binary_request
from predictor.engine import BatchEngine
from predictor.errors import AuthenticationError, BadRequestError, NotReadyError
from predictor.settings import Settings


def loaded(model, runner):
    """What ``load()`` does, with a fake runner instead of ``runtime``'s."""
    model.runner = runner
    model.batcher = BatchEngine(runner, max_wait_s=0.001, name=f"{model.name}-engine")
    model.service = model._build_service()
    model.ready = True
    return model


@pytest.fixture
def embedder():
    runner = FakeEmbedderRunner()
    model = loaded(EmbedderModel("fake-m3", "org/fake-m3", Settings(sparse_index_space=64)),
                   runner)
    yield model
    model.batcher.drain()


@pytest.fixture
def reranker():
    model = loaded(RerankerModel("fake-rr", "org/fake-rr", Settings()), FakeRerankerRunner())
    yield model
    model.batcher.drain()


def texts_input(texts, name="text", datatype="BYTES"):
    return InferInput(name=name, shape=[len(texts)], datatype=datatype, data=list(texts))


def rest_body(response) -> dict:
    body, _ = response.to_rest()
    return orjson.loads(body) if isinstance(body, bytes) else body


async def test_v2_embedder_outputs_by_flags_and_by_requested_tensors(embedder):
    request = InferRequest("fake-m3", [texts_input(["a b", "c"])],
                           parameters={"return_sparse": True})
    body = rest_body(await embedder.predict(request))
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"dense", "sparse_indices", "sparse_values", "sparse_offsets"}
    assert outputs["dense"]["shape"] == [2, 4] and outputs["sparse_offsets"]["data"] == [0, 2, 3]
    assert body["parameters"] == {"prompt_tokens": 7}

    request = InferRequest("fake-m3", [texts_input(["a b"])],
                           request_outputs=[RequestedOutput("colbert")])
    body = rest_body(await embedder.predict(request))
    assert [o["name"] for o in body["outputs"]] == ["colbert"]
    assert body["outputs"][0]["shape"] == [3, 4]


async def test_v1_and_v2_read_the_same_parameters(embedder):
    """sparse_token_mapping and input_type reach the service from V1 as from V2."""
    params = {"return_dense": False, "return_sparse": True, "sparse_token_mapping": "hash",
              "input_type": "query"}
    v1 = await embedder.predict({"instances": ["a b", {"text": "c"}], "parameters": params})
    assert embedder.runner.tokenized[-1] == (["a b", "c"], "query")
    v2 = rest_body(await embedder.predict(InferRequest(
        "fake-m3", [texts_input(["a b", "c"])], parameters=params)))
    assert embedder.runner.tokenized[-1] == (["a b", "c"], "query")
    v2_indices = next(o["data"] for o in v2["outputs"] if o["name"] == "sparse_indices")
    v1_indices = [i for p in v1["predictions"] for i in p["sparse"]["indices"]]
    assert v1_indices == v2_indices and max(v1_indices) < 64
    assert all(set(p) == {"sparse"} for p in v1["predictions"])


@pytest.mark.parametrize(("request_", "param"), [
    (InferRequest("m", [texts_input(["a"]), texts_input(["b"], name="more")]), "inputs"),
    (InferRequest("m", [InferInput("text", [1], "FP32", [1.0])]), "inputs[0].datatype"),
    (InferRequest("m", [texts_input(["a"])], request_outputs=[RequestedOutput("nope")]),
     "outputs"),
    (InferRequest("m", [texts_input(["a"])], parameters={"embed_dtype": "int8"}), "embed_dtype"),
    (InferRequest("m", [texts_input(["a"])], parameters={"embed_dtype": "float16"}),
     "embed_dtype"),
    (InferRequest("m", [texts_input(["a"])], parameters={"sparse_token_mapping": "x"}),
     "sparse_token_mapping"),
    (InferRequest("m", [texts_input(["a"])], parameters={"return_dense": "maybe"}),
     "return_dense"),
    (InferRequest("m", [texts_input([""])]), "inputs[0][0]"),
    ({"instances": "a"}, "instances"),
    ({"instances": ["a"], "parameters": ["x"]}, "parameters"),
])
async def test_bad_embedder_requests_are_400s(embedder, request_, param):
    with pytest.raises(BadRequestError) as err:
        await embedder.predict(request_)
    assert err.value.param == param
    assert embedder.runner.batches == []


async def test_v2_and_v1_reranker(reranker):
    request = InferRequest("fake-rr", [texts_input(["q"], "query"),
                                       texts_input(["hay", RELEVANT], "documents")],
                           parameters={"normalize": False})
    body = rest_body(await reranker.predict(request))
    assert body["outputs"] == [{"name": "scores", "shape": [2], "datatype": "FP32",
                                "data": [0.0, 1.0]}]
    assert body["parameters"] == {"prompt_tokens": 12}
    v1 = await reranker.predict({"instances": [{"query": "q", "document": RELEVANT}],
                                 "parameters": {"normalize": "false"}})
    assert v1 == {"predictions": [1.0]}


@pytest.mark.parametrize(("request_", "param"), [
    (InferRequest("m", [texts_input(["q"], "query")]), "inputs"),
    (InferRequest("m", [texts_input(["q"], "query"), texts_input(["d"], "documents")],
                  parameters={"max_chunks_per_doc": 0}), "max_chunks_per_doc"),
    (InferRequest("m", [texts_input(["q", "q"], "query"), texts_input(["d"] * 3, "documents")]),
     "query"),
    ({"instances": [{"query": "q"}]}, "instances"),
    ({"instances": [{"query": "q", "document": ""}]}, "instances.document[0]"),
])
async def test_bad_reranker_requests_are_400s(reranker, request_, param):
    with pytest.raises(BadRequestError) as err:
        await reranker.predict(request_)
    assert err.value.param == param


async def test_predict_checks_the_token_and_answers_grpc_in_grpc_terms():
    from grpc_interceptor.exceptions import GrpcException

    model = loaded(EmbedderModel("m", "m", Settings(api_token="s3cret")), FakeEmbedderRunner())
    with pytest.raises(AuthenticationError):
        await model.predict({"instances": ["a"]}, headers={})
    grpc_request = InferRequest("m", [texts_input(["a"])], from_grpc=True)
    with pytest.raises(GrpcException):
        await model.predict(grpc_request, headers={"authorization": "Bearer wrong"})
    ok = await model.predict({"instances": ["a"]}, headers={"authorization": "Bearer s3cret"})
    assert len(ok["predictions"]) == 1
    response = await model.predict(grpc_request, headers={"authorization": "Bearer s3cret"})
    assert response.outputs[0].name == "dense" and response.outputs[0].shape == [1, 4]
    model.batcher.drain()


async def test_a_model_not_loaded_is_not_ready():
    model = EmbedderModel("m", "m", Settings())
    with pytest.raises(NotReadyError):
        await model.predict({"instances": ["a"]})


def test_metadata_and_description(embedder, reranker):
    assert [t["name"] for t in embedder.get_output_types()] == [
        "dense", "sparse_indices", "sparse_values", "sparse_offsets", "colbert",
        "colbert_offsets"]
    assert embedder.get_input_types() == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [t["name"] for t in reranker.get_input_types()] == ["query", "documents"]
    assert reranker.get_output_types() == [{"name": "scores", "datatype": "FP32",
                                            "shape": [-1]}]
    embedder.aliases = ("short",)
    facts = embedder.describe()
    assert facts["root"] == "org/fake-m3" and facts["aliases"] == ["short"]
    assert facts["kind"] == "embedder" and facts["pooling"] == "fake"
    assert reranker.describe()["family"] == "cross-encoder"


def test_the_binary_decoder_names_what_is_wrong():
    texts = [b"hello", "wörld".encode()]
    data = b"".join(len(t).to_bytes(4, "little") + t for t in texts)
    header = orjson.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(data)}}]})
    request = decode_binary_request(header + data, len(header), "m")
    assert request.inputs[0].data == texts
    for body, length, param in ((header + data[:-1], len(header),
                                 "inputs[0].parameters.binary_data_size"),
                                (header + data + b"x", len(header), None),
                                (header + data, "12x", None)):
        with pytest.raises(BadRequestError) as err:
            decode_binary_request(body, length, "m")
        assert err.value.code == "invalid_binary_request" and err.value.param == param
    assert np.array_equal(np.frombuffer(data[4:9], np.uint8), np.frombuffer(b"hello", np.uint8))
