"""Graceful shutdown within ``--grace_period`` seconds.

On SIGTERM (or SIGINT) every model turns not ready at once (probes fail); uvicorn stops
accepting connections and gRPC stops accepting calls, and requests already admitted go on to
completion, whatever stage they are at (a request still being tokenised is admitted too).
Shortly before the grace period ends, every HTTP request still without an answer gets a clean
503 ``shutting_down`` in the error shape (``InFlight``), because uvicorn then cancels what is
left and that used to surface as 500s. The process then exits 0 at once (``exit_now``): a
forward pass still running on a worker thread cannot be interrupted, and letting the
interpreter finalise under it aborted the process ("terminate called without an active
exception", exit -6).

Uvicorn installs its own signal handlers while it serves, after KServe's. We chain ours in
front of whatever handler is current once the app has started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor.errors import OverloadedError

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def cut_delay(grace_period: float) -> float:
    """Seconds after the signal at which unanswered requests get their 503: before uvicorn's
    own deadline (the grace period, counted from a moment later), with a margin for sending."""
    return max(0.0, grace_period - min(1.0, grace_period / 4))


class InFlight:
    """ASGI middleware that remembers the HTTP requests not yet answered, to answer them 503
    when the grace period runs out (``cut``). Whatever the app sends after that is dropped."""

    def __init__(self, app: ASGIApp, tracker: InFlightTracker):
        self.app = app
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = _Request(scope, send)

        async def tracked_send(message: Message) -> None:
            if state.cut:
                return
            if message["type"] == "http.response.start":
                state.started = True
            await send(message)

        self.tracker.requests.add(state)
        try:
            await self.app(scope, receive, tracked_send)
        except BaseException:  # cancelled by uvicorn at its deadline, after our answer
            if not state.cut:
                raise
        finally:
            self.tracker.requests.discard(state)


class _Request:
    __slots__ = ("scope", "send", "started", "cut")

    def __init__(self, scope: Scope, send: Send):
        self.scope, self.send, self.started, self.cut = scope, send, False, False


class InFlightTracker:
    def __init__(self) -> None:
        self.requests: set[_Request] = set()

    async def cut(self) -> int:
        """Answer 503 ``shutting_down`` to every request that has no response yet."""
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        count = 0
        for state in list(self.requests):
            if state.started or state.cut:
                continue
            state.cut = True
            count += 1
            error = OverloadedError(
                "The server is shutting down and its grace period is over; retry on another "
                "replica.", code="shutting_down", headers={"Retry-After": "1"})
            response = JSONResponse(error.body(), status_code=error.status_code,
                                    headers=error.headers)
            try:
                await response(state.scope, no_body, state.send)
            except Exception:  # the client is gone: nothing to answer
                pass
        return count


def drain_models_on_signal(app: FastAPI, models: Iterable, grace_period: float = 30.0,
                           stop_grpc: Callable[[], Awaitable[None]] | None = None,
                           cut_grpc: Callable[[], int] | None = None) -> None:
    """``stop_grpc``: stops the gRPC server within the grace period. Started at the signal,
    as uvicorn stops accepting connections (else KServe stops gRPC only once HTTP is done).
    ``cut_grpc``: ends the gRPC calls still running at the deadline (UNAVAILABLE)."""
    models = list(models)
    tracker = InFlightTracker()
    app.add_middleware(InFlight, tracker=tracker)  # outermost of ours: sees every request
    handled = False

    async def cut_at_deadline() -> None:
        count = await tracker.cut() + (cut_grpc() if cut_grpc is not None else 0)
        if count:
            logger.warning("grace period of %gs over: ended %d request(s) still running "
                           "(HTTP 503 / gRPC UNAVAILABLE, shutting_down)", grace_period, count)

    def drain(signum: int, loop: asyncio.AbstractEventLoop) -> None:
        nonlocal handled
        logger.info("received %s: marking models not ready; admitted requests finish within "
                    "%gs", signal.Signals(signum).name, grace_period)
        for model in models:
            model.stop()
        if not handled:
            handled = True
            if stop_grpc is not None:
                loop.call_soon_threadsafe(lambda: loop.create_task(stop_grpc()))
            loop.call_soon_threadsafe(
                loop.call_later, cut_delay(grace_period),
                lambda: loop.create_task(cut_at_deadline()))

    async def chain_handlers() -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            previous = signal.getsignal(sig)

            def handler(signum, frame, previous=previous):
                drain(signum, loop)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    app.router.on_startup.append(chain_handlers)


def exit_now(code: int = 0) -> None:
    """Flush the logs and leave without finalising the interpreter (see the module doc)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream: nothing to flush
            pass
    os._exit(code)
