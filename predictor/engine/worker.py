"""The thread that runs model work: one per device, shared by every engine (model) on it.

A device runs one batch at a time anyway. On CPU a second thread running torch would also give
libgomp a second OpenMP team, and with more team threads than CPUs it stops spinning between
parallel regions: every small region then pays a futex wake-up (predictor/runtime/threads.py:
one short text 8.4 ms instead of 5.9 ms on 2 CPUs). So all engines of a process on one device
hand their batches to one ``EngineWorker``, which takes the batch of whichever source's oldest
due item is oldest, the moment the previous batch is done, without the event loop.

The worker knows its sources only as ``BatchSource`` (below): when is a batch due, take it.
It owns the lock (``lock``) that guards its sources' queues: waiting on it for work and adding
work under it cannot miss each other. Several devices: one worker each, all built on one lock
(an engine's queue is shared between them). A worker takes work only when its device is free,
and wakes an idle sibling when it leaves work behind, so every batch lands on a device with
nothing running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple, Protocol

from predictor.engine.queue import Due

logger = logging.getLogger(__name__)


class Taken(NamedTuple):
    """A batch a worker took: the job that runs it (called without the lock), and whether work
    is left that another worker of the source could start now."""

    run: Callable[[], None]
    more: bool


class BatchSource(Protocol):
    """Something a worker can take batches from (an engine). Both methods are called on the
    worker's thread with its lock held: quick, never blocking."""

    def due(self, now: float) -> Due | None:
        """None when nothing waits; else when its oldest item came and when a batch is due."""
        ...

    def take(self, worker: EngineWorker) -> Taken:
        """Remove the next batch (a batch is due) and say how to run it on ``worker``'s device."""
        ...


class EngineWorker:
    def __init__(self, name: str = "engine-worker", lock: threading.Condition | None = None):
        """``lock``: shared with the workers of the other devices serving the same engines; a
        reentrant one (``threading.Condition()``'s default)."""
        self.name = name
        # Guards every attached source's queue too: submit, cancel and take all hold it.
        self.lock = lock or threading.Condition()
        self._sources: list[BatchSource] = []
        self._setups: list[tuple[Callable[[], None], Future]] = []
        self._thread: threading.Thread | None = None

    # -- sources come and go (any thread) ------------------------------------------------
    def attach(self, source: BatchSource) -> None:
        with self.lock:
            if source not in self._sources:
                self._sources.append(source)
            self._ensure_thread()

    def detach(self, source: BatchSource) -> threading.Thread | None:
        """Forget ``source``; returns the thread to join when no source is left."""
        with self.lock:
            if source in self._sources:
                self._sources.remove(source)
            self.lock.notify_all()
            return self._thread if not self._sources else None

    def run_setup(self, setup: Callable[[], None]) -> None:
        """Run ``setup`` on the worker thread and wait for it (per-thread set-up of a model:
        torch threads, warm-up); its error is raised here."""
        done: Future = Future()
        with self.lock:
            self._setups.append((setup, done))
            self._ensure_thread()
            self.lock.notify_all()
        done.result()

    def _ensure_thread(self) -> None:  # under the lock
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    # -- the thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            job()

    def _next_job(self) -> Callable[[], None] | None:
        """Block until there is set-up to run or a batch due; None when no source is left."""
        with self.lock:
            while True:
                if self._setups:
                    setup, done = self._setups.pop(0)
                    return lambda: _run_setup(setup, done)
                if not self._sources:
                    self._thread = None  # attach() after this starts a new thread
                    return None
                source, delay = self._due_source()
                if source is not None:
                    taken = source.take(self)
                    if taken.more:
                        self.lock.notify()  # an idle device may take what is left
                    return taken.run
                self.lock.wait(delay)

    def _due_source(self) -> tuple[BatchSource | None, float | None]:
        """The source whose oldest due item is the oldest; else how long until one is due."""
        now = time.monotonic()
        best, best_oldest, delay = None, 0.0, None
        for source in self._sources:
            due = source.due(now)
            if due is None:
                continue
            if due.in_s <= 0:
                if best is None or due.oldest < best_oldest:
                    best, best_oldest = source, due.oldest
            elif delay is None or due.in_s < delay:
                delay = due.in_s
        return best, delay


def _run_setup(setup: Callable[[], None], done: Future) -> None:
    try:
        setup()
    except BaseException as exc:  # reported to run_setup's caller
        logger.exception("worker set-up failed")
        done.set_exception(exc)
    else:
        done.set_result(None)
