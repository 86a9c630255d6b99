"""``--dtype``: what ``auto`` picks and why, and how close bfloat16 stays to float32.

Every test names its dtype, so the suite passes on CPUs with and without native bf16 (there
bf16 is emulated: slower, same numbers). The bounds are the ones docs/operations.md
("CPU deployment") documents; the figures measured on the small random models are printed
(``pytest -s``) and written down in docs/benchmarks.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from predictor.core.types import EncodeItem, Output, ScoreItem
from predictor.runtime import device as device_mod
from predictor.runtime.device import Precision, resolve_precision

from fidelity import TEXTS
from server_process import start_server, stop_server

ALL = frozenset(Output)
# A sparse weight counts when it is at least this fraction of its text's largest weight;
# below it a token's weight is noise for retrieval and may round to zero or not.
SPARSE_THRESHOLD = 0.05
SPARSE_REL_ERROR = 1e-2  # |bf16 - fp32| / the text's largest weight
COSINE = 0.999
RERANK_ABS = 0.05  # documented bound on |bf16 - fp32| of a raw rerank logit on these models

QUERIES = ["what is the capital of france", "how do dense and sparse retrieval differ"]
DOCS = [*TEXTS, "Paris is the capital of France.",
        "Sparse retrieval weighs lexical tokens; dense uses vectors."]


# -- what auto means ----------------------------------------------------------------------

def test_auto_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_native_bf16", lambda: "avx512_bf16")
    got = resolve_precision("auto", "cpu")
    assert got.dtype == "bfloat16" and "avx512_bf16" in got.reason
    monkeypatch.setattr(device_mod, "cpu_native_bf16", lambda: None)
    got = resolve_precision("auto", "cpu")
    assert got.dtype == "float32" and "no native bf16" in got.reason
    assert resolve_precision("auto", "cuda:0").dtype == "float16"
    assert resolve_precision("auto", "cuda", use_fp16=False).dtype == "float32"
    # the legacy --use_fp16 is about CUDA: on CPU it changes nothing
    monkeypatch.setattr(device_mod, "cpu_native_bf16", lambda: "amx_bf16")
    assert resolve_precision("auto", "cpu", use_fp16=False).dtype == "bfloat16"
    assert resolve_precision("float32", "cpu") == Precision("float32", "requested")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", "cuda")


def test_dtype_flag_and_environment(monkeypatch, capsys):
    from predictor.cli import build_parser, settings_from_args

    monkeypatch.setenv("DTYPE", "bfloat16")
    assert settings_from_args(build_parser().parse_args([])).dtype == "bfloat16"
    flags = build_parser().parse_args(["--dtype", "int8"])
    assert settings_from_args(flags).dtype == "int8", "the flag wins over the environment"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--dtype", "bf16"])
    assert "invalid choice: 'bf16'" in capsys.readouterr().err


def test_native_bf16_is_what_torch_reports():
    import torch

    caps = torch.cpu.get_capabilities()
    native = bool(caps.get("avx512_bf16") or caps.get("amx_bf16") or caps.get("bf16"))
    assert bool(device_mod.cpu_native_bf16()) == native


# -- fidelity of the runners on the small random models --------------------------------------

@pytest.fixture(scope="module")
def m3_runners(m3_dir):
    from predictor.runtime.m3 import M3Runner

    return {dtype: M3Runner(str(m3_dir), device="cpu", dtype=dtype)
            for dtype in ("float32", "bfloat16")}


def _embed(runner, texts):
    ids = runner.tokenize(texts, runner.max_length, True)
    return runner.run_batch([EncodeItem(seq, ALL) for seq in ids])


def _cos(a, b) -> float:
    """The smallest row-wise cosine of two vectors or two matrices of row vectors."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1)
                                     * np.linalg.norm(b, axis=-1))).min())


def sparse_report(ours, ref) -> tuple[float, set, set]:
    """(max |diff| / the text's largest weight, tokens over the threshold in each)."""
    a = dict(zip(ours.indices.tolist(), ours.values.tolist(), strict=True))
    b = dict(zip(ref.indices.tolist(), ref.values.tolist(), strict=True))
    top = max(b.values(), default=1.0)
    worst = max((abs(a.get(k, 0.0) - b.get(k, 0.0)) / top for k in a.keys() | b.keys()),
                default=0.0)
    return (worst, {k for k, v in a.items() if v >= SPARSE_THRESHOLD * top},
            {k for k, v in b.items() if v >= SPARSE_THRESHOLD * top})


