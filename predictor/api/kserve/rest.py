"""V2 REST JSON infer responses rendered by us.

KServe's own path turns every float into a Python object (``to_rest``), validates them with
pydantic and encodes them, all on the loop: 7 s for ColBERT over 16 x 4000 tokens. Given bytes,
its route sends them as they are. ``V2JsonResponseType`` labels such bodies
``application/json`` (installed on KServe's app by ``cli.py``).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse, to_http_parameters
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor.api.rendering import INLINE_RENDER_NUMBERS, render_in_pieces


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
