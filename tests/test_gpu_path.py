"""The GPU serving path's pieces, checked on CPU against the paths they stand in for.

- ``flag_free``: BGE-M3 / cross-encoder loading without FlagEmbedding (the offline GPU kit)
  gives FlagEmbedding's outputs on the same checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from predictor.runtime import flag_free

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
