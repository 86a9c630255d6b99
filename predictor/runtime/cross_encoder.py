"""Cross-encoder runner (bge-reranker-v2-m3 and other sequence-classification rerankers).

Loaded through FlagEmbedding's ``FlagReranker`` (an ``AutoModelForSequenceClassification``).
A pair is tokenised as one sequence, ``<s> query </s></s> document </s>`` (the tokenizer's
pair template, as ``FlagReranker.compute_score`` does), truncated on the document side only; a
batch of pairs is ONE forward pass; the result is the raw logit.

Models with segment embeddings (BERT-style cross-encoders such as ``cross-encoder/ms-marco-*``)
get ``token_type_ids`` as their tokenizer makes them for a pair: 0 up to the first separator,
1 after it (checked against the tokenizer at load time).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from predictor.core.types import ScoreItem
from predictor.runtime import packed
from predictor.runtime.device import apply_precision, pad_batch
from predictor.runtime.family_names import CROSS_ENCODER
from predictor.runtime.runner_base import RunnerBase, model_max_length, releasing_cuda_memory


class CrossEncoderRunner(RunnerBase):
    """A ``RerankerRunner``. ``max_length``: the spec's cap under the model's own limit;
    ``compile``: ``torch.compile`` the encoder of the packed path (packed.py)."""

    family = CROSS_ENCODER

    def __init__(self, model_name_or_path: str, *, device: str | None = None,
                 use_fp16: bool = True, trust_remote_code: bool = False,
                 dtype: str = "auto", max_length: int | None = None, compile: bool = False):
        try:
            from FlagEmbedding import FlagReranker
        except ImportError:  # the offline GPU kit: same loading (flag_free.py)
            from predictor.runtime.flag_free import FlagReranker

        precision = self._init_device(device, use_fp16, dtype)
        flag = FlagReranker(model_name_or_path, use_fp16=self.half, devices=self.device,
                            trust_remote_code=trust_remote_code)
        self.tokenizer = flag.tokenizer
        # The transformer under the classification head, as transformers names it.
        self.model = apply_precision(flag.model, precision, self.device,
                                     flag.model.base_model_prefix, model_name_or_path)
        if int(getattr(self.model.config, "num_labels", 1)) != 1:
            raise ValueError(f"{model_name_or_path} has {self.model.config.num_labels} labels; "
                             "a reranker has one relevance logit")
        self._init_max_length(model_max_length(self.tokenizer, self.model.config), max_length,
                              model_name_or_path)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.pair_overhead = self.tokenizer.num_special_tokens_to_add(pair=True)
        self.sep_id = self._segment_separator()
        # CUDA, XLM-R-style: unpadded batches, compiled on request (packed.py); else None
        self.packed = packed.for_reranker(self, compile)

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

    def _segment_separator(self) -> int | None:
        """The separator id after which the tokenizer puts segment 1, for models that embed
        segments (``type_vocab_size`` > 1); None when every token is segment 0."""
        if int(getattr(self.model.config, "type_vocab_size", 1) or 1) < 2 \
                or "token_type_ids" not in self.tokenizer.model_input_names \
                or self.tokenizer.sep_token_id is None:
            return None
        sep = int(self.tokenizer.sep_token_id)
        sample = self.tokenizer("a query", "a document", return_token_type_ids=True)
        if not any(sample["token_type_ids"]):
            return None
        if _token_types(sample["input_ids"], sep) != list(sample["token_type_ids"]):
            raise ValueError("the tokenizer's pair segments are not 'after the first "
                             "separator'; this cross-encoder is not supported")
        return sep

    # -- one batch (the engine's worker thread) ------------------------------------------
    @torch.inference_mode()
    def run_batch(self, items: Sequence[ScoreItem]) -> list[float]:
        if self.packed is not None:
            return self.packed.run_batch(items)
        started = time.monotonic()
        ids, mask = pad_batch([item.input_ids for item in items], self.pad_id, self.device)
        extra = {}
        if self.sep_id is not None:
            types = torch.zeros_like(mask, device="cpu")
            for row, item in enumerate(items):
                seg = _token_types(item.input_ids, self.sep_id)
                types[row, : len(seg)] = torch.as_tensor(seg, dtype=torch.long)
            extra["token_type_ids"] = types.to(self.device)
        with releasing_cuda_memory():
            logits = self.model(input_ids=ids, attention_mask=mask, return_dict=True,
                                **extra).logits
            scores = logits.view(-1).float().cpu().numpy().astype(np.float64).tolist()
        self._observe("forward", time.monotonic() - started)
        return scores


def _token_types(ids: Sequence[int], sep_id: int) -> list[int]:
    """0 up to and including the first separator, 1 after it (BERT's pair segments)."""
    try:
        first = list(ids).index(sep_id)
    except ValueError:
        return [0] * len(ids)
    return [0] * (first + 1) + [1] * (len(ids) - first - 1)
