"""Cross-encoder runner (bge-reranker-v2-m3 and other sequence-classification rerankers).

Loaded through FlagEmbedding's ``FlagReranker`` (an ``AutoModelForSequenceClassification``).
A pair is tokenised as one sequence, ``<s> query </s></s> document </s>`` (the tokenizer's
pair template, as ``FlagReranker.compute_score`` does), truncated on the document side only; a
batch of pairs is ONE forward pass; the result is the raw logit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..primitives import ScoreItem
from .device import pad_batch, resolve_device, use_half
from .m3 import model_max_length


class CrossEncoderRunner:
    # The engine splits a batch that fails with one of these and retries the halves.
    retryable_errors = (torch.cuda.OutOfMemoryError,)

    def __init__(self, model_name_or_path: str, *, device: str | None = None,
                 use_fp16: bool = True):
        from FlagEmbedding import FlagReranker

        self.device = resolve_device(device)
        self.half = use_half(self.device, use_fp16)
        flag = FlagReranker(model_name_or_path, use_fp16=self.half, devices=self.device)
        self.tokenizer = flag.tokenizer
        self.model = flag.model.half() if self.half else flag.model.float()
        self.model.to(self.device).eval()
        self.max_length = model_max_length(self.tokenizer, self.model.config)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.pair_overhead = self.tokenizer.num_special_tokens_to_add(pair=True)
        self.observe_stage: Callable[[str, float], None] | None = None

    # -- tokenising (any thread) ---------------------------------------------------------
    def tokenize_pairs(self, queries: Sequence[str], documents: Sequence[str]
                       ) -> list[tuple[list[int], int, int]]:
        """Each pair as ``(input_ids, doc_start, doc_end)``, untruncated: the ids with the
        tokenizer's pair template and where the document's tokens lie in them, so the caller
        can cut the document (``ids[:doc_start + k] + ids[doc_end:]``, FlagReranker's
        ``only_second`` truncation) without tokenising again."""
        encoded = self.tokenizer(list(queries), list(documents), truncation=False,
                                 add_special_tokens=True, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)
        out = []
        for i, ids in enumerate(encoded["input_ids"]):
            seq = encoded.sequence_ids(i)
            start = seq.index(1)
            end = len(seq) - seq[::-1].index(1)
            out.append((ids, start, end))
        return out

    # -- one batch (the engine's worker thread) ------------------------------------------
    @torch.inference_mode()
    def run_batch(self, items: Sequence[ScoreItem]) -> list[float]:
        started = time.monotonic()
        ids, mask = pad_batch([item.input_ids for item in items], self.pad_id, self.device)
        try:
            logits = self.model(input_ids=ids, attention_mask=mask, return_dict=True).logits
            scores = logits.view(-1).float().cpu().numpy().astype(np.float64).tolist()
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise
        if self.observe_stage is not None:
            self.observe_stage("forward", time.monotonic() - started)
        return scores
