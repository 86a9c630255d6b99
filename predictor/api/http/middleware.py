"""ASGI middleware: bearer-token auth, the repository switch, request body limit, counting.

Pure ASGI (no ``BaseHTTPMiddleware``) so bodies stream and nothing is buffered twice.
"""

from __future__ import annotations

import logging
import re

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor.api.http.error_handlers import error_response
from predictor.auth import OPEN_PATHS, REPOSITORY_DISABLED, REPOSITORY_PATHS, check_token
from predictor.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from predictor.metrics import REQUESTS


class RedactQueryStrings(logging.Filter):
    """Access-log lines keep query parameter names but not their values: a client that puts
    its token in the URL (``?api_key=...``) must not have it written to the log. (The token is
    only accepted in the ``Authorization`` header.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) and "?" in a else a
                                for a in args)
        elif isinstance(record.msg, str) and "?" in record.msg and not args:
            record.msg = _redact(record.msg)
        return True


_QUERY = re.compile(r"\?([^\s\"]*)")


def _redact(text: str) -> str:
    def names_only(match: re.Match) -> str:
        parts = [p.partition("=")[0] + "=<redacted>" if "=" in p else "<redacted>"
                 for p in match.group(1).split("&") if p]
        return "?" + "&".join(parts)

    return _QUERY.sub(names_only, text)


def redact_access_logs() -> None:
    """Install ``RedactQueryStrings`` on uvicorn's and asgi-logger's access loggers."""
    for name in ("uvicorn.access", "access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryStrings) for f in logger.filters):
            logger.addFilter(RedactQueryStrings())


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


class RejectLoneSurrogates:
    """400 for a JSON body with an unpaired UTF-16 surrogate escape (``"\\ud800"``).

    Python's json module accepts one and yields a str no tokenizer (and no UTF-8 encoder) can
    take, which used to end in a 500 on every JSON route. Only bodies holding a ``\\ud`` escape
    are parsed again (orjson, which refuses lone surrogates); binary V2 bodies are left to the
    strict V2 decoder.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH") or any(
                name == b"inference-header-content-length" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        messages, body = [], bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        problem = _lone_surrogate(body)
        if problem:
            await _send_error(scope, receive, send, BadRequestError(
                f"The request body has an unpaired UTF-16 surrogate escape ({problem}); text "
                "must be valid Unicode.", code="invalid_unicode"))
            return
        replay = iter(messages)

        async def replaying_receive() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replaying_receive, send)


def _lone_surrogate(body: bytes | bytearray) -> str | None:
    if b"\\ud" not in body and b"\\uD" not in body:
        return None
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):
            return str(exc)
    return None
