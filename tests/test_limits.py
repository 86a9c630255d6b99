"""Work bounded by the request's size before it is done (issue 11): a small request must not
make the server tokenise, hold or return much more than its own size allows."""

from __future__ import annotations

import httpx
from rss import PeakRSS

MB = 1 << 20
QUERY_WORDS = "capital France Paris "


def error_of(resp: httpx.Response, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param, error
    return error


def still_serves(client: httpx.Client) -> None:
    ok = client.post("/v1/rerank", json={"query": "capital of France",
                                         "documents": ["Paris", "Berlin"]})
    assert ok.status_code == 200, ok.text


def test_rerank_query_is_tokenised_once_not_per_document(server, client):
    """The issue's body, smaller: a query (about 8400 tokens) over the model's limit with 1000
    documents. It is refused naming the query, without the server tokenising the query once
    per document (before: gigabytes, then the process aborted)."""
    body = {"query": QUERY_WORDS * 2100, "documents": ["a"] * 1000}
    with PeakRSS(server.process.pid) as rss:
        resp = client.post("/v1/rerank", json=body, timeout=120)
    error = error_of(resp, 400, "query")
    assert error["code"] == "context_length_exceeded"
    assert rss.growth < 150 * MB, f"+{rss.growth / MB:.0f} MB"
    assert server.process.poll() is None
    still_serves(client)


def test_rerank_refused_on_its_token_count_before_the_pairs_are_built(server, client):
    """A query that fits the model (about 5200 tokens) times 1000 documents is about 5M tokens,
    over max_request_tokens (1M): a 400 that says so, counted from one tokenisation of the
    query, not after building 1000 copies of it."""
    body = {"query": QUERY_WORDS * 1300, "documents": ["a"] * 1000}
    with PeakRSS(server.process.pid) as rss:
        resp = client.post("/v1/rerank", json=body, timeout=120)
    error = error_of(resp, 400, "documents")
    assert error["code"] == "request_too_large"
    assert "max_request_tokens" in error["message"] or "MAX_REQUEST_TOKENS" in error["message"]
    assert rss.growth < 150 * MB, f"+{rss.growth / MB:.0f} MB"
    # the same over V2 (one query tensor element per document is allowed too)
    v2 = {"inputs": [{"name": "query", "shape": [1], "datatype": "BYTES",
                      "data": [body["query"]]},
                     {"name": "documents", "shape": [1000], "datatype": "BYTES",
                      "data": body["documents"]}]}
    error = error_of(client.post("/v2/models/bge-reranker/infer", json=v2, timeout=120), 400)
    assert error["code"] == "request_too_large"
    assert server.process.poll() is None
    still_serves(client)


TRICKY = ["a query", "  leading and  double spaces ", "ünïcödé — dashes… and emoji 🙂", "x",
          "Punctuation!? (brackets) [more] {and} 'quotes' \"too\"", "tab\tand\nnewline",
          "word " * 300]


def test_pairs_built_from_pieces_equal_the_tokenizers_pair_encoding(reranker_dir, tmp_path):
    """Each query and document is tokenised once and the pairs assembled from the pieces: the
    ids equal ``tokenizer(query, document)`` (FlagReranker's) for XLM-R and BERT layouts."""
    from family_fixtures import build_bert_cross_encoder
    from transformers import AutoTokenizer

    from predictor.kserve_models.reranker import PairTemplate

    for path in (reranker_dir, build_bert_cross_encoder(tmp_path)):
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        template = PairTemplate(tokenizer)
        assert template.overhead == tokenizer.num_special_tokens_to_add(pair=True)
        queries, documents = template.tokenize(TRICKY), template.tokenize(TRICKY[::-1])
        for q, d, q_ids, d_ids in zip(TRICKY, TRICKY[::-1], queries, documents, strict=True):
            assert template.pair(q_ids, d_ids) == tokenizer(q, d)["input_ids"]
