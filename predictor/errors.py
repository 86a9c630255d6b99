"""OpenAI-shaped API errors.

Every error a client can get is one of these, rendered as
``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status (REST: the
handlers in api/http/error_handlers.py) or the matching gRPC status (``to_grpc``, applied by the
KServe models in api/kserve/model.py), so one ``raise`` serves REST, V2 and gRPC alike. Nothing
here imports a web or serving framework: the services in core/ raise these.
"""

from __future__ import annotations

from typing import Any

_GRPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND",
                413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}
# The ``type`` of an error that has none of its own (Starlette's 404/405, KServe's errors...).
_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 503: "service_unavailable"}


def error_type_for(status: int) -> str:
    """The OpenAI ``type`` for an HTTP status (``server_error`` for any other)."""
    return _HTTP_TYPES.get(status, "server_error")


def error_body(message: str, *, error_type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The one error shape every route, middleware and the wire layer answer with."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class ApiError(Exception):
    """Base of every error we return to clients on purpose."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        Exception.__init__(self, message)
        self.message = message
        self.reason = message  # what KServe's gRPC interceptor reports
        self.param = param
        self.code = code
        self.headers = headers or {}

    def __str__(self) -> str:
        return self.message

    def to_grpc(self) -> Exception:
        """The same error for gRPC clients (KServe's interceptor passes these through)."""
        from grpc import StatusCode
        from grpc_interceptor.exceptions import GrpcException

        code = getattr(StatusCode, _GRPC_STATUS.get(self.status_code, "INTERNAL"))
        return GrpcException(details=self.message, status_code=code)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, error_type=self.error_type, param=self.param,
                          code=self.code)


class BadRequestError(ApiError):
    """400: malformed or out-of-range input."""

    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(ApiError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(ApiError):
    status_code = 403
    error_type = "permission_error"


class ModelNotFoundError(ApiError):
    status_code = 404
    error_type = "not_found_error"

    def __init__(self, model: str, *, param: str | None = "model"):
        super().__init__(f"The model '{model}' does not exist or is not served here.",
                         param=param, code="model_not_found")


class WrongModelKindError(BadRequestError):
    """A model was asked for a task it does not do (a reranker asked for embeddings...)."""

    def __init__(self, model: str, task: str):
        super().__init__(f"The model '{model}' does not support {task}.", param="model",
                         code="model_task_mismatch")


class NotFoundError(ApiError):
    """404 for a resource other than a model (a training job...)."""

    status_code = 404
    error_type = "not_found_error"


class ConflictError(ApiError):
    """409: the request clashes with what exists (a fine-tuned model's name...)."""

    status_code = 409
    error_type = "invalid_request_error"


class PayloadTooLargeError(ApiError):
    status_code = 413
    error_type = "invalid_request_error"


class QueueFullError(ApiError):
    status_code = 429
    error_type = "rate_limit_error"


class OverloadedError(ApiError):
    """503: the request waited too long in the queue, or the server is shutting down."""

    status_code = 503
    error_type = "service_unavailable"


class NotReadyError(ApiError):
    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, model: str):
        super().__init__(f"The model '{model}' is not ready yet.", code="model_not_ready",
                         headers={"Retry-After": "5"})
