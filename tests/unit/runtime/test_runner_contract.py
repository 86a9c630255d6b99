"""Every runner satisfies the runner contract (predictor/core/ports.py) by itself.

Each family's runner, built from the small random models, is an instance of its
``runtime_checkable`` Protocol, and the facts it declares hold: ``family``, ``max_length``,
``outputs``, ``retryable_errors``, ``observe_stage`` (None until its owner sets it, then told of
each batch's stages). Built through its constructor, not the loader, so nothing outside the
runner can have set them. ``SplitByLength`` stands in for the runner it wraps.
"""

from __future__ import annotations

import family_fixtures as ff
import numpy as np
import pytest
import torch

from predictor.core.ports import BatchRunner, EmbedderRunner, LoadedRunner, RerankerRunner
from predictor.core.types import EncodeItem, Output, ScoreItem
from predictor.models_config import ModelSpec
from predictor.runtime.cross_encoder import CrossEncoderRunner
from predictor.runtime.dense import DenseRunner
from predictor.runtime.detection import detect_family
from predictor.runtime.family_defaults import dense_config
from predictor.runtime.loaders import load_embedder_runner, load_reranker_runner
from predictor.runtime.m3 import M3Runner
from predictor.runtime.sub_batches import SplitByLength
from predictor.settings import Settings

CPU = Settings(device="cpu", use_fp16=False)
TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog. " * 3, "Why?"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return ff.zoo(tmp_path_factory)


def _m3(m3_dir, **kwargs):
    return M3Runner(str(m3_dir), device="cpu", use_fp16=False, dtype="float32", **kwargs)


def _dense(path, **kwargs):
    config = dense_config(str(path), detect_family(str(path)))
    return DenseRunner(str(path), config, device="cpu", use_fp16=False, dtype="float32",
                       **kwargs)


def _cross(path, **kwargs):
    return CrossEncoderRunner(str(path), device="cpu", use_fp16=False, dtype="float32",
                              **kwargs)


def _embedders(m3_dir, zoo):
    """(runner, family, max_length, outputs) of every embedder family's fixture."""
    everything = frozenset(Output)
    dense = frozenset({Output.DENSE})
    return [(_m3(m3_dir), "bge-m3", 8192, everything),
            (_dense(zoo["bge"]), "bge", 512, dense),
            (_dense(zoo["e5"]), "e5", 512, dense),
            (_dense(zoo["gte"]), "gte", 512, dense),
            (_dense(zoo["st"]), "sentence-transformers", 24, dense)]  # its max_seq_length


def _embed_items(runner):
    ids = runner.tokenize(TEXTS, runner.max_length, True)
    return [EncodeItem(row, runner.outputs) for row in ids]


def _score_items(runner):
    return [ScoreItem(ids) for ids, _, _ in runner.tokenize_pairs(["a query"] * 2,
                                                                  ["first doc", "second"])]


def _stages(runner, items):
    """The stage names the runner reports for one batch once its owner set the hook."""
    seen = []
    runner.observe_stage = lambda stage, seconds: seen.append((stage, seconds >= 0))
    try:
        runner.run_batch(items)
    finally:
        runner.observe_stage = None
    return seen


def test_embedders_satisfy_the_embedder_contract(m3_dir, zoo):
    for runner, family, max_length, outputs in _embedders(m3_dir, zoo):
        assert isinstance(runner, EmbedderRunner), family
        assert isinstance(runner, LoadedRunner) and isinstance(runner, BatchRunner)
        assert (runner.family, runner.max_length, runner.outputs) == (family, max_length,
                                                                      outputs)
        assert runner.device == "cpu" and runner.half is False
        assert runner.precision.dtype == "float32"
        assert runner.retryable_errors == (torch.cuda.OutOfMemoryError,)
        assert runner.observe_stage is None
        assert runner.dense_dim > 0 and runner.vocab_size == len(runner.tokenizer)
        if Output.COLBERT in outputs:
            assert runner.colbert_dim > 0
        assert runner.describe() == ({} if family == "bge-m3" else runner.config.describe())
        items = _embed_items(runner)
        assert all(len(item.input_ids) <= runner.max_length for item in items)
        embeddings = runner.run_batch(items)
        assert [e.num_tokens for e in embeddings] == [len(i.input_ids) for i in items]
        assert all(e.dense.shape == (runner.dense_dim,) for e in embeddings)
        stages = ["forward", "postprocess"] if family == "bge-m3" else ["forward"]
        assert _stages(runner, items) == [(stage, True) for stage in stages]
        strings = runner.token_strings(np.asarray(items[0].input_ids[1:3]))
        assert strings == [runner.tokenizer.decode([i]) for i in items[0].input_ids[1:3]]
        runner.forward_shape(2, 8)  # the placeholder forward the CPU splitter measures


