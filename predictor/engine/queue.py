"""The waiting items of one engine and how the next batch is chosen from them.

Why a module of its own: how batches are chosen (fairness, the token budget, nearest-length
neighbours) is the one thing to read when tuning batching, and it can be tested without threads.

- ``put`` admits a request's items, or refuses them at once (``QueueFull``) beyond ``max_items``
  (a request bigger than the bound is admitted only into an empty queue: it could never fit).
- ``Ticket.results`` waits for them, at most ``timeout_s`` (``QueueTimeout``); a request that
  times out or is cancelled (client gone) takes its items out of the queue.
- ``due`` says whether a batch is worth taking now: when the oldest item has waited
  ``max_wait_s`` for company, or the waiting items already fill a batch.
- ``take`` removes the next batch: built around the OLDEST item (so no item waits behind an
  endless stream of better-fitting ones), grown with its nearest-length neighbours (less
  padding), while its cost fits ``max_batch_tokens`` and ``count <= max_batch_size``. The
  cost is what the runner computes: ``padded`` (``max_len * count``: a padded batch, the
  default) or ``tokens`` (the sum of the lengths: a runner that packs its batches without
  padding, as TEI and vLLM count, ``runtime/packed.py``).
- ``Batch.deliver`` hands the results back to each request's event loop, from any thread.

The lock: the queue does not own it. It is the lock of the worker(s) that take from the queue
(``EngineWorker.lock``): a worker waits on it for work, ``put`` notifies it, so a worker never
misses an item. It must be reentrant (``threading.Condition()``'s default lock is): a worker
calls ``due``/``take`` with it held. Built alone, the queue makes one of its own.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from predictor.engine.errors import QueueFull, QueueTimeout


@dataclass(slots=True, eq=False)
class Item:
    """One waiting payload: its token length, the future its request awaits, when it came."""

    seq: int
    length: int
    payload: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class Due(NamedTuple):
    """When a queue's oldest item came, and in how many seconds a batch is due (<= 0: now)."""

    oldest: float
    in_s: float


class Ticket:
    """One request's items in the queue: await ``results`` for their results, in order."""

    def __init__(self, futures: list[asyncio.Future]):
        self.futures = futures

    async def results(self, timeout_s: float | None = None) -> list[Any]:
        """The results; ``QueueTimeout`` after ``timeout_s``. Leaving (timeout, cancellation,
        an item's failure) takes what still waits out of the queue."""
        gathered = asyncio.gather(*self.futures)
        # When this request is cancelled (a sibling failed with 429, the client left), 3.11's
        # wait_for leaves a CancelledError set on ``gathered``: read it, or asyncio logs
        # "_GatheringFuture exception was never retrieved" at ERROR.
        gathered.add_done_callback(_retrieve)
        try:
            if timeout_s is None:
                results = await gathered
            else:
                results = await asyncio.wait_for(gathered, timeout_s)
        except TimeoutError:
            raise QueueTimeout(f"not done within {timeout_s:g}s") from None
        except BaseException:
            for fut in self.futures:  # a sibling failed or the caller left: drop what waits
                fut.cancel()
            raise
        return list(results)


#: How a batch's tokens are counted against ``max_batch_tokens`` (module docstring).
COSTS = ("padded", "tokens")


