"""BGE-M3 and cross-encoder loading without FlagEmbedding, for where it cannot be installed.

Why: importing FlagEmbedding pulls in its training stack (``datasets`` and so pyarrow, pandas,
scipy, peft, accelerate: over 100 MB of wheels), which does not fit the 64 MiB that can be carried
to the offline GPU machine (docs/benchmarks.md, "GPU"). The runners import from here only when
``import FlagEmbedding`` fails; wherever FlagEmbedding is installed (CPU, the container image),
nothing changes.

What is reproduced is exactly what the runners use of FlagEmbedding 1.4: ``BGEM3FlagModel``'s
loading (``EncoderOnlyEmbedderM3Runner.get_model``: ``AutoModel`` plus ``colbert_linear.pt``
and ``sparse_linear.pt``) and the forward of ``EncoderOnlyEmbedderM3ModelForInference`` (CLS
dense, ReLU sparse token weights, ColBERT over tokens after CLS masked by attention, both
vectors L2-normalised), and ``FlagReranker``'s ``AutoModelForSequenceClassification``.
tests/unit/runtime/test_gpu_path.py checks the outputs against FlagEmbedding's on the same
checkpoint.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


class M3Model(nn.Module):
    """The encoder with BGE-M3's ColBERT and sparse heads; ``forward`` as FlagEmbedding's."""

    def __init__(self, encoder: nn.Module, colbert_linear: nn.Linear, sparse_linear: nn.Linear,
                 normalize_embeddings: bool = True):
        super().__init__()
        self.model = encoder
        self.colbert_linear = colbert_linear
        self.sparse_linear = sparse_linear
        self.normalize_embeddings = normalize_embeddings

    def forward(self, text_input: dict[str, torch.Tensor], return_dense: bool = True,
                return_sparse: bool = False, return_colbert_vecs: bool = False) -> dict:
        if not (return_dense or return_sparse or return_colbert_vecs):
            raise ValueError("choose one or more of return_dense, return_sparse, "
                             "return_colbert_vecs")
        hidden = self.model(**text_input, return_dict=True).last_hidden_state
        mask = text_input["attention_mask"]
        out = {}
        if return_dense:
            out["dense_vecs"] = hidden[:, 0]
        if return_sparse:
            out["sparse_vecs"] = torch.relu(self.sparse_linear(hidden))
        if return_colbert_vecs:
            out["colbert_vecs"] = self.colbert_linear(hidden[:, 1:]) * mask[:, 1:][:, :, None]\
                .float()
        if self.normalize_embeddings:
            for key in ("dense_vecs", "colbert_vecs"):
                if key in out:
                    out[key] = F.normalize(out[key], dim=-1)
        return out


class BGEM3FlagModel:
    """``FlagEmbedding.BGEM3FlagModel``'s loading: ``.tokenizer`` and ``.model`` (an
    :class:`M3Model`); the runners use nothing else of it."""

    def __init__(self, model_name_or_path: str, use_fp16: bool = True,
                 devices: str | None = None, normalize_embeddings: bool = True,
                 trust_remote_code: bool = False, colbert_dim: int = -1, **_: object):
        from transformers import AutoModel, AutoTokenizer

        dtype = torch.float16 if use_fp16 else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path,
                                                       trust_remote_code=trust_remote_code)
        encoder = AutoModel.from_pretrained(model_name_or_path, dtype=dtype,
                                            trust_remote_code=trust_remote_code)
        hidden = encoder.config.hidden_size
        colbert = nn.Linear(hidden, hidden if colbert_dim <= 0 else colbert_dim, dtype=dtype)
        sparse = nn.Linear(hidden, 1, dtype=dtype)
        colbert_path = os.path.join(model_name_or_path, "colbert_linear.pt")
        sparse_path = os.path.join(model_name_or_path, "sparse_linear.pt")
        if not (os.path.exists(colbert_path) and os.path.exists(sparse_path)):
            raise FileNotFoundError(f"{model_name_or_path} has no colbert_linear.pt and "
                                    "sparse_linear.pt: not a BGE-M3 checkpoint")
        colbert.load_state_dict(torch.load(colbert_path, map_location="cpu", weights_only=True))
        sparse.load_state_dict(torch.load(sparse_path, map_location="cpu", weights_only=True))
        self.model = M3Model(encoder, colbert, sparse, normalize_embeddings)


class FlagReranker:
    """``FlagEmbedding.FlagReranker``'s loading: ``.tokenizer`` and ``.model``."""

    def __init__(self, model_name_or_path: str, use_fp16: bool = True,
                 devices: str | None = None, trust_remote_code: bool = False, **_: object):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path,
                                                       trust_remote_code=trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code)
