"""Types shared by the engine, the runners and the protocol adapters (numpy only, no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class Output(StrEnum):
    """What an embedder can compute from one forward pass."""

    DENSE = "dense"
    SPARSE = "sparse"
    COLBERT = "colbert"


@dataclass(frozen=True, slots=True)
class SparseVector:
    """Lexical weights of one text: ``indices`` ascending and unique, ``values`` float32 > 0."""

    indices: np.ndarray
    values: np.ndarray
    tokens: list[str] | None = None


@dataclass(slots=True)
class Embedding:
    """Everything computed for one text. Fields not asked for stay None."""

    num_tokens: int
    dense: np.ndarray | None = None
    sparse: SparseVector | None = None
    colbert: np.ndarray | None = None


@dataclass(slots=True)
class EncodeResult:
    embeddings: list[Embedding]
    prompt_tokens: int
    sparse_mapping: str | None = None  # with sparse output: the mapping used
    sparse_index_space: int | None = None  # ... and the size of its index space


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """What a request wants from the embedder."""

    outputs: frozenset[Output] = frozenset({Output.DENSE})
    max_length: int | None = None
    truncate: bool = True
    sparse_mapping: str | None = None  # None: the server's default
    return_tokens: bool = False
    input_type: str | None = None  # "query" or "passage"; models with prefixes (E5) use it


@dataclass(frozen=True, slots=True)
class EncodeItem:
    """One text's work for the engine: token ids and the outputs wanted for it."""

    input_ids: list[int]
    outputs: frozenset[Output] = field(default_factory=lambda: frozenset({Output.DENSE}))

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True, slots=True)
class ScoreItem:
    """One query-document pair for a cross-encoder, already tokenised as one sequence."""

    input_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)
