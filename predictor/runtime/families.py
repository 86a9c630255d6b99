"""Model families: tell what a model is, and build the runner that serves it.

Embedder families (``family=`` overrides the detection; docs/models.md has the full table):

- ``bge-m3``: ``M3Runner`` (dense, sparse, ColBERT from one pass).
- ``bge`` (v1, v1.5): CLS pooling, normalised; queries (``input_type: query``) get
  ``Represent this sentence for searching relevant passages: `` (``-zh`` models: the Chinese
  instruction), passages nothing, as FlagEmbedding's ``query_instruction_for_retrieval``.
- ``e5``: mean pooling, normalised; ``query: `` / ``passage: ``, passage when not said.
- ``e5-instruct``: mean, normalised; ``Instruct: <web search task>\nQuery: `` for queries.
- ``gte``: mean pooling (``-zh``: CLS), normalised, no prefixes.
- ``sentence-transformers``: pooling, Dense layers and Normalize from the model's own files;
  prefixes from ``config_sentence_transformers.json`` ``prompts`` (``query``, ``passage`` or
  ``document``; ``default_prompt_name`` when not said).
- ``dense``: generic CLS + normalise, no prefixes.

Detection, first match wins:

1. ``family=`` in the model's spec.
2. A local directory with ``colbert_linear.pt`` and ``sparse_linear.pt``: ``bge-m3``.
3. The model's name (the path's or Hugging Face id's last segment) in FlagEmbedding's own
   ``AUTO_EMBEDDER_MAPPING`` (``FlagAutoModel``): its pooling, and the family our prefixes
   come from (BGE/E5/GTE tables there).
4. A ``modules.json``: ``sentence-transformers``.
5. Name patterns: ``bge-m3``, ``*e5*`` (``*instruct*``: ``e5-instruct``), ``bge*``, ``gte*``.
6. Otherwise: ``bge-m3`` for the SPEC ``--embedder`` (as before), an error for other models.

Where a model ships sentence-transformers files (``modules.json``, ``1_Pooling/config.json``,
``2_Normalize``, ``2_Dense``), pooling, Dense layers and normalisation come from them: they are
the model's own statement and win over a family's defaults (with a warning when they differ).
A spec's ``pooling=``/``normalize=``/``query_prefix=``/``passage_prefix=`` win over both.

Rerankers are one family, ``cross-encoder``: any ``AutoModelForSequenceClassification`` with one
logit, loaded through FlagEmbedding's ``FlagReranker`` (``CrossEncoderRunner``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from predictor.models_config import SHORT_NAMES, short_names  # noqa: F401 (moved)
from predictor.runtime.dense import (
    POOLING_MODES,
    DenseConfig,
    SentenceTransformersFiles,
    read_json,
    read_sentence_transformers,
)

logger = logging.getLogger(__name__)

BGE_EN_QUERY = "Represent this sentence for searching relevant passages: "
BGE_ZH_QUERY = "为这个句子生成表示以用于检索相关文章："
E5_INSTRUCT_QUERY = ("Instruct: Given a web search query, retrieve relevant passages that "
                     "answer the query\nQuery: ")

M3 = "bge-m3"
ST = "sentence-transformers"
CROSS_ENCODER = "cross-encoder"
EMBEDDER_FAMILIES = ("bge-m3", "bge", "e5", "e5-instruct", "gte", ST, "dense")
FAMILY_ALIASES = {"m3": M3, "bge-v1.5": "bge", "bge-v1": "bge", "st": ST,
                  "sentence_transformers": ST, "reranker": CROSS_ENCODER}


@dataclass(frozen=True)
class FamilyDefaults:
    pooling: tuple[str, ...]
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""


DEFAULTS = {
    "bge": FamilyDefaults(("cls",), True, BGE_EN_QUERY, ""),
    "e5": FamilyDefaults(("mean",), True, "query: ", "passage: "),
    "e5-instruct": FamilyDefaults(("mean",), True, E5_INSTRUCT_QUERY, ""),
    "gte": FamilyDefaults(("mean",), True),
    "dense": FamilyDefaults(("cls",), True),
    ST: FamilyDefaults(("mean",), False),  # only when the files say nothing
}

def canonical_family(family: str) -> str:
    key = family.strip().lower()
    key = FAMILY_ALIASES.get(key, key)
    if key not in (*EMBEDDER_FAMILIES, CROSS_ENCODER):
        raise ValueError(f"unknown family {family!r}; one of "
                         f"{', '.join((*EMBEDDER_FAMILIES, CROSS_ENCODER))}")
    return key


def model_basename(model: str) -> str:
    """The name FlagAutoModel looks up: the last path segment (a checkpoint's parent)."""
    path = model.rstrip("/\\")
    name = os.path.basename(path)
    if name.startswith("checkpoint-"):
        name = os.path.basename(os.path.dirname(path))
    return name


# --------------------------------------------------------------------------- detection

@dataclass(frozen=True)
class Detected:
    family: str
    reason: str
    pooling: tuple[str, ...] | None = None  # FlagEmbedding's, when it knows the model
    query_prefix: str | None = None
    trust_remote_code: bool = False


def detect_kind(model: str) -> str:
    """``reranker`` for a sequence-classification config, else ``embedder``."""
    config = read_json(model, "config.json") or {}
    if any(str(arch).endswith("ForSequenceClassification")
           for arch in config.get("architectures") or ()):
        return "reranker"
    return "embedder"


def _flag_mapping(name: str) -> Detected | None:
    """Our family for a model FlagEmbedding's ``AUTO_EMBEDDER_MAPPING`` knows by name."""
    try:
        from FlagEmbedding.inference.embedder import model_mapping as fm
    except ImportError:  # pragma: no cover - FlagEmbedding is a dependency
        return None
    config = fm.AUTO_EMBEDDER_MAPPING.get(name)
    if config is None:
        return None
    reason = f"FlagEmbedding model mapping ({name})"
    if config.model_class is fm.BGEM3FlagModel:
        return Detected(M3, reason)
    if config.model_class is not fm.FlagModel:
        raise ValueError(f"{name} is a decoder-only embedder ({config.model_class.__name__}); "
                         "only encoder models are served")
    pooling = (config.pooling_method.value,)
    trust = bool(config.trust_remote_code)
    if name in fm.BGE_MAPPING:
        query = BGE_ZH_QUERY if "-zh" in name else BGE_EN_QUERY
        return Detected("bge", reason, pooling, query, trust)
    if name in fm.E5_MAPPING:
        family = "e5-instruct" if "instruct" in name else "e5"
        return Detected(family, reason, pooling, None, trust)
    if name in fm.GTE_MAPPING:
        return Detected("gte", reason, pooling, None, trust)
    return Detected("dense", reason, pooling, None, trust)  # e.g. bce-embedding-base_v1


def _name_pattern(name: str) -> Detected | None:
    low = name.lower()
    reason = f"name pattern ({name})"
    if low.startswith("bge-m3"):
        return Detected(M3, reason)
    if re.search(r"(^|[-_.])e5([-_.]|$)", low):
        return Detected("e5-instruct" if "instruct" in low else "e5", reason)
    if low.startswith("bge"):
        return Detected("bge", reason, query_prefix=BGE_ZH_QUERY if "-zh" in low else None)
    if low.startswith("gte"):
        return Detected("gte", reason, ("cls",) if low.endswith("-zh") else None)
    return None


def detect_family(model: str, *, family: str | None = None,
                  fallback: str | None = None) -> Detected:
    """The embedder family of ``model`` (see the module docstring for the order)."""
    name = model_basename(model)
    if family:
        family = canonical_family(family)
        if family == CROSS_ENCODER:
            raise ValueError("family cross-encoder is a reranker; use kind=reranker")
        known = _flag_mapping(name) or _name_pattern(name)
        if known is not None and known.family == family:
            return replace(known, reason=f"family={family} (and {known.reason})")
        return Detected(family, f"family={family}")
    local = Path(model)
    if local.is_dir() and (local / "colbert_linear.pt").is_file() \
            and (local / "sparse_linear.pt").is_file():
        return Detected(M3, "colbert_linear.pt and sparse_linear.pt")
    found = _flag_mapping(name)
    if found is not None:
        return found
    if read_json(model, "modules.json") is not None:
        return Detected(ST, "modules.json")
    found = _name_pattern(name)
    if found is not None:
        return found
    if fallback:
        return Detected(fallback, "default for --embedder")
    raise ValueError(f"cannot tell the family of embedder {model!r} (no modules.json, unknown "
                     f"name); give family= one of {', '.join(EMBEDDER_FAMILIES)}")


def dense_config(model: str, detected: Detected, spec: Any = None) -> DenseConfig:
    """The ``DenseConfig`` of a non-M3 family: family defaults, then the model's own
    sentence-transformers files, then the spec's overrides."""
    family = detected.family
    defaults = DEFAULTS[family]
    pooling = detected.pooling or defaults.pooling
    normalize = defaults.normalize
    query = detected.query_prefix if detected.query_prefix is not None else defaults.query_prefix
    passage = defaults.passage_prefix
    default = passage
    st: SentenceTransformersFiles | None = read_sentence_transformers(model)
    extra: dict[str, Any] = {}
    if st is not None:
        if st.pooling and st.pooling != pooling and family != ST:
            logger.warning("%s: the model's 1_Pooling says %s, family %s says %s; using the "
                           "model's", model, "+".join(st.pooling), family, "+".join(pooling))
        if st.normalize != normalize and family != ST:
            logger.warning("%s: the model's modules %s Normalize, family %s would %s; using "
                           "the model's", model, "include" if st.normalize else "lack",
                           family, "normalise" if normalize else "not normalise")
        pooling = st.pooling or pooling
        normalize = st.normalize
        extra = {"dense_layers": st.dense_layers, "transformer_folder": st.transformer_folder,
                 "max_length": st.max_seq_length, "do_lower_case": st.do_lower_case}
        if family == ST:
            prompts = st.prompts
            query = prompts.get("query", "")
            passage = prompts.get("passage", prompts.get("document", ""))
            default = prompts.get(st.default_prompt_name, "") if st.default_prompt_name else ""
        if not st.include_prompt and (query or passage or default):
            raise ValueError(f"{model}: pooling that excludes the prompt (include_prompt: "
                             "false) is not supported")
    if spec is not None:
        if spec.pooling:
            pooling = tuple(spec.pooling.split("+"))
        if spec.normalize is not None:
            normalize = spec.normalize
        if spec.query_prefix is not None:
            query = spec.query_prefix
        if spec.passage_prefix is not None:
            default = spec.passage_prefix if default == passage else default
            passage = spec.passage_prefix
    for mode in pooling:
        if mode not in POOLING_MODES:
            raise ValueError(f"unknown pooling {mode!r}; one of {', '.join(POOLING_MODES)}")
    trust = bool(getattr(spec, "trust_remote_code", False)) or detected.trust_remote_code
    return DenseConfig(family=family, pooling=pooling, normalize=normalize, query_prefix=query,
                       passage_prefix=passage, default_prefix=default, trust_remote_code=trust,
                       **extra)


# --------------------------------------------------------------------------- loading

def _cap_max_length(runner: Any, spec: Any, model: str) -> Any:
    wanted = getattr(spec, "max_length", None)
    if wanted:
        if wanted > runner.max_length:
            raise ValueError(f"{model}: max_length={wanted} is over the model's own limit of "
                             f"{runner.max_length}")
        runner.max_length = wanted
    return runner


# -- incomplete model directories ------------------------------------------------------
# Loaders fill gaps silently: without its tokenizer files transformers builds a tokenizer of
# the special tokens alone (every text becomes <unk>), and without colbert_linear.pt or
# sparse_linear.pt FlagEmbedding initialises that head at random (an INFO line). Both would
# serve plausible-looking nonsense, so a model must have its files, or it fails to load.

M3_HEADS = ("colbert_linear.pt", "sparse_linear.pt")
# Any one of these holds a vocabulary transformers can build a tokenizer from.
TOKENIZER_VOCABULARIES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model",
                          "tokenizer.model", "vocab.txt", "vocab.json")
