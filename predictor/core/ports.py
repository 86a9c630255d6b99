"""The runner contract: what the services and the engine may ask of a loaded model.

``runtime/`` implements these (``M3Runner``, ``DenseRunner``, ``CrossEncoderRunner`` on
``runtime/runner_base.py``, and ``SplitByLength``, which stands in for the runner it wraps);
``core/`` and ``engine/`` see only these Protocols, so neither imports torch. A runner sets every
attribute here itself, when it is built (``runtime/loaders.py`` returns it as it is), except
``observe_stage``: None until the model that owns the runner sets its metrics hook. A new
model family is a new runner that satisfies ``EmbedderRunner`` or ``RerankerRunner``
(docs/architecture.md, "Where things go").

Stages a runner goes through for one batch: tokenise (``tokenize``, on the request's side,
before the engine) → forward (``run_batch``, on the engine's worker thread) → post-process
(inside ``run_batch``: per-item outputs as numpy, in the items' order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from predictor.core.types import Embedding, EncodeItem, Output, ScoreItem

StageObserver = Callable[[str, float], None]
"""Called with a stage name (``forward``, ``postprocess``) and its seconds (metrics.py)."""


class Precision(Protocol):
    """The dtype a model runs in and why (start-up log, ``/stats``)."""

    @property
    def dtype(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def half(self) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class BatchRunner(Protocol):
    """What the engine's worker calls: one forward over a batch, results in the items' order.

    ``retryable_errors``: exceptions (CUDA out-of-memory) after which the engine splits the
    batch in two and retries each half, instead of failing its requests.
    """

    device: str
    retryable_errors: tuple[type[BaseException], ...]

    def run_batch(self, items: Sequence[Any]) -> list[Any]: ...


@runtime_checkable
class LoadedRunner(BatchRunner, Protocol):
    """Facts every loaded model gives the service layer.

    ``max_length``: the longest input in tokens, the model's own limit or the spec's lower
    ``max_length``. ``family``: ``bge-m3``, ``bge``, ``e5``, ... or ``cross-encoder``
    (``runtime/family_names.py``). ``observe_stage``: settable by the runner's owner; the
    runner reports each batch's stages to it when set.
    """

    precision: Precision
    half: bool
    max_length: int
    family: str
    observe_stage: StageObserver | None

    def forward_shape(self, rows: int, width: int) -> None:
        """One forward of ``rows`` padded rows of ``width`` tokens (start-up cost measurement,
        warm-up); no outputs."""


@runtime_checkable
class EmbedderRunner(LoadedRunner, Protocol):
    """A text embedder: dense, and for BGE-M3 sparse and ColBERT, from one forward pass."""

    outputs: frozenset[Output]
    dense_dim: int
    colbert_dim: int  # width of a ColBERT vector; read only when COLBERT is in ``outputs``
    vocab_size: int
    tokenizer: Any  # a Hugging Face tokenizer (self-rerank counts its special tokens)

    def describe(self) -> dict[str, Any]:
        """Facts of the family for ``/v1/models`` (pooling, prefixes...); {} when none."""

    def tokenize(self, texts: list[str], max_length: int, truncate: bool,
                 input_type: str | None = None) -> list[list[int]]:
        """Token ids per text, with the family's prefix for ``input_type`` (query/passage);
        cut at ``max_length`` when ``truncate``, else whole (the caller refuses long ones)."""

    def token_strings(self, ids: np.ndarray) -> list[str]:
        """The tokenizer's string for each id (sparse output keyed by token)."""

    def run_batch(self, items: Sequence[EncodeItem]) -> list[Embedding]: ...


@runtime_checkable
class RerankerRunner(LoadedRunner, Protocol):
    """A cross-encoder: one relevance logit per (query, document) pair."""

    tokenizer: Any  # a Hugging Face tokenizer: the service learns the pair template from it

    def run_batch(self, items: Sequence[ScoreItem]) -> list[float]: ...


class ModelHost(Protocol):
    """What a served model needs of the runtime (``runtime/host.TorchHost``), given to it by the
    composition root (``cli.build_models``), so that neither ``api/`` nor ``core/`` imports
    ``runtime`` or torch."""

    def cuda_count(self) -> int: ...

    def load_embedder(self, model_id: str, settings: Any, spec: Any = None, *,
                      fallback: str | None = None) -> EmbedderRunner: ...

    def load_reranker(self, model_id: str, settings: Any,
                      spec: Any = None) -> RerankerRunner: ...

    def engine_runner(self, runner: LoadedRunner, sub_batches: str) -> BatchRunner: ...

    def prepare_worker(self, runner: BatchRunner, device: str | None = None,
                       cpu_lanes: int | None = None) -> None: ...
