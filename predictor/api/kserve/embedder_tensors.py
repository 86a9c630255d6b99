"""KServe V1 and V2 tensor adapters for the embedder (SPEC: "KServe V2 inference protocol").

V2 input: one BYTES tensor of texts. Outputs (only those asked for): ``dense`` [N, D];
``sparse_indices``/``sparse_values``/``sparse_offsets`` as CSR; ``colbert`` [T, D] with
``colbert_offsets`` [N+1]. Outputs are chosen by the ``return_*`` parameters, or, when none is
given, by the request's ``outputs`` list, else dense only. The ``embed_dtype`` parameter
(``float32`` default, ``float16``) sets the element type of ``dense`` and ``colbert``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    to_http_parameters,
)

from predictor.api.params import as_bool, as_int, resolve_input_type
from predictor.core.sparse import MAPPINGS, to_csr
from predictor.core.types import EncodeOptions, EncodeResult, Output
from predictor.errors import BadRequestError

if TYPE_CHECKING:
    from predictor.api.kserve.embedder import EmbedderModel

OUTPUT_TENSORS = {
    "dense": Output.DENSE,
    "sparse_indices": Output.SPARSE,
    "sparse_values": Output.SPARSE,
    "sparse_offsets": Output.SPARSE,
    "colbert": Output.COLBERT,
    "colbert_offsets": Output.COLBERT,
}
_FLAGS = {"return_dense": Output.DENSE, "return_sparse": Output.SPARSE,
          "return_colbert": Output.COLBERT}


def outputs_from_flags(params: dict[str, Any]) -> set[Output]:
    """Outputs chosen by ``return_*`` parameters (SPEC defaults: dense on, the others off)."""
    return {flag for name, flag in _FLAGS.items()
            if as_bool(params.get(name, flag is Output.DENSE), name)}


def request_parameters(request: InferRequest) -> dict[str, Any]:
    return to_http_parameters(request.parameters) if request.parameters else {}


def texts_from_request(request: InferRequest) -> list[str]:
    """The texts of the embedder's single BYTES input."""
    if len(request.inputs) != 1:
        raise BadRequestError(f"Expected exactly one BYTES input tensor, got "
                              f"{len(request.inputs)}.", param="inputs")
    return texts_of_input(request.inputs[0], "inputs[0]")


def texts_of_input(tensor, param: str) -> list[str]:
    """A BYTES tensor's elements as strings, decoded as strict UTF-8."""
    if tensor.datatype != "BYTES":
        raise BadRequestError(f"Input '{tensor.name}' must be BYTES, got {tensor.datatype}.",
                              param=f"{param}.datatype")
    shape = _shape(list(tensor.shape), f"{param}.shape")  # numpy would take [-5] as [-1]
    try:
        values = tensor.as_numpy().reshape(-1).tolist()
    except Exception as exc:  # malformed binary payloads, shape mismatches
        raise BadRequestError(f"Input '{tensor.name}' could not be read: {exc}",
                              param=param) from exc
    if len(values) != _count(shape):
        raise BadRequestError(f"Input '{tensor.name}' has shape {shape} but {len(values)} "
                              "element(s).", param=f"{param}.shape")
    texts = []
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequestError(f"{param}[{i}] is not valid UTF-8 ({exc.reason} at "
                                      f"byte {exc.start}).", param=f"{param}[{i}]") from exc
        texts.append(value)
    return texts


def encode_options(request: InferRequest) -> EncodeOptions:
    params = request_parameters(request)
    embed_dtype(request)  # a bad embed_dtype is refused before any work is done
    explicit = any(name in params for name in _FLAGS)
    outputs = outputs_from_flags(params)
    if not explicit:
        requested = [out.name for out in request.request_outputs or []]
        for name in requested:
            if name not in OUTPUT_TENSORS:
                raise BadRequestError(f"Unknown output '{name}'; known outputs: "
                                      f"{', '.join(OUTPUT_TENSORS)}.", param="outputs")
        outputs = {OUTPUT_TENSORS[name] for name in requested} or {Output.DENSE}
    max_length = as_int(params["max_length"], "max_length") if "max_length" in params else None
    truncate = as_bool(params["truncate"], "truncate") if "truncate" in params else True
    mapping = params.get("sparse_token_mapping")
    if mapping is not None and mapping not in MAPPINGS:
        raise BadRequestError(f"sparse_token_mapping must be one of {MAPPINGS}.",
                              param="sparse_token_mapping")
    return EncodeOptions(outputs=frozenset(outputs), max_length=max_length, truncate=truncate,
                         sparse_mapping=mapping,
                         input_type=resolve_input_type(params.get("input_type"),
                                                       params.get("is_query")))


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
                      dense_dim: int | None = None,
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


