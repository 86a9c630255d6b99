"""Build the runner that serves a model: detect its family, check its files, construct.

``load_embedder_runner`` gives an ``M3Runner`` for BGE-M3, else a ``DenseRunner`` with the
family's ``DenseConfig``; ``load_reranker_runner`` a ``CrossEncoderRunner``. Each runner is
built with the spec's ``max_length`` (refused over the model's own limit) and sets its own
``family``: what comes back satisfies ``EmbedderRunner`` / ``RerankerRunner``
(``predictor/core/ports.py``) as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from predictor.core.ports import EmbedderRunner, RerankerRunner
from predictor.runtime.detection import detect_family
from predictor.runtime.family_defaults import dense_config
from predictor.runtime.family_names import CROSS_ENCODER, M3, canonical_family
from predictor.runtime.model_files import check_model_files, check_vocabulary
from predictor.runtime.runner_base import RunnerBase

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=RunnerBase)

def _checked(model: str, m3: bool, build: Callable[[], R]) -> R:
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
                         fallback: str | None = None) -> EmbedderRunner:
    """The runner for an embedder: ``M3Runner`` for BGE-M3, else ``DenseRunner``."""
    detected = detect_family(model, family=getattr(spec, "family", None), fallback=fallback)
    logger.info("embedder %s: family %s (%s)", model, detected.family, detected.reason)
    max_length = getattr(spec, "max_length", None)
    if detected.family == M3:
        from predictor.runtime.m3 import M3Runner

        return _checked(model, True, lambda: M3Runner(
            model, device=settings.device, use_fp16=settings.use_fp16, dtype=settings.dtype,
            max_length=max_length, compile=settings.torch_compile))
    from predictor.runtime.dense import DenseRunner

    config = dense_config(model, detected, spec)
    logger.info("embedder %s: %s", model, config.describe())
    return _checked(model, False, lambda: DenseRunner(
        model, config, device=settings.device, use_fp16=settings.use_fp16,
        dtype=settings.dtype, max_length=max_length))


def load_reranker_runner(model: str, settings: Any, spec: Any = None) -> RerankerRunner:
    """``CrossEncoderRunner`` for any one-logit sequence-classification model."""
    family = getattr(spec, "family", None)
    if family and canonical_family(family) != CROSS_ENCODER:
        raise ValueError(f"{model}: family {family!r} is an embedder family, not a reranker")
    from predictor.runtime.cross_encoder import CrossEncoderRunner

    kwargs = {}
    if getattr(spec, "trust_remote_code", False):
        kwargs["trust_remote_code"] = True
    return _checked(model, False, lambda: CrossEncoderRunner(
        model, device=settings.device, use_fp16=settings.use_fp16, dtype=settings.dtype,
        max_length=getattr(spec, "max_length", None), compile=settings.torch_compile,
        **kwargs))
