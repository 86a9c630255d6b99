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

Several devices (``lanes``): one queue, one worker thread per device, each with the model loaded
on it. A worker takes the next batch the moment its device is free, so a batch always goes to a
device with nothing running (the least-loaded one) and the queue bound and fairness are the
queue's, whatever the number of devices. A batch failing on one device fails only its requests.

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

from predictor.engine.errors import EngineDraining, QueueFull, QueueTimeout
from predictor.engine.stats import EngineObserver, EngineStats
from predictor.engine.worker import EngineWorker

logger = logging.getLogger(__name__)


class BatchRunner(Protocol):
    """Runs one batch of payloads; called on the engine's worker thread."""

    def run_batch(self, payloads: Sequence[Any]) -> Sequence[Any]: ...


@dataclass(slots=True, eq=False)
class Lane:
    """One device serving an engine: the model on it, the worker thread feeding it, its totals."""

    device: str
    runner: BatchRunner
    worker: EngineWorker
    stats: EngineStats = field(default_factory=EngineStats)
    running: int = 0  # items in the batch running now


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
                 on_worker_start: Callable[..., None] | None = None,
                 worker: EngineWorker | None = None, device: str = "",
                 replicas: Sequence[tuple[str, BatchRunner, EngineWorker]] = ()):
        """``worker``: the thread that runs the batches, shared with the other engines of the
        device (worker.py); by default one of its own. ``on_worker_start``: called on that
        thread before the first batch (the runner's per-thread set-up: torch threads,
        warm-up), with the ``Lane`` when there are replicas; ``start()`` waits for it.
        ``device``: the name of ``runner``'s device (``/stats``, metrics). ``replicas``: more
        devices as ``(device, runner, worker)``, fed from the same queue; their workers must
        share ``worker``'s lock."""
        if max_batch_tokens < 1 or max_batch_size < 1 or max_wait_s < 0:
            raise ValueError("batch limits must be positive")
        worker = worker or EngineWorker(f"{name}-worker")
        self.lanes = [Lane(device, runner, worker)] + [Lane(d, r, w) for d, r, w in replicas]
        if len({id(lane.worker) for lane in self.lanes}) != len(self.lanes):
            raise ValueError("each device needs a worker of its own")
        if any(lane.worker.lock is not worker.lock for lane in self.lanes):
            raise ValueError("the workers of one engine must share one lock")
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
        self.worker = worker
        # Shared by the event loop (submit, cancel) and the worker (take): guarded by the
        # worker's lock, which all its engines share.
        self._changed = self.worker.lock
        self._waiting: dict[int, _Waiting] = {}  # insertion order == arrival order
        self._seq = itertools.count()
        self._set_up = False

    @property
    def runner(self) -> BatchRunner:
        """The (first) device's runner."""
        return self.lanes[0].runner

    @runner.setter
    def runner(self, runner: BatchRunner) -> None:
        self.lanes[0].runner = runner

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the workers and run the set-up on each (blocking: call it at load time)."""
        self._attach()
        if not self._set_up:
            self._set_up = True
            if self.on_worker_start is not None:
                if len(self.lanes) == 1:
                    self.worker.run_setup(self.on_worker_start)
                else:
                    for lane in self.lanes:
                        lane.worker.run_setup(lambda lane=lane: self.on_worker_start(lane))

    def _attach(self) -> None:
        for lane in self.lanes:
            lane.worker.attach(self)

    def drain(self) -> None:
        """Take no new work; what is queued or running still completes."""
        self.draining = True

    async def stop(self) -> None:
        self.draining = True
        with self._changed:
            waiting = list(self._waiting.values())
            self._waiting.clear()
        threads = [lane.worker.detach(self) for lane in self.lanes]
        for item in waiting:
            if not item.future.done():
                item.future.set_exception(EngineDraining(f"{self.name} stopped"))
        for thread in threads:
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
        self._attach()
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
    def _lane_of(self, worker: EngineWorker | None) -> Lane:
        if worker is None or len(self.lanes) == 1:
            return self.lanes[0]
        return next(lane for lane in self.lanes if lane.worker is worker)

    def _run_taken(self, batch: list[_Waiting], depth: int,
                   worker: EngineWorker | None = None) -> None:
        """Run a batch that ``worker`` took from this engine, on its device (worker.py)."""
        self._observe_depth(depth)
        self._run(batch, self._lane_of(worker))

    def _run(self, batch: list[_Waiting], lane: Lane | None = None) -> None:
        lane = lane or self.lanes[0]
        started = time.monotonic()
        waits = [started - item.enqueued for item in batch]
        tokens = sum(item.length for item in batch)
        padded = max(item.length for item in batch) * len(batch)
        lane.running = len(batch)
        try:
            outcome: list[Any] | BaseException = self._run_splitting(
                [item.payload for item in batch], lane.runner)
        except Exception as exc:  # the batch fails, the engine keeps serving
            outcome = exc
            self.stats.failed_batches += 1
            lane.stats.failed_batches += 1
            logger.exception("%s: batch of %d failed on %s", self.name, len(batch),
                             lane.device or "its device")
        lane.running = 0
        seconds = time.monotonic() - started
        self._deliver(batch, outcome)
        for stats in (self.stats, lane.stats) if len(self.lanes) > 1 else (self.stats,):
            stats.batches += 1
            stats.batch_items += len(batch)
            stats.items += len(batch)
            stats.tokens += tokens
            stats.padded_tokens += padded
            stats.busy_seconds += seconds
        if self.observer is not None:
            try:
                self.observer.batch_done(len(batch), tokens, padded, waits, seconds,
                                         not isinstance(outcome, BaseException),
                                         device=lane.device)
            except Exception:  # metrics must never stop the worker
                logger.exception("%s: observer failed", self.name)

    def device_stats(self) -> dict[str, dict]:
        """Per device: its totals and whether a batch runs on it now."""
        if len(self.lanes) == 1:  # one device: the engine's totals are the device's
            return {self.lanes[0].device: {**self.stats.device_summary(),
                                           "running_items": self.lanes[0].running}}
        return {lane.device: {**lane.stats.device_summary(), "running_items": lane.running}
                for lane in self.lanes}

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

    def _run_splitting(self, payloads: list[Any], runner: BatchRunner | None = None
                       ) -> list[Any]:
        """Run on the worker thread; on a retryable error (OOM) split the batch and retry."""
        runner = runner or self.runner
        retryable = tuple(getattr(runner, "retryable_errors", ()))
        try:
            results = list(runner.run_batch(payloads))
        except retryable:
            if len(payloads) == 1:
                raise
            logger.warning("%s: batch of %d hit a retryable error; splitting it", self.name,
                           len(payloads))
            half = len(payloads) // 2
            return (self._run_splitting(payloads[:half], runner)
                    + self._run_splitting(payloads[half:], runner))
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
