"""BGE-M3 embedder as a KServe model.

``load()`` builds the runner (FlagEmbedding loading) and the batching engine, then sets ``ready``.
``encode()`` is the one entry point every protocol uses (V1, V2 REST and gRPC, the JSON routes):
it validates, tokenises (on a thread when the request is large), queues the texts on the
engine and maps sparse output.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from kserve.protocol.infer_type import InferRequest

from predictor.api.http.responses import v2_rest_response
from predictor.api.kserve import embedder_tensors
from predictor.api.kserve.model import EngineModel
from predictor.core.sparse import map_sparse
from predictor.core.types import EncodeItem, EncodeOptions, EncodeResult, Output
from predictor.engine.admission import AdmissionTimeout, OverBudget, process_budget
from predictor.errors import BadRequestError, OverloadedError, PayloadTooLargeError

logger = logging.getLogger(__name__)


class EmbedderModel(EngineModel):
    kind = "embedder"

    def __init__(self, name: str, model_id: str, settings, spec=None, *,
                 default_family: str | None = "bge-m3"):
        """``spec``: a ``models_config.ModelSpec`` (family, prefixes, aliases...), or None.
        ``default_family``: used when nothing tells the family (the SPEC ``--embedder``)."""
        super().__init__(name, model_id, settings)
        self.spec = spec
        self.default_family = default_family
        self.aliases = tuple(getattr(spec, "aliases", ()) or ())

    def _load_runner(self):
        from predictor.runtime.families import load_embedder_runner

        return load_embedder_runner(self.model_id, self.settings, self.spec,
                                    fallback=self.default_family)

    @property
    def dimensions(self) -> int:
        return self.runner.dense_dim

    def sparse_index_space(self, mapping: str) -> int:
        """Size of the sparse index space: the vocabulary, or the hash modulus."""
        if mapping == "tokenizer":
            return self.runner.vocab_size
        return self.settings.sparse_index_space

    def describe(self) -> dict:
        """Facts for ``/v1/models``."""
        facts = {"kind": self.kind, "root": self.model_id, "max_model_len": self.max_length,
                 "dimensions": self.dimensions,
                 "outputs": [o.value for o in Output if o in self.runner.outputs],
                 "family": getattr(self.runner, "family", "bge-m3")}
        if hasattr(self.runner, "describe"):
            facts |= self.runner.describe()
        if self.aliases:
            facts["aliases"] = list(self.aliases)
        return facts

    # -- the one entry point ------------------------------------------------------------
    async def encode(self, texts: Sequence[Any], options: EncodeOptions,
                     param: str = "input") -> EncodeResult:
        self.ensure_ready()
        texts = validate_texts(texts, param, self.settings.max_input_texts)
        if not options.outputs:
            raise BadRequestError("At least one of return_dense, return_sparse, return_colbert "
                                  "must be true.", param="return_dense")
        missing = options.outputs - self.runner.outputs
        if missing:
            names = ", ".join(sorted(o.value for o in missing))
            raise BadRequestError(f"The model '{self.name}' has no {names} output; it offers "
                                  f"{', '.join(sorted(o.value for o in self.runner.outputs))}.",
                                  param=f"return_{sorted(o.value for o in missing)[0]}",
                                  code="unsupported_output")
        max_length = self.max_length
        if options.max_length is not None:
            if not 1 <= options.max_length <= self.max_length:
                raise BadRequestError(
                    f"max_length must be between 1 and {self.max_length} for this model.",
                    param="max_length")
            max_length = options.max_length
        mapping = options.sparse_mapping or self.settings.sparse_token_mapping
        ids = await admitted_tokenize(self, sum(map(len, texts)), param, self.runner.tokenize,
                                      texts, max_length, options.truncate, options.input_type)
        if not options.truncate:
            for i, seq in enumerate(ids):
                if len(seq) > max_length:
                    raise BadRequestError(
                        f"{param}[{i}] has {len(seq)} tokens, more than the maximum of "
                        f"{max_length}; shorten it or allow truncation.",
                        param=f"{param}[{i}]", code="context_length_exceeded")
        check_request_tokens(ids, self.settings.max_request_tokens, param)
        if Output.COLBERT in options.outputs:
            check_colbert_tokens(ids, self.settings.max_colbert_tokens, param)
        embeddings = await self.run([EncodeItem(seq, options.outputs) for seq in ids])
        if Output.SPARSE in options.outputs and (mapping != "tokenizer" or options.return_tokens):
            for emb in embeddings:
                emb.sparse = map_sparse(emb.sparse, mapping, self.settings.sparse_index_space,
                                        self.runner.token_strings, options.return_tokens)
        return EncodeResult(embeddings=embeddings,
                            prompt_tokens=sum(len(seq) for seq in ids))

    # -- KServe V1 / V2 ------------------------------------------------------------------
    async def infer(self, payload: dict | InferRequest):
        if isinstance(payload, InferRequest):
            texts = embedder_tensors.texts_from_request(payload)
            options = embedder_tensors.encode_options(payload)
            result = await self.encode(texts, options, param="inputs[0]")
            return await v2_rest_response(
                payload, embedder_tensors.embedding_response(self.name, payload, result, options))
        return await embedder_tensors.v1_embed(self, payload)

    def get_input_types(self) -> list[dict]:
        return [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        d, c = self.dimensions, getattr(self.runner, "colbert_dim", None)
        tensors = {
            Output.DENSE: [{"name": "dense", "datatype": "FP32", "shape": [-1, d]}],
            Output.SPARSE: [{"name": "sparse_indices", "datatype": "INT64", "shape": [-1]},
                            {"name": "sparse_values", "datatype": "FP32", "shape": [-1]},
                            {"name": "sparse_offsets", "datatype": "INT64", "shape": [-1]}],
            Output.COLBERT: [{"name": "colbert", "datatype": "FP32", "shape": [-1, c]},
                             {"name": "colbert_offsets", "datatype": "INT64", "shape": [-1]}],
        }
        return [t for output in Output if output in self.runner.outputs for t in tensors[output]]


async def admitted_tokenize(model: EngineModel, chars: int, param: str, tokenize, *args):
    """``model.tokenize(chars, tokenize, *args)`` holding ``chars`` of the process's
    tokenising budget (``--max_tokenize_chars``): the memory tokenisers hold at once is bounded
    before any of them starts. Over the whole budget: 413; no room within the request timeout:
    503 with ``Retry-After``."""
    settings = model.settings
    budget = process_budget("tokenize_chars", settings.max_tokenize_chars)
    try:
        async with budget.hold(chars, settings.request_timeout):
            if chars <= model.inline_tokenize_chars:  # on the loop: nothing to cancel
                return await model.tokenize(chars, tokenize, *args)
            work = asyncio.ensure_future(model.tokenize(chars, tokenize, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:  # a thread goes on tokenising: keep its share
                await asyncio.wait([work])
                raise
    except OverBudget:
        raise PayloadTooLargeError(
            f"'{param}' has {chars} characters of text; at most {budget.capacity} are "
            "tokenised at once (--max_tokenize_chars, env MAX_TOKENIZE_CHARS). Send it in "
            "smaller requests.", param=param, code="request_too_large") from None
    except AdmissionTimeout:
        raise OverloadedError("The server is busy tokenising other requests; retry shortly.",
                              code="timeout", headers={"Retry-After": "1"}) from None


def check_colbert_tokens(ids: Sequence[Sequence[int]], limit: int, param: str) -> None:
    """ColBERT output is one vector per token: bound it before the model runs."""
    total = sum(len(seq) for seq in ids)
    if total > limit:
        raise BadRequestError(
            f"'{param}' has {total} tokens; with return_colbert at most {limit} are allowed "
            "per request, one vector each (--max_colbert_tokens, env MAX_COLBERT_TOKENS). Send "
            "fewer or shorter texts, or a lower max_length.", param=param,
            code="request_too_large")


def check_request_tokens(ids: Sequence[Sequence[int]], limit: int, param: str) -> None:
    total = sum(len(seq) for seq in ids)
    if total > limit:
        raise_too_many_tokens(total, limit, param)


def raise_too_many_tokens(total: int, limit: int, param: str, at_least: bool = False) -> None:
    """400 ``request_too_large``: the count, the limit and how to raise it."""
    raise BadRequestError(f"'{param}' has {'at least ' if at_least else ''}{total} tokens in "
                          f"all; at most {limit} are allowed per request (--max_request_tokens, "
                          "env MAX_REQUEST_TOKENS).", param=param, code="request_too_large")


def validate_texts(texts: Any, param: str, max_texts: int) -> list[str]:
    """Every text a non-empty string; the list non-empty and not over the limit."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list | tuple) or not texts:
        raise BadRequestError(f"'{param}' must be a non-empty string or list of strings.",
                              param=param)
    if len(texts) > max_texts:
        raise BadRequestError(f"'{param}' has {len(texts)} items; at most {max_texts} are "
                              "allowed per request.", param=param)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequestError(f"{param}[{i}] must be a string.", param=f"{param}[{i}]")
        if not text.strip():
            raise BadRequestError(f"{param}[{i}] is empty.", param=f"{param}[{i}]")
    return list(texts)