_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16",
              np.dtype(np.int64): "INT64"}


def infer_response(model_name: str, request: InferRequest, tensors: dict[str, np.ndarray],
                   parameters: dict[str, Any] | None = None) -> InferResponse:
    """Build the V2 response; KServe encodes it as JSON, binary REST or gRPC.

    For gRPC the tensors are pre-encoded as raw bytes: KServe's ``to_grpc`` cannot take numpy
    data when the request used raw inputs (it tests the array's truth value).
    """
    outputs = []
    for name, arr in tensors.items():
        out = InferOutput(name=name, shape=list(arr.shape), datatype=_DATATYPES[arr.dtype])
        if request.from_grpc:
            out.set_data_from_numpy(arr, binary_data=True)
        else:
            out.data = arr
        outputs.append(out)
    return InferResponse(response_id=request.id or "", model_name=model_name,
                         infer_outputs=outputs, use_binary_outputs=request.use_binary_outputs,
                         requested_outputs=request.request_outputs, parameters=parameters)


def embedding_response(model_name: str, request: InferRequest, result: EncodeResult,
                       options: EncodeOptions) -> InferResponse:
    tensors = embedding_tensors(result, options.outputs, dtype=embed_dtype(request))
    return infer_response(model_name, request, tensors, {"prompt_tokens": result.prompt_tokens})


async def v1_embed(model: EmbedderModel, payload: Any) -> dict:
    """V1 ``{"instances": [text | {"text": ...}], "parameters"?}`` → ``{"predictions": [...]}``.

    Each prediction is an object with the outputs asked for: ``dense`` (list of floats),
    ``sparse`` (``{"indices", "values"}``), ``colbert`` (list of vectors).
    """
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequestError("Expected a JSON object with 'instances'.", param="instances")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadRequestError("'instances' must be a list.", param="instances")
    texts = [inst.get("text") if isinstance(inst, dict) else inst for inst in instances]
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequestError("'parameters' must be an object.", param="parameters")
    outputs = outputs_from_flags(params)
    options = EncodeOptions(outputs=frozenset(outputs),
                            max_length=(as_int(params["max_length"], "max_length")
                                        if "max_length" in params else None),
                            truncate=as_bool(params.get("truncate", True), "truncate"))
    result = await model.encode(texts, options, param="instances")
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


# -- V2 binary REST requests: a strict decoder ---------------------------------------------
# KServe's ``InferRequest.from_bytes`` trusts the body: a bad Inference-Header-Content-Length,
# a header that is not an object, a binary_data_size past the data or a length prefix past its
# element raise ValueError/KeyError/struct.error (500s), and a binary_data_size larger than what
# is left is cut silently. This decoder checks every field and says which one is wrong.

_HEADER = "Inference-Header-Content-Length"


def _bad(message: str, param: str | None = None) -> BadRequestError:
    return BadRequestError(message, param=param, code="invalid_binary_request")


