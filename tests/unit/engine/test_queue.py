"""The engine's queue on its own (predictor/engine/queue.py), through its public methods only:
which batch comes next, fairness, bounds, timeouts, cancellation. No worker thread, no model."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from predictor.engine import BatchQueue, QueueFull, QueueTimeout

NEVER = 3600.0  # a max_wait_s that never runs out during a test


def queue(**kwargs) -> BatchQueue:
    return BatchQueue(**({"max_batch_tokens": 100, "max_batch_size": 4, "max_wait_s": NEVER}
                         | kwargs))


def drain(q: BatchQueue) -> list[list]:
    """Take batches until the queue is empty: their payloads, in the order taken."""
    batches = []
    while len(q):
        batches.append(q.take().payloads)
    return batches


async def test_batches_are_built_around_the_oldest_item_with_its_nearest_lengths():
    q = queue(max_batch_tokens=64, max_batch_size=2)
    q.put(["s1", "l1", "s2", "l2"], [4, 30, 4, 30])
    assert drain(q) == [["s1", "s2"], ["l1", "l2"]]

    q = queue(max_batch_size=2)
    q.put(["anchor", "near", "far"], [10, 9, 12])  # 9 is nearer to 10 than 12 is
    assert drain(q) == [["near", "anchor"], ["far"]]


async def test_the_token_budget_and_batch_size_bound_every_batch():
    q = queue(max_batch_tokens=100, max_batch_size=4)
    lengths = [10, 20, 30, 40, 50, 10, 10, 10, 10, 10, 90, 500]
    q.put(list(range(len(lengths))), lengths)
    batches = drain(q)
    assert sorted(p for b in batches for p in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 4
        assert max(lengths[p] for p in batch) * len(batch) <= 100 or len(batch) == 1
    assert [11] in batches, "an item over the budget goes alone"


async def test_a_packed_runner_budgets_real_tokens_not_padding():
    lengths = [100, 10, 10, 10, 10, 10]  # the long one is the oldest
    padded = queue(max_batch_tokens=150, max_batch_size=8)
    padded.put(list(range(6)), lengths)
    batch = padded.take()
    assert batch.payloads == [0], "padded: 100 x 2 rows is over 150"
    assert batch.padded_tokens == 100

    packed = queue(max_batch_tokens=150, max_batch_size=8, cost="tokens")
    packed.put(list(range(6)), lengths)
    batch = packed.take()
    assert sorted(batch.payloads) == [0, 1, 2, 3, 4, 5], "packed: 150 real tokens fit 150"
    assert batch.tokens == batch.padded_tokens == 150, "a packed batch computes no padding"

    packed.put(list(range(3)), [60, 60, 60])
    assert len(packed.take().payloads) == 2, "the sum is bounded: 180 > 150"
    with pytest.raises(ValueError, match="unknown batch cost"):
        queue(cost="rows")


async def test_the_oldest_item_goes_first_however_many_better_fits_arrive():
    q = queue(max_batch_tokens=40, max_batch_size=4)
    q.put(["old"], [40])
    for i in range(30):
        q.put([i], [1])
    assert q.take().payloads == ["old"]
    assert q.take().payloads == [0, 1, 2, 3], "then the next oldest, with its neighbours"


async def test_a_batch_is_due_after_max_wait_or_as_soon_as_one_is_full():
    q = queue(max_batch_tokens=10, max_batch_size=3, max_wait_s=5.0)
    now = time.monotonic()
    assert q.due(now) is None, "nothing waits"
    q.put(["a"], [6])
    due = q.due(now)
    assert due is not None and due.in_s > 0, "one item waits for company"
    assert q.due(due.oldest + 5.0).in_s <= 0, "after max_wait_s it goes alone"
    ticket = q.put(["b"], [6])
    assert q.due(now).in_s <= 0, "12 tokens fill a batch of 10: due now"
    ticket.futures[0].cancel()
    await asyncio.sleep(0)
    assert q.due(now).in_s > 0, "the cancelled item's tokens no longer count"
    q.put(["c", "d"], [1, 1])
    assert q.due(now).in_s <= 0, "three items fill max_batch_size"
    assert q.due(now).oldest == due.oldest


async def test_the_bound_refuses_at_once_but_an_empty_queue_takes_any_request():
    depths = []
    q = queue(max_items=3, on_depth=depths.append)
    q.put(["a", "b"], [1, 1])
    with pytest.raises(QueueFull, match="2 items already waiting"):
        q.put(["c", "d"], [1, 1])
    assert len(q) == 2 and depths == [2]
    q.put(["c"], [1])
    drain(q)
    q.put(list(range(5)), [1] * 5)  # bigger than the bound: admitted only into an empty queue
    assert len(q) == 5


async def test_results_come_back_in_order_from_the_taking_thread():
    q = queue(max_batch_size=2)
    first, second = q.put([1, 2], [5, 50]), q.put([3], [5])

    def worker():
        while len(q):
            batch = q.take()
            batch.deliver([p * 10 for p in batch.payloads])

    thread = threading.Thread(target=worker)
    thread.start()
    assert await first.results(5) == [10, 20]
    assert await second.results(5) == [30]
    thread.join()


async def test_a_failed_batch_fails_its_requests():
    q = queue()
    ticket = q.put(["x"], [1])
    q.take().deliver(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        await ticket.results()


async def test_a_timed_out_or_cancelled_request_takes_its_items_out():
    depths = []
    q = queue(on_depth=depths.append)
    kept = q.put(["keep"], [1])
    with pytest.raises(QueueTimeout, match="not done within 0.01s"):
        await q.put(["late", "later"], [1, 1]).results(0.01)
    await asyncio.sleep(0)
    assert len(q) == 1 and depths[-1] == 1

    leaving = asyncio.create_task(q.put(["gone"], [1]).results())
    await asyncio.sleep(0)
    assert len(q) == 2
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await asyncio.sleep(0)
    assert len(q) == 1
    batch = q.take()
    assert batch.payloads == ["keep"] and batch.left == 0
    batch.deliver(["done"])
    assert await kept.results() == ["done"]


async def test_fail_all_empties_the_queue_and_fails_every_waiting_request():
    q = queue()
    tickets = [q.put([i], [1]) for i in range(3)]
    assert q.fail_all(lambda: RuntimeError("stopped")) == 3
    assert len(q) == 0 and q.due() is None
    for ticket in tickets:
        with pytest.raises(RuntimeError, match="stopped"):
            await ticket.results()
    with pytest.raises(LookupError):
        q.take()


async def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="positive"):
        BatchQueue(max_batch_tokens=0)
    with pytest.raises(ValueError, match="one length per payload"):
        queue().put([1, 2], [1])
