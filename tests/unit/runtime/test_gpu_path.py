"""The GPU serving path's pieces, checked on CPU against the paths they stand in for.

- ``flag_free``: BGE-M3 / cross-encoder loading without FlagEmbedding (the offline GPU kit)
  gives FlagEmbedding's outputs on the same checkpoint.
- ``packed``: a packed (unpadded) batch with per-sequence positions and variable-length
  attention gives the padded path's outputs (dense, sparse, ColBERT, rerank logits).
- ``packed_sparse``: the whole-batch sparse reduction on the device gives today's per-row
  numpy weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from predictor.core.types import EncodeItem, Output, ScoreItem
from predictor.runtime import flag_free, packed, packed_sparse

TEXTS = ["a short one", "a somewhat longer text about embeddings and rerankers " * 3, "x"]


@pytest.fixture(scope="module")
def free_m3(m3_dir):
    return flag_free.BGEM3FlagModel(str(m3_dir), use_fp16=False)


def _padded(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@torch.inference_mode()
def test_flag_free_m3_matches_flagembedding(free_m3, flag_m3) -> None:
    batch = _padded(flag_m3.tokenizer, TEXTS)
    want = flag_m3.model.float().eval()(batch, return_dense=True, return_sparse=True,
                                        return_colbert_vecs=True)
    got = free_m3.model.float().eval()(batch, return_dense=True, return_sparse=True,
                                       return_colbert_vecs=True)
    assert free_m3.tokenizer(TEXTS)["input_ids"] == flag_m3.tokenizer(TEXTS)["input_ids"]
    for key in ("dense_vecs", "sparse_vecs", "colbert_vecs"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-6, rtol=1e-5)


@torch.inference_mode()
def test_flag_free_reranker_matches_flagembedding(reranker_dir, flag_reranker) -> None:
    free = flag_free.FlagReranker(str(reranker_dir), use_fp16=False)
    pairs = [["what is it", t] for t in TEXTS]
    want = flag_reranker.compute_score(pairs)
    enc = free.tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True,
                         return_tensors="pt")
    got = free.model.eval()(**enc).logits.view(-1).float().numpy()
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)


def test_flag_free_refuses_a_directory_without_m3_heads(reranker_dir) -> None:
    with pytest.raises(FileNotFoundError, match="colbert_linear.pt"):
        flag_free.BGEM3FlagModel(str(reranker_dir), use_fp16=False)


ALL = frozenset(Output)


def _float32(cls, path, **kwargs):
    """A runner in float32 where it takes a dtype (CPU's ``auto`` may pick bfloat16): the
    packed and padded paths are compared at 1e-5."""
    import inspect

    extra = {"dtype": "float32"} if "dtype" in inspect.signature(cls).parameters else {}
    return cls(str(path), device="cpu", **extra, **kwargs)


@pytest.fixture(scope="module")
def m3_runner(m3_dir):
    from predictor.runtime.m3 import M3Runner

    return _float32(M3Runner, m3_dir)


@pytest.fixture(scope="module")
def rr_runner(reranker_dir):
    from predictor.runtime.cross_encoder import CrossEncoderRunner

    return _float32(CrossEncoderRunner, reranker_dir)


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(3)
    words = "the a embedding vector sparse dense colbert model token query passage " \
            "ranking retrieval batch pack 12 34 ab xyz".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 60)))) for _ in range(n)]


def test_pack_lays_sequences_end_to_end_with_xlmr_positions() -> None:
    p = packed.pack([[5, 6, 7], [8], [9, 10]], position_offset=2, device="cpu")
    assert p.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert p.position_ids.tolist() == [[2, 3, 4, 2, 2, 3]]  # padding_idx 1: positions from 2
    assert p.cu_seqlens.tolist() == [0, 3, 4, 6] and p.cu_seqlens.dtype == torch.int32
    assert p.max_len == 3
    assert packed.after_first_rows(p.lengths).tolist() == [1, 2, 5], "ColBERT: all but firsts"
    with pytest.raises(ValueError):
        packed.pack([[1], []], position_offset=2, device="cpu")


def test_packed_positions_are_those_of_a_padded_row(m3_runner) -> None:
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings

    config = m3_runner.model.model.config
    ids = m3_runner.tokenize(["one two three", "four"], 512, True)
    offset = packed.position_offset(config)
    p = packed.pack(ids, offset, "cpu")
    padded = torch.full((2, len(ids[0])), config.pad_token_id)
    for row, seq in enumerate(ids):
        padded[row, : len(seq)] = torch.tensor(seq)
    want = XLMRobertaEmbeddings.create_position_ids_from_input_ids(padded, config.pad_token_id)
    got = p.position_ids[0].split([len(s) for s in ids])
    for row, seq in enumerate(ids):
        assert got[row].tolist() == want[row, : len(seq)].tolist()


@torch.inference_mode()
def test_packed_m3_matches_the_padded_path(m3_runner) -> None:
    texts = _texts(9)
    ids = m3_runner.tokenize(texts, 512, True)
    items = [EncodeItem(seq, ALL) for seq in ids]
    want = m3_runner.run_batch(items)  # padded, SDPA with a mask (today's path)
    fast = packed.PackedM3(m3_runner)
    got = fast.run_batch(items)
    again = m3_runner.run_batch(items)  # the padded path is unchanged by enabling packing
    assert len({len(s) for s in ids}) > 3  # mixed lengths: padding would matter
    for g, w, a in zip(got, want, again, strict=True):
        assert g.num_tokens == w.num_tokens
        np.testing.assert_allclose(a.dense, w.dense, atol=1e-6)
        np.testing.assert_allclose(g.dense, w.dense, atol=1e-5)
        assert g.colbert.shape == w.colbert.shape
        np.testing.assert_allclose(g.colbert, w.colbert, atol=1e-5)
        np.testing.assert_array_equal(g.sparse.indices, w.sparse.indices)
        np.testing.assert_allclose(g.sparse.values, w.sparse.values, atol=1e-5)
    dense_only = fast.run_batch([EncodeItem(ids[0])])
    assert dense_only[0].sparse is None and dense_only[0].colbert is None
    np.testing.assert_allclose(dense_only[0].dense, want[0].dense, atol=1e-5)


@torch.inference_mode()
def test_packed_reranker_matches_the_padded_path(rr_runner) -> None:
    assert packed.PackedReranker.supports(rr_runner)
    docs = _texts(7)
    pairs = rr_runner.tokenize_pairs(["which one is it"] * len(docs), docs)
    items = [ScoreItem(ids) for ids, _, _ in pairs]
    want = rr_runner.run_batch(items)
    got = packed.PackedReranker(rr_runner).run_batch(items)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_varlen_attention_keeps_sequences_apart() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(7, 2, 4) for _ in range(3))
    cu = torch.tensor([0, 3, 7], dtype=torch.int32)
    out = packed.varlen_attention(q, k, v, cu, 4, None)
    for a, b in ((0, 3), (3, 7)):
        want = torch.nn.functional.scaled_dot_product_attention(
            *(t[a:b].transpose(0, 1) for t in (q, k, v))).transpose(0, 1)
        torch.testing.assert_close(out[a:b], want)


def test_packed_sparse_matches_the_per_row_path(m3_runner) -> None:
    rng = np.random.default_rng(7)
    unused = m3_runner.unused_token_ids
    lengths = [1, 5, 40, 17, 3]
    seqs = []
    for n in lengths:  # repeated ids, specials, zero and negative weights all present
        seq = rng.integers(0, 60, size=n)
        seq[rng.random(n) < 0.2] = rng.choice(unused)
        seqs.append(seq)
    weights = [np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n)).astype(np.float32)
               for n in lengths]
    got = _reduce(np.concatenate(seqs), np.concatenate(weights), lengths, unused)
    assert len(got) == len(lengths)
    for g, seq, w in zip(got, seqs, weights, strict=True):
        want = m3_runner._lexical_weights(seq, w)
        np.testing.assert_array_equal(g.indices, want.indices)
        np.testing.assert_array_equal(g.values, want.values)
        assert g.indices.dtype == np.int64 and g.values.dtype == np.float32
    nothing = _reduce(np.array([unused[0], 7]), np.array([0.5, -1.0], dtype=np.float32),
                      [1, 1], unused)
    assert [len(v.indices) for v in nothing] == [0, 0], "a special token, a negative weight"


def _reduce(ids, weights, lengths, unused):
    """``packed_sparse`` as the packed runner uses it: reduced (here on CPU tensors), copied,
    split into rows."""
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32)
    reduced = packed_sparse.reduce_on_device(torch.tensor(ids), torch.tensor(weights), cu,
                                             torch.tensor(unused))
    return packed_sparse.split_rows(reduced.keys.numpy(), reduced.firsts.numpy(),
                                    reduced.maxima.numpy(), len(lengths))


def test_packing_is_used_on_cuda_only(m3_runner, rr_runner, monkeypatch) -> None:
    assert m3_runner.packed is None and rr_runner.packed is None  # CPU: today's padded path
    assert packed.enabled("cuda") and packed.enabled("cuda:1") and not packed.enabled("cpu")
    monkeypatch.setenv("BGE_PREDICTOR_PACKED", "0")
    assert not packed.enabled("cuda")
    monkeypatch.setenv("BGE_PREDICTOR_PACKED", "always")
    assert packed.enabled("cpu")


class _FakeCudaRunner:
    """Records the batches a warm-up runs; ``fail_at`` rows raise CUDA's OOM."""

    device = "cuda:0"
    max_length = 300
    outputs = frozenset(Output)

    def __init__(self, tokenizer, fail_at: int | None = None):
        self.tokenizer, self.fail_at, self.calls = tokenizer, fail_at, []

    def run_batch(self, items):
        if len(items) == self.fail_at:
            raise torch.cuda.OutOfMemoryError("fake")
        self.calls.append(items)
        return [None] * len(items)


def test_warm_up_runs_the_batch_shapes_on_cuda_only(m3_runner, monkeypatch) -> None:
    from predictor.runtime import warmup

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    fake = _FakeCudaRunner(m3_runner.tokenizer)
    assert warmup.warm_up(fake) == [(1, 16), (1, 300), (8, 300), (32, 300)]
    assert [len(b) for b in fake.calls] == [1, 1, 8, 32]
    item = fake.calls[-1][0]
    assert isinstance(item, EncodeItem) and item.outputs == ALL
    assert item.input_ids[0] not in m3_runner.tokenizer.all_special_ids
    stopped = _FakeCudaRunner(m3_runner.tokenizer, fail_at=8)
    assert warmup.warm_up(stopped) == [(1, 16), (1, 300)]  # OOM ends it, no error
    assert warmup.warm_up(m3_runner) == []  # CPU: nothing


def test_packed_path_over_http_gives_the_padded_answers(model_dirs, client, tmp_path) -> None:
    """A server forced onto the packed path (as on CUDA) answers as the default one."""
    import httpx

    from server_process import start_server, stop_server

    m3, reranker = model_dirs
    srv = start_server(["--embedder", str(m3), "--reranker", str(reranker)],
                       tmp_path / "packed.log", env={"BGE_PREDICTOR_PACKED": "always"},
                       ready_models=("bge-m3", "bge-reranker"))
    try:
        texts = _texts(6)
        body = {"model": "bge-m3", "input": texts, "return_colbert": True}
        rr = {"model": "bge-reranker", "query": "which one", "documents": texts,
              "raw_scores": True}
        with httpx.Client(base_url=srv.url, timeout=60) as packed_client:
            got = packed_client.post("/v1/hybrid-embeddings", json=body)
            got_rr = packed_client.post("/v1/rerank", json=rr)
            stats = packed_client.get("/stats").json()
        want = client.post("/v1/hybrid-embeddings", json=body)
        want_rr = client.post("/v1/rerank", json=rr)
    finally:
        stop_server(srv)
    for name in ("bge-m3", "bge-reranker"):  # packed, and fed through the pipeline
        config = stats["models"][name]["config"]
        assert (config["batch_cost"], config["pipeline_depth"]) == ("tokens", 2), config
    assert got.status_code == want.status_code == 200, got.text
    for g, w in zip(got.json()["data"], want.json()["data"], strict=True):
        np.testing.assert_allclose(g["dense"], w["dense"], atol=1e-5)
        np.testing.assert_allclose(g["colbert"], w["colbert"], atol=1e-5)
        assert g["sparse"]["indices"] == w["sparse"]["indices"]
        np.testing.assert_allclose(g["sparse"]["values"], w["sparse"]["values"], atol=1e-5)
    assert got.json()["usage"] == want.json()["usage"]
    assert got_rr.status_code == want_rr.status_code == 200, got_rr.text
    g_scores = {r["index"]: r["relevance_score"] for r in got_rr.json()["results"]}
    w_scores = {r["index"]: r["relevance_score"] for r in want_rr.json()["results"]}
    assert g_scores.keys() == w_scores.keys()
    np.testing.assert_allclose([g_scores[i] for i in sorted(g_scores)],
                               [w_scores[i] for i in sorted(w_scores)], atol=1e-5)


def test_packing_that_cannot_be_enabled_falls_back_to_padded(m3_runner, monkeypatch) -> None:
    def refuse(encoder):
        raise ValueError("this transformers has no attention interface")

    monkeypatch.setattr(packed, "enable", refuse)
    monkeypatch.setenv("BGE_PREDICTOR_PACKED", "always")
    assert packed.for_m3(m3_runner) is None


def test_torch_compile_of_the_packed_encoder_matches_and_compiles_once(
        m3_dir, reranker_dir, m3_runner, rr_runner, monkeypatch) -> None:
    """``--torch_compile``: the packed path's encoder compiled with dynamic shapes gives the
    eager answers, and batches of other lengths and sizes reuse the one compilation."""
    import torch._dynamo

    from predictor.runtime.cross_encoder import CrossEncoderRunner
    from predictor.runtime.m3 import M3Runner

    monkeypatch.setenv("BGE_PREDICTOR_PACKED", "always")
    eager = m3_runner  # float32, padded
    fast = _float32(M3Runner, m3_dir, compile=True)
    assert fast.packed.encoder is not fast.packed.flag.model
    ids = fast.tokenize(_texts(12), 512, True)
    batches = [ids[:5], ids[5:7], ids[7:]]  # other totals and counts of sequences
    first = True
    for batch in batches:
        items = [EncodeItem(seq, ALL) for seq in batch]
        with torch._dynamo.config.patch(error_on_recompile=not first):
            got = fast.run_batch(items)
        first = False
        for g, w in zip(got, eager.run_batch(items), strict=True):
            np.testing.assert_allclose(g.dense, w.dense, atol=1e-5)
            np.testing.assert_allclose(g.colbert, w.colbert, atol=1e-5)
            np.testing.assert_array_equal(g.sparse.indices, w.sparse.indices)

    rr_eager = rr_runner
    rr_fast = _float32(CrossEncoderRunner, reranker_dir, compile=True)
    pairs = rr_fast.tokenize_pairs(["which one"] * 6, _texts(6))
    items = [ScoreItem(seq) for seq, _, _ in pairs]
    for batch in (items[:4], items[4:]):
        np.testing.assert_allclose(rr_fast.run_batch(batch), rr_eager.run_batch(batch),
                                   atol=1e-5)


def test_a_cuda_forward_is_timed_by_its_events_and_read_after_them(monkeypatch) -> None:
    """On CUDA the forward stage records an event before and after its kernels and returns at
    once; finish waits on the second and takes the device's time between them."""
    from types import SimpleNamespace

    log = []

    class FakeEvent:
        def __init__(self, enable_timing: bool = False):
            assert enable_timing
            self.name = f"event{sum(entry[0] == 'new' for entry in log)}"
            log.append(("new", self.name))

        def record(self):
            log.append(("record", self.name))

        def synchronize(self):
            log.append(("synchronize", self.name))

        def elapsed_time(self, end):
            log.append(("elapsed", self.name, end.name))
            return 250.0  # milliseconds, as CUDA events give it

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    stages = packed.PackedStages(SimpleNamespace(device="cuda:0", observe_stage=None))
    started, start_event = stages._launch()
    launched = stages._launched([], None, {}, started, start_event)
    assert ("synchronize", "event1") not in log, "the forward stage does not wait"
    assert launched.wait() == 0.25
    assert log == [("new", "event0"), ("record", "event0"), ("new", "event1"),
                   ("record", "event1"), ("synchronize", "event1"),
                   ("elapsed", "event0", "event1")]
    cpu = packed.PackedStages(SimpleNamespace(device="cpu", observe_stage=None))
    started, no_event = cpu._launch()
    assert no_event is None and cpu._launched([], None, {}, started, None).wait() >= 0
