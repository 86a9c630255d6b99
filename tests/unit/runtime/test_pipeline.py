"""The three-stage pipeline (predictor/runtime/pipeline.py) with fake stages on CPU: order,
overlap (driven by gates, not timing), errors confined to their batch, close; and the packed
M3 runner's stages through it give what its run_batch gives."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from predictor.core.types import EncodeItem, Output
from predictor.runtime.pipeline import Pipeline, PipelineClosed

WAIT = 30  # seconds: only a deadlock ever waits this long


def test_results_come_back_in_order_and_each_stage_sees_every_batch() -> None:
    seen = {"prepare": [], "forward": [], "finish": []}

    def stage(name, fn):
        def run(value):
            seen[name].append(threading.current_thread().name)
            return fn(value)
        return run

    pipe = Pipeline(stage("prepare", lambda xs: [x * 2 for x in xs]),
                    stage("forward", lambda xs: [x + 1 for x in xs]),
                    stage("finish", lambda xs: [str(x) for x in xs]), name="t")
    futures = [pipe.submit([i, i + 100]) for i in range(20)]
    assert [f.result(WAIT) for f in futures] == [[str(2 * i + 1), str(2 * i + 201)]
                                                for i in range(20)]
    pipe.close(WAIT)
    assert all(len(v) == 20 for v in seen.values())
    assert {name: set(v) for name, v in seen.items()} == {
        "prepare": {"t-prepare"}, "forward": {"t-forward"}, "finish": {"t-finish"}}


def test_prepare_and_finish_overlap_the_forward() -> None:
    """While batch 1's forward is held, batch 2 gets prepared and batch 0 finished."""
    in_forward = threading.Event()
    release = threading.Event()
    prepared, finished = [], []

    def prepare(xs):
        prepared.append(xs[0])
        return xs

    def forward(xs):
        if xs[0] == 1:
            in_forward.set()
            assert release.wait(WAIT)
        return xs

    def finish(xs):
        finished.append(xs[0])
        return xs

    pipe = Pipeline(prepare, forward, finish)
    futures = [pipe.submit([i]) for i in range(3)]
    assert in_forward.wait(WAIT)
    assert futures[0].result(WAIT) == [0]  # finished while batch 1 is in the forward
    for _ in range(WAIT * 100):
        if 2 in prepared:
            break
        threading.Event().wait(0.01)
    assert prepared == [0, 1, 2] and finished == [0]  # batch 2 prepared ahead
    assert not futures[1].done()
    release.set()
    assert [f.result(WAIT) for f in futures] == [[0], [1], [2]]
    pipe.close(WAIT)


@pytest.mark.parametrize("stage", ["prepare", "forward", "finish"])
def test_an_error_fails_its_batch_only(stage: str) -> None:
    def maybe_fail(name):
        def run(xs):
            if name == stage and xs[0] == 3:
                raise ValueError(f"bad batch in {name}")
            return xs
        return run

    pipe = Pipeline(maybe_fail("prepare"), maybe_fail("forward"), maybe_fail("finish"))
    futures = [pipe.submit([i]) for i in range(6)]
    for i, f in enumerate(futures):
        if i == 3:
            with pytest.raises(ValueError, match=f"bad batch in {stage}"):
                f.result(WAIT)
        else:
            assert f.result(WAIT) == [i]
    assert pipe.run_batch([9]) == [9]  # still serving
    pipe.close(WAIT)


def test_close_finishes_what_is_queued_then_refuses() -> None:
    gate = threading.Event()
    pipe = Pipeline(lambda xs: xs, lambda xs: (gate.wait(WAIT), xs)[1], lambda xs: xs)
    futures = [pipe.submit([i]) for i in range(4)]
    closer = threading.Thread(target=pipe.close, args=(WAIT,))
    closer.start()
    gate.set()
    closer.join(WAIT)
    assert [f.result(0) for f in futures] == [[0], [1], [2], [3]]
    with pytest.raises(PipelineClosed):
        pipe.submit([5])


def test_a_pipeline_holds_at_least_one_batch() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Pipeline(lambda xs: xs, lambda xs: xs, lambda xs: xs, depth=0)


def test_forward_setup_runs_on_the_forward_thread() -> None:
    where = []
    pipe = Pipeline(lambda xs: xs, lambda xs: xs, lambda xs: xs, name="s",
                    forward_setup=lambda: where.append(threading.current_thread().name))
    assert pipe.run_batch([1]) == [1]
    pipe.close(WAIT)
    assert where == ["s-forward"]


def test_packed_m3_stages_through_the_pipeline(m3_dir) -> None:
    from predictor.runtime.m3 import M3Runner
    from predictor.runtime.packed import PackedM3

    runner = M3Runner(str(m3_dir), device="cpu")
    fast = PackedM3(runner)
    texts = ["first text here", "a second, longer text with more tokens in it", "3"]
    batches = [[EncodeItem(ids, frozenset(Output)) for ids in runner.tokenize(texts, 512, True)],
               [EncodeItem(ids) for ids in runner.tokenize(texts[::-1], 512, True)]]
    want = [fast.run_batch(b) for b in batches]
    pipe = Pipeline(*fast.stages())
    got = [f.result(WAIT) for f in [pipe.submit(b) for b in batches * 2]]
    pipe.close(WAIT)
    for g_batch, w_batch in zip(got, want * 2, strict=True):
        for g, w in zip(g_batch, w_batch, strict=True):
            np.testing.assert_array_equal(g.dense, w.dense)
            if w.colbert is not None:
                np.testing.assert_array_equal(g.colbert, w.colbert)
                np.testing.assert_array_equal(g.sparse.indices, w.sparse.indices)


