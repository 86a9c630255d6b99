"""Dynamic batching on a token budget: the engine a model submits its items to.

Requests from every route and protocol put their items in the engine's queue (queue.py says
how a batch is chosen: the oldest item and its nearest-length neighbours, within
``max_batch_tokens`` and ``max_batch_size``, after waiting at most ``max_wait_s`` for company).
ONE worker thread per device (worker.py, shared by the engines of that device) takes the
batches and runs them here, the moment the previous batch is done, so model work never waits
for the event loop (which may be busy writing responses), and never blocks it. Results go back
to each request's event loop. The engine knows nothing of torch or HTTP: a ``BatchRunner``
turns a list of payloads into a list of results, one per payload.

Several devices (``lanes``): one queue, one worker thread per device, each with the model loaded
on it. A worker takes the next batch the moment its device is free, so a batch always goes to a
device with nothing running (the least-loaded one) and the queue bound and fairness are the
queue's, whatever the number of devices. A batch failing on one device fails only its requests.

A runner that overlaps its stages (``pipeline``: host preparation of the next batch and
post-processing of the last one while a batch runs on the device, runtime/pipeline.py) gets a
batch the moment it has room for one, up to its ``depth`` batches in flight, instead of when
the previous batch is done; results come back through the pipeline's futures, in order. A
runner that packs its batches (``packs_batches``) has its token budget counted in real tokens.

Backpressure: at most ``max_queue_items`` wait; beyond it ``submit`` raises ``QueueFull`` at
once. A request waiting longer than ``request_timeout_s`` raises ``QueueTimeout`` and its items
leave the queue, as do the items of a cancelled request (client gone). A runner may name
``retryable_errors`` (CUDA out-of-memory): a batch failing with one is split in halves and
retried, so nothing is lost to batch size.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from predictor.engine.errors import EngineDraining, QueueFull, QueueTimeout
from predictor.engine.queue import Batch, BatchQueue, Due
from predictor.engine.stats import EngineObserver, EngineStats
from predictor.engine.worker import EngineWorker, Taken

logger = logging.getLogger(__name__)


class BatchRunner(Protocol):
    """Runs one batch of payloads; called on the engine's worker thread.

    Optional attributes the engine reads: ``retryable_errors`` (the errors after which a batch
    is split and retried), ``packs_batches`` (True: the batch costs its real tokens, not its
    padded ones) and ``pipeline`` (a ``BatchPipeline`` or None: used instead of ``run_batch``).
    """

    def run_batch(self, payloads: Sequence[Any]) -> Sequence[Any]: ...


class BatchPipeline(Protocol):
    """A runner's overlapping stages: ``submit`` returns at once with the batch's future
    (results in the payloads' order, or the batch's error); ``depth`` batches at most are
    worth having in flight."""

    depth: int

    def submit(self, payloads: Sequence[Any]) -> Future: ...


@dataclass(slots=True, eq=False)
class Lane:
    """One device serving an engine: the model on it, the worker thread feeding it, its totals."""

    device: str
    runner: BatchRunner
    worker: EngineWorker
    stats: EngineStats = field(default_factory=EngineStats)
    running: int = 0  # items in the batches running now
    in_flight: int = 0  # batches handed to the runner's pipeline and not done yet
    busy_since: float = 0.0  # when in_flight last went from 0 to 1
    slots: threading.Condition = field(default_factory=threading.Condition)  # guards in_flight

    def wait_idle(self) -> None:
        """Block until no pipelined batch is in flight."""
        with self.slots:
            while self.in_flight:
                self.slots.wait()


class BatchEngine:
    """Submit, backpressure, the devices (lanes), drain and stop, and the totals; the queue
    holds the waiting items, the workers run the batches. A ``BatchSource`` for its workers."""

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
        worker = worker or EngineWorker(f"{name}-worker")
        self.lanes = [Lane(device, runner, worker)] + [Lane(d, r, w) for d, r, w in replicas]
        if len({id(lane.worker) for lane in self.lanes}) != len(self.lanes):
            raise ValueError("each device needs a worker of its own")
        if any(lane.worker.lock is not worker.lock for lane in self.lanes):
            raise ValueError("the workers of one engine must share one lock")
        self.request_timeout_s = request_timeout_s
        self.name = name
        self.observer = observer
        self.on_worker_start = on_worker_start
        self.stats = EngineStats()
        self._counting = threading.Lock()
        self.draining = False
        self.worker = worker
        # The workers own the lock; the queue is built on it (queue.py says why).
        self.queue = BatchQueue(max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size,
                                max_wait_s=max_wait_s, max_items=max_queue_items,
                                lock=worker.lock, on_depth=self._observe_depth,
                                cost="tokens" if getattr(runner, "packs_batches", False)
                                else "padded")
        self._set_up = False

    @property
    def runner(self) -> BatchRunner:
        """The (first) device's runner."""
        return self.lanes[0].runner

    @runner.setter
    def runner(self, runner: BatchRunner) -> None:
        self.lanes[0].runner = runner

    @property
    def max_batch_tokens(self) -> int:
        return self.queue.max_batch_tokens

    @property
    def max_batch_size(self) -> int:
        return self.queue.max_batch_size

    @property
    def max_wait_s(self) -> float:
        return self.queue.max_wait_s

    @property
    def max_queue_items(self) -> int | None:
        return self.queue.max_items

    @property
    def queue_size(self) -> int:
        return len(self.queue)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the workers and run the set-up on each (blocking: call it at load time)."""
        self._attach()
        if not self._set_up:
            self._set_up = True
            setup = self.on_worker_start
            if setup is not None:
                if len(self.lanes) == 1:
                    self.worker.run_setup(setup)
                else:
                    for lane in self.lanes:
                        lane.worker.run_setup(functools.partial(setup, lane))

    def _attach(self) -> None:
        for lane in self.lanes:
            lane.worker.attach(self)

    def drain(self) -> None:
        """Take no new work; what is queued or running still completes."""
        self.draining = True

    async def stop(self) -> None:
        """Take no new work, fail what still waits, wait for the running batches."""
        self.draining = True
        self.queue.fail_all(lambda: EngineDraining(f"{self.name} stopped"))
        threads = [lane.worker.detach(self) for lane in self.lanes]
        for thread in threads:
            if thread is not None:
                await asyncio.to_thread(thread.join)
        for lane in self.lanes:  # pipelined batches still on their way
            await asyncio.to_thread(lane.wait_idle)

    # -- submitting (event loop) ---------------------------------------------------------
    async def submit(self, payloads: Sequence[Any], lengths: Sequence[int]) -> list[Any]:
        """Queue payloads (with their token lengths) and return their results in order."""
        if len(payloads) != len(lengths):
            raise ValueError("one length per payload")
        if self.draining:
            raise EngineDraining(f"{self.name} is shutting down")
        try:
            ticket = self.queue.put(payloads, lengths)
        except QueueFull:
            self.stats.rejected += 1
            raise
        self._attach()
        try:
            results = await ticket.results(self.request_timeout_s)
        except QueueTimeout:
            self.stats.timed_out += 1
            raise
        self.stats.requests += 1
        return results

    def _observe_depth(self, depth: int) -> None:
        if self.observer is not None:
            self.observer.queue_depth(depth)

    # -- BatchSource: the workers' side (their thread, their lock held) -------------------
    def due(self, now: float) -> Due | None:
        return self.queue.due(now)

    def take(self, worker: EngineWorker) -> Taken:
        batch = self.queue.take()
        lane = self._lane_of(worker)
        return Taken(functools.partial(self._run_taken, batch, lane),
                     more=batch.left > 0 and len(self.lanes) > 1)

    def _lane_of(self, worker: EngineWorker) -> Lane:
        if len(self.lanes) == 1:
            return self.lanes[0]
        return next(lane for lane in self.lanes if lane.worker is worker)

    # -- running a batch (the worker's thread, then the pipeline's) -----------------------
    def _run_taken(self, batch: Batch, lane: Lane) -> None:
        """Hand the batch to the runner's pipeline (a runner without one: ``_InlinePipeline``,
        done on return), then return once it has room for the next one (so the next batch is
        chosen as late as possible, from everything waiting by then)."""
        self._observe_depth(batch.left)
        pipeline = getattr(lane.runner, "pipeline", None) or _InlinePipeline(lane.runner)
        started = time.monotonic()
        waits = batch.waits(started)
        with lane.slots:
            if lane.in_flight == 0:
                lane.busy_since = started
            lane.in_flight += 1
            lane.running += len(batch.items)
        retryable = tuple(getattr(lane.runner, "retryable_errors", ()))
        future = self._submit_splitting(batch.payloads, pipeline, retryable)
        future.add_done_callback(
            functools.partial(self._batch_done, batch, lane, started, waits))
        with lane.slots:
            while lane.in_flight >= max(1, pipeline.depth):
                lane.slots.wait()

    def _finish(self, batch: Batch, lane: Lane, outcome: list[Any] | BaseException,
                waits: list[float], seconds: float, busy: float) -> None:
        """Deliver a batch's outcome and count it. ``seconds``: from start to results;
        ``busy``: the device time to count for it (less than ``seconds`` when batches overlap
        in a pipeline)."""
        size = len(batch.items)
        ok = not isinstance(outcome, BaseException)
        if isinstance(outcome, BaseException):
            logger.error("%s: batch of %d failed on %s", self.name, size,
                         lane.device or "its device", exc_info=outcome)
        with self._counting:  # lanes and pipelines finish batches on threads of their own
            for stats in (self.stats, lane.stats) if len(self.lanes) > 1 else (self.stats,):
                stats.batches += 1
                stats.items += size
                stats.tokens += batch.tokens
                stats.padded_tokens += batch.padded_tokens
                stats.busy_seconds += busy
                if not ok:
                    stats.failed_batches += 1
        batch.deliver(outcome)  # after counting: whoever got a result sees it counted
        if self.observer is not None:
            try:
                self.observer.batch_done(size, batch.tokens, batch.padded_tokens, waits, seconds,
                                         ok, device=lane.device, busy=busy)
            except Exception:  # metrics must never stop the worker
                logger.exception("%s: observer failed", self.name)

    def _batch_done(self, batch: Batch, lane: Lane, started: float, waits: list[float],
                        future: Future) -> None:
        """The batch's future is done (on a pipeline thread, or the worker's for a runner
        without a pipeline): free its slot, deliver."""
        error = future.exception()
        outcome: list[Any] | BaseException = error if error is not None else future.result()
        now = time.monotonic()
        with lane.slots:
            lane.in_flight -= 1
            lane.running -= len(batch.items)
            busy = 0.0
            if lane.in_flight == 0:  # the device's busy time is counted once per busy spell
                busy, lane.busy_since = now - lane.busy_since, now
            lane.slots.notify_all()
        self._finish(batch, lane, outcome, waits, now - started, busy)

    def _submit_splitting(self, payloads: list[Any], pipeline: BatchPipeline,
                          retryable: tuple[type[BaseException], ...]) -> Future:
        """``pipeline.submit``; a batch failing with one of the runner's ``retryable_errors``
        (CUDA out-of-memory) is submitted again as two halves, down to single payloads; the
        future gets their results in order."""
        done: Future = Future()

        def on_result(future: Future) -> None:
            error = future.exception()
            if isinstance(error, retryable) and len(payloads) > 1:
                logger.warning("%s: batch of %d hit a retryable error; splitting it", self.name,
                               len(payloads))
                half = len(payloads) // 2
                _gather([self._submit_splitting(part, pipeline, retryable)
                         for part in (payloads[:half], payloads[half:])], done)
            elif error is not None:
                done.set_exception(error)
            else:
                try:  # an error raised in a done-callback would be lost, the batch never done
                    results = list(future.result())
                    if len(results) != len(payloads):
                        raise RuntimeError(f"runner returned {len(results)} results for "
                                           f"{len(payloads)} payloads")
                except Exception as exc:
                    done.set_exception(exc)
                else:
                    done.set_result(results)

        try:
            pipeline.submit(payloads).add_done_callback(on_result)
        except Exception as exc:  # a closed pipeline: this batch fails, like a failed forward
            done.set_exception(exc)
        return done

    def describe(self) -> dict[str, Any]:
        """How batches are formed and fed (``/stats``, the load log): what the token budget
        counts (``padded`` or real ``tokens``) and how many batches the runner overlaps (0: it
        runs one at a time)."""
        pipeline = getattr(self.runner, "pipeline", None)
        return {"batch_cost": self.queue.cost,
                "pipeline_depth": pipeline.depth if pipeline is not None else 0}

    def device_stats(self) -> dict[str, dict]:
        """Per device: its totals and whether a batch runs on it now."""
        if len(self.lanes) == 1:  # one device: the engine's totals are the device's
            return {self.lanes[0].device: {**self.stats.device_summary(),
                                           "running_items": self.lanes[0].running}}
        return {lane.device: {**lane.stats.device_summary(), "running_items": lane.running}
                for lane in self.lanes}


class _InlinePipeline:
    """A runner without a pipeline as one of depth 1: ``run_batch`` on the calling thread (the
    worker's), its future done on return, so one path serves both kinds of runner."""

    depth = 1

    def __init__(self, runner: BatchRunner):
        self.runner = runner

    def submit(self, payloads: Sequence[Any]) -> Future:
        future: Future = Future()
        try:
            future.set_result(self.runner.run_batch(payloads))
        except Exception as exc:  # the batch fails, the engine keeps serving
            future.set_exception(exc)
        return future


def _gather(parts: list[Future], into: Future) -> None:
    """Set ``into`` to the concatenated results of ``parts``, or to the first error, once all
    of them are done."""
    remaining = [len(parts)]
    lock = threading.Lock()

    def one_done(_: Future) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        errors = [part.exception() for part in parts if part.exception() is not None]
        if errors:
            into.set_exception(errors[0])
        else:
            into.set_result([result for part in parts for result in part.result()])

    for part in parts:
        part.add_done_callback(one_done)
