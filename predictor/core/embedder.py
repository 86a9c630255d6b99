"""The embedder service: ``Embedder.encode`` is the one entry point of every protocol (the
OpenAI routes, the drop-in routes, KServe V1, V2 REST and gRPC).

validate → tokenise (inline, or on a thread when large, under the process's tokenising
budget) → limits → submit to the engine → map sparse output. It needs a runner satisfying
``ports.EmbedderRunner`` and a started ``engine.BatchEngine``; nothing of KServe or HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from predictor.core import limits
from predictor.core.ports import EmbedderRunner, StageObserver
from predictor.core.service import EngineService, ServiceLimits, always_ready
from predictor.core.sparse import TOKENIZER, map_sparse
from predictor.core.types import Embedding, EncodeItem, EncodeOptions, EncodeResult, Output
from predictor.engine import BatchEngine
from predictor.errors import BadRequestError


class Embedder(EngineService):
    kind = "embedder"

    def __init__(self, name: str, runner: EmbedderRunner, engine: BatchEngine | None,
                 settings: ServiceLimits, *, is_ready: Callable[[], bool] = always_ready,
                 observe_stage: StageObserver | None = None):
        super().__init__(name, engine, settings, is_ready=is_ready, observe_stage=observe_stage)
        self.runner = runner

    # -- facts the protocols need ------------------------------------------------------
    @property
    def max_length(self) -> int:
        return self.runner.max_length

    @property
    def dimensions(self) -> int:
        """Width of a dense vector."""
        return self.runner.dense_dim

    @property
    def colbert_dim(self) -> int:
        """Width of a ColBERT vector (the model must have the head)."""
        return self.runner.colbert_dim

    @property
    def outputs(self) -> frozenset[Output]:
        """The outputs this model can compute."""
        return self.runner.outputs

    @property
    def special_tokens(self) -> int:
        """Special tokens the tokenizer adds to one text (CLS, SEP...)."""
        return int(self.runner.tokenizer.num_special_tokens_to_add())

    def sparse_mapping(self, requested: str | None = None) -> str:
        """The sparse index mapping of a request: its own, or the server's default."""
        return requested or self.settings.sparse_token_mapping

    def sparse_index_space(self, mapping: str) -> int:
        """Size of the sparse index space: the vocabulary, or the hash modulus."""
        if mapping == TOKENIZER:
            return self.runner.vocab_size
        return self.settings.sparse_index_space

    def check_dimensions(self, dimensions: int | None) -> None:
        """``dimensions`` (OpenAI, Ollama) is refused unless it is the model's own width."""
        if dimensions is not None and dimensions != self.dimensions:
            raise BadRequestError(
                f"The model '{self.name}' does not support 'dimensions': it is not "
                f"Matryoshka-trained and only produces {self.dimensions}-dimensional vectors.",
                param="dimensions", code="unsupported_parameter")

    def describe(self) -> dict[str, Any]:
        """Facts for ``/v1/models``."""
        facts: dict[str, Any] = {
            "kind": self.kind, "max_model_len": self.max_length, "dimensions": self.dimensions,
            "outputs": [o.value for o in Output if o in self.outputs],
            "family": self.runner.family}
        return facts | self.runner.describe()

    # -- the one entry point ------------------------------------------------------------
    async def encode(self, texts: Sequence[Any] | str, options: EncodeOptions,
                     param: str = "input") -> EncodeResult:
        self.ensure_ready()
        s = self.settings
        texts = limits.validate_texts(texts, param, s.max_input_texts)
        self._check_outputs(options.outputs)
        max_length = limits.check_max_length(options.max_length, self.max_length,
                                             " for this model")
        mapping = self.sparse_mapping(options.sparse_mapping)
        ids = await self.admitted_tokenize(sum(map(len, texts)), param, self.runner.tokenize,
                                           texts, max_length, options.truncate,
                                           options.input_type)
        if not options.truncate:
            limits.check_token_lengths(ids, max_length, param)
        limits.check_request_tokens(ids, s.max_request_tokens, param)
        if Output.COLBERT in options.outputs:
            limits.check_colbert_tokens(ids, s.max_colbert_tokens, param)
        embeddings: list[Embedding] = await self.submit(
            [EncodeItem(seq, options.outputs) for seq in ids])
        result = EncodeResult(embeddings=embeddings, prompt_tokens=sum(len(seq) for seq in ids))
        if Output.SPARSE in options.outputs:
            self._map_sparse(embeddings, mapping, options.return_tokens)
            result.sparse_mapping = mapping
            result.sparse_index_space = self.sparse_index_space(mapping)
        return result

    def _check_outputs(self, outputs: frozenset[Output]) -> None:
        if not outputs:
            raise BadRequestError("At least one of return_dense, return_sparse, return_colbert "
                                  "must be true.", param="return_dense")
        missing = outputs - self.outputs
        if missing:
            names = sorted(o.value for o in missing)
            raise BadRequestError(
                f"The model '{self.name}' has no {', '.join(names)} output; it offers "
                f"{', '.join(sorted(o.value for o in self.outputs))}.",
                param=f"return_{names[0]}", code="unsupported_output")

    def _map_sparse(self, embeddings: list[Embedding], mapping: str,
                    with_tokens: bool) -> None:
        """Tokenizer-space vectors to the request's mapping (``core/sparse.py``)."""
        if mapping == TOKENIZER and not with_tokens:
            return
        for emb in embeddings:
            if emb.sparse is not None:
                emb.sparse = map_sparse(emb.sparse, mapping, self.settings.sparse_index_space,
                                        self.runner.token_strings, with_tokens)
