"""Every HTTP error as ``{"error": {"message", "type", "param", "code"}}`` (SPEC "Errors")."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from kserve.errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady
from starlette.exceptions import HTTPException as StarletteHTTPException

from predictor.api.http.responses import NumpyJSONResponse
from predictor.errors import ApiError, error_body, error_type_for

logger = logging.getLogger(__name__)


def error_response(status: int, message: str, *, param: str | None = None,
                   code: str | None = None, error_type: str | None = None,
                   headers: dict[str, str] | None = None) -> NumpyJSONResponse:
    body = error_body(message, error_type=error_type or error_type_for(status), param=param,
                      code=code)
    return NumpyJSONResponse(body, status_code=status, headers=headers)


async def api_error_handler(_: Request, exc: ApiError) -> NumpyJSONResponse:
    return NumpyJSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "a list", dict: "an object", type(None): "null"}


def _is_union_tag(part) -> bool:
    """pydantic's name for a union member in ``loc`` (``str``, ``list[str]``, ``Document``)."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "none", "bytes"}
                                      or any(c in part for c in "[-") or part[:1].isupper())


def _walk(body, loc: tuple) -> tuple[list, object]:
    """The real path of ``loc`` in the sent body and the value found there (``_MISSING`` for a
    field not sent). Union-member tags are skipped: the field reads as the client sent it."""
    path: list = []
    value = body
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        if _is_union_tag(part):
            continue
        if isinstance(value, dict):
            path.append(part)
            if part not in value:
                return path, _MISSING
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            path.append(part)
            value = value[part]
    return path, value


def _param(path: list) -> str | None:
    if not path:
        return None
    out = str(path[0])
    for part in path[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _sent(value) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_TYPE_NAMES.get(type(value), type(value).__name__)})"


_TAGS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
         "none": "null", "bytes": "a string"}


def _describe_tag(tag: str) -> str | None:
    """``list[str]`` -> ``a list of strings``; None for tags with no plain reading."""
    if tag in _TAGS:
        return _TAGS[tag]
    if tag.startswith("list[") and tag.endswith("]"):
        inner = _describe_tag(tag[5:-1])
        if inner and inner.startswith(("a ", "an ")):
            return "a list of " + inner.split(" ", 1)[1] + "s"
        return "a list"
    return None


def _expected(error: dict) -> str:
    loc = tuple(error.get("loc", ()))
    if loc and _is_union_tag(loc[-1]) and (described := _describe_tag(str(loc[-1]))):
        return described
    if error.get("type") in ("model_attributes_type", "dict_type"):
        return "a JSON object"
    message = str(error.get("msg", "a valid value"))
    for prefix in ("Input should be ", "Value error, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
            break
    if message.startswith(("greater", "less")):
        message = "a value " + message
    message = re.sub(r"\ba ([aeiou])", r"an \1", message.split(", ")[0].replace("a valid ", "a "))
    return message[:1].lower() + message[1:]


def validation_message(errors: list[dict], body) -> tuple[str, str | None, str]:
    """(message, param, code) for pydantic's errors: the field, what was sent, what is
    accepted, in one sentence, instead of one line per union member."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error")
        return (f"The request body is not valid JSON ({detail or 'cannot be parsed'}); send a "
                "JSON object.", None, "invalid_json")
    if first.get("type") == "token_ids_not_accepted":
        return str(first.get("msg")), "input", "token_ids_not_accepted"
    path, value = _walk(body, tuple(first.get("loc", ())))
    field = path[:1]
    # Every error on the same top-level field, at the deepest place the body has.
    related = []
    for error in errors:
        other_path, other_value = _walk(body, tuple(error.get("loc", ())))
        if other_path[:1] == field:
            related.append((other_path, other_value, error))
    depth = max(len(p) for p, _, _ in related)
    path, value, _ = next(item for item in related if len(item[0]) == depth)
    kinds = [e.get("type") for p, _, e in related if p == path]
    param = _param(path)
    if "extra_forbidden" in kinds:
        return (f"{param}: unknown field; this route does not accept it (docs/api.md lists the "
                "fields).", param, "invalid_value")
    if "missing" in kinds and not path:
        return "The request body is empty; send a JSON object.", None, "invalid_value"
    if "missing" in kinds:
        return f"{param}: required field is missing.", param, "invalid_value"
    expected = list(dict.fromkeys(_expected(e) for p, _, e in related if p == path))
    message = f"{param or 'request'}: expected {' or '.join(expected)}"
    if value is not _MISSING:
        message += f", got {_sent(value)}"
    return message + ".", param, "invalid_value"


async def validation_error_handler(_: Request, exc: RequestValidationError) -> NumpyJSONResponse:
    message, param, code = validation_message(list(exc.errors()), getattr(exc, "body", None))
    return error_response(400, message, param=param, code=code)


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
