"""An OpenAPI document that says what the server really answers.

FastAPI declares a 422 for every route with a body; we answer schema errors with an OpenAI-shaped
400 instead. Every operation, KServe's included, gets the error statuses it can really answer
(auth and body limits are middleware; any model route can meet an unknown or unready model),
and the phantom 422s go.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed or out-of-range input"),
    401: _error("Missing or wrong bearer token"),
    404: _error("Unknown model"),
    413: _error("Request body too large"),
    429: _error("Queue full; retry after Retry-After seconds"),
    500: _error("The batch failed inside the model"),
    503: _error("Model not ready, request timed out in the queue, or shutting down"),
}


def _served_routes(app: FastAPI) -> list:
    """Routes as matched: when two share a path and method, only the first is ever served
    (ours shadow KServe's ``GET /v1/models``), so only it is documented."""
    seen, routes = set(), []
    for context in routing.iter_route_contexts(app.routes):
        keys = {(context.path, method) for method in context.methods or ()}
        if keys and keys <= seen:
            continue
        seen |= keys
        routes.append(context)
    return routes


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 routes=_served_routes(app))
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.setdefault("ErrorBody", ErrorBody.model_json_schema(
                ref_template="#/components/schemas/{model}"))
            for name, sub in ErrorBody.model_json_schema(
                    ref_template="#/components/schemas/{model}").get("$defs", {}).items():
                components.setdefault(name, sub)
            components["ErrorBody"].pop("$defs", None)
            error_ref = {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)
                    for status, spec in ERROR_RESPONSES.items():  # any route may answer these
                        responses.setdefault(str(status), {"description": spec["description"],
                                                           **error_ref})
            for path, item in schema.get("paths", {}).items():
                if path.startswith("/v2/repository"):  # off unless --repository_api
                    for operation in item.values():
                        operation["responses"].setdefault("403", {
                            "description": "The repository API is disabled", **error_ref})
            metrics = schema.get("paths", {}).get("/metrics", {}).get("get")
            if metrics is not None:  # Prometheus text exposition, not JSON
                metrics["responses"]["200"]["content"] = {
                    "text/plain": {"schema": {"type": "string"}}}
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
