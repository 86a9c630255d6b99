"""What each embedder family means: its pooling, normalisation and prefixes, and the
``DenseConfig`` a non-M3 model gets (family defaults → the model's own sentence-transformers
files → the spec's overrides).

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

Where a model ships sentence-transformers files (``modules.json``, ``1_Pooling/config.json``,
``2_Normalize``, ``2_Dense``), pooling, Dense layers and normalisation come from them: they are
the model's own statement and win over a family's defaults (with a warning when they differ).
A spec's ``pooling=``/``normalize=``/``query_prefix=``/``passage_prefix=`` win over both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predictor.runtime.dense import DenseConfig
from predictor.runtime.family_names import ST
from predictor.runtime.st_files import (
    POOLING_MODES,
    SentenceTransformersFiles,
    read_sentence_transformers,
)

if TYPE_CHECKING:
    from predictor.runtime.detection import Detected

logger = logging.getLogger(__name__)

BGE_EN_QUERY = "Represent this sentence for searching relevant passages: "
BGE_ZH_QUERY = "为这个句子生成表示以用于检索相关文章："
E5_INSTRUCT_QUERY = ("Instruct: Given a web search query, retrieve relevant passages that "
                     "answer the query\nQuery: ")


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
