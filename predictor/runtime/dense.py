"""Dense-only embedder runner: BGE v1/v1.5, E5, GTE and sentence-transformers models.

Same interface as ``M3Runner`` (``tokenize``, ``run_batch`` on ``EncodeItem`` → ``Embedding``,
``outputs``, ``max_length``, ``dense_dim``, ``device``, ``half``, ``retryable_errors``,
``observe_stage``), so ``EmbedderModel`` and the batching engine serve it unchanged; it only
ever produces dense vectors (``outputs = {DENSE}``: asking for sparse or ColBERT is a 400).

What a family means is all in :class:`DenseConfig` (``families.py`` fills it in): the pooling
(``cls``, ``mean``, ... as sentence-transformers' ``Pooling`` computes them), optional
sentence-transformers ``Dense`` layers, L2 normalisation, and the text put before queries and
passages (E5's ``query: ``/``passage: ``, BGE's retrieval instruction, a sentence-transformers
model's ``prompts``). A prefix is part of the text: it is tokenised with it and counts towards
the token limit and ``usage``, as FlagEmbedding and sentence-transformers do.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from predictor.core.types import Embedding, EncodeItem, Output
from predictor.runtime.device import apply_precision, pad_batch, resolve_device, resolve_precision
from predictor.runtime.m3 import model_max_length

logger = logging.getLogger(__name__)

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
QUERY_TYPES = frozenset({"query", "search_query"})
PASSAGE_TYPES = frozenset({"passage", "document", "search_document"})


# --------------------------------------------------------------------------- model files

def model_file(model: str, filename: str, *, revision: str | None = None) -> Path | None:
    """``filename`` of a local model directory or a Hugging Face repo, or None if it has none.

    Hub files come through ``hf_hub_download`` (the same cache the loaders use; honours
    ``HF_HUB_OFFLINE``). A missing file is None; other hub errors are raised.
    """
    local = Path(model)
    if local.is_dir():
        path = local / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(model, filename, revision=revision))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def read_json(model: str, filename: str) -> dict | list | None:
    path = model_file(model, filename)
    if path is None:
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class DenseLayerSpec:
    """A sentence-transformers ``Dense`` module: Linear + activation, weights in ``folder``."""

    folder: str
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "torch.nn.modules.activation.Tanh"


@dataclass(frozen=True)
class SentenceTransformersFiles:
    """What a sentence-transformers directory says about itself (``modules.json`` & co)."""

    transformer_folder: str = ""
    pooling: tuple[str, ...] | None = None
    include_prompt: bool = True
    dense_layers: tuple[DenseLayerSpec, ...] = ()
    normalize: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_seq_length: int | None = None
    do_lower_case: bool = False


_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens":
    "mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken"}


def pooling_from_config(config: dict) -> tuple[str, ...]:
    """``1_Pooling/config.json``: the new ``pooling_mode`` key or the legacy boolean keys."""
    mode = config.get("pooling_mode")
    if mode is None:
        modes = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key))
        return modes or ("mean",)
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    for m in modes:
        if m not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {m!r} in the model's pooling config")
    return modes


def read_sentence_transformers(model: str) -> SentenceTransformersFiles | None:
    """Parse ``modules.json`` and the module configs; None if the model has no modules.json.

    Supported modules: Transformer, Pooling, Dense, Normalize (what BGE, E5, GTE and most
    sentence-transformers embedders use). Anything else is refused rather than ignored.
    """
    modules = read_json(model, "modules.json")
    if modules is None:
        return None
    out: dict = {"dense_layers": []}
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        folder = str(module.get("path", "") or "").strip("/")
        prefix = f"{folder}/" if folder else ""
        if kind == "Transformer":
            out["transformer_folder"] = folder
            st_config = read_json(model, prefix + "sentence_bert_config.json") or {}
            if st_config.get("max_seq_length"):
                out["max_seq_length"] = int(st_config["max_seq_length"])
            out["do_lower_case"] = bool(st_config.get("do_lower_case", False))
        elif kind == "Pooling":
            config = read_json(model, prefix + "config.json") or {}
            out["pooling"] = pooling_from_config(config)
            out["include_prompt"] = bool(config.get("include_prompt", True))
        elif kind == "Dense":
            config = read_json(model, prefix + "config.json") or {}
            if config.get("use_residual"):
                raise ValueError(f"{model}: Dense module {folder!r} with use_residual is not "
                                 "supported")
            out["dense_layers"].append(DenseLayerSpec(
                folder=folder, in_features=int(config["in_features"]),
                out_features=int(config["out_features"]), bias=bool(config.get("bias", True)),
                activation=str(config.get("activation_function",
                                          "torch.nn.modules.activation.Tanh"))))
        elif kind == "Normalize":
            out["normalize"] = True
        else:
            raise ValueError(f"{model}: sentence-transformers module {module.get('type')!r} is "
                             "not supported (only Transformer, Pooling, Dense, Normalize)")
    st = read_json(model, "config_sentence_transformers.json") or {}
    out["prompts"] = {str(k): str(v) for k, v in (st.get("prompts") or {}).items()}
    out["default_prompt_name"] = st.get("default_prompt_name")
    out["dense_layers"] = tuple(out["dense_layers"])
    return SentenceTransformersFiles(**out)


# --------------------------------------------------------------------------- the runner

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


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """Sentence vectors from right-padded token vectors, as sentence-transformers' Pooling."""
    mask_f = mask.unsqueeze(-1).to(hidden.dtype)
    counts = torch.clamp(mask_f.sum(dim=1), min=1e-9)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(mask_f == 0, float("-inf")).max(dim=1).values)
        elif mode == "mean":
            out.append((hidden * mask_f).sum(dim=1) / counts)
        elif mode == "mean_sqrt_len_tokens":
            out.append((hidden * mask_f).sum(dim=1) / torch.sqrt(counts))
        elif mode == "weightedmean":
            weights = torch.arange(1, hidden.shape[1] + 1, device=hidden.device,
                                   dtype=hidden.dtype).view(1, -1, 1) * mask_f
            out.append((hidden * weights).sum(dim=1) / torch.clamp(weights.sum(dim=1), min=1e-9))
        elif mode == "lasttoken":
            last = mask.sum(dim=1).long() - 1
            out.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)


