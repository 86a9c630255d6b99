"""KServe V1 and V2 codec of the reranker, the same shape as ``embedder_codec``.

V2 inputs: BYTES tensors ``query`` (one, or one per document) and ``documents``; output
``scores`` FP32 [N]. V1: ``{"instances": [{"query", "document"}], "parameters"?}`` →
``{"predictions": [score, ...]}``. Both read the same parameters (``options_from_params``):
``normalize`` (default true), ``max_length``, ``truncate``, ``max_tokens_per_doc``,
``max_chunks_per_doc``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from predictor.api.kserve.tensors import infer_response, request_parameters, texts_of_input
from predictor.api.params import as_bool, as_int
from predictor.core.reranker import ScoreResult
from predictor.errors import BadRequestError


def options_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """``Reranker.score`` keyword arguments from V1/V2 parameters."""
    def optional_int(name: str) -> int | None:
        return None if params.get(name) is None else as_int(params[name], name)

    return {"normalize": as_bool(params.get("normalize", True), "normalize"),
            "max_length": optional_int("max_length"),
            "truncate": as_bool(params.get("truncate", True), "truncate"),
            "max_document_tokens": optional_int("max_tokens_per_doc"),
            "max_chunks": optional_int("max_chunks_per_doc")}


# -- V2 ------------------------------------------------------------------------------------
def v2_request(request: InferRequest) -> tuple[list[str], list[str], dict[str, Any]]:
    """Queries, documents and ``score`` options of a V2 request."""
    by_name = {tensor.name: tensor for tensor in request.inputs}
    missing = [name for name in ("query", "documents") if name not in by_name]
    if missing:
        raise BadRequestError(f"Missing input tensor(s): {', '.join(missing)}.", param="inputs")
    queries = texts_of_input(by_name["query"], "query")
    documents = texts_of_input(by_name["documents"], "documents")
    return queries, documents, options_from_params(request_parameters(request))


def v2_response(model_name: str, request: InferRequest, result: ScoreResult) -> InferResponse:
    scores = np.asarray(result.scores, dtype=np.float32)
    return infer_response(model_name, request, {"scores": scores},
                          {"prompt_tokens": result.num_tokens})


def input_types() -> list[dict]:
    return [{"name": "query", "datatype": "BYTES", "shape": [-1]},
            {"name": "documents", "datatype": "BYTES", "shape": [-1]}]


def output_types() -> list[dict]:
    return [{"name": "scores", "datatype": "FP32", "shape": [-1]}]


# -- V1 ------------------------------------------------------------------------------------
def v1_request(payload: Any) -> tuple[list[str], list[str], dict[str, Any]]:
    """Queries, documents and ``score`` options of ``instances`` of query-document pairs."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not all(
            isinstance(inst, dict) and isinstance(inst.get("query"), str)
            and isinstance(inst.get("document"), str) for inst in instances):
        raise BadRequestError("The reranker expects 'instances' of "
                              '{"query": str, "document": str} pairs (or V2 inputs '
                              "'query' and 'documents').", param="instances")
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequestError("'parameters' must be an object.", param="parameters")
    return ([inst["query"] for inst in instances], [inst["document"] for inst in instances],
            options_from_params(params))


def v1_response(result: ScoreResult) -> dict:
    return {"predictions": result.scores}
