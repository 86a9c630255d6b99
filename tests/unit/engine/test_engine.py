"""The batching engine on its own, with a recording runner (no model, no HTTP)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from predictor.engine import BatchEngine


class RecordingRunner:
    """Returns each payload doubled; records every batch; can block or fail on demand."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_on: set[int] = set()
        self.threads: set[str] = set()
        self.gate: threading.Event | None = None

    def run_batch(self, payloads):
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        self.batches.append(list(payloads))
        if self.fail_on & set(payloads):
            raise RuntimeError("injected failure")
        return [p * 2 for p in payloads]


async def test_results_come_back_in_order_and_batch_together():
    runner = RecordingRunner()
    engine = BatchEngine(runner, max_batch_tokens=10_000, max_batch_size=64, max_wait_s=0.05)
    results = await asyncio.gather(engine.submit([1, 2, 3], [5, 5, 5]),
                                   engine.submit([4, 5], [5, 5]))
    assert results == [[2, 4, 6], [8, 10]]
    assert sorted(x for b in runner.batches for x in b) == [1, 2, 3, 4, 5]
    assert len(runner.batches) == 1, "concurrent requests share one forward pass"
    assert runner.threads == {"engine-worker"}, "runs on the engine's own thread, off the loop"
    await engine.stop()


async def test_token_budget_and_batch_size_are_respected():
    runner = RecordingRunner()
    engine = BatchEngine(runner, max_batch_tokens=100, max_batch_size=4, max_wait_s=0.02)
    lengths = [10, 20, 30, 40, 50, 10, 10, 10, 10, 10, 90]
    payloads = list(range(len(lengths)))
    assert await engine.submit(payloads, lengths) == [p * 2 for p in payloads]
    for batch in runner.batches:
        assert len(batch) <= 4
        padded = max(lengths[p] for p in batch) * len(batch)
        assert padded <= 100 or len(batch) == 1
    await engine.stop()


async def test_an_item_over_the_budget_runs_alone():
    runner = RecordingRunner()
    engine = BatchEngine(runner, max_batch_tokens=50, max_batch_size=8, max_wait_s=0.01)
    assert await engine.submit([1, 2], [500, 5]) == [2, 4]
    assert [1] in runner.batches
    await engine.stop()


async def test_similar_lengths_are_grouped():
    runner = RecordingRunner()
    engine = BatchEngine(runner, max_batch_tokens=64, max_batch_size=2, max_wait_s=0.05)
    # Interleaved short and long items: pairs should be (short, short) and (long, long).
    await engine.submit([1, 2, 3, 4], [4, 30, 4, 30])
    assert sorted(sorted(b) for b in runner.batches) == [[1, 3], [2, 4]]
    await engine.stop()


async def test_oldest_item_is_never_starved():
    runner = RecordingRunner(delay=0.01)
    engine = BatchEngine(runner, max_batch_tokens=40, max_batch_size=4, max_wait_s=0.0)
    long_one = asyncio.create_task(engine.submit([999], [40]))
    await asyncio.sleep(0)
    shorts = [asyncio.create_task(engine.submit([i], [1])) for i in range(30)]
    assert await long_one == [1998]
    position = next(i for i, b in enumerate(runner.batches) if 999 in b)
    assert position <= 1, f"the oldest item ran in batch {position}"
    await asyncio.gather(*shorts)
    await engine.stop()


async def test_a_failing_batch_fails_only_its_requests():
    runner = RecordingRunner()
    runner.fail_on = {13}
    engine = BatchEngine(runner, max_batch_tokens=10, max_batch_size=1, max_wait_s=0.0)
    bad = asyncio.create_task(engine.submit([13], [5]))
    good = asyncio.create_task(engine.submit([7], [5]))
    with pytest.raises(RuntimeError, match="injected"):
        await bad
    assert await good == [14]
    assert await engine.submit([8], [5]) == [16], "the engine keeps serving"
    await engine.stop()