def _activation(path: str) -> torch.nn.Module:
    """A ``torch.nn`` activation class by dotted path (nothing outside torch is imported)."""
    if not path.startswith("torch."):
        raise ValueError(f"activation function {path!r} is not a torch.nn module")
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"activation function {path!r} is not a torch.nn module")
    return cls()


def _load_dense_layer(model: str, spec: DenseLayerSpec) -> torch.nn.Module:
    linear = torch.nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
    prefix = f"{spec.folder}/" if spec.folder else ""
    weights = model_file(model, prefix + "model.safetensors")
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        weights = model_file(model, prefix + "pytorch_model.bin")
        if weights is None:
            raise FileNotFoundError(f"{model}: no weights for Dense module {spec.folder!r}")
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    state = {key.removeprefix("linear."): value for key, value in state.items()
             if key.startswith("linear.")}
    linear.load_state_dict(state)
    return torch.nn.Sequential(linear, _activation(spec.activation))


class DenseRunner:
    # The engine splits a batch that fails with one of these and retries the halves.
    retryable_errors = (torch.cuda.OutOfMemoryError,)

    def __init__(self, model_name_or_path: str, config: DenseConfig, *,
                 device: str | None = None, use_fp16: bool = True, dtype: str = "auto"):
        from transformers import AutoModel, AutoTokenizer

        self.config = config
        self.family = config.family
        self.device = resolve_device(device)
        self.precision = resolve_precision(dtype, self.device, use_fp16)
        self.half = self.precision.half
        sub = {"subfolder": config.transformer_folder} if config.transformer_folder else {}
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_name_or_path, trust_remote_code=config.trust_remote_code, **sub)
        self.model = AutoModel.from_pretrained(
            model_name_or_path, trust_remote_code=config.trust_remote_code, **sub)
        self.model = apply_precision(self.model, self.precision, self.device,
                                     source=model_name_or_path)
        # Dense heads stay fp32: they are tiny and the pooled vector is fp32 anyway.
        self.dense_layers = [_load_dense_layer(model_name_or_path, spec).to(self.device).eval()
                             for spec in config.dense_layers]
        model_config = self.model.config
        self.hidden_size = int(model_config.hidden_size)
        self.dense_dim = (config.dense_layers[-1].out_features if config.dense_layers
                          else self.hidden_size * len(config.pooling))
        self.vocab_size = len(self.tokenizer)
        self.outputs = frozenset({Output.DENSE})
        own_limit = model_max_length(self.tokenizer, model_config)
        self.max_length = min(config.max_length, own_limit) if config.max_length else own_limit
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"{model_name_or_path}: the tokenizer has no pad token")
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.observe_stage: Callable[[str, float], None] | None = None

    def describe(self) -> dict:
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
    def tokenize(self, texts: list[str], max_length: int, truncate: bool,
                 input_type: str | None = None) -> list[list[int]]:
        prefix = self.prefix_for(input_type)
        if prefix:
            texts = [prefix + text for text in texts]
        if self.config.do_lower_case:
            texts = [text.lower() for text in texts]
        encoded = self.tokenizer(texts, truncation=truncate,
                                 max_length=max_length if truncate else None,
                                 add_special_tokens=True, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)
        return encoded["input_ids"]

    # -- one batch (the engine's worker thread) ------------------------------------------
    def run_batch(self, items: Sequence[EncodeItem]) -> list[Embedding]:
        started = time.monotonic()
        try:
            dense = self._forward(items)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise
        if self.observe_stage is not None:
            self.observe_stage("forward", time.monotonic() - started)
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

    @torch.inference_mode()
    def forward_shape(self, rows: int, width: int) -> None:
        """A forward pass over ``rows`` x ``width`` placeholder tokens (warm-up, timing)."""
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long, device=self.device)
        self.model(input_ids=ids, attention_mask=torch.ones_like(ids), return_dict=True)
