"""Our outputs equal ``BGEM3FlagModel.encode`` on the same model, whatever batch they land in."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from predictor.api.kserve.embedder import EmbedderModel
from predictor.core.types import EncodeOptions, Output
from predictor.runtime.host import TorchHost
from predictor.settings import Settings

from fidelity import (
    TEXTS,
    assert_colbert_close,
    assert_dense_close,
    assert_sparse_close,
    reference,
)

ALL = frozenset(Output)


@pytest.fixture(scope="module")
def ref(flag_m3):
    return reference(flag_m3, TEXTS)


@pytest.fixture(scope="module", params=["auto", "off"], ids=["sub-batches", "one-call"])
def embedder(m3_dir, request):
    """On CPU a mixed batch is split by length (auto) or run as one padded call (off)."""
    settings = Settings(embedder=str(m3_dir), reranker="none", device="cpu",
                        batch_wait_ms=50, max_batch_size=64, max_batch_tokens=1 << 20,
                        sub_batches=request.param, dtype="float32")
    model = EmbedderModel("bge-m3", str(m3_dir), settings, host=TorchHost())
    model.load()
    return model


def check(embeddings, ref, indices):
    for emb, i in zip(embeddings, indices, strict=True):
        assert_dense_close(emb.dense, ref["dense_vecs"][i])
        assert_sparse_close(emb.sparse.indices, emb.sparse.values, ref["lexical_weights"][i])
        assert_colbert_close(emb.colbert, ref["colbert_vecs"][i])


async def test_all_outputs_match_flagembedding(embedder, ref):
    result = await embedder.service.encode(TEXTS, EncodeOptions(outputs=ALL))
    check(result.embeddings, ref, range(len(TEXTS)))
    assert result.prompt_tokens == sum(e.num_tokens for e in result.embeddings)


async def test_concurrent_requests_of_very_different_lengths_share_a_batch(embedder, ref):
    seen = []
    engine_runner = embedder.batcher.runner  # on CPU the length splitter around the runner
    run_batch = engine_runner.run_batch

    def recording(items):
        seen.append(sorted(len(item) for item in items))
        return run_batch(items)

    forward = embedder.runner._forward
    forward_rows = []

    def counting_forward(items):
        forward_rows.append(len(items))
        return forward(items)

    embedder.batcher.runner = type("R", (), {"run_batch": staticmethod(recording)})()
    embedder.runner._forward = counting_forward
    try:
        groups = [[0], [5], [1, 3], [6, 4], [2, 7]]
        results = await asyncio.gather(*(embedder.service.encode([TEXTS[i] for i in g],
                                                         EncodeOptions(outputs=ALL))
                                         for g in groups))
    finally:
        embedder.batcher.runner = engine_runner
        del embedder.runner._forward
    assert len(seen) == 1 and seen[0][0] < 5 < 200 < seen[0][-1], seen
    assert sum(forward_rows) == len(TEXTS)
    if embedder.settings.sub_batches == "off":
        assert forward_rows == [len(TEXTS)]
    else:  # texts of 3 and 300 tokens are not padded to one width
        assert len(forward_rows) > 1, forward_rows
    for group, result in zip(groups, results, strict=True):
        check(result.embeddings, ref, group)


async def test_each_request_gets_only_what_it_asked_for(embedder, ref):
    dense_only, sparse_only = await asyncio.gather(
        embedder.service.encode([TEXTS[1]], EncodeOptions(outputs=frozenset({Output.DENSE}))),
        embedder.service.encode([TEXTS[2]], EncodeOptions(outputs=frozenset({Output.SPARSE}))))
    (d,), (s,) = dense_only.embeddings, sparse_only.embeddings
    assert d.sparse is None and d.colbert is None
    assert s.dense is None and s.colbert is None
    assert_dense_close(d.dense, ref["dense_vecs"][1])
    assert_sparse_close(s.sparse.indices, s.sparse.values, ref["lexical_weights"][2])


async def test_truncation_matches_flagembedding_max_length(embedder, flag_m3):
    ref16 = reference(flag_m3, TEXTS[5:6], max_length=16)
    result = await embedder.service.encode(TEXTS[5:6], EncodeOptions(outputs=ALL, max_length=16))
    (emb,) = result.embeddings
    assert emb.num_tokens == 16
    assert_dense_close(emb.dense, ref16["dense_vecs"][0])
    assert_colbert_close(emb.colbert, ref16["colbert_vecs"][0])


def test_http_outputs_match_under_concurrency(server, ref):
    """Eight clients at once over HTTP: each text's outputs equal the reference."""
    import httpx

    def call(i):
        body = {"input": [TEXTS[i]], "return_dense": True, "return_sparse": True,
                "return_colbert": True}
        r = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return i, r.json()["data"][0]

    with ThreadPoolExecutor(8) as pool:
        for i, item in pool.map(call, range(len(TEXTS))):
            assert_dense_close(item["embedding"], ref["dense_vecs"][i])
            assert_dense_close(item["dense_embedding"], ref["dense_vecs"][i])
            sp = item["sparse_embedding"]
            assert_sparse_close(sp["indices"], sp["values"], ref["lexical_weights"][i])
            assert_colbert_close(item["colbert_embedding"], ref["colbert_vecs"][i])