async def test_cancelled_requests_are_dropped_from_the_queue():
    runner = RecordingRunner()
    runner.gate = threading.Event()  # hold the first batch so the rest queue up
    engine = BatchEngine(runner, max_batch_tokens=10, max_batch_size=1, max_wait_s=0.0)
    first = asyncio.create_task(engine.submit([1], [5]))
    await asyncio.sleep(0.05)
    doomed = asyncio.create_task(engine.submit([2, 3], [5, 5]))
    await asyncio.sleep(0.01)
    assert engine.queue_size == 2
    doomed.cancel()
    await asyncio.sleep(0.01)
    assert engine.queue_size == 0
    runner.gate.set()
    assert await first == [2]
    assert await engine.submit([4], [5]) == [8]
    assert all(2 not in b and 3 not in b for b in runner.batches)
    await engine.stop()


async def test_lengths_must_match_payloads():
    engine = BatchEngine(RecordingRunner())
    with pytest.raises(ValueError):
        await engine.submit([1, 2], [3])
    await engine.stop()


class FakeOutOfMemory(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError (no GPU in CI)."""


class MemoryBoundRunner(RecordingRunner):
    """Fails any batch holding more than ``capacity`` items, as a GPU out of memory would."""

    retryable_errors = (FakeOutOfMemory,)

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.attempts: list[int] = []

    def run_batch(self, payloads):
        self.attempts.append(len(payloads))
        if len(payloads) > self.capacity:
            raise FakeOutOfMemory(f"batch of {len(payloads)}")
        return super().run_batch(payloads)


async def test_out_of_memory_splits_the_batch_and_loses_nothing():
    runner = MemoryBoundRunner(capacity=3)
    engine = BatchEngine(runner, max_batch_tokens=10_000, max_batch_size=16, max_wait_s=0.05)
    payloads = list(range(1, 11))
    assert await engine.submit(payloads, [5] * 10) == [p * 2 for p in payloads]
    assert runner.attempts[0] == 10 and max(len(b) for b in runner.batches) <= 3
    assert sorted(x for b in runner.batches for x in b) == payloads
    assert engine.stats.failed_batches == 0
    await engine.stop()


async def test_out_of_memory_on_a_single_item_fails_only_that_request():
    runner = MemoryBoundRunner(capacity=0)
    engine = BatchEngine(runner, max_batch_tokens=10_000, max_batch_size=16, max_wait_s=0.0)
    with pytest.raises(FakeOutOfMemory):
        await engine.submit([1], [5])
    runner.capacity = 4
    assert await engine.submit([2], [5]) == [4], "the engine keeps serving"
    await engine.stop()


async def test_the_worker_takes_the_next_batch_without_the_event_loop():
    """A busy event loop (writing responses, say) must not leave the model idle."""
    runner = RecordingRunner(delay=0.02)
    engine = BatchEngine(runner, max_batch_tokens=10, max_batch_size=1, max_wait_s=0.0)
    tasks = [asyncio.create_task(engine.submit([i], [5])) for i in range(3)]
    await asyncio.sleep(0)  # the three requests queue their items
    time.sleep(0.5)  # the loop is blocked; the worker runs batch after batch on its own
    assert len(runner.batches) == 3
    assert await asyncio.gather(*tasks) == [[0], [2], [4]]
    await engine.stop()


async def test_engines_of_one_device_share_one_worker_thread():
    from predictor.engine import EngineWorker

    worker = EngineWorker("shared-worker")
    a, b = RecordingRunner(), RecordingRunner()
    first = BatchEngine(a, max_wait_s=0.0, worker=worker, name="a")
    second = BatchEngine(b, max_wait_s=0.0, worker=worker, name="b")
    assert await asyncio.gather(first.submit([1], [3]), second.submit([2], [3])) == [[2], [4]]
    assert a.threads == b.threads == {"shared-worker"}
    await first.stop()
    assert await second.submit([5], [3]) == [10], "the other engine keeps the worker"
    await second.stop()
