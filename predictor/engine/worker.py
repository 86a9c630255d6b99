"""The thread that runs model work: one per device, shared by every engine (model) on it.

A device runs one batch at a time anyway. On CPU a second thread running torch would also give
libgomp a second OpenMP team, and with more team threads than CPUs it stops spinning between
parallel regions: every small region then pays a futex wake-up (predictor/runtime/threads.py:
one short text 8.4 ms instead of 5.9 ms on 2 CPUs). So all engines of a process on one device
hand their batches to one ``EngineWorker``, which takes the batch of whichever engine's oldest
due item is oldest, the moment the previous batch is done, without the event loop.

Several devices: one worker each, all sharing one lock (the engines' queues are shared between
them). A worker takes work only when its device is free, and wakes an idle sibling when it
leaves work behind, so every batch lands on a device with nothing running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from predictor.engine.batcher import BatchEngine

logger = logging.getLogger(__name__)


class EngineWorker:
    def __init__(self, name: str = "engine-worker", lock: threading.Condition | None = None):
        """``lock``: shared with the workers of the other devices serving the same engines."""
        self.name = name
        # Guards every attached engine's queue too: submit, cancel and take all hold it.
        self.lock = lock or threading.Condition()
        self._engines: list[BatchEngine] = []
        self._setups: list[tuple[Callable[[], None], Future]] = []
        self._thread: threading.Thread | None = None

    # -- engines come and go (any thread) ------------------------------------------------
    def attach(self, engine: BatchEngine) -> None:
        with self.lock:
            if engine not in self._engines:
                self._engines.append(engine)
            self._ensure_thread()

    def detach(self, engine: BatchEngine) -> threading.Thread | None:
        """Forget ``engine``; returns the thread to join when no engine is left."""
        with self.lock:
            if engine in self._engines:
                self._engines.remove(engine)
            self.lock.notify_all()
            return self._thread if not self._engines else None

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

    def _next_job(self) -> Callable[[], Any] | None:
        """Block until there is set-up to run or a batch due; None when no engine is left."""
        with self.lock:
            while True:
                if self._setups:
                    setup, done = self._setups.pop(0)
                    return lambda: _run_setup(setup, done)
                if not self._engines:
                    self._thread = None  # attach() after this starts a new thread
                    return None
                engine, delay = self._due_engine()
                if engine is not None:
                    batch = engine._take_batch()
                    depth = len(engine._waiting)
                    if depth and len(engine.lanes) > 1:
                        self.lock.notify()  # an idle device may take what is left
                    return lambda: engine._run_taken(batch, depth, self)
                self.lock.wait(delay)

    def _due_engine(self) -> tuple[BatchEngine | None, float | None]:
        """The engine whose oldest due item is the oldest; else how long until one is due."""
        now = time.monotonic()
        best, best_enqueued, delay = None, 0.0, None
        for engine in self._engines:
            if not engine._waiting:
                continue
            oldest = next(iter(engine._waiting.values()))
            wait = oldest.enqueued + engine.max_wait_s - now
            if wait <= 0 or engine._can_fill_batch():
                if best is None or oldest.enqueued < best_enqueued:
                    best, best_enqueued = engine, oldest.enqueued
            elif delay is None or wait < delay:
                delay = wait
        return best, delay


def _run_setup(setup: Callable[[], None], done: Future) -> None:
    try:
        setup()
    except BaseException as exc:  # reported to run_setup's caller
        logger.exception("worker set-up failed")
        done.set_exception(exc)
    else:
        done.set_result(None)
