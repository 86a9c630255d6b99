"""Graceful shutdown: on SIGTERM readiness turns false and engines take no new work at once;
uvicorn then stops accepting connections and lets requests in flight finish (KServe's grace
period), KServe stops gRPC, and the process exits 0.

Uvicorn installs its own signal handlers while it serves, after KServe's. We chain ours in
front of whatever handler is current once the app has started.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

from fastapi import FastAPI

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def drain_models_on_signal(app: FastAPI, models: Iterable) -> None:
    models = list(models)

    def drain(signum: int) -> None:
        logger.info("received %s: marking models not ready and draining their queues",
                    signal.Signals(signum).name)
        for model in models:
            model.stop()

    async def chain_handlers() -> None:
        for sig in SIGNALS:
            previous = signal.getsignal(sig)

            def handler(signum, frame, previous=previous):
                drain(signum)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    app.router.on_startup.append(chain_handlers)
