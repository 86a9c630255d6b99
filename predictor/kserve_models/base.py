"""What every served model shares: loading then ``ready``, its engine, auth, engine errors.

Subclasses set ``kind`` and implement ``_load_runner()``; their entry points submit work with
``self.run(items)``, which turns the engine's refusals into API errors (429, 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import kserve

from ..engine import BatchEngine, EngineDraining, EngineWorker, QueueFull, QueueTimeout
from ..errors import ApiError, NotReadyError, OverloadedError, QueueFullError
from ..metrics import EngineMetrics
from ..settings import Settings

logger = logging.getLogger(__name__)


# One worker thread per device for all models on it (engine/worker.py says why).
_DEVICE_WORKERS: dict[str, EngineWorker] = {}


def device_worker(device: str) -> EngineWorker:
    if device not in _DEVICE_WORKERS:
        _DEVICE_WORKERS[device] = EngineWorker(f"{device}-worker")
    return _DEVICE_WORKERS[device]


class EngineModel(kserve.Model):
    kind = "model"

    def __init__(self, name: str, model_id: str, settings: Settings):
        super().__init__(name)
        self.model_id = model_id
        self.settings = settings
        self.runner: Any = None
        self.batcher: BatchEngine | None = None
        self.metrics = EngineMetrics(name)

    def start(self) -> None:
        """KServe's default marks every model ready here; ours is ready only once loaded."""

    def _load_runner(self) -> Any:
        raise NotImplementedError

    def load(self) -> bool:
        started = time.monotonic()
        self.runner = self._load_runner()
        self.runner.observe_stage = self.metrics.stage
        s = self.settings
        batch_runner = self.runner
        if s.sub_batches != "off" and self.runner.device == "cpu":
            from ..runtime.sub_batches import SplitByLength

            batch_runner = SplitByLength(self.runner)
        self.batcher = BatchEngine(
            batch_runner, max_batch_tokens=s.batch_tokens_for(self.runner.device),
            max_batch_size=s.max_batch_size,
            max_wait_s=s.batch_wait_ms / 1000.0, max_queue_items=s.max_queue_size,
            request_timeout_s=s.request_timeout, name=f"{self.name}-engine",
            observer=self.metrics, on_worker_start=self._prepare_worker,
            worker=device_worker(self.runner.device))
        self.batcher.start()
        self.load_seconds = time.monotonic() - started
        self.ready = True
        precision = self.runner.precision
        logger.info("%s %s loaded from %s on %s (dtype=%s: %s; max_length=%d) in %.1fs",
                    self.kind, self.name, self.model_id, self.runner.device, precision.dtype,
                    precision.reason, self.runner.max_length, self.load_seconds)
        return self.ready

    def _prepare_worker(self) -> None:
        """On the engine's worker thread: torch threads, warm-up (runtime/worker.py)."""
        from ..runtime.worker import prepare_worker

        prepare_worker(self.batcher.runner)

    @property
    def max_length(self) -> int:
        return self.runner.max_length

    def stop(self) -> None:
        """Shutdown: not ready any more. The engine keeps taking work: a request admitted before
        the signal (even one still being tokenised) must complete; the servers stop admitting
        new ones, and what is left at the grace deadline gets 503 (shutdown.py)."""
        self.ready = False

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """KServe's V1/V2 entry (REST and gRPC): auth, then ``infer``; errors in gRPC terms.

        REST requests were already authenticated by the HTTP middleware; gRPC metadata reaches
        us here as ``headers``.
        """
        from ..api.middleware import check_token

        try:
            check_token(headers or {}, self.settings.api_token)
            return await self.infer(payload)
        except ApiError as exc:
            if getattr(payload, "from_grpc", False):
                raise exc.to_grpc() from None
            raise

    async def infer(self, payload: Any) -> Any:
        raise NotImplementedError

    def ensure_ready(self) -> None:
        if not self.ready:
            raise NotReadyError(self.name)

    # Up to this many characters, tokenising on the event loop (a fraction of a millisecond in
    # the Rust tokenizer) is cheaper than the hop to a worker thread and back (1.7-2.5 ms
    # measured on a busy 2-core machine); bigger requests go to a thread, so the loop stays free.
    inline_tokenize_chars = 4096

    async def tokenize(self, chars: int, tokenize: Callable[..., Any], *args: Any) -> Any:
        """``tokenize(*args)`` for a request of ``chars`` characters, timed as the tokenise
        stage: inline when small, else on the default executor."""
        started = time.monotonic()
        if chars <= self.inline_tokenize_chars:
            result = tokenize(*args)
        else:
            result = await asyncio.get_running_loop().run_in_executor(None, tokenize, *args)
        self.metrics.stage("tokenize", time.monotonic() - started)
        return result

    async def run(self, items: Sequence[Any]) -> list[Any]:
        try:
            return await self.batcher.submit(items, [len(item) for item in items])
        except QueueFull as exc:
            raise QueueFullError(f"The server is busy ({exc}); retry shortly.",
                                 code="queue_full", headers={"Retry-After": "1"}) from None
        except QueueTimeout as exc:
            raise OverloadedError(f"The request timed out waiting for the model ({exc}).",
                                  code="timeout", headers={"Retry-After": "1"}) from None
        except EngineDraining:
            raise OverloadedError("The server is shutting down.", code="shutting_down",
                                  headers={"Retry-After": "1"}) from None

    def stats(self) -> dict:
        s = self.settings
        summary = {"kind": self.kind, "ready": bool(self.ready), "model": self.model_id}
        if self.batcher is not None:
            summary |= {"queue_size": self.batcher.queue_size, **self.batcher.stats.summary()}
            summary["config"] = {
                "device": self.runner.device, "fp16": self.runner.half,
                **self.runner.precision.describe(),
                "max_length": self.max_length, "max_batch_tokens": self.batcher.max_batch_tokens,
                "max_batch_size": s.max_batch_size, "batch_wait_ms": s.batch_wait_ms,
                "max_queue_size": s.max_queue_size, "request_timeout_s": s.request_timeout}
        return summary
