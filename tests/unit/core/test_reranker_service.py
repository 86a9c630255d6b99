"""``core.reranker.Reranker`` and ``core.self_rerank`` without KServe or a server: fake runners
(the Protocols of ``core/ports.py``) and the real batching engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_runners import RELEVANT, FakeEmbedderRunner, FakeRerankerRunner, word_id

from predictor.core.embedder import Embedder
from predictor.core.ports import RerankerRunner
from predictor.core.reranker import PairTemplate, Reranker, sigmoid
from predictor.core.self_rerank import maxsim, self_rerank
from predictor.engine import BatchEngine
from predictor.errors import BadRequestError, OverloadedError
from predictor.settings import Settings


def reranker(runner: FakeRerankerRunner | None = None, **settings) -> Reranker:
    runner = runner or FakeRerankerRunner()
    engine = BatchEngine(runner, max_wait_s=0.001, name="test-reranker")
    return Reranker("fake-reranker", runner, engine, Settings(**settings))


def test_the_fake_runner_satisfies_the_protocol_and_the_template_is_learnt():
    runner = FakeRerankerRunner()
    assert isinstance(runner, RerankerRunner)
    template = PairTemplate(runner.tokenizer)
    assert (template.prefix, template.middle, template.suffix) == ([0], [2, 2], [2])
    assert template.overhead == 4


async def test_scores_in_input_order_normalised_or_raw():
    model = reranker()
    docs = ["hay", f"{RELEVANT} {RELEVANT}", f"hay {RELEVANT}"]
    result = await model.score(["q"], docs)
    assert result.scores == pytest.approx([sigmoid(0), sigmoid(2), sigmoid(1)])
    raw = await model.score(["q"], docs, normalize=False)
    assert raw.scores == [0.0, 2.0, 1.0]
    assert raw.num_tokens == sum(1 + 4 + len(d.split()) for d in docs)
    assert raw.truncated == 0 and raw.chunks is None
    await model.engine.stop()


async def test_long_documents_are_truncated_or_chunked():
    long_doc = " ".join(["hay"] * 40 + [RELEVANT])  # the needle past what fits beside q
    model = reranker()  # max_length 32: a chunk is 32 - 1 (q) - 4 = 27 tokens
    cut = await model.score(["q"], [long_doc], normalize=False)
    assert cut.scores == [0.0] and cut.truncated == 1
    chunked = await model.score(["q"], [long_doc], normalize=False, max_chunks=2)
    assert chunked.scores == [1.0] and chunked.chunks == [2] and chunked.truncated == 0
    per_doc = await model.score(["q"], [long_doc], normalize=False, max_chunks=8,
                                max_document_tokens=10)
    assert per_doc.chunks == [5] and per_doc.scores == [1.0]
    with pytest.raises(BadRequestError) as err:
        await model.score(["q"], [long_doc], truncate=False)
    assert (err.value.code, err.value.param) == ("context_length_exceeded", "documents[0]")
    with pytest.raises(BadRequestError) as err:
        await model.score(["q"], [long_doc], truncate=False, max_chunks=1)
    assert err.value.code == "context_length_exceeded"
    await model.engine.stop()


async def test_request_limits_are_400s_before_the_model_runs():
    runner = FakeRerankerRunner()
    model = reranker(runner, max_rerank_documents=3, max_request_tokens=30)
    cases = [
        (["q"], ["a"] * 4, {}, "too_many_documents", "documents"),
        (["q", "q"], ["a"] * 3, {}, None, "query"),
        (["q"], ["a", ""], {}, None, "documents[1]"),
        (["q"], ["a"], {"max_length": 33}, None, "max_length"),
        (["q"], ["a"], {"max_document_tokens": 0}, None, "max_tokens_per_doc"),
        (["q"], ["a"], {"max_chunks": 0}, None, "max_chunks_per_doc"),
        ([" ".join(["w"] * 28)], ["a"], {}, "context_length_exceeded", "query"),
        (["q"], ["a b c d e f g h i j"] * 3, {}, "request_too_large", "documents"),
    ]
    for queries, docs, kwargs, code, param in cases:
        with pytest.raises(BadRequestError) as err:
            await model.score(queries, docs, **kwargs)
        assert (err.value.code, err.value.param) == (code, param), (queries, docs, kwargs)
    assert runner.batches == []
    await model.engine.stop()


async def test_a_draining_engine_refuses_with_503():
    model = reranker()
    model.engine.drain()
    with pytest.raises(OverloadedError) as err:
        await model.score(["q"], ["d"])
    assert (err.value.status_code, err.value.code) == (503, "shutting_down")
    await model.engine.stop()


def test_pairs_are_built_from_the_pieces():
    template = PairTemplate(FakeRerankerRunner().tokenizer)
    model = Reranker("r", None, None, Settings(), template=template)
    pairs, truncated, chunks = model._pairs(["q"], ["a b", "c"], 32, None, True, "query",
                                            "documents")
    assert pairs == [[0, word_id("q"), 2, 2, word_id("a"), word_id("b"), 2],
                     [0, word_id("q"), 2, 2, word_id("c"), 2]]
    assert (truncated, chunks) == (0, None)


# -- self-rerank with the embedder -----------------------------------------------------------

def embedder(**settings) -> Embedder:
    runner = FakeEmbedderRunner()
    return Embedder("fake", runner, BatchEngine(runner, max_wait_s=0.001), Settings(**settings))


async def test_self_rerank_scores_with_the_formulas_of_each_method():
    model = embedder()
    docs = ["a b", "c"]
    q_res = await model.encode("a", _options("query"))
    d_res = await model.encode(docs, _options("passage"))
    q, ds = q_res.embeddings[0], d_res.embeddings
    dense = await self_rerank(model, "a", docs, method="dense", weights=None)
    assert dense.scores == pytest.approx([float(q.dense @ d.dense) for d in ds])
    sparse = await self_rerank(model, "a", docs, method="sparse", weights=None)
    assert sparse.scores == [0.25, 0.0]  # "a" shared with the first, weights 0.5 x 0.5
    colbert = await self_rerank(model, "a", docs, method=None, weights=None)
    assert colbert.method == "colbert"
    expected = [float((q.colbert @ d.colbert.T).max(axis=1).sum() / len(q.colbert)) for d in ds]
    assert colbert.scores == pytest.approx(expected)
    hybrid = await self_rerank(model, "a", docs, method="hybrid", weights=[1, 0, 1])
    assert hybrid.scores == pytest.approx([(a + b) / 2 for a, b in
                                           zip(dense.scores, colbert.scores, strict=True)])
    for method, weights, param in (("nope", None, "method"), ("dense", [1, 1, 1], "weights"),
                                   ("hybrid", [1, 1], "weights"),
                                   ("hybrid", [0, 0, 0], "weights"),
                                   ("hybrid", [math.nan, 1, 1], "weights")):
        with pytest.raises(BadRequestError) as err:
            await self_rerank(model, "a", docs, method=method, weights=weights)
        assert err.value.param == param
    await model.engine.stop()


async def test_maxsim_checks_the_candidates_first():
    model = embedder(max_rerank_documents=2)
    assert await maxsim(model, "q", []) == []
    for query, candidates, code, param in (("", ["a"], None, "query"),
                                           ("q", ["a", "b", "c"], "too_many_documents",
                                            "candidates"),
                                           ("q", ["a", " "], None, "candidates[1]")):
        with pytest.raises(BadRequestError) as err:
            await maxsim(model, query, candidates)
        assert (err.value.code, err.value.param) == (code, param)
    scores = await maxsim(model, "a", ["a", "b"])
    assert len(scores) == 2 and all(np.isfinite(scores))
    await model.engine.stop()


def _options(input_type: str):
    from predictor.core.types import EncodeOptions, Output

    return EncodeOptions(outputs=frozenset(Output), input_type=input_type)
