"""A process-wide budget of units (characters of text) in use at once, taken before work starts.

Why: tokenising is the one step whose memory grows with the raw size of a request before any
token limit can be checked (the Rust tokenizer holds about 100 bytes per character while it
works, truncation or not), and the engine's queue bound only applies after it. Holding a share
of one budget while tokenising bounds that memory for all requests together; requests beyond
the free share wait in arrival order, for at most their timeout.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class OverBudget(ValueError):
    """One request needs more than the whole budget: it can never run."""


class AdmissionTimeout(TimeoutError):
    """The request waited its whole timeout for a share of the budget."""


class Budget:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_use = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future]] = collections.deque()

    @asynccontextmanager
    async def hold(self, amount: int, timeout: float) -> AsyncIterator[None]:
        """Hold ``amount`` units while the block runs (``OverBudget``, ``AdmissionTimeout``)."""
        if amount > self.capacity:
            raise OverBudget(f"{amount} > {self.capacity}")
        if self._waiters or self.in_use + amount > self.capacity:
            await self._wait(amount, timeout)
        else:
            self.in_use += amount
        try:
            yield
        finally:
            self.in_use -= amount
            self._wake()

    async def _wait(self, amount: int, timeout: float) -> None:
        future = asyncio.get_running_loop().create_future()
        entry = (amount, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if future.done() and not future.cancelled():  # granted as we gave up: give back
                self.in_use -= amount
            else:
                future.cancel()
                self._waiters.remove(entry)
            self._wake()
            if isinstance(exc, TimeoutError):
                raise AdmissionTimeout(f"waited {timeout:g}s to tokenise") from None
            raise

    def _wake(self) -> None:
        """Grant waiters in arrival order while the head of the line fits."""
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            amount, future = self._waiters.popleft()
            self.in_use += amount
            future.set_result(None)


_BUDGETS: dict[str, Budget] = {}


def process_budget(name: str, capacity: int) -> Budget:
    """The one budget called ``name`` in this process (every model shares the memory)."""
    budget = _BUDGETS.get(name)
    if budget is None or budget.capacity != capacity:
        budget = _BUDGETS[name] = Budget(capacity)
    return budget
