"""The engine feeding a runner that overlaps its stages (a ``pipeline``), and one that packs
its batches: the worker hands over the next batch while the previous one still runs, up to the
pipeline's depth; errors, out-of-memory splits and stopping behave as with ``run_batch``.

The pipeline here is a fake whose batches each wait for the test to release them, so what
the engine does while a batch is in flight is seen without any timing assumption."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from predictor.engine import BatchEngine

WAIT = 5.0  # the longest a test waits for the engine to act
GATE_LIMIT = 120.0  # a gate the test forgets still opens in the end: no hung test run


class GatedPipeline:
    """Records each batch handed over; a batch completes (doubled payloads, or its error) when
    the test sets its gate."""

    def __init__(self, depth: int):
        self.depth = depth
        self.submitted: list[list[int]] = []
        self.gates: list[threading.Event] = []
        self.errors: dict[int, BaseException] = {}  # payload -> the error its batches raise
        self.fail_once: dict[int, BaseException] = {}  # payload -> its next batch's error

    def submit(self, payloads):
        future: Future = Future()
        gate = threading.Event()
        batch = list(payloads)
        error = next((self.errors[p] for p in batch if p in self.errors), None)
        error = error or next((self.fail_once.pop(p) for p in batch if p in self.fail_once),
                              None)
        self.submitted.append(batch)
        self.gates.append(gate)

        def complete():
            gate.wait(GATE_LIMIT)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result([p * 2 for p in batch])

        threading.Thread(target=complete, daemon=True).start()
        return future

    def release_all(self) -> None:
        for gate in self.gates:
            gate.set()


class PipelinedRunner:
    retryable_errors = (MemoryError,)

    def __init__(self, depth: int = 2, packs: bool = False):
        self.pipeline = GatedPipeline(depth)
        self.packs_batches = packs

    def run_batch(self, payloads):
        raise AssertionError("a runner with a pipeline is fed through it")


async def until(condition, what: str) -> None:
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def engine_for(runner: PipelinedRunner, **kwargs) -> BatchEngine:
    return BatchEngine(runner, **({"max_batch_tokens": 1000, "max_batch_size": 8,
                                   "max_wait_s": 0.0} | kwargs))


async def test_the_next_batch_is_handed_over_while_the_previous_one_runs():
    runner = PipelinedRunner(depth=2)
    pipe = runner.pipeline
    engine = engine_for(runner)
    first = asyncio.ensure_future(engine.submit([1], [5]))
    await until(lambda: len(pipe.submitted) == 1, "the first batch")
    second = asyncio.ensure_future(engine.submit([2], [5]))
    await until(lambda: len(pipe.submitted) == 2, "the second batch, the first still running")

    later = [asyncio.ensure_future(engine.submit([3, 4], [5, 5])),
             asyncio.ensure_future(engine.submit([5], [5]))]
    await until(lambda: engine.queue_size == 3, "the later items queued")
    await asyncio.sleep(0.1)
    assert len(pipe.submitted) == 2, "two in flight fill a depth of 2: the rest waits"
    assert engine.lanes[0].in_flight == 2 and engine.lanes[0].running == 2

    pipe.gates[0].set()
    assert await first == [2]
    await until(lambda: len(pipe.submitted) == 3, "a slot freed: the next batch")
    assert sorted(pipe.submitted[2]) == [3, 4, 5], "formed when a slot freed, from all waiting"
    pipe.release_all()
    assert await second == [4]
    assert [await f for f in later] == [[6, 8], [10]]
    assert engine.stats.batches == 3 and engine.stats.items == 5
    assert engine.stats.busy_seconds > 0
    await engine.stop()


async def test_a_failing_batch_fails_only_its_requests():
    runner = PipelinedRunner(depth=2)
    runner.pipeline.errors[13] = RuntimeError("injected failure")
    engine = engine_for(runner)
    failing = asyncio.ensure_future(engine.submit([13], [5]))
    await until(lambda: runner.pipeline.gates, "the failing batch")
    ok = asyncio.ensure_future(engine.submit([1, 2], [5, 5]))
    await until(lambda: len(runner.pipeline.gates) == 2, "the next batch")
    runner.pipeline.release_all()
    with pytest.raises(RuntimeError, match="injected failure"):
        await failing
    assert await ok == [2, 4], "the batch beside it is served"
    assert engine.stats.failed_batches == 1
    await engine.stop()


async def test_out_of_memory_splits_the_batch_and_loses_nothing():
    runner = PipelinedRunner(depth=3)
    pipe = runner.pipeline
    pipe.errors[1] = MemoryError("out of memory")  # every batch holding item 1 fails
    engine = engine_for(runner)
    task = asyncio.ensure_future(engine.submit([1, 2, 3, 4], [5, 5, 5, 5]))
    while not task.done():
        pipe.release_all()
        await asyncio.sleep(0.01)
    with pytest.raises(MemoryError):
        task.result()  # item 1 fails alone too: its request fails, after the halves were tried
    assert pipe.submitted[:3] == [[1, 2, 3, 4], [1, 2], [3, 4]]
    assert [1] in pipe.submitted and [2] in pipe.submitted, "split down to single items"

    del pipe.errors[1]
    pipe.fail_once[4] = MemoryError("out of memory")  # only the first, whole batch
    pipe.submitted.clear()
    task = asyncio.ensure_future(engine.submit([4, 5, 6, 7], [5, 5, 5, 5]))
    while not task.done():
        pipe.release_all()
        await asyncio.sleep(0.01)
    assert task.result() == [8, 10, 12, 14], "the halves' results, in order"
    assert pipe.submitted == [[4, 5, 6, 7], [4, 5], [6, 7]]
    await engine.stop()


async def test_stop_waits_for_the_batches_in_flight():
    runner = PipelinedRunner(depth=2)
    engine = engine_for(runner)
    request = asyncio.ensure_future(engine.submit([1], [5]))
    await until(lambda: runner.pipeline.submitted, "the batch in flight")
    stopping = asyncio.ensure_future(engine.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done(), "a batch is still in flight"
    runner.pipeline.release_all()
    await asyncio.wait_for(stopping, WAIT)
    assert await request == [2], "delivered, not dropped"


async def test_a_packing_runner_gets_batches_budgeted_in_real_tokens():
    lengths = [100, 10, 10, 10, 10, 10]
    for packs, expected in ((False, [[0], [1, 2, 3, 4, 5]]), (True, [[0, 1, 2, 3, 4, 5]])):
        runner = PipelinedRunner(depth=1, packs=packs)
        engine = engine_for(runner, max_batch_tokens=150, max_wait_s=0.05)
        runner.pipeline.release_all()
        task = asyncio.ensure_future(engine.submit(list(range(6)), lengths))
        while not task.done():
            runner.pipeline.release_all()
            await asyncio.sleep(0.01)
        assert task.result() == [p * 2 for p in range(6)]
        assert [sorted(b) for b in runner.pipeline.submitted] == expected
        await engine.stop()


async def test_overlapping_batches_count_the_device_busy_once():
    """Two batches in flight for the same spell: each batch's latency is its own, the device's
    busy time (``/stats``, ``bge_predictor_device_busy_seconds_total``) counts the spell once."""
    from prometheus_client import REGISTRY

    from predictor.metrics import EngineMetrics

    def busy_total() -> float:
        return REGISTRY.get_sample_value("bge_predictor_device_busy_seconds_total",
                                         {"model": "overlap", "device": "gpu-x"}) or 0.0

    runner = PipelinedRunner(depth=2)
    engine = engine_for(runner, observer=EngineMetrics("overlap"), device="gpu-x")
    before = busy_total()
    started = asyncio.get_running_loop().time()
    first = asyncio.ensure_future(engine.submit([1], [5]))
    await until(lambda: len(runner.pipeline.submitted) == 1, "the first batch")
    second = asyncio.ensure_future(engine.submit([2], [5]))
    await until(lambda: len(runner.pipeline.submitted) == 2, "the second batch")
    await asyncio.sleep(0.2)  # both in flight for 0.2 s
    runner.pipeline.release_all()
    await first, await second
    wall = asyncio.get_running_loop().time() - started
    busy = engine.stats.busy_seconds
    assert 0.2 <= busy <= wall, "one busy spell, not the sum of the two latencies"
    assert busy_total() - before == pytest.approx(busy)
    await engine.stop()
