"""Runners that satisfy ``predictor.core.ports`` without a model or torch: the services
(``core.embedder.Embedder``, ``core.reranker.Reranker``) and the KServe wrappers are tested
with these and the real engine, no server.

Tokens are words: a word's id is stable (``word_id``); the embedder adds CLS (1) and SEP (2)
around a text and a QUERY mark (3) for ``input_type="query"``; the cross-encoder tokenizer joins
a pair as ``[0] q [2, 2] d [2]``. A gate (``threading.Event``) can hold the forward pass.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictor.core.types import Embedding, EncodeItem, Output, ScoreItem, SparseVector

CLS, SEP, QUERY = 1, 2, 3


def word_id(word: str) -> int:
    return 10 + zlib.crc32(word.encode()) % 990


@dataclass
class FakePrecision:
    dtype: str = "float32"
    reason: str = "fake"
    half: bool = False

    def describe(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "dtype_reason": self.reason}


class FakeSpecialTokens:
    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 4 if pair else 2


@dataclass
class _FakeLoadedRunner:
    """What every runner declares (core/ports.LoadedRunner)."""

    max_length: int = 32
    family: str = "fake"
    device: str = "cpu"
    half: bool = False
    precision: FakePrecision = field(default_factory=FakePrecision)
    retryable_errors: tuple[type[BaseException], ...] = ()
    observe_stage: Any = None


@dataclass
class FakeEmbedderRunner(_FakeLoadedRunner):
    """Dense = [number of tokens, sum of ids, 1, 0]; sparse = weight 1/position per word id;
    ColBERT = one row per token."""

    outputs: frozenset[Output] = frozenset(Output)
    dense_dim: int = 4
    colbert_dim: int = 4
    vocab_size: int = 1000
    tokenizer: Any = field(default_factory=FakeSpecialTokens)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)  # a forward began
    batches: list[list[EncodeItem]] = field(default_factory=list)
    tokenized: list[tuple[list[str], str | None]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"pooling": "fake"}

    def tokenize(self, texts: list[str], max_length: int, truncate: bool,
                 input_type: str | None = None) -> list[list[int]]:
        self.tokenized.append((list(texts), input_type))
        prefix = [QUERY] if input_type == "query" else []
        out = []
        for text in texts:
            ids = [CLS, *prefix, *(word_id(w) for w in text.split()), SEP]
            out.append(ids[:max_length - 1] + [SEP] if truncate and len(ids) > max_length
                       else ids)
        return out

    def token_strings(self, ids: np.ndarray) -> list[str]:
        return [f"tok{int(i)}" for i in ids]

    def forward_shape(self, rows: int, width: int) -> None:
        pass

    def run_batch(self, items: Sequence[EncodeItem]) -> list[Embedding]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(items))
        out = []
        for item in items:
            ids = np.asarray(item.input_ids, dtype=np.int64)
            emb = Embedding(num_tokens=len(ids))
            if Output.DENSE in item.outputs:
                emb.dense = np.array([len(ids), ids.sum(), 1, 0], dtype=np.float32)
            if Output.SPARSE in item.outputs:
                words = ids[ids >= 10]
                indices = np.unique(words)
                emb.sparse = SparseVector(indices, np.full(len(indices), 0.5, np.float32))
            if Output.COLBERT in item.outputs:
                emb.colbert = np.stack([np.ones(4, np.float32) * (i % 7) for i in ids[1:]])
            out.append(emb)
        return out


class _PairBatch(dict):
    def __init__(self, ids: list[list[int]], sequences: list[list[int | None]]):
        super().__init__(input_ids=ids)
        self._sequences = sequences

    def sequence_ids(self, i: int) -> list[int | None]:
        return self._sequences[i]


class FakePairTokenizer:
    """Hugging Face's call shapes that ``PairTemplate`` uses, on words."""

    def __call__(self, texts: list[str], pairs: list[str] | None = None, *,
                 truncation: bool = False, max_length: int | None = None,
                 add_special_tokens: bool = True, **_: Any) -> Any:
        pieces = [[word_id(w) for w in text.split()] for text in texts]
        if pairs is None:
            if truncation and max_length is not None:
                pieces = [p[:max_length] for p in pieces]
            return {"input_ids": pieces}
        ids, sequences = [], []
        for q, d in zip(pieces, ([word_id(w) for w in t.split()] for t in pairs), strict=True):
            ids.append([0, *q, 2, 2, *d, 2])
            sequences.append([None, *[0] * len(q), None, None, *[1] * len(d), None])
        return _PairBatch(ids, sequences)


RELEVANT = "needle"


@dataclass
class FakeRerankerRunner(_FakeLoadedRunner):
    """The logit of a pair: how often the word ``needle`` occurs in it."""

    family: str = "cross-encoder"
    tokenizer: Any = field(default_factory=FakePairTokenizer)
    batches: list[list[ScoreItem]] = field(default_factory=list)

    def forward_shape(self, rows: int, width: int) -> None:
        pass

    def run_batch(self, items: Sequence[ScoreItem]) -> list[float]:
        self.batches.append(list(items))
        return [float(item.input_ids.count(word_id(RELEVANT))) for item in items]