async def test_the_engine_feeds_the_packed_runners_pipeline(m3_dir, reranker_dir,
                                                            monkeypatch) -> None:
    """M3 and the cross-encoder on their packed path (as on CUDA), fed by the real engine:
    batches go through the pipeline's threads, budgeted in real tokens, and every request gets
    what the padded path gives it."""
    import asyncio

    from predictor.core.types import ScoreItem
    from predictor.engine import BatchEngine
    from predictor.runtime.cross_encoder import CrossEncoderRunner
    from predictor.runtime.m3 import M3Runner

    def load() -> tuple[M3Runner, CrossEncoderRunner]:
        return (M3Runner(str(m3_dir), device="cpu", dtype="float32"),
                CrossEncoderRunner(str(reranker_dir), device="cpu", dtype="float32"))

    padded_m3, padded_rr = load()
    monkeypatch.setenv("BGE_PREDICTOR_PACKED", "always")
    m3, rr = load()
    forward_threads: set[str] = set()
    m3.observe_stage = lambda stage, s: forward_threads.add(threading.current_thread().name)
    texts = [f"text number {i} " + "word " * (i * 7 % 23) for i in range(24)]
    requests = [[EncodeItem(ids, frozenset(Output)) for ids in m3.tokenize(texts[i:i + 3],
                                                                           512, True)]
                for i in range(0, 24, 3)]
    pairs = rr.tokenize_pairs(["which text"] * 12, texts[:12])
    scored = [[ScoreItem(ids) for ids, _, _ in pairs[i:i + 4]] for i in range(0, 12, 4)]

    for runner, batches in ((m3, requests), (rr, scored)):
        engine = BatchEngine(runner, max_batch_tokens=120, max_batch_size=8, max_wait_s=0.01)
        assert engine.describe() == {"batch_cost": "tokens", "pipeline_depth": 2}
        got = await asyncio.gather(*(engine.submit(b, [len(i.input_ids) for i in b])
                                     for b in batches))
        assert engine.stats.batches > 1
        assert engine.stats.padded_tokens == engine.stats.tokens, "no padding computed"
        await engine.stop()
        reference = padded_m3 if runner is m3 else padded_rr
        for batch, answer in zip(batches, got, strict=True):
            want = reference.run_batch(batch)
            if runner is rr:
                np.testing.assert_allclose(answer, want, atol=1e-5)
                continue
            for g, w in zip(answer, want, strict=True):
                np.testing.assert_allclose(g.dense, w.dense, atol=1e-5)
                np.testing.assert_allclose(g.colbert, w.colbert, atol=1e-5)
                np.testing.assert_array_equal(g.sparse.indices, w.sparse.indices)
    assert forward_threads == {"PackedM3-cpu-finish"}, "stages reported from the pipeline"
    padded_engine = BatchEngine(padded_m3)
    assert padded_engine.describe() == {"batch_cost": "padded", "pipeline_depth": 0}
    for value, depth in (("0", 0), ("3", 3), ("deep", 2)):  # 0: packed, one batch at a time
        monkeypatch.setenv("BGE_PREDICTOR_PIPELINE", value)
        runner = CrossEncoderRunner(str(reranker_dir), device="cpu", dtype="float32")
        assert BatchEngine(runner).describe() == {"batch_cost": "tokens",
                                                  "pipeline_depth": depth}


async def test_out_of_memory_in_the_pipeline_is_retried_in_halves(m3_dir, monkeypatch) -> None:
    """A packed forward that runs out of device memory (here: any batch over 2 texts) fails
    through the pipeline's future; the engine submits the halves again and every text gets
    its answer."""
    import asyncio

    import torch

    from predictor.engine import BatchEngine
    from predictor.runtime.m3 import M3Runner
    from predictor.runtime.packed import PackedM3

    monkeypatch.setenv("BGE_PREDICTOR_PACKED", "always")
    runner = M3Runner(str(m3_dir), device="cpu", dtype="float32")
    sizes: list[int] = []
    real_forward = PackedM3.forward

    def small_batches_only(self, prepared):
        sizes.append(len(prepared[0]))
        if len(prepared[0]) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, prepared)

    monkeypatch.setattr(PackedM3, "forward", small_batches_only)
    items = [EncodeItem(ids) for ids in runner.tokenize([f"text {i}" for i in range(6)], 512,
                                                        True)]
    want = [runner.packed.finish(real_forward(runner.packed, runner.packed.prepare([item])))[0]
            for item in items]
    engine = BatchEngine(runner, max_batch_tokens=10_000, max_batch_size=8, max_wait_s=0.05)
    got = await asyncio.wait_for(engine.submit(items, [len(i.input_ids) for i in items]), WAIT)
    await engine.stop()
    assert sizes[0] == 6 and max(sizes[1:]) <= 3 and sizes.count(3) == 2, sizes
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.dense, w.dense, atol=1e-5)
    assert engine.stats.failed_batches == 0 and engine.stats.items == 6
