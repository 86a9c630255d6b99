"""Dense-only embedder runner: BGE v1/v1.5, E5, GTE and sentence-transformers models.

An ``EmbedderRunner`` (``predictor/core/ports.py``) as ``M3Runner`` is, so the services and the
batching engine serve it unchanged; it only ever produces dense vectors (``outputs = {DENSE}``:
asking for sparse or ColBERT is a 400).

What a family means is all in :class:`DenseConfig` (``family_defaults.dense_config`` fills it
in): the pooling (``cls``, ``mean``, ... as sentence-transformers' ``Pooling`` computes them,
``pooling.py``), optional sentence-transformers ``Dense`` layers, L2 normalisation, and the
text put before queries and passages (E5's ``query: ``/``passage: ``, BGE's retrieval
instruction, a sentence-transformers model's ``prompts``). A prefix is part of the text: it is
tokenised with it and counts towards the token limit and ``usage``, as FlagEmbedding and
sentence-transformers do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from predictor.core.types import Embedding, EncodeItem, Output
from predictor.runtime.device import apply_precision, pad_batch
from predictor.runtime.pooling import load_dense_layer, pool
from predictor.runtime.runner_base import EmbedderBase, model_max_length, releasing_cuda_memory
from predictor.runtime.st_files import DenseLayerSpec

QUERY_TYPES = frozenset({"query", "search_query"})
PASSAGE_TYPES = frozenset({"passage", "document", "search_document"})


@dataclass(frozen=True)
class DenseConfig:
    """Everything that makes a family: pooling, head, normalisation, prefixes, limits."""

    family: str
    pooling: tuple[str, ...] = ("cls",)
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    default_prefix: str = ""  # used when the request gives no input_type
    dense_layers: tuple[DenseLayerSpec, ...] = ()
    transformer_folder: str = ""
    max_length: int | None = None  # sentence-transformers' max_seq_length or an override
    do_lower_case: bool = False
    trust_remote_code: bool = False

    def describe(self) -> dict:
        return {"family": self.family, "pooling": "+".join(self.pooling),
                "normalize": self.normalize, "query_prefix": self.query_prefix,
                "passage_prefix": self.passage_prefix, "default_prefix": self.default_prefix}


class DenseRunner(EmbedderBase):
    """An ``EmbedderRunner`` for every non-M3 family; ``family`` is ``config.family``.
    ``max_length``: the spec's cap under the model's limit (its own, or ``config.max_length``,
    sentence-transformers' ``max_seq_length``, when lower)."""

    def __init__(self, model_name_or_path: str, config: DenseConfig, *,
                 device: str | None = None, use_fp16: bool = True, dtype: str = "auto",
                 max_length: int | None = None):
        from transformers import AutoModel, AutoTokenizer

        super().__init__()
        self.config = config
        self.family = config.family
        precision = self._init_device(device, use_fp16, dtype)
        sub = {"subfolder": config.transformer_folder} if config.transformer_folder else {}
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_name_or_path, trust_remote_code=config.trust_remote_code, **sub)
        self.model = AutoModel.from_pretrained(
            model_name_or_path, trust_remote_code=config.trust_remote_code, **sub)
        self.model = apply_precision(self.model, precision, self.device,
                                     source=model_name_or_path)
        # Dense heads stay fp32: they are tiny and the pooled vector is fp32 anyway.
        self.dense_layers = [load_dense_layer(model_name_or_path, spec).to(self.device).eval()
                             for spec in config.dense_layers]
        model_config = self.model.config
        self.hidden_size = int(model_config.hidden_size)
        self.dense_dim = (config.dense_layers[-1].out_features if config.dense_layers
                          else self.hidden_size * len(config.pooling))
        self.vocab_size = len(self.tokenizer)
        self.outputs = frozenset({Output.DENSE})
        own_limit = model_max_length(self.tokenizer, model_config)
        self._init_max_length(min(config.max_length, own_limit) if config.max_length
                              else own_limit, max_length, model_name_or_path)
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"{model_name_or_path}: the tokenizer has no pad token")
        self.pad_id = int(self.tokenizer.pad_token_id)

    def describe(self) -> dict[str, Any]:
        return self.config.describe()

    def prefix_for(self, input_type: str | None) -> str:
        if input_type is None:
            return self.config.default_prefix
        if input_type in QUERY_TYPES:
            return self.config.query_prefix
        if input_type in PASSAGE_TYPES:
            return self.config.passage_prefix
        raise ValueError(f"unknown input_type {input_type!r}")

    # -- tokenising (any thread) ---------------------------------------------------------
    def _texts_for(self, texts: list[str], input_type: str | None) -> list[str]:
        """The family's prefix for ``input_type`` before each text; lower-cased when the
        model's sentence-transformers config says ``do_lower_case``."""
        prefix = self.prefix_for(input_type)
        if prefix:
            texts = [prefix + text for text in texts]
        if self.config.do_lower_case:
            texts = [text.lower() for text in texts]
        return texts

    # -- one batch (the engine's worker thread) ------------------------------------------
    def run_batch(self, items: Sequence[EncodeItem]) -> list[Embedding]:
        started = time.monotonic()
        with releasing_cuda_memory():
            dense = self._forward(items)
        self._observe("forward", time.monotonic() - started)
        return [Embedding(num_tokens=len(item.input_ids), dense=dense[row])
                for row, item in enumerate(items)]

    @torch.inference_mode()
    def _forward(self, items: Sequence[EncodeItem]) -> np.ndarray:
        ids, mask = pad_batch([item.input_ids for item in items], self.pad_id, self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask,
                            return_dict=True).last_hidden_state.float()
        vectors = pool(hidden, mask, self.config.pooling)
        for layer in self.dense_layers:
            vectors = layer(vectors)
        if self.config.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.detach().cpu().numpy().astype(np.float32, copy=False)
