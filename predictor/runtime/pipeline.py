"""A three-stage batch pipeline: host preparation of batch k+1 and post-processing of batch
k-1 overlap the device forward of batch k (as Infinity and TEI do).

Why: with one thread doing take -> pad -> copy -> forward -> copy back -> post-process ->
deliver, the GPU idles during every host step. Here each stage has its own thread and a
one-slot hand-off to the next, so at most one batch waits prepared ahead of the forward and
one waits behind it to be finished:

- ``prepare(items)`` (host): tokens packed into pinned buffers;
- ``forward(prepared)`` (the device thread): copies, kernels, copies back queued, an event
  recorded; returns without waiting for the device;
- ``finish(launched)`` (host): waits for the event, builds the results.

Batches complete in the order they were submitted. A stage that raises fails that batch's
future only; the batches around it go on. ``close()`` fails what is still queued.

The engine hands batches to ``submit`` (engine/engine.py: a runner's ``pipeline``) as long as
fewer than ``depth`` are in flight, and delivers each from its future; the packed runners
(runtime/packed.py) build one over their three stages. Standard library only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

_STOP = object()


class PipelineClosed(RuntimeError):
    pass


#: Batches in flight by default: one on the device, the next one being prepared. The host's
#: two stages share the GIL, so a third batch would add little overlap, and it would split
#: the waiting work into smaller batches (a closed loop of N clients keeps about N / depth
#: items per batch).
DEPTH = 2


class Pipeline:
    def __init__(self, prepare: Callable[[Sequence[Any]], Any], forward: Callable[[Any], Any],
                 finish: Callable[[Any], Sequence[Any]], *, name: str = "pipeline",
                 forward_setup: Callable[[], None] | None = None, depth: int = DEPTH):
        """``depth``: the batches worth having in flight (the engine's ``BatchPipeline``
        reads it: it hands over a batch while fewer are)."""
        if depth < 1:
            raise ValueError("a pipeline's depth is at least 1")
        self.depth = depth
        self._stages = (prepare, forward, finish)
        # in -> prepare -> [1] -> forward -> [1] -> finish: one batch ahead, one behind.
        self._queues: list[queue.Queue] = [queue.Queue(), queue.Queue(1), queue.Queue(1)]
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(i, forward_setup if i == 1 else None),
                             name=f"{name}-{stage}", daemon=True)
            for i, stage in enumerate(("prepare", "forward", "finish"))]
        for thread in self._threads:
            thread.start()

    def submit(self, items: Sequence[Any]) -> Future:
        """Queue a batch; its future gets the results (or the stage's error)."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise PipelineClosed("the pipeline is closed")
            self._queues[0].put((future, items))
        return future

    def run_batch(self, items: Sequence[Any]) -> list[Any]:
        """Submit and wait: the runner interface (``BatchRunner.run_batch``)."""
        return list(self.submit(items).result())

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queues[0].put(_STOP)
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self, index: int, setup: Callable[[], None] | None) -> None:
        if setup is not None:
            setup()
        stage = self._stages[index]
        inbox = self._queues[index]
        outbox = self._queues[index + 1] if index + 1 < len(self._queues) else None
        while True:
            job = inbox.get()
            if job is _STOP:
                if outbox is not None:
                    outbox.put(_STOP)
                return
            future, value = job
            if future.done():  # failed upstream or cancelled: pass it on untouched
                if outbox is not None:
                    outbox.put(job)
                continue
            if index == 0 and not future.set_running_or_notify_cancel():
                continue
            try:
                value = stage(value)
            except BaseException as exc:  # this batch fails; the next ones go on
                future.set_exception(exc)
                continue
            if outbox is not None:
                outbox.put((future, value))
            else:
                future.set_result(value)
