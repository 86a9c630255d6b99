"""Long documents in rerank: Cohere's ``max_chunks_per_doc``, against a real server.

The reference scores every chunk one by one through FlagReranker (the same model directory) and
keeps each document's best. Documents are made of words that are one token each, so a chunk of
``size`` tokens is exactly ``size`` words and its text tokenises back to the same ids (checked).
"""

from __future__ import annotations

import math
import random

import httpx
import numpy as np
import pytest

QUERY = "the cat in the house"
ATOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer(flag_reranker):
    return flag_reranker.tokenizer


@pytest.fixture(scope="module")
def one_token_words(tokenizer) -> list[str]:
    candidates = ("the cat a dog to it in an house sea of and is on at by for with this that "
                  "be are was not but or his her they we you all can will one two new".split())
    words = [w for w in candidates
             if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
    assert len(words) >= 6, words
    return words


def document(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(words) for _ in range(n)]


def chunk_texts(tokenizer, doc: list[str], size: int, max_chunks: int) -> list[str]:
    ids = tokenizer(" ".join(doc), add_special_tokens=False)["input_ids"]
    assert len(ids) == len(doc), "each word is one token"
    texts = [" ".join(doc[i:i + size]) for i in range(0, len(doc), size)][:max_chunks]
    for k, text in enumerate(texts):  # each chunk's text is exactly its slice of the ids
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids[k * size:
                                                                            (k + 1) * size]
    return texts


def expected(flag_reranker, tokenizer, docs, size, max_chunks, normalize=True):
    """(score per document, chunks per document, tokens of every chunk pair)."""
    scores, counts, tokens = [], [], 0
    for doc in docs:
        chunks = chunk_texts(tokenizer, doc, size, max_chunks)
        pairs = [[QUERY, c] for c in chunks]
        logits = flag_reranker.compute_score(pairs, normalize=False, max_length=8192)
        logits = logits if isinstance(logits, list) else [logits]
        best = max(logits)
        scores.append(1 / (1 + math.exp(-best)) if normalize else best)
        counts.append(len(chunks))
        tokens += sum(len(tokenizer(QUERY, c)["input_ids"]) for c in chunks)
    return scores, counts, tokens


def by_index(body) -> list[float]:
    return [r["relevance_score"] for r in sorted(body["results"], key=lambda r: r["index"])]


def test_each_document_scores_as_its_best_chunk(client, flag_reranker, tokenizer,
                                                one_token_words):
    docs = [document(one_token_words, n, seed) for seed, n in enumerate((30, 5, 50, 16))]
    body = {"query": QUERY, "documents": [" ".join(d) for d in docs], "max_tokens_per_doc": 8,
            "max_chunks_per_doc": 3}
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    scores, counts, tokens = expected(flag_reranker, tokenizer, docs, 8, 3)
    np.testing.assert_allclose(by_index(out), scores, atol=ATOL)
    assert counts == [3, 1, 3, 2]
    assert out["meta"]["chunks"] == {"max_chunks_per_doc": 3, "scored": 9,
                                     "per_document": counts}
    assert "2 document(s) had more than 3 chunks" in " ".join(out["meta"]["warnings"])
    assert out["usage"]["prompt_tokens"] == tokens == out["meta"]["tokens"]["input_tokens"]
    # Never below the document cut to its first chunk (what plain truncation scores).
    cut = client.post("/v1/rerank", json=body | {"max_chunks_per_doc": None}).json()
    assert all(c >= t - ATOL for c, t in zip(by_index(out), by_index(cut), strict=True))
    assert "chunks" not in cut["meta"]


def test_chunks_fill_the_pair_when_no_document_limit_is_given(client, flag_reranker, tokenizer,
                                                               one_token_words):
    docs = [document(one_token_words, n, 10 + n) for n in (70, 12)]
    max_length = 24
    q = len(tokenizer(QUERY, add_special_tokens=False)["input_ids"])
    overhead = len(tokenizer(QUERY, "a")["input_ids"]) - q - 1
    size = max_length - q - overhead
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": [" ".join(d) for d in docs],
                                        "max_length": max_length, "max_chunks_per_doc": 10,
                                        "raw_scores": True})
    assert r.status_code == 200, r.text
    scores, counts, _ = expected(flag_reranker, tokenizer, docs, size, 10, normalize=False)
    np.testing.assert_allclose(by_index(r.json()), scores, atol=ATOL)
    assert r.json()["meta"]["chunks"]["per_document"] == counts == [math.ceil(70 / size), 1]
    assert "warnings" not in r.json()["meta"]


