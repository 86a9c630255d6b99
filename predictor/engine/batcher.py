"""Dynamic batching on a padded-token budget.

Requests from every route and protocol put their items here. ONE worker thread (worker.py,
shared by the engines of one device) takes batches from the queue and runs them: items of
similar length together to cut padding,
``max_len * count <= max_batch_tokens`` and ``count <= max_batch_size``, after waiting at most
``max_wait_s`` for company. The worker takes the next batch itself the moment a batch is done,
so model work never waits for the event loop (which may be busy writing responses), and never
blocks it. Results go back to each request's event loop. The engine knows nothing of torch or
HTTP: a ``BatchRunner`` turns a list of payloads into a list of results, one per payload.

Fairness: every batch is built around the oldest waiting item, so no item waits behind an
endless stream of better-fitting ones.

Backpressure: at most ``max_queue_items`` wait (a request bigger than that is admitted only into
an empty queue); beyond it ``submit`` raises ``QueueFull`` at once. A request waiting longer than
``request_timeout_s`` raises ``QueueTimeout`` and its items leave the queue, as do the items of a
cancelled request (client gone). A runner may name ``retryable_errors`` (CUDA out-of-memory):
a batch failing with one is split in halves and retried, so nothing is lost to batch size.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import EngineDraining, QueueFull, QueueTimeout
from .stats import EngineObserver, EngineStats
from .worker import EngineWorker

logger = logging.getLogger(__name__)


class BatchRunner(Protocol):
    """Runs one batch of payloads; called on the engine's worker thread."""

    def run_batch(self, payloads: Sequence[Any]) -> Sequence[Any]: ...