def test_bfloat16_m3_stays_close_to_float32(m3_runners):
    f32, bf16 = m3_runners["float32"], m3_runners["bfloat16"]
    assert f32.precision.dtype == "float32" and bf16.precision.dtype == "bfloat16"
    ref, ours = _embed(f32, TEXTS), _embed(bf16, TEXTS)
    dense = min(_cos(o.dense, r.dense) for o, r in zip(ours, ref, strict=True))
    colbert = min(_cos(o.colbert, r.colbert) for o, r in zip(ours, ref, strict=True))
    sparse = 0.0
    for o, r in zip(ours, ref, strict=True):
        worst, ours_top, ref_top = sparse_report(o.sparse, r.sparse)
        sparse = max(sparse, worst)
        # every token that matters in float32 is there in bf16 (and nothing big appears)
        assert ref_top <= set(o.sparse.indices.tolist())
        assert ours_top <= set(r.sparse.indices.tolist())
    print(f"\nbf16 vs fp32 (tiny M3): min cosine dense {dense:.6f}, ColBERT {colbert:.6f}; "
          f"sparse max |diff|/max weight {sparse:.5f}")
    assert dense >= COSINE and colbert >= COSINE
    assert sparse <= SPARSE_REL_ERROR
    # the heads compute in float32: outputs are float32 whatever the encoder ran in
    assert ours[0].dense.dtype == np.float32 and ours[0].colbert.dtype == np.float32


def test_float32_runner_is_untouched_by_the_dtype_machinery(m3_runners, flag_m3):
    out = _embed(m3_runners["float32"], TEXTS[:3])
    ref = flag_m3.encode(TEXTS[:3], batch_size=4, return_dense=True)
    np.testing.assert_allclose(np.stack([e.dense for e in out]), ref["dense_vecs"], atol=1e-5,
                               rtol=0)


def test_bfloat16_rerank_keeps_the_order(reranker_dir):
    from predictor.runtime.cross_encoder import CrossEncoderRunner

    scores = {}
    for dtype in ("float32", "bfloat16"):
        runner = CrossEncoderRunner(str(reranker_dir), device="cpu", dtype=dtype)
        assert runner.precision.dtype == dtype
        pairs = runner.tokenize_pairs([q for q in QUERIES for _ in DOCS], DOCS * len(QUERIES))
        scores[dtype] = np.array(runner.run_batch(
            [ScoreItem(ids[:runner.max_length]) for ids, _, _ in pairs]))
    diff = float(np.abs(scores["bfloat16"] - scores["float32"]).max())
    print(f"\nbf16 vs fp32 (tiny reranker): max |logit diff| {diff:.5f}")
    # Every two documents that float32 tells apart by more than bf16's own error keep their
    # order (the random reranker's logits lie within 3e-4 of each other: closer pairs are
    # ties, which any rounding may flip).
    n, kept = len(DOCS), 0
    for q in range(len(QUERIES)):
        f32, bf16 = scores["float32"][q * n:(q + 1) * n], scores["bfloat16"][q * n:(q + 1) * n]
        for i in range(n):
            for j in range(n):
                if f32[i] - f32[j] > 2 * diff:
                    assert bf16[i] > bf16[j], (q, i, j, f32[i], f32[j], bf16[i], bf16[j])
                    kept += 1
    assert kept > n, "enough pairs are told apart for the order to mean something"
    assert diff <= RERANK_ABS


# -- as a user runs it ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def bf16_server(model_dirs, tmp_path_factory):
    m3, reranker = model_dirs
    log = tmp_path_factory.mktemp("bf16") / "server.log"
    srv = start_server(["--embedder", str(m3), "--reranker", str(reranker), "--dtype",
                        "bfloat16"], log, ready_models=("bge-m3", "bge-reranker"))
    yield srv
    stop_server(srv)


