"""Lets V2 clients that send plain JSON without a content type (tritonclient does) be understood.

KServe reads a V2 infer body with no JSON content type as binary tensor data, which needs the
``Inference-Header-Content-Length`` header. A body that has neither header is plain JSON: this
ASGI middleware marks it so before FastAPI sees it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_BINARY_HEADER = b"inference-header-content-length"


class V2JsonContentType:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].startswith("/v2/models/") and scope["path"].endswith("/infer")):
            names = {name.lower() for name, _ in scope["headers"]}
            if b"content-type" not in names and _BINARY_HEADER not in names:
                # in place: outer middleware reads the matched route from this same scope
                scope["headers"] = [*scope["headers"], (b"content-type", b"application/json")]
        await self.app(scope, receive, send)
