"""BGE-M3 runner: loads the model through FlagEmbedding, runs our own padded batches.

FlagEmbedding's ``BGEM3FlagModel`` knows the checkpoint layout (encoder, ``colbert_linear.pt``,
``sparse_linear.pt``) and defines the outputs, so we load with it and call its model's forward.
We do not call ``encode()`` per request: it re-tokenises, pads and runs a probe pass every call.
Post-processing reproduces ``M3Embedder.encode_single_device`` exactly:
dense = normalised CLS; sparse = ReLU(sparse head) per token, special tokens and zeros dropped,
repeated tokens max-pooled; ColBERT = normalised colbert head over tokens after CLS, no padding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from predictor.core.types import Embedding, EncodeItem, Output, SparseVector
from predictor.runtime import packed
from predictor.runtime.device import apply_precision, pad_batch, resolve_device, resolve_precision

logger = logging.getLogger(__name__)


class M3Runner:
    # The engine splits a batch that fails with one of these and retries the halves.
    retryable_errors = (torch.cuda.OutOfMemoryError,)

    def __init__(self, model_name_or_path: str, *, device: str | None = None,
                 use_fp16: bool = True, dtype: str = "auto"):
        try:
            from FlagEmbedding import BGEM3FlagModel
        except ImportError:  # the offline GPU kit: same loading and forward (flag_free.py)
            from predictor.runtime.flag_free import BGEM3FlagModel

        self.device = resolve_device(device)
        self.precision = resolve_precision(dtype, self.device, use_fp16)
        self.half = self.precision.half
        flag = BGEM3FlagModel(model_name_or_path, use_fp16=self.half, devices=self.device,
                              normalize_embeddings=True)
        self.tokenizer = flag.tokenizer
        # EncoderOnlyEmbedderM3ModelForInference: its encoder is ``.model``, then the heads.
        self.model = apply_precision(flag.model, self.precision, self.device, "model",
                                     model_name_or_path)
        config = self.model.model.config
        self.hidden_size = int(config.hidden_size)
        self.dense_dim = self.hidden_size
        self.colbert_dim = int(self.model.colbert_linear.out_features)
        self.vocab_size = len(self.tokenizer)
        self.outputs = frozenset(Output)  # dense, sparse and ColBERT heads
        self.max_length = model_max_length(self.tokenizer, config)
        self.pad_id = int(self.tokenizer.pad_token_id)
        special = {self.tokenizer.convert_tokens_to_ids(self.tokenizer.special_tokens_map[name])
                   for name in ("cls_token", "eos_token", "pad_token", "unk_token")
                   if name in self.tokenizer.special_tokens_map}
        self.unused_token_ids = np.array(sorted(special), dtype=np.int64)
        self._token_strings: dict[int, str] = {}
        self.observe_stage: Callable[[str, float], None] | None = None
        self.packed = packed.for_m3(self)  # CUDA: unpadded batches (packed.py); else None

    # -- tokenising (any thread) ---------------------------------------------------------
    def tokenize(self, texts: list[str], max_length: int, truncate: bool,
                 input_type: str | None = None) -> list[list[int]]:
        """Token ids per text; BGE-M3 uses no query/passage prefixes, so ``input_type`` is
        ignored."""
        encoded = self.tokenizer(texts, truncation=truncate,
                                 max_length=max_length if truncate else None,
                                 add_special_tokens=True, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)
        return encoded["input_ids"]

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

    # -- one batch (the engine's worker thread) ------------------------------------------
    def run_batch(self, items: Sequence[EncodeItem]) -> list[Embedding]:
        if self.packed is not None:
            return self.packed.run_batch(items)
        started = time.monotonic()
        try:
            dense, weights, colbert = self._forward(items)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise
        forwarded = time.monotonic()
        results = []
        for row, item in enumerate(items):
            n = len(item.input_ids)
            emb = Embedding(num_tokens=n)
            if Output.DENSE in item.outputs:
                emb.dense = dense[row]
            if Output.SPARSE in item.outputs:
                emb.sparse = self._lexical_weights(np.asarray(item.input_ids), weights[row, :n])
            if Output.COLBERT in item.outputs:
                emb.colbert = colbert[row, : n - 1]
            results.append(emb)
        if self.observe_stage is not None:
            self.observe_stage("forward", forwarded - started)
            self.observe_stage("postprocess", time.monotonic() - forwarded)
        return results

    @torch.inference_mode()
    def _forward(self, items: Sequence[EncodeItem]):
        """ONE forward pass computing the union of the outputs the items want (numpy out)."""
        wanted = frozenset().union(*(item.outputs for item in items))
        ids, mask = pad_batch([item.input_ids for item in items], self.pad_id, self.device)
        out = self.model({"input_ids": ids, "attention_mask": mask},
                         return_dense=Output.DENSE in wanted,
                         return_sparse=Output.SPARSE in wanted,
                         return_colbert_vecs=Output.COLBERT in wanted)
        dense = _to_numpy(out.get("dense_vecs"))
        weights = _to_numpy(out["sparse_vecs"].squeeze(-1)) if "sparse_vecs" in out else None
        return dense, weights, _to_numpy(out.get("colbert_vecs"))

    @torch.inference_mode()
    def forward_shape(self, rows: int, width: int) -> None:
        """A forward pass over ``rows`` x ``width`` placeholder tokens (warm-up, timing)."""
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long, device=self.device)
        self.model({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                   return_dense=True, return_sparse=True, return_colbert_vecs=True)

    def _lexical_weights(self, ids: np.ndarray, weights: np.ndarray) -> SparseVector:
        keep = (weights > 0) & ~np.isin(ids, self.unused_token_ids)
        ids, weights = ids[keep], weights[keep]
        indices, inverse = np.unique(ids, return_inverse=True)
        values = np.zeros(len(indices), dtype=np.float32)
        np.maximum.at(values, inverse, weights)
        return SparseVector(indices=indices.astype(np.int64), values=values)


def model_max_length(tokenizer, config) -> int:
    """The model's own input limit: position table size (less XLM-R's padding offset)."""
    limit = int(getattr(config, "max_position_embeddings", 0) or 0)
    if getattr(config, "model_type", "") in {"xlm-roberta", "roberta", "camembert"}:
        limit -= int(config.pad_token_id) + 1
    tok_limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    candidates = [value for value in (limit, tok_limit) if 0 < value < 1_000_000]
    return min(candidates) if candidates else 512


def _to_numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    if tensor is None:
        return None
    return tensor.detach().float().cpu().numpy()
