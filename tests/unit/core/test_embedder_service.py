"""``core.embedder.Embedder`` without KServe or a server: a fake runner (the Protocol of
``core/ports.py``) and the real batching engine."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from fake_runners import QUERY, FakeEmbedderRunner, word_id

from predictor.core.embedder import Embedder
from predictor.core.ports import EmbedderRunner
from predictor.core.types import EncodeOptions, Output
from predictor.engine import BatchEngine
from predictor.errors import (
    BadRequestError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    QueueFullError,
)
from predictor.settings import Settings

ALL = frozenset(Output)


def embedder(runner: FakeEmbedderRunner | None = None, *, ready: bool = True,
             engine_options: dict | None = None, **settings) -> Embedder:
    runner = runner or FakeEmbedderRunner()
    engine = BatchEngine(runner, max_wait_s=0.001, name="test-engine",
                         **(engine_options or {}))
    return Embedder("fake", runner, engine, Settings(**settings), is_ready=lambda: ready)


def test_the_fake_runner_satisfies_the_protocol():
    assert isinstance(FakeEmbedderRunner(), EmbedderRunner)


async def test_encode_tokenises_submits_and_returns_every_output():
    runner = FakeEmbedderRunner()
    model = embedder(runner)
    result = await model.encode(["a b", "c"], EncodeOptions(outputs=ALL, input_type="query"))
    assert runner.tokenized == [(["a b", "c"], "query")]
    assert result.prompt_tokens == 5 + 4  # CLS, QUERY, words, SEP
    first = result.embeddings[0]
    assert first.dense[0] == 5 and first.colbert.shape == (4, 4)
    assert first.sparse.indices.tolist() == sorted([word_id("a"), word_id("b")])
    assert [item.input_ids[1] for item in runner.batches[0]] == [QUERY, QUERY]
    assert result.sparse_mapping == "tokenizer" and result.sparse_index_space == 1000
    await model.engine.stop()


async def test_a_string_is_one_text_and_only_the_asked_outputs_are_computed():
    model = embedder()
    result = await model.encode("x y", EncodeOptions())
    (emb,) = result.embeddings
    assert emb.dense is not None and emb.sparse is None and emb.colbert is None
    assert result.sparse_mapping is None
    await model.engine.stop()


@pytest.mark.parametrize(("texts", "param"), [
    ([], "input"), ("", "input[0]"), (["ok", "  "], "input[1]"), (["ok", 3], "input[1]"),
    (None, "input")])
async def test_bad_texts_are_400s_naming_the_item(texts, param):
    model = embedder()
    with pytest.raises(BadRequestError) as err:
        await model.encode(texts, EncodeOptions())
    assert err.value.param == param
    assert model.engine.stats.requests == 0


async def test_limits_are_checked_before_the_engine_runs():
    runner = FakeEmbedderRunner()
    model = embedder(runner, max_input_texts=2, max_request_tokens=12, max_colbert_tokens=5)
    cases = [
        (["a", "b", "c"], EncodeOptions(), None, "input"),
        (["a"], EncodeOptions(max_length=33), None, "max_length"),
        (["a"], EncodeOptions(max_length=0), None, "max_length"),
        (["a b c d"], EncodeOptions(max_length=4, truncate=False), "context_length_exceeded",
         "input[0]"),
        (["a b c d e f g h i j k"], EncodeOptions(), "request_too_large", "input"),
        (["a b c d"], EncodeOptions(outputs=ALL), "request_too_large", "input"),
        (["a"], EncodeOptions(outputs=frozenset()), None, "return_dense"),
    ]
    for texts, options, code, param in cases:
        with pytest.raises(BadRequestError) as err:
            await model.encode(texts, options)
        assert (err.value.code, err.value.param) == (code, param), (texts, options)
    assert runner.batches == []
    # within the limits, truncation cuts to max_length
    result = await model.encode(["a b c d e f"], EncodeOptions(max_length=4))
    assert result.prompt_tokens == 4
    await model.engine.stop()


async def test_an_output_the_model_lacks_is_a_400():
    model = embedder(FakeEmbedderRunner(outputs=frozenset({Output.DENSE})))
    with pytest.raises(BadRequestError) as err:
        await model.encode(["a"], EncodeOptions(outputs=frozenset({Output.SPARSE})))
    assert (err.value.code, err.value.param) == ("unsupported_output", "return_sparse")
    assert model.describe()["outputs"] == ["dense"]


async def test_sparse_mapping_default_hash_and_tokens():
    model = embedder(sparse_token_mapping="hash", sparse_index_space=64)
    sparse = frozenset({Output.SPARSE})
    result = await model.encode(["a b c"], EncodeOptions(outputs=sparse))
    vec = result.embeddings[0].sparse
    assert result.sparse_mapping == "hash" and result.sparse_index_space == 64
    assert vec.tokens is None and (vec.indices < 64).all()
    result = await model.encode(["a b"], EncodeOptions(outputs=sparse, sparse_mapping="tokenizer",
                                                       return_tokens=True))
    vec = result.embeddings[0].sparse
    assert result.sparse_mapping == "tokenizer" and result.sparse_index_space == 1000
    assert vec.tokens == [f"tok{i}" for i in vec.indices]
    await model.engine.stop()


async def test_large_requests_tokenise_on_a_thread_under_the_process_budget():
    runner = FakeEmbedderRunner(max_length=8000)
    model = embedder(runner, max_tokenize_chars=20_000)
    text = "word " * 1000  # 5000 characters: over the inline limit
    result = await model.encode([text], EncodeOptions())
    assert result.prompt_tokens == 1002
    with pytest.raises(PayloadTooLargeError) as err:
        await model.encode([text] * 5, EncodeOptions())
    assert err.value.status_code == 413 and err.value.code == "request_too_large"
    await model.engine.stop()


async def test_engine_refusals_become_429_and_503_with_retry_after():
    gate = threading.Event()
    runner = FakeEmbedderRunner(gate=gate)
    model = embedder(runner, engine_options={"max_queue_items": 1, "max_batch_size": 1})
    first = asyncio.ensure_future(model.encode(["held"], EncodeOptions()))
    assert await asyncio.to_thread(runner.entered.wait, 10)  # the worker holds it
    second = asyncio.ensure_future(model.encode(["waits"], EncodeOptions()))
    while model.engine.queue_size < 1:
        await asyncio.sleep(0.01)
    with pytest.raises(QueueFullError) as err:
        await model.encode(["refused"], EncodeOptions())
    assert (err.value.status_code, err.value.code) == (429, "queue_full")
    assert err.value.headers == {"Retry-After": "1"}
    gate.set()
    assert len((await first).embeddings) == 1 and len((await second).embeddings) == 1

    model.engine.drain()
    with pytest.raises(OverloadedError) as err:
        await model.encode(["late"], EncodeOptions())
    assert (err.value.status_code, err.value.code) == (503, "shutting_down")
    assert err.value.headers == {"Retry-After": "1"}
    await model.engine.stop()


async def test_a_request_not_done_in_time_is_a_503_timeout():
    gate = threading.Event()
    model = embedder(FakeEmbedderRunner(gate=gate),
                     engine_options={"request_timeout_s": 0.05})
    with pytest.raises(OverloadedError) as err:
        await model.encode(["slow"], EncodeOptions())
    assert (err.value.status_code, err.value.code) == (503, "timeout")
    assert err.value.headers == {"Retry-After": "1"}
    gate.set()
    await model.engine.stop()


async def test_a_model_not_ready_is_a_503():
    model = embedder(ready=False)
    with pytest.raises(NotReadyError):
        await model.encode(["a"], EncodeOptions())


def test_facts_for_the_routes():
    model = embedder()
    assert model.describe() == {"kind": "embedder", "max_model_len": 32, "dimensions": 4,
                                "outputs": ["dense", "sparse", "colbert"], "family": "fake",
                                "pooling": "fake"}
    assert model.special_tokens == 2 and model.max_documents == 1000
    model.check_dimensions(4)
    model.check_dimensions(None)
    with pytest.raises(BadRequestError) as err:
        model.check_dimensions(8)
    assert (err.value.param, err.value.code) == ("dimensions", "unsupported_parameter")
    assert np.isclose(model.sparse_index_space("hash"), 1 << 20)