def _shape(value: Any, param: str) -> list[int]:
    if not isinstance(value, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise _bad(f"{param} must be a list of non-negative integers, got {value!r:.60}.", param)
    return value


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def split_bytes_elements(raw: bytes, name: str, param: str) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then data."""
    elements, offset = [], 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _bad(f"Input '{name}': element {len(elements)} has a truncated length prefix "
                       f"({len(raw) - offset} of 4 bytes).", param)
        length = int.from_bytes(view[offset:offset + 4], "little")
        offset += 4
        if offset + length > len(raw):
            raise _bad(f"Input '{name}': element {len(elements)} claims {length} bytes but only "
                       f"{len(raw) - offset} are left in its binary data.", param)
        elements.append(bytes(view[offset:offset + length]))
        offset += length
    return elements


def _binary_input(spec: Any, i: int, body: bytes, start: int) -> tuple[InferInput, int]:
    from kserve.utils.numpy_codec import to_np_dtype

    param = f"inputs[{i}]"
    if not isinstance(spec, dict):
        raise _bad(f"{param} must be an object.", param)
    name, datatype = spec.get("name"), spec.get("datatype")
    if not isinstance(name, str):
        raise _bad(f"{param}.name must be a string.", f"{param}.name")
    if not isinstance(datatype, str) or to_np_dtype(datatype) is None:
        raise _bad(f"Input '{name}': unknown datatype {datatype!r:.40}.", f"{param}.datatype")
    shape = _shape(spec.get("shape"), f"{param}.shape")
    parameters = spec.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _bad(f"{param}.parameters must be an object.", f"{param}.parameters")
    tensor = InferInput(name=name, shape=shape, datatype=datatype, parameters=parameters)
    if spec.get("data") is not None:
        tensor.data = spec["data"]
        return tensor, start
    size = (parameters or {}).get("binary_data_size")
    if size is None:
        raise _bad(f"Input '{name}' has neither 'data' nor parameters.binary_data_size.", param)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(f"Input '{name}': binary_data_size must be a non-negative integer, got "
                   f"{size!r:.40}.", f"{param}.parameters.binary_data_size")
    if start + size > len(body):
        raise _bad(f"Input '{name}': binary_data_size {size} runs past the end of the body "
                   f"({len(body) - start} bytes left).", f"{param}.parameters.binary_data_size")
    raw = body[start:start + size]
    count = _count(shape)
    if datatype == "BYTES":
        elements = split_bytes_elements(raw, name, param)
        if len(elements) != count:
            raise _bad(f"Input '{name}': shape {shape} needs {count} element(s), the binary data "
                       f"holds {len(elements)}.", f"{param}.shape")
        # Kept as bytes: texts_of_input decodes them strictly and names a bad element (KServe's
        # set_data_from_numpy would decode here and raise InferenceError, a 500).
        tensor.data = elements
        if parameters:
            parameters.pop("binary_data_size", None)
        return tensor, start + size
    itemsize = np.dtype(to_np_dtype(datatype)).itemsize
    if size != count * itemsize:
        raise _bad(f"Input '{name}': {datatype} of shape {shape} needs {count * itemsize} "
                   f"bytes, binary_data_size is {size}.", f"{param}.parameters.binary_data_size")
    array = np.frombuffer(raw, dtype=to_np_dtype(datatype))
    tensor.set_data_from_numpy(array.reshape(shape), binary_data=False)
    return tensor, start + size


def decode_binary_request(body: bytes, header_length: Any, model_name: str) -> InferRequest:
    """A V2 REST request with binary tensor data, checked field by field (400s naming each)."""
    if header_length is None:
        raise _bad(f"Binary request without the {_HEADER} header.")
    text = str(header_length).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise _bad(f"{_HEADER} must be a non-negative integer, got {text!r:.40}.")
    json_length = int(text)
    if json_length > len(body):
        raise _bad(f"{_HEADER} is {json_length} but the body has only {len(body)} bytes.")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        raise _bad(f"The JSON header (the first {json_length} bytes) is not valid JSON: "
                   f"{exc}.") from None
    if not isinstance(header, dict):
        raise _bad(f"The JSON header must be an object, got {type(header).__name__}.")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("The JSON header needs a non-empty 'inputs' list.", "inputs")
    tensors, start = [], json_length
    for i, spec in enumerate(inputs):
        tensor, start = _binary_input(spec, i, body, start)
        tensors.append(tensor)
    if start != len(body):
        raise _bad(f"{len(body) - start} bytes follow the last input's binary data; "
                   "binary_data_size must cover the data exactly.")
    outputs = header.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)):
        raise _bad("'outputs' must be a list of objects with a 'name'.", "outputs")
    parameters = header.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _bad("'parameters' must be an object.", "parameters")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("'id' must be a string.", "id")
    requested = [RequestedOutput(name=o["name"], parameters=o.get("parameters"))
                 for o in outputs] if outputs is not None else None
    return InferRequest(model_name=model_name, request_id=request_id, parameters=parameters,
                        infer_inputs=tensors, request_outputs=requested)


class StrictDataPlane(DataPlane):
    """KServe's data plane with the strict binary decoder (REST V2 binary requests)."""

    def decode_inference_request(self, body, headers, model_name):
        if isinstance(body, bytes):
            length = next((v for k, v in (headers or {}).items() if k.lower() == _HEADER.lower()),
                          None)
            return decode_binary_request(body, length, model_name)
        return super().decode_inference_request(body, headers, model_name)