def test_served_bfloat16_says_so_and_stays_close(bf16_server, m3_runners):
    import httpx

    with httpx.Client(base_url=bf16_server.url, timeout=120) as client:
        stats = client.get("/stats").json()
        answer = client.post("/v1/embeddings", json={"input": TEXTS, "model": "bge-m3"})
        ranked = client.post("/v1/rerank", json={"query": QUERIES[0], "documents": DOCS})
    assert answer.status_code == 200, answer.text
    assert ranked.status_code == 200, ranked.text
    for name in ("bge-m3", "bge-reranker"):
        config = _find_config(stats, name)
        assert config["dtype"] == "bfloat16" and config["dtype_reason"] == "requested"
    assert "dtype=bfloat16: requested" in bf16_server.log()
    ref = _embed(m3_runners["float32"], TEXTS)
    served = [row["embedding"] for row in answer.json()["data"]]
    assert min(_cos(s, r.dense) for s, r in zip(served, ref, strict=True)) >= COSINE


def _find_config(stats: dict, name: str) -> dict:
    models = stats.get("models", stats)
    return models[name]["config"]


def test_auto_in_process_reports_what_this_cpu_gets(m3_dir):
    from predictor.api.kserve.embedder import EmbedderModel
    from predictor.runtime.host import TorchHost
    from predictor.settings import Settings

    settings = Settings(embedder=str(m3_dir), reranker="none", device="cpu", dtype="auto")
    model = EmbedderModel("bge-m3", str(m3_dir), settings, host=TorchHost())
    model.load()
    try:
        config = model.stats()["config"]
        expected = resolve_precision("auto", "cpu")
        assert (config["dtype"], config["dtype_reason"]) == (expected.dtype, expected.reason)
        assert config["dtype"] == ("bfloat16" if device_mod.cpu_native_bf16() else "float32")
    finally:
        model.stop()


# -- int8 (ONNX Runtime), on request -------------------------------------------------------

INT8_COSINE = 0.99  # documented floor; the measured figures are in docs/benchmarks.md


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory, monkeypatch_module):
    path = tmp_path_factory.mktemp("int8-cache")
    monkeypatch_module.setenv("INT8_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_int8_m3_figures_and_its_cached_graph(m3_dir, m3_runners, int8_cache):
    from predictor.runtime.m3 import M3Runner

    runner = M3Runner(str(m3_dir), device="cpu", dtype="int8")
    assert runner.precision.dtype == "int8"
    graphs = list(int8_cache.glob("*.int8.onnx"))
    assert len(graphs) == 1, "exported and quantised once, into the cache"
    stamp = graphs[0].stat().st_mtime_ns
    ref, ours = _embed(m3_runners["float32"], TEXTS), _embed(runner, TEXTS)
    dense = min(_cos(o.dense, r.dense) for o, r in zip(ours, ref, strict=True))
    colbert = min(_cos(o.colbert, r.colbert) for o, r in zip(ours, ref, strict=True))
    sparse = max(sparse_report(o.sparse, r.sparse)[0] for o, r in zip(ours, ref, strict=True))
    print(f"\nint8 vs fp32 (tiny M3): min cosine dense {dense:.5f}, ColBERT {colbert:.5f}; "
          f"sparse max |diff|/max weight {sparse:.4f}")
    assert dense >= INT8_COSINE and colbert >= INT8_COSINE
    # a second load reuses the graph instead of exporting again
    again = M3Runner(str(m3_dir), device="cpu", dtype="int8")
    assert again.model.model.graph == graphs[0] and graphs[0].stat().st_mtime_ns == stamp


def test_int8_rerank_figures(reranker_dir, int8_cache):
    from predictor.runtime.cross_encoder import CrossEncoderRunner

    scores = {}
    for dtype in ("float32", "int8"):
        runner = CrossEncoderRunner(str(reranker_dir), device="cpu", dtype=dtype)
        pairs = runner.tokenize_pairs([QUERIES[0]] * len(DOCS), DOCS)
        scores[dtype] = np.array(runner.run_batch(
            [ScoreItem(ids[:runner.max_length]) for ids, _, _ in pairs]))
    diff = float(np.abs(scores["int8"] - scores["float32"]).max())
    print(f"\nint8 vs fp32 (tiny reranker): max |logit diff| {diff:.5f}")
    assert np.isfinite(scores["int8"]).all() and diff <= RERANK_ABS