@dataclass(slots=True, eq=False)
class Batch:
    """Items taken together; ``left``: how many still waited in the queue after the take;
    ``packed``: the runner runs it without padding (cost ``tokens``)."""

    items: list[Item]
    left: int
    packed: bool = False

    @property
    def payloads(self) -> list[Any]:
        return [item.payload for item in self.items]

    @property
    def tokens(self) -> int:
        return sum(item.length for item in self.items)

    @property
    def padded_tokens(self) -> int:
        """The tokens the runner computes: padded to the longest item, or only the real ones
        for a packed batch."""
        if self.packed:
            return self.tokens
        return max(item.length for item in self.items) * len(self.items)

    def waits(self, now: float) -> list[float]:
        """How long each item waited until ``now``."""
        return [now - item.enqueued for item in self.items]

    def deliver(self, outcome: Sequence[Any] | BaseException) -> None:
        """Hand each result (or the batch's error) to its future, on that future's loop; safe
        from any thread. A future already done (its request left) is skipped."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for row, item in enumerate(self.items):
            result = outcome if isinstance(outcome, BaseException) else outcome[row]
            by_loop.setdefault(item.future.get_loop(), []).append((item.future, result))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, pairs)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


class BatchQueue:
    def __init__(self, *, max_batch_tokens: int = 16384, max_batch_size: int = 64,
                 max_wait_s: float = 0.002, max_items: int | None = None,
                 lock: threading.Condition | None = None,
                 on_depth: Callable[[int], None] | None = None, cost: str = "padded"):
        """``lock``: the workers' (module docstring). ``on_depth``: told the number of waiting
        items after a request's items come or leave (metrics), outside the lock; after a
        ``take`` the taker reports ``Batch.left`` itself. ``cost``: one of ``COSTS``."""
        if max_batch_tokens < 1 or max_batch_size < 1 or max_wait_s < 0:
            raise ValueError("batch limits must be positive")
        if cost not in COSTS:
            raise ValueError(f"unknown batch cost {cost!r}; one of {', '.join(COSTS)}")
        self.cost = cost
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_items = max_items
        self.lock = lock or threading.Condition()
        self._on_depth = on_depth
        self._items: dict[int, Item] = {}  # insertion order == arrival order
        self._tokens = 0  # sum of the waiting items' lengths
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    # -- the requests' side (event loop) -------------------------------------------------
    def put(self, payloads: Sequence[Any], lengths: Sequence[int]) -> Ticket:
        """Admit a request's items (lengths in tokens, at least 1) or raise ``QueueFull``."""
        if len(payloads) != len(lengths):
            raise ValueError("one length per payload")
        loop = asyncio.get_running_loop()
        futures = []
        with self.lock:
            if (self.max_items is not None and self._items
                    and len(self._items) + len(payloads) > self.max_items):
                raise QueueFull(f"{len(self._items)} items already waiting "
                                f"(bound {self.max_items})")
            for payload, length in zip(payloads, lengths, strict=True):
                seq = next(self._seq)
                fut = loop.create_future()
                fut.add_done_callback(functools.partial(self._forget, seq))
                item = Item(seq, max(1, int(length)), payload, fut)
                self._items[seq] = item
                self._tokens += item.length
                futures.append(fut)
            depth = len(self._items)
            self.lock.notify()
        self._report(depth)
        return Ticket(futures)

    def fail_all(self, error: Callable[[], BaseException]) -> int:
        """Remove every waiting item and fail its request with ``error()`` (on the event loop
        of the caller: stopping); returns how many there were."""
        with self.lock:
            waiting = list(self._items.values())
            self._items.clear()
            self._tokens = 0
        for item in waiting:
            if not item.future.done():
                item.future.set_exception(error())
        return len(waiting)

    def _forget(self, seq: int, fut: asyncio.Future) -> None:
        """A future is done: if cancelled (its request left), its item leaves the queue."""
        if not fut.cancelled():
            return
        with self.lock:
            item = self._items.pop(seq, None)
            if item is not None:
                self._tokens -= item.length
            depth = len(self._items)
        if item is not None:
            self._report(depth)

    def _report(self, depth: int) -> None:
        if self._on_depth is not None:
            self._on_depth(depth)

    # -- the worker's side (any thread) ----------------------------------------------------
    def due(self, now: float | None = None) -> Due | None:
        """None when nothing waits; else when the oldest item came and when a batch is due."""
        with self.lock:
            if not self._items:
                return None
            oldest = next(iter(self._items.values())).enqueued
            wait = oldest + self.max_wait_s - (time.monotonic() if now is None else now)
            if wait > 0 and self._can_fill_batch():
                wait = 0.0
            return Due(oldest, wait)

    def _can_fill_batch(self) -> bool:
        return (len(self._items) >= self.max_batch_size
                or self._tokens >= self.max_batch_tokens)

    def take(self) -> Batch:
        """Remove and return the next batch: the oldest item plus its nearest-length
        neighbours (an item over the token budget goes alone). ``LookupError`` when empty."""
        with self.lock:
            if not self._items:
                raise LookupError("nothing waits")
            waiting = sorted(self._items.values(), key=lambda item: (item.length, item.seq))
            oldest = min(self._items)
            anchor = next(i for i, item in enumerate(waiting) if item.seq == oldest)
            lo = hi = anchor  # the batch is waiting[lo:hi + 1]; sorted: the longest is [hi]
            total = waiting[anchor].length  # real tokens in the batch
            while hi - lo + 1 < self.max_batch_size:
                count = hi - lo + 2
                fits_left = lo > 0 and self._fits(total + waiting[lo - 1].length,
                                                  waiting[hi].length * count)
                fits_right = hi + 1 < len(waiting) and self._fits(
                    total + waiting[hi + 1].length, waiting[hi + 1].length * count)
                if fits_left and fits_right:
                    anchor_len = waiting[anchor].length
                    take_left = (anchor_len - waiting[lo - 1].length
                                 <= waiting[hi + 1].length - anchor_len)
                elif fits_left or fits_right:
                    take_left = fits_left
                else:
                    break
                if take_left:
                    lo -= 1
                    total += waiting[lo].length
                else:
                    hi += 1
                    total += waiting[hi].length
            items = waiting[lo:hi + 1]
            for item in items:
                del self._items[item.seq]
                self._tokens -= item.length
            return Batch(items, len(self._items), packed=self.cost == "tokens")

    def _fits(self, real: int, padded: int) -> bool:
        """Whether a batch of ``real`` tokens, ``padded`` when padded, fits the budget."""
        return (real if self.cost == "tokens" else padded) <= self.max_batch_tokens


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
