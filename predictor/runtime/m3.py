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
from collections.abc import Sequence

import numpy as np
import torch

from predictor.core.types import Embedding, EncodeItem, Output, SparseVector
from predictor.runtime import packed
from predictor.runtime.device import apply_precision, pad_batch
from predictor.runtime.family_names import M3
from predictor.runtime.runner_base import EmbedderBase, model_max_length, releasing_cuda_memory

logger = logging.getLogger(__name__)


class M3Runner(EmbedderBase):
    """An ``EmbedderRunner`` with all three outputs; no query/passage prefixes (``tokenize``
    ignores ``input_type``). ``max_length``: the spec's cap under the model's own limit;
    ``compile``: ``torch.compile`` the encoder of the packed path (packed.py)."""

    family = M3

    def __init__(self, model_name_or_path: str, *, device: str | None = None,
                 use_fp16: bool = True, dtype: str = "auto", max_length: int | None = None,
                 compile: bool = False):
        try:
            from FlagEmbedding import BGEM3FlagModel
        except ImportError:  # the offline GPU kit: same loading and forward (flag_free.py)
            from predictor.runtime.flag_free import BGEM3FlagModel

        super().__init__()
        precision = self._init_device(device, use_fp16, dtype)
        flag = BGEM3FlagModel(model_name_or_path, use_fp16=self.half, devices=self.device,
                              normalize_embeddings=True)
        self.tokenizer = flag.tokenizer
        # EncoderOnlyEmbedderM3ModelForInference: its encoder is ``.model``, then the heads.
        self.model = apply_precision(flag.model, precision, self.device, "model",
                                     model_name_or_path)
        config = self.model.model.config
        self.hidden_size = int(config.hidden_size)
        self.dense_dim = self.hidden_size
        self.colbert_dim = int(self.model.colbert_linear.out_features)
        self.vocab_size = len(self.tokenizer)
        self.outputs = frozenset(Output)  # dense, sparse and ColBERT heads
        self._init_max_length(model_max_length(self.tokenizer, config), max_length,
                              model_name_or_path)
        self.pad_id = int(self.tokenizer.pad_token_id)
        special = {self.tokenizer.convert_tokens_to_ids(self.tokenizer.special_tokens_map[name])
                   for name in ("cls_token", "eos_token", "pad_token", "unk_token")
                   if name in self.tokenizer.special_tokens_map}
        self.unused_token_ids = np.array(sorted(special), dtype=np.int64)
        # CUDA: unpadded batches (packed.py), compiled on request; else None
        self.packed = packed.for_m3(self, compile)

    # -- one batch (the engine's worker thread) ------------------------------------------
    def run_batch(self, items: Sequence[EncodeItem]) -> list[Embedding]:
        if self.packed is not None:
            return self.packed.run_batch(items)
        started = time.monotonic()
        with releasing_cuda_memory():
            dense, weights, colbert = self._forward(items)
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
        self._observe("forward", forwarded - started)
        self._observe("postprocess", time.monotonic() - forwarded)
        return results

    @torch.inference_mode()
    def _forward(self, items: Sequence[EncodeItem]
                 ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
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

    def _placeholder_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """FlagEmbedding's M3 forward with every head (``forward_shape``)."""
        self.model({"input_ids": ids, "attention_mask": mask},
                   return_dense=True, return_sparse=True, return_colbert_vecs=True)

    def _lexical_weights(self, ids: np.ndarray, weights: np.ndarray) -> SparseVector:
        keep = (weights > 0) & ~np.isin(ids, self.unused_token_ids)
        ids, weights = ids[keep], weights[keep]
        indices, inverse = np.unique(ids, return_inverse=True)
        values = np.zeros(len(indices), dtype=np.float32)
        np.maximum.at(values, inverse, weights)
        return SparseVector(indices=indices.astype(np.int64), values=values)


def _to_numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    if tensor is None:
        return None
    return tensor.detach().float().cpu().numpy()