def test_rerankers_satisfy_the_reranker_contract(reranker_dir, zoo):
    # XLM-R (bge-reranker-v2-m3's shape; position offset) and BERT (segment embeddings)
    for runner, max_length in ((_cross(reranker_dir), 8192), (_cross(zoo["cross"]), 512)):
        assert isinstance(runner, RerankerRunner)
        assert isinstance(runner, LoadedRunner) and isinstance(runner, BatchRunner)
        assert not isinstance(runner, EmbedderRunner)  # no outputs, no tokenize
        assert (runner.family, runner.max_length) == ("cross-encoder", max_length)
        assert runner.device == "cpu" and runner.half is False
        assert runner.retryable_errors == (torch.cuda.OutOfMemoryError,)
        assert runner.observe_stage is None
        items = _score_items(runner)
        scores = runner.run_batch(items)
        assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
        assert _stages(runner, items) == [("forward", True)]
        runner.forward_shape(2, 8)


def test_the_spec_max_length_is_the_runners_own(m3_dir, reranker_dir, zoo):
    """A spec's max_length is given to the constructor; over the model's limit it is refused."""
    assert _m3(m3_dir, max_length=64).max_length == 64
    assert _dense(zoo["st"], max_length=16).max_length == 16
    assert _cross(reranker_dir, max_length=128).max_length == 128
    with pytest.raises(ValueError, match="over the model's own limit of 24"):
        _dense(zoo["st"], max_length=25)  # the model's max_seq_length is its limit
    with pytest.raises(ValueError, match="over the model's own limit of 8192"):
        _cross(reranker_dir, max_length=8193)


def test_loaders_return_the_runner_as_built(m3_dir, reranker_dir, zoo):
    spec = ModelSpec(path="x", max_length=32)
    m3 = load_embedder_runner(str(m3_dir), CPU, spec)
    gte = load_embedder_runner(str(zoo["gte"]), CPU, spec)
    cross = load_reranker_runner(str(reranker_dir), CPU, spec)
    assert isinstance(m3, EmbedderRunner) and isinstance(gte, EmbedderRunner)
    assert isinstance(cross, RerankerRunner)
    assert [(r.family, r.max_length) for r in (m3, gte, cross)] == [
        ("bge-m3", 32), ("gte", 32), ("cross-encoder", 32)]


def _values(results):
    """Scores, or dense vectors, as one array."""
    return np.asarray([r if isinstance(r, float) else r.dense for r in results])


def test_split_by_length_stands_in_for_its_runner(m3_dir, reranker_dir):
    for runner, items_of in ((_m3(m3_dir), _embed_items), (_cross(reranker_dir), _score_items)):
        split = SplitByLength(runner)
        assert isinstance(split, LoadedRunner) and isinstance(split, BatchRunner)
        facts = ("device", "retryable_errors", "family", "max_length", "precision", "half")
        assert all(getattr(split, fact) == getattr(runner, fact) for fact in facts)
        items = items_of(runner)
        split.call_cost_tokens = 0.0  # a call costs nothing: split wherever lengths differ
        np.testing.assert_allclose(_values(split.run_batch(items)),
                                   _values(runner.run_batch(items)), atol=1e-5)

        def observe(stage, seconds):
            return None

        split.observe_stage = observe  # the owner's hook reaches the wrapped runner
        assert runner.observe_stage is observe and split.observe_stage is observe
