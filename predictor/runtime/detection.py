"""Tell what a model is: a reranker or an embedder (``detect_kind``), and which embedder
family (``detect_family``).

Detection, first match wins:

1. ``family=`` in the model's spec.
2. A local directory with ``colbert_linear.pt`` and ``sparse_linear.pt``: ``bge-m3``.
3. The model's name (the path's or Hugging Face id's last segment) in FlagEmbedding's own
   ``AUTO_EMBEDDER_MAPPING`` (``FlagAutoModel``): its pooling, and the family our prefixes
   come from (BGE/E5/GTE tables there).
4. A ``modules.json``: ``sentence-transformers``.
5. Name patterns: ``bge-m3``, ``*e5*`` (``*instruct*``: ``e5-instruct``), ``bge*``, ``gte*``.
6. Otherwise: ``bge-m3`` for the SPEC ``--embedder`` (as before), an error for other models.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from predictor.runtime.family_defaults import BGE_EN_QUERY, BGE_ZH_QUERY
from predictor.runtime.family_names import (
    CROSS_ENCODER,
    EMBEDDER_FAMILIES,
    M3,
    ST,
    canonical_family,
)
from predictor.runtime.model_files import read_json


def model_basename(model: str) -> str:
    """The name FlagAutoModel looks up: the last path segment (a checkpoint's parent)."""
    path = model.rstrip("/\\")
    name = os.path.basename(path)
    if name.startswith("checkpoint-"):
        name = os.path.basename(os.path.dirname(path))
    return name


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
