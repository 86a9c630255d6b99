"""gRPC auth and the repository switch, in front of every KServe gRPC method.

KServe checks nothing on gRPC: a model's ``predict`` sees the metadata, but
``RepositoryModelLoad``/``RepositoryModelUnload`` never reach a model, so without this an
anonymous client could take a model offline. A server interceptor sees every call first:

- the health and metadata calls stay open, as their REST twins do (``auth.OPEN_PATHS``);
- every other call needs ``authorization: Bearer <token>`` when a token is set
  (UNAUTHENTICATED otherwise);
- the repository calls are refused (PERMISSION_DENIED) unless ``--repository_api`` is on;
- at the shutdown deadline, ModelInfer calls still running end with UNAVAILABLE (``cut``).

KServe's ``GRPCServer.start`` builds its ``grpc.aio`` server with a fixed interceptor tuple, so
``GuardedGRPCServer`` repeats that method with ours in front.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent import futures

import grpc
from grpc import aio
from kserve.logging import logger
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

from predictor.auth import REPOSITORY_DISABLED, check_token
from predictor.errors import AuthenticationError

SERVICE = "/inference.GRPCInferenceService/"
# The gRPC twins of the open REST paths: liveness, readiness, server and model metadata.
OPEN_METHODS = frozenset(SERVICE + name for name in (
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata"))
REPOSITORY_METHODS = frozenset(SERVICE + name for name in (
    "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"))


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode,
             details: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that answers ``code`` without running it."""

    async def unary(request, context):
        await context.abort(code, details)

    async def streaming(request, context):
        await context.abort(code, details)
        yield  # pragma: no cover - makes this an async generator

    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, **kwargs)
    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


SHUTTING_DOWN = ("The server is shutting down and its grace period is over; retry on another "
                 "replica (shutting_down).")


class GuardInterceptor(aio.ServerInterceptor):
    def __init__(self, token: str | None, repository_api: bool):
        self.token = token
        self.repository_api = repository_api
        # ModelInfer calls running, each with the future ``cut`` resolves to end it.
        self._calls: dict[asyncio.Future, asyncio.Future] = {}
        self._cut_count = 0

    def cut(self) -> int:
        """Shutdown deadline: every running ModelInfer ends with UNAVAILABLE (shutdown.py)."""
        for call, signal in list(self._calls.items()):
            if not signal.done():
                signal.set_result(None)
                self._cut_count += 1
            call.cancel()
        return self._cut_count

    def _cuttable(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        inner = handler.unary_unary

        async def infer(request, context):
            call = asyncio.ensure_future(inner(request, context))
            signal = asyncio.get_running_loop().create_future()
            self._calls[call] = signal
            try:
                # Not ``await call``: a call cancelled while it waits on a thread (tokenising)
                # ends only when the thread does; the answer must not wait for that.
                await asyncio.wait({call, signal}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the client left
                call.cancel()
                raise
            finally:
                self._calls.pop(call, None)
            if not signal.done():
                return call.result()
            call.cancel()
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)

        return grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method in OPEN_METHODS:
            return handler
        metadata = {key.lower(): value for key, value in (details.invocation_metadata or ())
                    if isinstance(value, str)}
        try:
            check_token(metadata, self.token)
        except AuthenticationError as exc:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, exc.message)
        if method in REPOSITORY_METHODS and not self.repository_api:
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, REPOSITORY_DISABLED)
        if method == SERVICE + "ModelInfer" and handler.unary_unary is not None:
            return self._cuttable(handler)
        return handler


class RepositoryServicer(InferenceServicer):
    """KServe's servicer, with repository answers that work: KServe's read a ``name`` from the
    extension's return value, which is None, so every load/unload ended in INTERNAL after it
    had been done."""

    async def RepositoryModelLoad(self, request, context):  # noqa: N802 - gRPC method name
        await self._mode_repository_extension.load(model_name=request.model_name)
        return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

    async def RepositoryModelUnload(self, request, context):  # noqa: N802
        await self._mode_repository_extension.unload(model_name=request.model_name)
        return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)


class GuardedGRPCServer(GRPCServer):
    """KServe's gRPC server with ``GuardInterceptor`` first and ``RepositoryServicer`` (KServe's
    ``start`` otherwise)."""

    def __init__(self, *args, token: str | None, repository_api: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self._guard = GuardInterceptor(token, repository_api)

    async def start(self, max_workers):
        servicer = RepositoryServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(self._guard, LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[("grpc.max_send_message_length",
                      self._kwargs.get("grpc_max_send_message_length")),
                     ("grpc.max_receive_message_length",
                      self._kwargs.get("grpc_max_receive_message_length"))])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        listen_addr = f"[::]:{self._port}"
        self._server.add_insecure_port(listen_addr)
        logger.info("Starting gRPC server on %s (%d workers)", listen_addr, max_workers)
        await self._server.start()
        await self._server.wait_for_termination()

    def cut(self) -> int:
        return self._guard.cut()