def test_v2_infer_and_cohere_sdk_take_max_chunks_per_doc(server, client, flag_reranker,
                                                         tokenizer, one_token_words):
    docs = [document(one_token_words, n, 20 + n) for n in (40, 9)]
    texts = [" ".join(d) for d in docs]
    scores, _, _ = expected(flag_reranker, tokenizer, docs, 8, 4)
    r = client.post("/v2/models/bge-reranker/infer", json={
        "inputs": [{"name": "query", "shape": [1], "datatype": "BYTES", "data": [QUERY]},
                   {"name": "documents", "shape": [2], "datatype": "BYTES", "data": texts}],
        "parameters": {"max_chunks_per_doc": 4, "max_tokens_per_doc": 8}})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"][0]["data"], scores, atol=1e-5)

    import cohere

    co = cohere.Client(base_url=server.url, api_key="unused")  # Cohere v1 sends the field
    v1 = co.rerank(model="bge-reranker", query=QUERY, documents=texts, max_chunks_per_doc=4)
    plain = client.post("/v1/rerank", json={"query": QUERY, "documents": texts,
                                            "max_chunks_per_doc": 4}).json()
    np.testing.assert_allclose(sorted(r.relevance_score for r in v1.results),
                               sorted(by_index(plain)), atol=1e-6)


def test_chunk_limits_are_clear_400s(client, one_token_words):
    long_doc = " ".join(document(one_token_words, 40, 1))
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": ["short", long_doc],
                                        "max_tokens_per_doc": 8, "max_chunks_per_doc": 2,
                                        "truncate": False})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "documents[1]"
    assert "max_chunks_per_doc" in r.json()["error"]["message"]
    for bad in (0, -1, "many"):
        r = client.post("/v1/rerank", json={"query": QUERY, "documents": ["a"],
                                            "max_chunks_per_doc": bad})
        assert r.status_code == 400, r.text
    r = httpx.post(f"{client.base_url}/v2/models/bge-reranker/infer", json={
        "inputs": [{"name": "query", "shape": [1], "datatype": "BYTES", "data": [QUERY]},
                   {"name": "documents", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
        "parameters": {"max_chunks_per_doc": 0}}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_chunks_per_doc", r.text


def test_the_request_token_limit_counts_every_chunk(reranker_dir, one_token_words):
    """Chunks are counted before any pair is built: a document that truncation would keep
    under the limit is refused when its chunks together are over it."""
    from transformers import AutoTokenizer

    from predictor.core.reranker import PairTemplate, Reranker
    from predictor.errors import BadRequestError
    from predictor.settings import Settings

    model = Reranker("r", None, None,
                     Settings(reranker=str(reranker_dir), max_request_tokens=80),
                     template=PairTemplate(AutoTokenizer.from_pretrained(str(reranker_dir))))
    doc = " ".join(document(one_token_words, 60, 3))
    pairs, truncated, chunks = model._pairs([QUERY], [doc], 8192, 16, True, "query",
                                            "documents")
    assert chunks is None and len(pairs) == 1 and len(pairs[0]) < 80  # truncation: fits
    with pytest.raises(BadRequestError, match="at most 80"):
        model._pairs([QUERY], [doc], 8192, 16, True, "query", "documents", 4)
    pairs, truncated, chunks = model._pairs([QUERY], [doc], 8192, 16, True, "query",
                                            "documents", 1)
    assert chunks == [1] and truncated == 1 and pairs[0] == model._pairs(
        [QUERY], [doc], 8192, 16, True, "query", "documents")[0][0]
