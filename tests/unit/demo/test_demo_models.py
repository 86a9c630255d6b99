"""The random demo models must load with the *real* FlagEmbedding / transformers loaders.

Why: the smoke test, the rest of the suite and the benchmarks all run on these models, so a
drift in layout (missing heads, wrong special-token ids, wrong pair template) would silently
turn every downstream test into a test of the wrong thing.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from predictor.demo import (
    DEMO_VERSION,
    M3_DIRNAME,
    RERANKER_DIRNAME,
    ModelShape,
    build_m3,
    build_reranker,
    ensure_demo_models,
    train_tokenizer,
)

TEXTS = ["hello world", "a longer sentence about dense, sparse and multi-vector retrieval"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return build_m3(root / "m3"), build_reranker(root / "reranker")


@pytest.fixture(scope="module")
def m3(built):
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel(str(built[0]), use_fp16=False, devices="cpu")


def _encode(model, texts=TEXTS):
    return model.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)


def test_m3_dir_has_checkpoint_layout(built):
    m3_dir, rr_dir = built
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "colbert_linear.pt", "sparse_linear.pt", "README.md"):
        assert (m3_dir / name).is_file(), name
    assert "random" in (m3_dir / "README.md").read_text().lower()
    assert (rr_dir / "model.safetensors").is_file()
    assert not (rr_dir / "colbert_linear.pt").exists()


def test_tokenizer_is_xlmr_like(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(built[0]))
    assert (tok.cls_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(tok) - 1
    assert tok.model_max_length == 8192
    assert tok("hi there").input_ids[0] == 0 and tok("hi there").input_ids[-1] == 2
    pair = tok("query", "word " * 50, truncation="only_second", max_length=12).input_ids
    assert len(pair) == 12 and pair[0] == 0 and pair[-1] == 2
    assert pair[pair.index(2) + 1] == 2  # XLM-R pair template: <s> A </s></s> B </s>
    # Multilingual text tokenises into real pieces, not a wall of <unk>.
    for text in ("北京是中国的首都", "Быстрая лиса", "Der schnelle Fuchs"):
        ids = tok(text, add_special_tokens=False).input_ids
        assert ids and ids.count(tok.unk_token_id) < len(ids) / 2, (text, ids)


def test_train_tokenizer_round_trips(tmp_path):
    from transformers import AutoTokenizer

    trained = train_tokenizer(tmp_path, vocab_size=2000, seed=0)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(trained) == len(loaded) == 2000
    for text in [*TEXTS, "Ünïcödé ✓ 😀 東京", "  odd   spacing\tand\nlines "]:
        assert trained(text).input_ids == loaded(text).input_ids


def test_m3_encode_all_three_outputs(m3):
    out = _encode(m3)
    dense = out["dense_vecs"]
    assert dense.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1.0, rtol=1e-5)
    for text, weights, colbert in zip(TEXTS, out["lexical_weights"], out["colbert_vecs"],
                                      strict=True):
        assert weights, f"empty lexical weights for {text!r}"
        assert all(w > 0 for w in weights.values())
        n_tokens = len(m3.tokenizer(text).input_ids)
        assert colbert.shape == (n_tokens - 1, 64)
    # The sparse head is sparse, not all-positive: some tokens of the longer text drop out.
    content = set(m3.tokenizer(TEXTS[1], add_special_tokens=False).input_ids) - {0, 1, 2, 3}
    assert len(out["lexical_weights"][1]) < len(content)


def test_reranker_scores(built):
    from FlagEmbedding import FlagReranker

    reranker = FlagReranker(str(built[1]), use_fp16=False, devices="cpu")
    scores = reranker.compute_score([["q", "d"], ["q", "other d"]])
    assert len(scores) == 2
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)


def test_same_seed_same_model(tmp_path, built, m3):
    from FlagEmbedding import BGEM3FlagModel

    again = build_m3(tmp_path / "m3")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "colbert_linear.pt", "sparse_linear.pt"):
        assert (built[0] / name).read_bytes() == (again / name).read_bytes(), name
    other = BGEM3FlagModel(str(again), use_fp16=False, devices="cpu")
    np.testing.assert_array_equal(_encode(m3)["dense_vecs"], _encode(other)["dense_vecs"])


def test_other_seed_other_weights(tmp_path, built):
    other = build_m3(tmp_path / "m3", ModelShape(seed=1))
    weights = "model.safetensors"
    assert (other / weights).read_bytes() != (built[0] / weights).read_bytes()


def test_ensure_demo_models_builds_once(tmp_path):
    m3_dir, rr_dir = ensure_demo_models(tmp_path)
    assert (m3_dir.name, rr_dir.name) == (M3_DIRNAME, RERANKER_DIRNAME)
    assert m3_dir.parent == rr_dir.parent and m3_dir.parent.parent == tmp_path
    assert DEMO_VERSION in (m3_dir.parent / "DEMO_VERSION.json").read_text()
    stamp = (m3_dir / "model.safetensors").stat().st_mtime_ns

    start = time.perf_counter()
    again = ensure_demo_models(tmp_path)
    assert time.perf_counter() - start < 0.5
    assert again == (m3_dir, rr_dir)
    assert (m3_dir / "model.safetensors").stat().st_mtime_ns == stamp
    # Only the published bundle is left behind: no temp or half-built dirs.
    assert [p.name for p in tmp_path.iterdir()] == [m3_dir.parent.name]


def test_ensure_demo_models_replaces_incomplete_bundle(tmp_path):
    m3_dir, _ = ensure_demo_models(tmp_path)
    (m3_dir.parent / "DEMO_VERSION.json").unlink()  # as if a build had been interrupted
    m3_again, rr_again = ensure_demo_models(tmp_path)
    assert m3_again == m3_dir and (m3_again / "model.safetensors").is_file()
    assert (rr_again / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [m3_dir.parent.name]


def test_ensure_demo_models_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv("BGE_PREDICTOR_CACHE", str(tmp_path / "cache"))
    m3_dir, _ = ensure_demo_models()
    assert m3_dir.is_relative_to(tmp_path / "cache")
