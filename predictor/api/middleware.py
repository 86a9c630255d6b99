"""ASGI middleware: bearer-token auth, the repository switch, request body limit, counting.

Pure ASGI (no ``BaseHTTPMiddleware``) so bodies stream and nothing is buffered twice.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ApiError, AuthenticationError, PayloadTooLargeError, PermissionDeniedError
from ..metrics import REQUESTS
from .error_handlers import error_response

# Probes and scrapes stay open (SPEC "Health"): liveness, readiness, model metadata, metrics.
OPEN_PATHS = re.compile(r"^(/|/metrics|/health|/v2|/v2/health/(live|ready)"
                        r"|/v2/models/[^/]+(/versions/[^/]+)?(/ready)?)$")
# KServe's model repository extension (REST and gRPC): load/unload a model by name. An unload
# takes the model offline until restart, so it is off unless --repository_api turns it on.
REPOSITORY_PATHS = re.compile(r"^/v2/repository(/|$)")
REPOSITORY_DISABLED = ("The model repository API (load/unload) is disabled on this server; "
                       "start it with --repository_api true (and --api_token) to allow it.")


def check_token(headers: Mapping[str, str], token: str | None) -> None:
    """Raise 401 unless ``authorization: Bearer <token>`` matches (constant-time)."""
    if not token:
        return
    value = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, given = value.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        raise AuthenticationError("Missing or invalid bearer token.", code="invalid_api_key",
                                  headers={"WWW-Authenticate": "Bearer"})


async def _send_error(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
    await error_response(exc.status_code, exc.message, param=exc.param, code=exc.code,
                         error_type=exc.error_type, headers=exc.headers)(scope, receive, send)


class BearerAuth:
    """401 without the token (except ``OPEN_PATHS``); then 403 on the repository routes unless
    ``repository_api`` is on."""

    def __init__(self, app: ASGIApp, token: str | None, repository_api: bool = False):
        self.app = app
        self.token = token
        self.repository_api = repository_api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token and not (scope["method"] == "GET" and OPEN_PATHS.match(scope["path"])):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope["headers"]}
            try:
                check_token(headers, self.token)
            except AuthenticationError as exc:
                await _send_error(scope, receive, send, exc)
                return
        if not self.repository_api and REPOSITORY_PATHS.match(scope["path"]):
            await _send_error(scope, receive, send, PermissionDeniedError(
                REPOSITORY_DISABLED, code="repository_api_disabled"))
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for bodies over ``max_bytes``: from Content-Length at once, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"The request body is larger than {self.max_bytes} bytes.",
                                    code="request_too_large")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_error(scope, receive, send, self._too_large())
                return
        seen = 0
        refused = False

        async def limited_receive() -> Message:
            # FastAPI turns errors raised while reading the body into 400s, so instead we answer
            # 413 ourselves and tell the app the client is gone.
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await _send_error(scope, receive, send, self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise


class CountRequests:
    """``bge_predictor_requests_total{route, status}`` by route template."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(path, str(status)).inc()
