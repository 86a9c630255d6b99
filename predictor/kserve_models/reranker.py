"""Cross-encoder reranker as a KServe model.

``score()`` is the one entry point (the rerank routes, V2 REST and gRPC): it validates, tokenises
query-document pairs off the event loop, and queues them on the shared batching engine, where
pairs from concurrent requests share batches on a token budget. A pair longer than the limit is
truncated on the document side (never the query; never dropped).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from kserve.protocol.infer_type import InferRequest

from ..api.params import as_bool, as_int
from ..api.v2_tensors import infer_response, request_parameters
from ..errors import BadRequestError
from ..primitives import ScoreItem
from .base import EngineModel
from .embedder import check_request_tokens, validate_texts

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ScoreResult:
    scores: list[float]  # raw logits, or sigmoid of them when normalised; input order
    num_tokens: int  # tokens of all pairs as the model saw them (after truncation)
    truncated: int = 0  # how many documents were cut to fit


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class RerankerModel(EngineModel):
    kind = "reranker"

    def __init__(self, name: str, model_id: str, settings, spec=None):
        """``spec``: a ``models_config.ModelSpec`` (aliases, max_length...), or None."""
        super().__init__(name, model_id, settings)
        self.spec = spec
        self.aliases = tuple(getattr(spec, "aliases", ()) or ())

    def _load_runner(self):
        from ..runtime.families import load_reranker_runner

        return load_reranker_runner(self.model_id, self.settings, self.spec)

    def describe(self) -> dict:
        facts = {"kind": self.kind, "root": self.model_id, "max_model_len": self.max_length,
                 "family": "cross-encoder"}
        if self.aliases:
            facts["aliases"] = list(self.aliases)
        return facts

    async def score(self, queries: Sequence[str], documents: Sequence[str], *,
                    normalize: bool = True, max_length: int | None = None,
                    max_document_tokens: int | None = None, truncate: bool = True,
                    query_param: str = "query",
                    documents_param: str = "documents") -> ScoreResult:
        """Score pairs (``queries`` has one query for all documents, or one per document).

        ``max_length`` bounds a whole pair (default: the model's limit); ``max_document_tokens``
        also bounds each document's own tokens. Over ``max_length``, the document is cut, unless
        ``truncate`` is false: then 400. A query that leaves no room for a document is a 400.
        """
        self.ensure_ready()
        documents = validate_texts(documents, documents_param, self.settings.max_rerank_documents)
        queries = validate_texts(queries, query_param, len(documents))
        if len(queries) not in (1, len(documents)):
            raise BadRequestError(f"Give one query, or one per document ({len(documents)}).",
                                  param=query_param)
        if max_length is None:
            max_length = self.max_length
        elif not 1 <= max_length <= self.max_length:
            raise BadRequestError(f"max_length must be between 1 and {self.max_length}.",
                                  param="max_length")
        if max_document_tokens is not None and max_document_tokens < 1:
            raise BadRequestError("max_tokens_per_doc must be at least 1.",
                                  param="max_tokens_per_doc")
        chars = sum(map(len, documents)) + sum(map(len, queries)) * (
            len(documents) if len(queries) == 1 else 1)
        ids, truncated = await self.tokenize(
            chars, self._pairs, queries, documents, max_length, max_document_tokens, truncate,
            query_param, documents_param)
        check_request_tokens(ids, self.settings.max_request_tokens, documents_param)
        logits = await self.run([ScoreItem(seq) for seq in ids])
        scores = [sigmoid(x) for x in logits] if normalize else list(logits)
        return ScoreResult(scores=scores, num_tokens=sum(len(seq) for seq in ids),
                           truncated=truncated)

    def _pairs(self, queries: list[str], documents: list[str], max_length: int,
               max_document_tokens: int | None, truncate: bool, query_param: str,
               documents_param: str) -> tuple[list[list[int]], int]:
        """Token ids of every pair, documents cut to fit (any thread)."""
        pair_queries = queries * len(documents) if len(queries) == 1 else queries
        pairs, truncated = [], 0
        encoded = self.runner.tokenize_pairs(pair_queries, documents)
        for i, (ids, start, end) in enumerate(encoded):
            n_doc = end - start
            room = max_length - (len(ids) - n_doc)  # what the query and specials leave
            if room < 1:
                param = query_param if len(queries) == 1 else f"{query_param}[{i}]"
                raise BadRequestError(
                    f"The query has {len(ids) - n_doc - self.runner.pair_overhead} tokens; "
                    f"with the special tokens and at least one document token it does not fit "
                    f"in {max_length} tokens.", param=param, code="context_length_exceeded")
            keep = n_doc if max_document_tokens is None else min(n_doc, max_document_tokens)
            if keep > room:
                if not truncate:
                    raise BadRequestError(
                        f"{documents_param}[{i}] makes a pair of {len(ids)} tokens with the "
                        f"query, more than {max_length}; shorten it or allow truncation.",
                        param=f"{documents_param}[{i}]", code="context_length_exceeded")
                keep = room
                truncated += 1
            pairs.append(ids if keep == n_doc else ids[:start + keep] + ids[end:])
        return pairs, truncated

    # -- KServe V1 / V2 ------------------------------------------------------------------
    async def infer(self, payload):
        if not isinstance(payload, InferRequest):
            return await self._infer_v1(payload)
        from ..api.v2_tensors import texts_of_input

        by_name = {tensor.name: tensor for tensor in payload.inputs}
        missing = [name for name in ("query", "documents") if name not in by_name]
        if missing:
            raise BadRequestError(f"Missing input tensor(s): {', '.join(missing)}.",
                                  param="inputs")
        queries = texts_of_input(by_name["query"], "query")
        documents = texts_of_input(by_name["documents"], "documents")
        params = request_parameters(payload)
        result = await self.score(queries, documents, **_score_options(params))
        scores = np.asarray(result.scores, dtype=np.float32)
        return infer_response(self.name, payload, {"scores": scores},
                              {"prompt_tokens": result.num_tokens})

    async def _infer_v1(self, payload) -> dict:
        """V1 ``{"instances": [{"query", "document"}], "parameters"?}`` → one score per pair."""
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not all(
                isinstance(inst, dict) and isinstance(inst.get("query"), str)
                and isinstance(inst.get("document"), str) for inst in instances):
            raise BadRequestError("The reranker expects 'instances' of "
                                  '{"query": str, "document": str} pairs (or V2 inputs '
                                  "'query' and 'documents').", param="instances")
        params = payload.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequestError("'parameters' must be an object.", param="parameters")
        result = await self.score([inst["query"] for inst in instances],
                                  [inst["document"] for inst in instances],
                                  query_param="instances.query",
                                  documents_param="instances.document",
                                  **_score_options(params))
        return {"predictions": result.scores}

    def get_input_types(self) -> list[dict]:
        return [{"name": "query", "datatype": "BYTES", "shape": [-1]},
                {"name": "documents", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "scores", "datatype": "FP32", "shape": [-1]}]


def _score_options(params: dict) -> dict:
    """``normalize`` (default true), ``max_length`` and ``truncate`` from V1/V2 parameters."""
    max_length = params.get("max_length")
    return {"normalize": as_bool(params.get("normalize", True), "normalize"),
            "max_length": None if max_length is None else as_int(max_length, "max_length"),
            "truncate": as_bool(params.get("truncate", True), "truncate")}