MIN_VOCABULARY = 16  # a real vocabulary has thousands of tokens; a degenerate one, a handful


class IncompleteModelError(ValueError):
    """The model's directory lacks a file it needs (the message names it)."""


def model_directory(model: str) -> Path | None:
    """The local directory of ``model``: itself, or its Hugging Face cache snapshot once
    downloaded; None when neither can be found (nothing to check)."""
    local = Path(model)
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not a Hub id, or not in the cache: the loader has said what it could
        return None


def check_model_files(model: str, *, m3: bool) -> None:
    """Raise ``IncompleteModelError`` naming what ``model``'s directory lacks."""
    directory = model_directory(model)
    if directory is None:
        return
    missing = []
    if not (directory / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not any((directory / name).is_file() for name in TOKENIZER_VOCABULARIES):
        missing.append("tokenizer.json (or another tokenizer vocabulary: "
                       f"{', '.join(TOKENIZER_VOCABULARIES[1:])})")
    if m3:
        missing += [name for name in M3_HEADS if not (directory / name).is_file()]
    if missing:
        raise IncompleteModelError(f"{model}: the model directory {directory} is incomplete, "
                                   f"missing {'; '.join(missing)}")


def check_vocabulary(model: str, tokenizer: Any) -> None:
    """The tokenizer that loaded must have a real vocabulary (not the special tokens alone)."""
    size = len(tokenizer)
    if size < MIN_VOCABULARY:
        raise IncompleteModelError(f"{model}: its tokenizer has only {size} tokens; the "
                                   "tokenizer files are missing or broken")


def _checked(model: str, m3: bool, build: Any) -> Any:
    """``build()`` between the file checks: before for a local directory (fail fast), after
    for a Hub id (its files are only there once downloaded)."""
    local = Path(model).is_dir()
    if local:
        check_model_files(model, m3=m3)
    runner = build()
    if not local:
        check_model_files(model, m3=m3)
    check_vocabulary(model, runner.tokenizer)
    return runner


def load_embedder_runner(model: str, settings: Any, spec: Any = None, *,
                         fallback: str | None = None) -> Any:
    """The runner for an embedder: ``M3Runner`` for BGE-M3, else ``DenseRunner``."""
    detected = detect_family(model, family=getattr(spec, "family", None), fallback=fallback)
    logger.info("embedder %s: family %s (%s)", model, detected.family, detected.reason)
    if detected.family == M3:
        from predictor.runtime.m3 import M3Runner

        runner = _checked(model, True, lambda: M3Runner(
            model, device=settings.device, use_fp16=settings.use_fp16, dtype=settings.dtype))
        runner.family = M3
        return _cap_max_length(runner, spec, model)
    from predictor.runtime.dense import DenseRunner

    config = dense_config(model, detected, spec)
    logger.info("embedder %s: %s", model, config.describe())
    runner = _checked(model, False, lambda: DenseRunner(
        model, config, device=settings.device, use_fp16=settings.use_fp16,
        dtype=settings.dtype))
    return _cap_max_length(runner, spec, model)


def load_reranker_runner(model: str, settings: Any, spec: Any = None) -> Any:
    """``CrossEncoderRunner`` for any one-logit sequence-classification model."""
    family = getattr(spec, "family", None)
    if family and canonical_family(family) != CROSS_ENCODER:
        raise ValueError(f"{model}: family {family!r} is an embedder family, not a reranker")
    from predictor.runtime.cross_encoder import CrossEncoderRunner

    kwargs = {}
    if getattr(spec, "trust_remote_code", False):
        kwargs["trust_remote_code"] = True
    runner = _checked(model, False, lambda: CrossEncoderRunner(
        model, device=settings.device, use_fp16=settings.use_fp16, dtype=settings.dtype,
        **kwargs))
    runner.family = CROSS_ENCODER
    return _cap_max_length(runner, spec, model)
