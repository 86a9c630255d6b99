"""Third-party clients users bring, against a real server, with their default settings.

langchain-openai's ``OpenAIEmbeddings`` (its defaults send token-id arrays), the openai SDK's
``models.retrieve``, langchain-cohere's ``CohereRerank`` request (``top_n=3`` on fewer
documents), and the validation messages a person reads when a request is wrong.
"""

from __future__ import annotations

import cohere
import httpx
import numpy as np
import openai
import pytest

DOCS = ["The giant panda is a bear native to China.", "Paris is the capital of France."]


@pytest.fixture
def byte_tokenizer(monkeypatch):
    """tiktoken fetches cl100k's table from the internet on first use; the tests have none.
    A byte-level table stands in: langchain-openai still sends token-id arrays, its default."""
    import tiktoken
    from langchain_openai.embeddings import base

    encoding = tiktoken.Encoding(name="bytes", pat_str=r"\S+|\s+",
                                 mergeable_ranks={bytes([i]): i for i in range(256)},
                                 special_tokens={})
    monkeypatch.setattr(base.tiktoken, "encoding_for_model", lambda _name: encoding)
    monkeypatch.setattr(base.tiktoken, "get_encoding", lambda _name: encoding)


def test_langchain_openai_defaults_get_a_400_that_names_the_fix(server, byte_tokenizer):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="bge-m3", base_url=f"{server.url}/v1", api_key="unused",
                                  max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        embeddings.embed_documents(DOCS)
    error = caught.value.body
    assert error["code"] == "token_ids_not_accepted" and error["param"] == "input"
    assert "token ids are not accepted" in error["message"]
    assert "check_embedding_ctx_length=False" in error["message"]


def test_langchain_openai_with_the_fix_gets_the_servers_vectors(server, client):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="bge-m3", base_url=f"{server.url}/v1", api_key="unused",
                                  check_embedding_ctx_length=False, max_retries=0)
    vectors = embeddings.embed_documents(DOCS)
    query = embeddings.embed_query(DOCS[0])
    direct = client.post("/v1/embeddings", json={"model": "bge-m3", "input": DOCS}).json()
    expected = [item["embedding"] for item in direct["data"]]
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(query, expected[0], atol=1e-5)


def test_openai_models_retrieve_reads_the_model_object(server):
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    model = sdk.models.retrieve("bge-m3")
    assert model.id == "bge-m3" and model.object == "model"
    assert model.owned_by == "bge-predictor" and model.created > 0
    assert model.model_extra["name"] == "bge-m3" and model.model_extra["ready"] is True
    assert sdk.models.retrieve("bge-reranker").model_extra["kind"] == "reranker"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")
    # KServe's V1 status fields on the same route, and under KServe's OpenAI prefix.
    body = httpx.get(f"{server.url}/openai/v1/models/bge-m3", timeout=30).json()
    assert body["name"] == "bge-m3" and body["ready"] is True and body["id"] == "bge-m3"


def test_cohere_rerank_top_n_above_the_documents_returns_them_all(server):
    """langchain-cohere's CohereRerank calls ``ClientV2.rerank`` with ``top_n=3`` by default
    (langchain-cohere 0.6 needs cohere<6, so its exact call is made here with the SDK)."""
    v2 = cohere.ClientV2(api_key="unused", base_url=server.url)
    for docs in (DOCS[:1], DOCS):
        results = v2.rerank(model="bge-reranker", query="what is a panda?", documents=docs,
                            top_n=3, max_tokens_per_doc=None).results
        assert sorted(r.index for r in results) == list(range(len(docs)))
    scores = [r.relevance_score for r in results]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(cohere.BadRequestError):
        v2.rerank(model="bge-reranker", query="q", documents=DOCS, top_n=0)


@pytest.mark.parametrize("body, param, words", [
    ({"input": 42}, "input",
     ["input", "expected a string or a list of strings", "got 42"]),
    ({"input": ["fine", 3]}, "input[1]", ["input[1]", "expected a string", "got 3"]),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format",
     ["encoding_format", "'float' or 'base64'", '"hex"']),
    ({"input": "x", "colour": "red"}, "colour", ["colour", "unknown field"]),
    ({}, "input", ["input", "missing"]),
])
def test_validation_errors_name_the_field_what_was_sent_and_what_is_accepted(
        client, body, param, words):
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    for word in words:
        assert word in error["message"], error["message"]
    assert "problem(s)" not in error["message"]


def test_malformed_json_says_so(client):
    response = client.post("/v1/rerank", content=b'{"query": "q", documents: []}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert "not valid JSON" in error["message"] and "double quotes" in error["message"]
