"""The process's tokenising budget (predictor/engine/admission.py): what it lets through when."""

from __future__ import annotations

import asyncio

import pytest

from predictor.engine.admission import AdmissionTimeout, Budget, OverBudget


def test_budget_admits_in_order_and_bounds_what_is_held():
    async def main():
        budget, held, log = Budget(10), [], []
        first_in, release_first = asyncio.Event(), asyncio.Event()

        async def job(name, amount, gate=None, entered=None):
            async with budget.hold(amount, timeout=30):
                held.append(budget.in_use)
                log.append(name)
                if entered:
                    entered.set()
                if gate:
                    await gate.wait()

        first = asyncio.create_task(job("a", 8, release_first, first_in))
        await first_in.wait()
        second = asyncio.create_task(job("b", 5))  # does not fit beside a: waits
        third = asyncio.create_task(job("c", 1))  # would fit, but b is ahead in line
        await asyncio.sleep(0.05)
        assert log == ["a"] and budget.in_use == 8
        release_first.set()
        await asyncio.gather(first, second, third)
        assert log == ["a", "b", "c"] and max(held) <= 10 and budget.in_use == 0

    asyncio.run(main())


def test_over_the_whole_budget_timeouts_and_cancellation():
    async def main():
        budget = Budget(10)
        with pytest.raises(OverBudget):
            async with budget.hold(11, timeout=1):
                pass
        gate = asyncio.Event()

        async def holder():
            async with budget.hold(10, timeout=1):
                await gate.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0)
        with pytest.raises(AdmissionTimeout):
            async with budget.hold(1, timeout=0.01):
                pass
        waiter = asyncio.create_task(budget.hold(1, timeout=30).__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()  # a client that goes away leaves the line
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        await task
        assert budget.in_use == 0 and not budget._waiters

    asyncio.run(main())
