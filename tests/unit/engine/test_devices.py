"""Several devices in one process: one queue, one worker per device (engine level, no model).

The runners are fakes that record which device ran what; gates (threading.Event) set the pace,
so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from predictor.core.devices import resolve_devices, torch_device
from predictor.engine import BatchEngine, EngineDraining, EngineWorker, QueueFull


class DeviceRunner:
    """Doubles each payload; records batches; may hold every batch at a gate or fail."""

    def __init__(self, name: str):
        self.name = name
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail = False

    def run_batch(self, payloads):
        self.threads.add(threading.current_thread().name)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "gate never opened"
        self.batches.append(list(payloads))
        if self.fail:
            raise RuntimeError(f"{self.name} failed")
        return [p * 2 for p in payloads]


def engine_on(n: int, **kwargs) -> tuple[BatchEngine, list[DeviceRunner]]:
    lock = threading.Condition()
    runners = [DeviceRunner(f"dev{i}") for i in range(n)]
    workers = [EngineWorker(f"dev{i}-worker", lock=lock) for i in range(n)]
    kwargs = {"max_batch_tokens": 10_000, "max_batch_size": 1, "max_wait_s": 0.0} | kwargs
    engine = BatchEngine(runners[0], worker=workers[0], device="dev0",
                         replicas=[(f"dev{i}", runners[i], workers[i]) for i in range(1, n)],
                         **kwargs)
    engine.start()
    return engine, runners


async def wait_for(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10)


async def busy_and_idle(runners: list[DeviceRunner]) -> tuple[DeviceRunner, DeviceRunner]:
    """(the device that took the held batch, the other one)."""
    for _ in range(1000):
        started = [r for r in runners if r.started.is_set()]
        if started:
            assert len(started) == 1
            return started[0], next(r for r in runners if r is not started[0])
        await asyncio.sleep(0.01)
    raise AssertionError("no device took the batch")


async def test_a_busy_device_leaves_the_next_batch_to_an_idle_one():
    engine, runners = engine_on(2)
    gate = threading.Event()
    for r in runners:
        r.gate = gate  # whichever device takes the first batch stays busy until released
    first = asyncio.create_task(engine.submit([1], [5]))
    busy, idle = await busy_and_idle(runners)
    idle.gate = None
    # While one device is busy, every further batch goes to the idle one.
    assert await engine.submit([2], [5]) == [4]
    assert await engine.submit([3], [5]) == [6]
    assert idle.batches == [[2], [3]] and busy.batches == []
    gate.set()
    assert await first == [2]
    assert busy.batches == [[1]]
    assert {r.name: r.threads for r in runners} == {"dev0": {"dev0-worker"},
                                                    "dev1": {"dev1-worker"}}
    await engine.stop()  # joins the workers: the totals are final (they follow the results)
    stats = engine.device_stats()
    assert stats[busy.name]["batches"] == 1 and stats[idle.name]["batches"] == 2
    assert engine.stats.batches == 3 and engine.stats.requests == 3


async def test_both_devices_run_at_once_and_results_keep_their_order():
    engine, (a, b) = engine_on(2)
    both_running = threading.Barrier(2, timeout=10)

    def meet(runner):
        original = runner.run_batch

        def run_batch(payloads):
            both_running.wait()  # only passes when the two devices run a batch together
            runner.run_batch = original
            return original(payloads)
        return run_batch

    a.run_batch, b.run_batch = meet(a), meet(b)
    results = await asyncio.gather(*(engine.submit([i, i + 100], [5, 5]) for i in range(6)))
    assert results == [[2 * i, 2 * i + 200] for i in range(6)]
    assert a.batches and b.batches
    await engine.stop()


async def test_queue_bound_is_the_engines_whatever_the_devices():
    engine, runners = engine_on(2, max_queue_items=3)
    for r in runners:
        r.gate = threading.Event()
    running = [asyncio.create_task(engine.submit([i], [5])) for i in range(2)]
    for r in runners:
        await wait_for(r.started)  # both devices busy with one item each
    queued = asyncio.create_task(engine.submit([7, 8, 9], [5, 5, 5]))
    await asyncio.sleep(0.05)
    assert engine.queue_size == 3
    with pytest.raises(QueueFull):
        await engine.submit([10], [5])
    for r in runners:
        r.gate.set()
    assert await queued == [14, 16, 18]
    assert [await t for t in running] == [[0], [2]]
    await engine.stop()


async def test_the_oldest_item_goes_first_on_whichever_device_frees_up():
    engine, (a, b) = engine_on(2, max_batch_size=4, max_batch_tokens=40)
    a.gate, b.gate = threading.Event(), threading.Event()
    held = [asyncio.create_task(engine.submit([i], [40])) for i in (1, 2)]  # one per device
    await wait_for(a.started)
    await wait_for(b.started)
    old = asyncio.create_task(engine.submit([500], [40]))  # fills a batch alone
    await asyncio.sleep(0.01)
    shorts = [asyncio.create_task(engine.submit([i], [1])) for i in range(10, 20)]
    await asyncio.sleep(0.01)
    b.gate.set()
    assert await old == [1000]
    assert b.batches[1] == [500], "the device that freed up took the oldest item first"
    a.gate.set()
    await asyncio.gather(*held, *shorts)
    await engine.stop()


async def test_a_failing_device_fails_only_its_batch():
    engine, runners = engine_on(2)
    gate = threading.Event()
    for r in runners:
        r.gate = gate
    held = asyncio.create_task(engine.submit([1], [5]))
    busy, broken = await busy_and_idle(runners)
    broken.gate, broken.fail = None, True
    with pytest.raises(RuntimeError, match=f"{broken.name} failed"):
        await engine.submit([2], [5])  # the other device is busy: this one lands here
    gate.set()
    assert await held == [2]
    broken.fail = False
    assert await engine.submit([3], [5]) == [6], "both devices keep serving"
    await engine.stop()
    stats = engine.device_stats()
    assert stats[broken.name]["failed_batches"] == 1 and stats[busy.name]["failed_batches"] == 0
    assert engine.stats.failed_batches == 1


async def test_drain_finishes_queued_work_and_stop_ends_every_device_thread():
    engine, runners = engine_on(3)
    for r in runners:
        r.gate = threading.Event()
    running = [asyncio.create_task(engine.submit([i], [5])) for i in range(3)]
    for r in runners:
        await wait_for(r.started)
    queued = asyncio.create_task(engine.submit([9], [5]))
    await asyncio.sleep(0.05)
    threads = [lane.worker._thread for lane in engine.lanes]
    assert all(t is not None and t.is_alive() for t in threads)
    engine.drain()
    with pytest.raises(EngineDraining):
        await engine.submit([10], [5])
    for r in runners:
        r.gate.set()
    assert [await t for t in running] == [[0], [2], [4]], "running batches finish"
    assert await queued == [18], "queued work finishes while draining"
    await engine.stop()
    assert not any(t.is_alive() for t in threads)


async def test_stop_fails_what_still_waits_and_joins_every_device():
    engine, runners = engine_on(2)
    gate = threading.Event()
    for r in runners:
        r.gate = gate
    running = [asyncio.create_task(engine.submit([i], [5])) for i in range(2)]
    for r in runners:
        await wait_for(r.started)
    waiting = asyncio.create_task(engine.submit([9], [5]))
    await asyncio.sleep(0.05)
    threads = [lane.worker._thread for lane in engine.lanes]
    stop = asyncio.create_task(engine.stop())
    with pytest.raises(EngineDraining):
        await waiting
    assert not stop.done(), "stop waits for the batches running on the devices"
    gate.set()
    await stop
    assert [await t for t in running] == [[0], [2]]
    assert not any(t.is_alive() for t in threads)


async def test_workers_of_one_engine_must_share_a_lock():
    with pytest.raises(ValueError, match="lock"):
        BatchEngine(DeviceRunner("a"), worker=EngineWorker("a"),
                    replicas=[("b", DeviceRunner("b"), EngineWorker("b"))])


def test_device_names():
    assert resolve_devices(None, lambda: 0) == ["cpu"]
    assert resolve_devices("auto", lambda: 1) == ["cuda"]
    assert resolve_devices("AUTO", lambda: 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert resolve_devices("cpu") == ["cpu"] and resolve_devices("cuda:1") == ["cuda:1"]
    assert resolve_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert resolve_devices("cpu:0,cpu:1") == ["cpu:0", "cpu:1"]
    for bad in ("cuda:0,cuda:0", "cuda:0,", "cuda:0,tpu", "cpu,gpu:1"):
        with pytest.raises(ValueError, match="--device"):
            resolve_devices(bad)
    assert torch_device("cpu:1") == "cpu" and torch_device("cuda:1") == "cuda:1"


# -- a real server on two CPU "devices" (--device cpu:0,cpu:1): the model loaded twice ----------

@pytest.fixture(scope="module")
def two_device_server(model_dirs, tmp_path_factory):
    from server_process import start_server, stop_server

    m3, reranker = model_dirs
    log = tmp_path_factory.mktemp("devices") / "server.log"
    srv = start_server(["--embedder", str(m3), "--reranker", str(reranker),
                        "--device", "cpu:0,cpu:1", "--max_batch_size", "1"], log,
                       ready_models=("bge-m3", "bge-reranker"))
    yield srv
    stop_server(srv)


def test_two_cpu_devices_serve_exact_results_from_one_queue(two_device_server, flag_m3,
                                                            flag_reranker):
    """Concurrent requests spread over both devices; every result equals FlagEmbedding's; /stats
    and /metrics report each device; SIGTERM drains and exits 0."""
    import concurrent.futures

    import httpx
    import numpy as np

    from fidelity import TEXTS, assert_colbert_close, assert_dense_close, reference
    from server_process import stop_server

    srv = two_device_server
    ref = reference(flag_m3, TEXTS)
    docs = TEXTS[:4]
    scores = flag_reranker.compute_score([["capital of France", d] for d in docs],
                                         normalize=True, max_length=8192)

    def embed(i):
        return i, httpx.post(f"{srv.url}/v1/embeddings", timeout=120,
                             json={"input": TEXTS[i], "return_colbert": True})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(embed, i % len(TEXTS)) for i in range(16)]
        rerank = pool.submit(httpx.post, f"{srv.url}/v1/rerank", timeout=120,
                             json={"query": "capital of France", "documents": docs})
        for fut in futures:
            i, r = fut.result()
            assert r.status_code == 200, r.text
            item = r.json()["data"][0]
            assert_dense_close(item["dense_embedding"], ref["dense_vecs"][i])
            assert_colbert_close(item["colbert_embedding"], ref["colbert_vecs"][i])
        ranked = rerank.result().json()["results"]
        got = [r["relevance_score"] for r in sorted(ranked, key=lambda r: r["index"])]
        np.testing.assert_allclose(got, scores, atol=1e-5)

    stats = httpx.get(f"{srv.url}/stats").json()["models"]["bge-m3"]
    assert stats["config"]["device"] == "cpu:0,cpu:1"
    devices = stats["devices"]
    assert set(devices) == {"cpu:0", "cpu:1"}
    assert all(d["batches"] > 0 for d in devices.values()), devices
    assert sum(d["processed_items"] for d in devices.values()) == stats["processed_items"]
    metrics = httpx.get(f"{srv.url}/metrics").text
    for device in ("cpu:0", "cpu:1"):
        assert (f'bge_predictor_device_batches_total{{device="{device}",model="bge-m3",'
                f'outcome="ok"}}') in metrics
    assert stop_server(srv) == 0
    log = srv.log()
    assert "on cpu:0, cpu:1" in log


def test_a_bad_device_list_stops_the_server_with_a_clear_message(tmp_path, m3_dir):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "predictor", "--embedder", str(m3_dir),
                           "--reranker", "none", "--device", "cuda:0,cuda:0"],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode != 0
    assert "names a device twice" in proc.stderr
