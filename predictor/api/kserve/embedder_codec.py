"""KServe V1 and V2 codec of the embedder (SPEC: "KServe V2 inference protocol").

V2 input: one BYTES tensor of texts. Outputs (only those asked for): ``dense`` [N, D];
``sparse_indices``/``sparse_values``/``sparse_offsets`` as CSR; ``colbert`` [T, D] with
``colbert_offsets`` [N+1]. Outputs are chosen by the ``return_*`` parameters, or, when none is
given, by the request's ``outputs`` list, else dense only. The ``embed_dtype`` parameter
(``float32`` default, ``float16``) sets the element type of ``dense`` and ``colbert``.

V1: ``{"instances": [text | {"text": ...}], "parameters"?}`` → ``{"predictions": [...]}``.
V1 and V2 read the same parameters (``options_from_params``): ``return_*``, ``max_length``,
``truncate``, ``sparse_token_mapping``, ``input_type`` / ``is_query``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from predictor.api.kserve.tensors import (
    infer_response,
    request_parameters,
    texts_of_input,
)
from predictor.api.params import as_bool, as_int, resolve_input_type
from predictor.core.embedder import Embedder
from predictor.core.options import FLAGS, outputs_from_flags
from predictor.core.sparse import MAPPINGS, to_csr
from predictor.core.types import EncodeOptions, EncodeResult, Output
from predictor.errors import BadRequestError

OUTPUT_TENSORS = {
    "dense": Output.DENSE,
    "sparse_indices": Output.SPARSE,
    "sparse_values": Output.SPARSE,
    "sparse_offsets": Output.SPARSE,
    "colbert": Output.COLBERT,
    "colbert_offsets": Output.COLBERT,
}


def options_from_params(params: dict[str, Any],
                        requested: list[str] | None = None) -> EncodeOptions:
    """The encode options of V1/V2 ``parameters``. Outputs: the ``return_*`` flags; when none is
    given, the V2 ``requested`` output tensors; else dense only."""
    flags = {FLAGS[name]: as_bool(params[name], name) for name in FLAGS if name in params}
    if flags:
        outputs = outputs_from_flags(flags.get(Output.DENSE), flags.get(Output.SPARSE),
                                     flags.get(Output.COLBERT))
    else:
        for name in requested or []:
            if name not in OUTPUT_TENSORS:
                raise BadRequestError(f"Unknown output '{name}'; known outputs: "
                                      f"{', '.join(OUTPUT_TENSORS)}.", param="outputs")
        chosen = frozenset(OUTPUT_TENSORS[name] for name in requested or [])
        outputs = chosen or outputs_from_flags()
    max_length = as_int(params["max_length"], "max_length") if "max_length" in params else None
    truncate = as_bool(params["truncate"], "truncate") if "truncate" in params else True
    mapping = params.get("sparse_token_mapping")
    if mapping is not None and mapping not in MAPPINGS:
        raise BadRequestError(f"sparse_token_mapping must be one of {MAPPINGS}.",
                              param="sparse_token_mapping")
    return EncodeOptions(outputs=outputs, max_length=max_length, truncate=truncate,
                         sparse_mapping=mapping,
                         input_type=resolve_input_type(params.get("input_type"),
                                                       params.get("is_query")))


# -- V2 ------------------------------------------------------------------------------------
def v2_request(request: InferRequest) -> tuple[list[str], EncodeOptions]:
    """The texts of the single BYTES input, and the options of the parameters."""
    if len(request.inputs) != 1:
        raise BadRequestError(f"Expected exactly one BYTES input tensor, got "
                              f"{len(request.inputs)}.", param="inputs")
    texts = texts_of_input(request.inputs[0], "inputs[0]")
    embed_dtype(request)  # a bad embed_dtype is refused before any work is done
    requested = [out.name for out in request.request_outputs or []]
    return texts, options_from_params(request_parameters(request), requested)


EMBED_DTYPES = {"float32": np.float32, "float16": np.float16}


def embed_dtype(request: InferRequest) -> type:
    """The element type of ``dense`` and ``colbert`` asked for by ``embed_dtype``.

    FP16 travels only as binary data (KServe and Triton refuse FP16 in JSON), so a REST request
    that wants it answered in JSON gets a 400 saying how to ask for binary outputs.
    """
    value = request_parameters(request).get("embed_dtype", "float32")
    if value not in EMBED_DTYPES:
        raise BadRequestError(f"embed_dtype must be one of {', '.join(EMBED_DTYPES)}; got "
                              f"{value!r}.", param="embed_dtype")
    dtype = EMBED_DTYPES[value]
    if dtype is np.float16 and not request.from_grpc:
        requested = request.request_outputs or []
        json_outputs = ([out.name for out in requested if not out.binary_data
                         and out.name in ("dense", "colbert")] if requested
                        else [] if request.use_binary_outputs else ["all"])
        if json_outputs:
            raise BadRequestError(
                "embed_dtype 'float16' gives FP16 outputs, which V2 carries only as binary "
                "data: set the request parameter 'binary_data_output' (or 'binary_data' on "
                "each requested output) to true.", param="embed_dtype")
    return dtype


def embedding_tensors(result: EncodeResult, outputs: frozenset[Output],
                      dtype: type = np.float32) -> dict[str, np.ndarray]:
    embs = result.embeddings
    tensors: dict[str, np.ndarray] = {}
    if Output.DENSE in outputs:
        tensors["dense"] = np.stack([e.dense for e in embs]).astype(dtype, copy=False)
    if Output.SPARSE in outputs:
        idx, val, off = to_csr([e.sparse for e in embs])
        tensors.update(sparse_indices=idx, sparse_values=val, sparse_offsets=off)
    if Output.COLBERT in outputs:
        offsets = np.zeros(len(embs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(e.colbert) for e in embs])
        tensors["colbert"] = np.concatenate([e.colbert for e in embs]).astype(dtype, copy=False)
        tensors["colbert_offsets"] = offsets
    return tensors


def v2_response(model_name: str, request: InferRequest, result: EncodeResult,
                options: EncodeOptions) -> InferResponse:
    tensors = embedding_tensors(result, options.outputs, dtype=embed_dtype(request))
    return infer_response(model_name, request, tensors, {"prompt_tokens": result.prompt_tokens})


def input_types() -> list[dict]:
    return [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


def output_types(embedder: Embedder) -> list[dict]:
    """The V2 output tensors the model can give (its outputs only)."""
    d = embedder.dimensions
    tensors = {
        Output.DENSE: lambda: [{"name": "dense", "datatype": "FP32", "shape": [-1, d]}],
        Output.SPARSE: lambda: [
            {"name": "sparse_indices", "datatype": "INT64", "shape": [-1]},
            {"name": "sparse_values", "datatype": "FP32", "shape": [-1]},
            {"name": "sparse_offsets", "datatype": "INT64", "shape": [-1]}],
        Output.COLBERT: lambda: [
            {"name": "colbert", "datatype": "FP32", "shape": [-1, embedder.colbert_dim]},
            {"name": "colbert_offsets", "datatype": "INT64", "shape": [-1]}],
    }
    return [t for output in Output if output in embedder.outputs for t in tensors[output]()]


# -- V1 ------------------------------------------------------------------------------------
def v1_request(payload: Any) -> tuple[list[Any], EncodeOptions]:
    """The texts of ``instances`` (strings or ``{"text": ...}``) and the options of
    ``parameters``."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequestError("Expected a JSON object with 'instances'.", param="instances")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadRequestError("'instances' must be a list.", param="instances")
    texts = [inst.get("text") if isinstance(inst, dict) else inst for inst in instances]
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequestError("'parameters' must be an object.", param="parameters")
    return texts, options_from_params(params)


def v1_response(result: EncodeResult) -> dict:
    """Each prediction is an object with the outputs asked for: ``dense`` (list of floats),
    ``sparse`` (``{"indices", "values"}``), ``colbert`` (list of vectors)."""
    predictions = []
    for emb in result.embeddings:
        item: dict[str, Any] = {}
        if emb.dense is not None:
            item["dense"] = emb.dense.tolist()
        if emb.sparse is not None:
            item["sparse"] = {"indices": emb.sparse.indices.tolist(),
                              "values": emb.sparse.values.tolist()}
        if emb.colbert is not None:
            item["colbert"] = emb.colbert.tolist()
        predictions.append(item)
    return {"predictions": predictions}
