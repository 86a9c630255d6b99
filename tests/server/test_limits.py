"""Work bounded by the request's size before it is done (issue 11): a small request must not
make the server tokenise, hold or return much more than its own size allows."""

from __future__ import annotations

import httpx
from rss import PeakRSS

MB = 1 << 20
QUERY_WORDS = "capital France Paris "


def error_of(resp: httpx.Response, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text[:500]
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

    from predictor.core.reranker import PairTemplate

    for path in (reranker_dir, build_bert_cross_encoder(tmp_path)):
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        template = PairTemplate(tokenizer)
        assert template.overhead == tokenizer.num_special_tokens_to_add(pair=True)
        queries, documents = template.tokenize(TRICKY), template.tokenize(TRICKY[::-1])
        for q, d, q_ids, d_ids in zip(TRICKY, TRICKY[::-1], queries, documents, strict=True):
            assert template.pair(q_ids, d_ids) == tokenizer(q, d)["input_ids"]
        assert template.tokenize(TRICKY, 5) == [ids[:5] for ids in queries]


# -- memory bounds of the embedder (issue 11, item 4) --------------------------------------

def test_colbert_output_is_bounded_per_response(server, client):
    """ColBERT is one vector per token (1024 floats for BGE-M3): more than max_colbert_tokens
    in one request is a 400 naming the limit and how to raise it, before the model runs."""
    texts = [QUERY_WORDS * 250] * 40  # about 40 x 1000 tokens, over the 32768 default
    body = {"input": texts, "return_colbert": True}
    error = error_of(client.post("/v1/embeddings", json=body, timeout=120), 400, "input")
    assert error["code"] == "request_too_large"
    assert "MAX_COLBERT_TOKENS" in error["message"] and "--max_colbert_tokens" in error["message"]
    v2 = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                      "data": texts}], "parameters": {"return_colbert": True}}
    error = error_of(client.post("/v2/models/bge-m3/infer", json=v2, timeout=120), 400)
    assert "MAX_COLBERT_TOKENS" in error["message"]
    # without ColBERT, or with fewer tokens, the same texts are served
    assert client.post("/v1/embeddings", json={"input": texts}, timeout=120).status_code == 200
    ok = client.post("/v1/embeddings", json={"input": texts[:8], "return_colbert": True},
                     timeout=120)
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["data"][0]["colbert_embedding"]) > 900


def test_text_over_the_tokenising_budget_is_413_before_tokenising(server, client):
    """One request with more characters than max_tokenize_chars (4 MiB) is refused with a 413
    that names the limit, without being tokenised (before: +3.6 GB for a 30 MB text)."""
    text = "capital France Paris " * 230_000  # 4.8 M characters, a 4.8 MB body
    with PeakRSS(server.process.pid) as rss:
        resp = client.post("/v1/embeddings", json={"input": text}, timeout=120)
    error = error_of(resp, 413, "input")
    assert error["code"] == "request_too_large"
    assert "MAX_TOKENIZE_CHARS" in error["message"] and "--max_tokenize_chars" in error["message"]
    assert rss.growth < 150 * MB, f"+{rss.growth / MB:.0f} MB"
    rerank = {"query": "capital", "documents": [text[:1_000_000]] * 5}
    error = error_of(client.post("/v1/rerank", json=rerank, timeout=120), 413, "documents")
    assert "MAX_TOKENIZE_CHARS" in error["message"]
    still_serves(client)
