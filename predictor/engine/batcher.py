"""Dynamic batching on a padded-token budget.

Requests from every route and protocol put their items here. The scheduler (a task on the
event loop) groups waiting items into batches: items of similar length together to cut padding,
``max_len * count <= max_batch_tokens`` and ``count <= max_batch_size``, after waiting at most
``max_wait_s`` for company. The batch runs on ONE dedicated worker thread, so model work never
blocks the event loop. The engine knows nothing of torch or HTTP: a ``BatchRunner`` turns a list
of payloads into a list of results, one per payload.

Fairness: every batch is built around the oldest waiting item, so no item waits behind an
endless stream of better-fitting ones.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

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
                 max_batch_size: int = 64, max_wait_s: float = 0.002, name: str = "engine"):
        if max_batch_tokens < 1 or max_batch_size < 1 or max_wait_s < 0:
            raise ValueError("batch limits must be positive")
        self.runner = runner
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.name = name
        self._waiting: dict[int, _Waiting] = {}  # insertion order == arrival order
        self._seq = itertools.count()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._arrived = asyncio.Event()
            self._executor = self._executor or ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"{self.name}-worker")
            self._task = asyncio.get_running_loop().create_task(
                self._schedule(), name=f"{self.name}-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for item in self._waiting.values():
            if not item.future.done():
                item.future.set_exception(RuntimeError("engine stopped"))
        self._waiting.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def queue_size(self) -> int:
        return len(self._waiting)

    # -- submitting ----------------------------------------------------------------------
    async def submit(self, payloads: Sequence[Any], lengths: Sequence[int]) -> list[Any]:
        """Queue payloads (with their token lengths) and return their results in order.

        If the caller is cancelled (client gone), its items still waiting are dropped.
        """
        if len(payloads) != len(lengths):
            raise ValueError("one length per payload")
        self._ensure_started()
        loop = asyncio.get_running_loop()
        futures = []
        for payload, length in zip(payloads, lengths, strict=True):
            seq = next(self._seq)
            fut = loop.create_future()
            fut.add_done_callback(lambda f, seq=seq: self._forget(seq, f))
            self._waiting[seq] = _Waiting(seq, max(1, int(length)), payload, fut)
            futures.append(fut)
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    def _forget(self, seq: int, fut: asyncio.Future) -> None:
        if fut.cancelled():
            self._waiting.pop(seq, None)

    # -- scheduling ----------------------------------------------------------------------
    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            oldest = next(iter(self._waiting.values()))
            delay = oldest.enqueued + self.max_wait_s - time.monotonic()
            if delay > 0 and not self._can_fill_batch():
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), delay)
                except TimeoutError:
                    pass
                continue
            batch = self._take_batch()
            if not batch:
                continue
            payloads = [item.payload for item in batch]
            try:
                results = await loop.run_in_executor(self._executor, self.runner.run_batch,
                                                     payloads)
                if len(results) != len(batch):
                    raise RuntimeError(f"runner returned {len(results)} results "
                                       f"for {len(batch)} payloads")
            except Exception as exc:  # the batch fails, the engine keeps serving
                logger.exception("%s: batch of %d failed", self.name, len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

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


def lengths_of(items: Sequence[Any]) -> list[int]:
    return [len(item) for item in items]


__all__ = ["BatchEngine", "BatchRunner", "lengths_of"]
