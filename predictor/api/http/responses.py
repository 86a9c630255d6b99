"""JSON responses that serialise numpy arrays directly (orjson), no ``tolist()`` round trip, and
render big bodies on a worker thread so the event loop (health probes, other requests) never
waits for them.

- ``NumpyJSONResponse``: our JSON routes' bodies; a small body renders at once, a big one when
  it is sent, off the loop.
- ``v2_rest_response``: a V2 REST JSON infer response rendered by us. KServe's own path turns
  every float into a Python object (``to_rest``), validates them with pydantic and encodes them,
  all on the loop: 7 s for ColBERT over 16 x 4000 tokens. Given bytes, its route sends them as
  they are. ``V2JsonResponseType`` labels such bodies ``application/json``.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import numpy as np
import orjson
from fastapi.responses import JSONResponse
from kserve.protocol.infer_type import InferRequest, InferResponse, to_http_parameters
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# Up to about this many numbers, rendering inline (well under a millisecond with orjson) is
# cheaper than the hop to a thread and back; bigger bodies render on a thread.
INLINE_RENDER_NUMBERS = 65536


def _numbers(content: Any, limit: int = INLINE_RENDER_NUMBERS) -> int:
    """About how many numbers ``content`` holds, counted up to just past ``limit``."""
    if isinstance(content, np.ndarray):
        return content.size
    if isinstance(content, dict):
        content = content.values()
    elif not isinstance(content, list | tuple):
        return 1
    total = 0
    for value in content:
        total += _numbers(value, limit - total)
        if total > limit:
            break
    return total


def _dumps(content: Any) -> bytes:
    return orjson.dumps(content, option=_OPTIONS)


# Numbers per orjson call when rendering in pieces: a few milliseconds each. orjson holds the
# GIL for a whole call, so one call over a big array would stall the loop even from a thread.
PIECE_NUMBERS = 16384


def _pieces(content: Any, out: list[bytes]) -> None:
    """Append the JSON of ``content`` to ``out``, big arrays and lists a few rows at a time
    (the same text as ``orjson.dumps`` with our options)."""
    if isinstance(content, np.ndarray) and content.size > PIECE_NUMBERS and content.ndim:
        rows = max(1, PIECE_NUMBERS // max(1, content.size // len(content)))
        out.append(b"[")
        for start in range(0, len(content), rows):
            if start:
                out.append(b",")
            out.append(_dumps(np.ascontiguousarray(content[start:start + rows]))[1:-1])
        out.append(b"]")
    elif isinstance(content, dict):
        out.append(b"{")
        for i, (key, value) in enumerate(content.items()):
            out.append(b"," if i else b"")
            out.append(_dumps(key if isinstance(key, str) else str(key)))
            out.append(b":")
            _pieces(value, out)
        out.append(b"}")
    elif isinstance(content, list | tuple) and _numbers(content) > PIECE_NUMBERS:
        out.append(b"[")
        for i, value in enumerate(content):
            out.append(b"," if i else b"")
            _pieces(value, out)
        out.append(b"]")
    else:
        out.append(_dumps(content))


def render_in_pieces(content: Any) -> bytes:
    """``content`` as JSON, rendered so that the GIL is let go every few milliseconds."""
    out: list[bytes] = []
    _pieces(content, out)
    return b"".join(out)


class NumpyJSONResponse(JSONResponse):
    def __init__(self, content: Any, *args: Any, **kwargs: Any):
        self._deferred = _numbers(content) > INLINE_RENDER_NUMBERS
        self._content = content if self._deferred else None
        super().__init__(content, *args, **kwargs)

    def render(self, content: Any) -> bytes:
        return b"" if self._deferred else _dumps(content)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._deferred:
            self.body = await anyio.to_thread.run_sync(render_in_pieces, self._content)
            self._content, self._deferred = None, False
            self.headers["content-length"] = str(len(self.body))
        await super().__call__(scope, receive, send)


class RenderedInferResponse(InferResponse):
    """An ``InferResponse`` whose REST form is already-rendered JSON bytes."""

    def __init__(self, response: InferResponse, body: bytes):
        super().__init__(response_id=response.id, model_name=response.model_name,
                         model_version=response.model_version, infer_outputs=response.outputs,
                         parameters=response.parameters)
        self._body = body

    def to_rest(self) -> tuple[bytes, None]:
        return self._body, None


def _v2_json(response: InferResponse, chosen: list) -> bytes:
    """The body KServe's ``to_rest`` + JSON encoding would make of the ``chosen`` outputs
    (numbers in float32's shortest form, which reads back to the same float32)."""
    outputs = []
    for output in chosen:
        item: dict[str, Any] = {"name": output.name, "shape": output.shape,
                                "datatype": output.datatype}
        if output.parameters:
            item["parameters"] = to_http_parameters(output.parameters)
        data = output.data
        item["data"] = (np.ascontiguousarray(data).reshape(-1) if isinstance(data, np.ndarray)
                        else data)
        outputs.append(item)
    body: dict[str, Any] = {"id": response.id, "model_name": response.model_name,
                            "model_version": response.model_version, "outputs": outputs}
    if response.parameters:
        body["parameters"] = to_http_parameters(response.parameters)
    return render_in_pieces(body)


async def v2_rest_response(request: InferRequest, response: InferResponse) -> InferResponse:
    """``response`` rendered here (off the loop when big) for a V2 REST JSON request; as it is
    for gRPC and binary outputs (KServe's path, fast for those)."""
    if getattr(request, "from_grpc", False) or response._use_binary_outputs:
        return response
    chosen = response.outputs
    if response._requested_outputs:
        if any(getattr(o, "binary_data", False) for o in response._requested_outputs):
            return response
        chosen = [response.get_output_by_name(o.name) for o in response._requested_outputs]
    if not all(o is not None and isinstance(o.data, np.ndarray) for o in chosen):
        return response  # KServe names what is wrong
    if sum(o.data.size for o in chosen) <= INLINE_RENDER_NUMBERS:
        body = _v2_json(response, chosen)
    else:
        body = await anyio.to_thread.run_sync(_v2_json, response, chosen)
    return RenderedInferResponse(response, body)


class V2JsonResponseType:
    """Labels a V2 infer response that has no content type and no binary framing header as
    ``application/json`` (KServe's route sends our rendered bytes without one)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].startswith("/v2/models/") and scope["path"].endswith("/infer")):
            await self.app(scope, receive, send)
            return

        async def labelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                if b"content-type" not in names and b"inference-header-content-length" not in names:
                    message["headers"] = [*message.get("headers", []),
                                          (b"content-type", b"application/json")]
            await send(message)

        await self.app(scope, receive, labelled)
