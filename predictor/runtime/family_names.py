"""The model families' names: the canonical ones, the aliases a spec may use for them.

What each family means: ``family_defaults.py`` (embedders), ``cross_encoder.py`` (rerankers);
how a model's family is found: ``detection.py``.
"""

from __future__ import annotations

M3 = "bge-m3"
ST = "sentence-transformers"
CROSS_ENCODER = "cross-encoder"
EMBEDDER_FAMILIES = ("bge-m3", "bge", "e5", "e5-instruct", "gte", ST, "dense")
FAMILY_ALIASES = {"m3": M3, "bge-v1.5": "bge", "bge-v1": "bge", "st": ST,
                  "sentence_transformers": ST, "reranker": CROSS_ENCODER}


def canonical_family(family: str) -> str:
    key = family.strip().lower()
    key = FAMILY_ALIASES.get(key, key)
    if key not in (*EMBEDDER_FAMILIES, CROSS_ENCODER):
        raise ValueError(f"unknown family {family!r}; one of "
                         f"{', '.join((*EMBEDDER_FAMILIES, CROSS_ENCODER))}")
    return key
