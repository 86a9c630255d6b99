"""What every runner shares: the contract's attributes, tokenising, the placeholder forward,
the out-of-memory handling, and the model's own input limit.

``M3Runner``, ``DenseRunner`` and ``CrossEncoderRunner`` derive from ``RunnerBase`` (the
embedders from ``EmbedderBase``), so the facts ``predictor/core/ports.py`` asks of a loaded model
are set in one place, by the runner itself, when it is built. The classes do not subclass the
Protocols: a runner satisfies them by what it has (tests/unit/runtime/test_runner_contract.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from predictor.core.ports import Precision as PrecisionFacts
from predictor.core.ports import StageObserver
from predictor.core.types import Output
from predictor.runtime.device import Precision, resolve_device, resolve_precision

#: The engine splits a batch that fails with one of these and retries the halves.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,)


@contextmanager
def releasing_cuda_memory() -> Iterator[None]:
    """On CUDA out-of-memory, hand the allocator's cached blocks back before the error goes up,
    so the halves the engine retries (``retryable_errors``) have room."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise


def model_max_length(tokenizer: Any, config: Any) -> int:
    """The model's own input limit: position table size (less XLM-R's padding offset)."""
    limit = int(getattr(config, "max_position_embeddings", 0) or 0)
    if getattr(config, "model_type", "") in {"xlm-roberta", "roberta", "camembert"}:
        limit -= int(config.pad_token_id) + 1
    tok_limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    candidates = [value for value in (limit, tok_limit) if 0 < value < 1_000_000]
    return min(candidates) if candidates else 512


class RunnerBase:
    """The ``LoadedRunner`` facts and the steps every runner takes the same way.

    A subclass's ``__init__`` calls ``_init_device`` first, loads ``tokenizer`` and ``model``,
    then ``_init_max_length``; it sets ``family`` (class attribute or from its config).
    ``observe_stage`` is the one attribute its owner sets afterwards (the KServe model hands
    it its metrics hook); until then stages are not reported. ``packed``: the runner's packed
    path (runtime/packed.py), set by the runners that have one where it is enabled (CUDA).
    """

    retryable_errors: tuple[type[BaseException], ...] = RETRYABLE_ERRORS
    observe_stage: StageObserver | None = None
    family: str
    device: str
    precision: PrecisionFacts
    half: bool
    max_length: int
    tokenizer: Any
    model: Any
    pad_id: int
    packed: Any = None

    @property
    def packs_batches(self) -> bool:
        """The engine counts a packed batch's real tokens against its token budget."""
        return self.packed is not None

    @property
    def pipeline(self) -> Any:
        """The packed stages overlapped across batches (the engine feeds it), or None."""
        return self.packed.pipeline if self.packed is not None else None

    def _init_device(self, device: str | None, use_fp16: bool, dtype: str) -> Precision:
        """``device``, ``precision`` and ``half`` from the settings (runtime/device.py); the
        precision is returned as runtime's own type too, for ``apply_precision``."""
        self.device = resolve_device(device)
        precision = resolve_precision(dtype, self.device, use_fp16)
        self.precision = precision
        self.half = precision.half
        return precision

    def _init_max_length(self, own_limit: int, wanted: int | None, source: str) -> None:
        """``max_length``: ``own_limit``, or the spec's ``wanted`` under it (an error over it)."""
        if wanted:
            if wanted > own_limit:
                raise ValueError(f"{source}: max_length={wanted} is over the model's own limit "
                                 f"of {own_limit}")
            own_limit = wanted
        self.max_length = own_limit

    def _observe(self, stage: str, seconds: float) -> None:
        if self.observe_stage is not None:
            self.observe_stage(stage, seconds)

    def _token_ids(self, texts: list[str], max_length: int, truncate: bool) -> list[list[int]]:
        """The tokenizer's ids with special tokens; cut at ``max_length`` when ``truncate``."""
        encoded = self.tokenizer(texts, truncation=truncate,
                                 max_length=max_length if truncate else None,
                                 add_special_tokens=True, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)
        return encoded["input_ids"]

    @torch.inference_mode()
    def forward_shape(self, rows: int, width: int) -> None:
        """A forward pass over ``rows`` x ``width`` placeholder tokens (warm-up, timing)."""
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long, device=self.device)
        self._placeholder_forward(ids, torch.ones_like(ids))

    def _placeholder_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """One forward of the model as ``run_batch`` calls it (a transformers model here)."""
        self.model(input_ids=ids, attention_mask=mask, return_dict=True)


class EmbedderBase(RunnerBase):
    """``RunnerBase`` plus what every embedder gives: ``outputs``, sizes, token strings, the
    family's facts (``describe``)."""

    outputs: frozenset[Output]
    dense_dim: int
    colbert_dim: int = 0  # no ColBERT head unless the runner has one (read with COLBERT only)
    vocab_size: int

    def __init__(self) -> None:
        self._token_strings: dict[int, str] = {}

    def describe(self) -> dict[str, Any]:
        """Facts of the family for ``/v1/models`` (pooling, prefixes...); none by default."""
        return {}

    def tokenize(self, texts: list[str], max_length: int, truncate: bool,
                 input_type: str | None = None) -> list[list[int]]:
        """Token ids per text, each text as ``_texts_for`` makes it for ``input_type``."""
        return self._token_ids(self._texts_for(texts, input_type), max_length, truncate)

    def _texts_for(self, texts: list[str], input_type: str | None) -> list[str]:
        """The texts as the model reads them; as given unless the family adds a prefix."""
        return texts

    def token_strings(self, ids: np.ndarray) -> list[str]:
        """Surface strings of token ids, as FlagEmbedding's ``convert_id_to_token`` decodes them."""
        out = []
        for token_id in ids.tolist():
            text = self._token_strings.get(token_id)
            if text is None:
                text = self.tokenizer.decode([token_id])
                self._token_strings[token_id] = text
            out.append(text)
        return out
