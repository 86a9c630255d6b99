"""KServe V2 tensors, for every model's codec: parameters, BYTES inputs as texts, responses,
and a strict decoder of binary REST requests (``StrictDataPlane``)."""

from __future__ import annotations

from typing import Any

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

from predictor.errors import BadRequestError


def request_parameters(request: InferRequest) -> dict[str, Any]:
    return to_http_parameters(request.parameters) if request.parameters else {}


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