@dataclass(slots=True, eq=False)
class _Waiting:
    seq: int
    length: int
    payload: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class BatchEngine:
    def __init__(self, runner: BatchRunner, *, max_batch_tokens: int = 16384,
                 max_batch_size: int = 64, max_wait_s: float = 0.002,
                 max_queue_items: int | None = None, request_timeout_s: float | None = None,
                 name: str = "engine", observer: EngineObserver | None = None,
                 on_worker_start: Callable[[], None] | None = None,
                 worker: EngineWorker | None = None):
        """``worker``: the thread that runs the batches, shared with the other engines of the
        device (worker.py); by default one of its own. ``on_worker_start``: called on that
        thread before the first batch (the runner's per-thread set-up: torch threads,
        warm-up); ``start()`` waits for it."""
        if max_batch_tokens < 1 or max_batch_size < 1 or max_wait_s < 0:
            raise ValueError("batch limits must be positive")
        self.runner = runner
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_items = max_queue_items
        self.request_timeout_s = request_timeout_s
        self.name = name
        self.observer = observer
        self.on_worker_start = on_worker_start
        self.stats = EngineStats()
        self.draining = False
        self.worker = worker or EngineWorker(f"{name}-worker")
        # Shared by the event loop (submit, cancel) and the worker (take): guarded by the
        # worker's lock, which all its engines share.
        self._changed = self.worker.lock
        self._waiting: dict[int, _Waiting] = {}  # insertion order == arrival order
        self._seq = itertools.count()
        self._set_up = False

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the worker and run the set-up there (blocking: call it at load time)."""
        self.worker.attach(self)
        if not self._set_up:
            self._set_up = True
            if self.on_worker_start is not None:
                self.worker.run_setup(self.on_worker_start)

    def drain(self) -> None:
        """Take no new work; what is queued or running still completes."""
        self.draining = True

    async def stop(self) -> None:
        self.draining = True
        with self._changed:
            waiting = list(self._waiting.values())
            self._waiting.clear()
        thread = self.worker.detach(self)
        for item in waiting:
            if not item.future.done():
                item.future.set_exception(EngineDraining(f"{self.name} stopped"))
        if thread is not None:
            await asyncio.to_thread(thread.join)

    @property
    def queue_size(self) -> int:
        return len(self._waiting)

    # -- submitting (event loop) ---------------------------------------------------------
    async def submit(self, payloads: Sequence[Any], lengths: Sequence[int]) -> list[Any]:
        """Queue payloads (with their token lengths) and return their results in order."""
        if len(payloads) != len(lengths):
            raise ValueError("one length per payload")
        if self.draining:
            raise EngineDraining(f"{self.name} is shutting down")
        loop = asyncio.get_running_loop()
        futures = []
        with self._changed:
            if (self.max_queue_items is not None and self._waiting
                    and len(self._waiting) + len(payloads) > self.max_queue_items):
                self.stats.rejected += 1
                raise QueueFull(f"{len(self._waiting)} items already waiting "
                                f"(bound {self.max_queue_items})")
            for payload, length in zip(payloads, lengths, strict=True):
                seq = next(self._seq)
                fut = loop.create_future()
                fut.add_done_callback(lambda f, seq=seq: self._forget(seq, f))
                self._waiting[seq] = _Waiting(seq, max(1, int(length)), payload, fut)
                futures.append(fut)
            depth = len(self._waiting)
            self._changed.notify()
        self._observe_depth(depth)
        self.worker.attach(self)
        gathered = asyncio.gather(*futures)
        # When this request is cancelled (a sibling failed with 429, the client left), 3.11's
        # wait_for leaves a CancelledError set on ``gathered``: read it, or asyncio logs
        # "_GatheringFuture exception was never retrieved" at ERROR.
        gathered.add_done_callback(_retrieve)
        try:
            if self.request_timeout_s is None:
                results = await gathered
            else:
                results = await asyncio.wait_for(gathered, self.request_timeout_s)
        except TimeoutError:
            self.stats.timed_out += 1
            raise QueueTimeout(f"not done within {self.request_timeout_s:g}s") from None
        except BaseException:
            for fut in futures:  # a sibling failed or the caller left: drop what still waits
                fut.cancel()
            raise
        self.stats.requests += 1
        return list(results)

    def _forget(self, seq: int, fut: asyncio.Future) -> None:
        if not fut.cancelled():
            return
        with self._changed:
            removed = self._waiting.pop(seq, None) is not None
            depth = len(self._waiting)
        if removed:
            self._observe_depth(depth)

    def _observe_depth(self, depth: int) -> None:
        if self.observer is not None:
            self.observer.queue_depth(depth)

    # -- on the worker thread ------------------------------------------------------------
    def _run_taken(self, batch: list[_Waiting], depth: int) -> None:
        """Run a batch the worker took from this engine (worker.py)."""
        self._observe_depth(depth)
        self._run(batch)

    def _run(self, batch: list[_Waiting]) -> None:
        started = time.monotonic()
        waits = [started - item.enqueued for item in batch]
        tokens = sum(item.length for item in batch)
        padded = max(item.length for item in batch) * len(batch)
        try:
            outcome: list[Any] | BaseException = self._run_splitting(
                [item.payload for item in batch])
        except Exception as exc:  # the batch fails, the engine keeps serving
            outcome = exc
            self.stats.failed_batches += 1
            logger.exception("%s: batch of %d failed", self.name, len(batch))
        seconds = time.monotonic() - started
        self._deliver(batch, outcome)
        stats = self.stats
        stats.batches += 1
        stats.batch_items += len(batch)
        stats.items += len(batch)
        stats.tokens += tokens
        stats.padded_tokens += padded
        stats.busy_seconds += seconds
        if self.observer is not None:
            try:
                self.observer.batch_done(len(batch), tokens, padded, waits, seconds,
                                         not isinstance(outcome, BaseException))
            except Exception:  # metrics must never stop the worker
                logger.exception("%s: observer failed", self.name)

    @staticmethod
    def _deliver(batch: list[_Waiting], outcome: list[Any] | BaseException) -> None:
        """Hand each result (or the batch's error) to its future, on that future's loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for row, item in enumerate(batch):
            result = outcome if isinstance(outcome, BaseException) else outcome[row]
            by_loop.setdefault(item.future.get_loop(), []).append((item.future, result))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, pairs)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _run_splitting(self, payloads: list[Any]) -> list[Any]:
        """Run on the worker thread; on a retryable error (OOM) split the batch and retry."""
        retryable = tuple(getattr(self.runner, "retryable_errors", ()))
        try:
            results = list(self.runner.run_batch(payloads))
        except retryable:
            if len(payloads) == 1:
                raise
            logger.warning("%s: batch of %d hit a retryable error; splitting it", self.name,
                           len(payloads))
            half = len(payloads) // 2
            return self._run_splitting(payloads[:half]) + self._run_splitting(payloads[half:])
        if len(results) != len(payloads):
            raise RuntimeError(f"runner returned {len(results)} results for "
                               f"{len(payloads)} payloads")
        return results

    def _can_fill_batch(self) -> bool:
        if len(self._waiting) >= self.max_batch_size:
            return True
        return sum(item.length for item in self._waiting.values()) >= self.max_batch_tokens

    def _take_batch(self) -> list[_Waiting]:
        """Remove and return the next batch: the oldest item plus its nearest-length neighbours."""
        waiting = sorted(self._waiting.values(), key=lambda item: (item.length, item.seq))
        oldest = min(self._waiting)
        anchor = next(i for i, item in enumerate(waiting) if item.seq == oldest)
        lo = hi = anchor  # the batch is waiting[lo:hi + 1]; sorted, so max length is waiting[hi]
        while hi - lo + 1 < self.max_batch_size:
            left = waiting[lo - 1] if lo > 0 else None
            right = waiting[hi + 1] if hi + 1 < len(waiting) else None
            count = hi - lo + 2
            fits_left = left is not None and waiting[hi].length * count <= self.max_batch_tokens
            fits_right = right is not None and right.length * count <= self.max_batch_tokens
            if fits_left and fits_right:
                anchor_len = waiting[anchor].length
                take_left = anchor_len - left.length <= right.length - anchor_len
            elif fits_left or fits_right:
                take_left = fits_left
            else:
                break
            if take_left:
                lo -= 1
            else:
                hi += 1
        batch = waiting[lo:hi + 1]
        for item in batch:
            del self._waiting[item.seq]
        return batch


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


def _resolve(pairs: list[tuple[asyncio.Future, Any]]) -> None:
    """On the event loop: set each future's result or exception, unless it is done (cancelled)."""
    for fut, result in pairs:
        if fut.done():
            continue
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)
