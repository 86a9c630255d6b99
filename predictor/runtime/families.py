"""Model families: one import for what the rest of the package asks about them.

The work is done in one file each; this module gathers their public names so that callers
(``cli.py``, ``api/kserve/``, ``finetune/``, tests) keep one import path:

- ``family_names.py``: the families' names and aliases (``M3``, ``ST``, ``CROSS_ENCODER``,
  ``canonical_family``).
- ``family_defaults.py``: what each embedder family means (pooling, prefixes) and the
  ``DenseConfig`` a model gets (``dense_config``).
- ``detection.py``: what a model is (``detect_kind``, ``detect_family``).
- short names of well-known models (routing aliases) live in ``predictor/models_config.py``,
  re-exported here for old imports.
- ``loaders.py``: the runner that serves a model (``load_embedder_runner``,
  ``load_reranker_runner``), after ``model_files.py`` checked its files.

Rerankers are one family, ``cross-encoder``: any ``AutoModelForSequenceClassification`` with one
logit, loaded through FlagEmbedding's ``FlagReranker`` (``CrossEncoderRunner``).
"""

from __future__ import annotations

from predictor.models_config import SHORT_NAMES, short_names
from predictor.runtime.detection import Detected, detect_family, detect_kind, model_basename
from predictor.runtime.family_defaults import (
    BGE_EN_QUERY,
    BGE_ZH_QUERY,
    DEFAULTS,
    E5_INSTRUCT_QUERY,
    FamilyDefaults,
    dense_config,
)
from predictor.runtime.family_names import (
    CROSS_ENCODER,
    EMBEDDER_FAMILIES,
    FAMILY_ALIASES,
    M3,
    ST,
    canonical_family,
)
from predictor.runtime.loaders import load_embedder_runner, load_reranker_runner
from predictor.runtime.model_files import IncompleteModelError, check_model_files

__all__ = [
    "BGE_EN_QUERY", "BGE_ZH_QUERY", "CROSS_ENCODER", "DEFAULTS", "E5_INSTRUCT_QUERY",
    "EMBEDDER_FAMILIES", "FAMILY_ALIASES", "M3", "SHORT_NAMES", "ST", "Detected",
    "FamilyDefaults", "IncompleteModelError", "canonical_family", "check_model_files",
    "dense_config", "detect_family", "detect_kind", "load_embedder_runner",
    "load_reranker_runner", "model_basename", "short_names",
]
