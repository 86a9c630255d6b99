"""Every HTTP error as ``{"error": {"message", "type", "param", "code"}}`` (SPEC "Errors")."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from kserve.errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ApiError
from .responses import NumpyJSONResponse

logger = logging.getLogger(__name__)

_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 503: "service_unavailable"}


def error_response(status: int, message: str, *, param: str | None = None,
                   code: str | None = None, error_type: str | None = None,
                   headers: dict[str, str] | None = None) -> NumpyJSONResponse:
    body = {"error": {"message": message,
                      "type": error_type or _HTTP_TYPES.get(status, "server_error"),
                      "param": param, "code": code}}
    return NumpyJSONResponse(body, status_code=status, headers=headers)


async def api_error_handler(_: Request, exc: ApiError) -> NumpyJSONResponse:
    return NumpyJSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def _loc_to_param(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


async def validation_error_handler(_: Request, exc: RequestValidationError) -> NumpyJSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    param = _loc_to_param(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        message, param = "The request body is not valid JSON.", None
    else:
        message = f"{param or 'request'}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s))"
    return error_response(400, message, param=param, code="invalid_value")


async def http_error_handler(_: Request, exc: StarletteHTTPException) -> NumpyJSONResponse:
    return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def kserve_error_handler(_: Request, exc: Exception) -> NumpyJSONResponse:
    if isinstance(exc, InvalidInput):
        return error_response(400, str(exc))
    if isinstance(exc, ModelNotFound):
        return error_response(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, ModelNotReady):
        return error_response(503, str(exc), code="model_not_ready", headers={"Retry-After": "5"})
    if isinstance(exc, NotImplementedError):  # e.g. model versions: a request we cannot honour
        return error_response(400, str(exc) or "Not supported.", code="unsupported")
    return error_response(500, str(exc), error_type="server_error")


async def unexpected_error_handler(_: Request, exc: Exception) -> NumpyJSONResponse:
    logger.exception("unexpected error", exc_info=exc)
    return error_response(500, "Internal server error.", error_type="server_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    for exc_class in (InvalidInput, InferenceError, ModelNotFound, ModelNotReady,
                      NotImplementedError):
        app.add_exception_handler(exc_class, kserve_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)


def reassert_error_handlers_on_startup(app: FastAPI) -> None:
    """KServe adds its own handlers (``{"error": "text"}``) after our routes are installed and
    before serving. On startup we put ours back and let Starlette rebuild its middleware stack,
    so V2 errors raised inside KServe are OpenAI-shaped too."""

    async def _reassert() -> None:
        install_error_handlers(app)
        app.middleware_stack = None

    app.router.on_startup.append(_reassert)
