"""Cross-encoder reranker as a KServe model.

``score()`` is the one entry point (the rerank routes, V2 REST and gRPC): it validates, tokenises
query-document pairs off the event loop, and queues them on the shared batching engine, where
pairs from concurrent requests share batches on a token budget. A pair longer than the limit is
truncated on the document side (never the query; never dropped), or, with ``max_chunks``
(Cohere's ``max_chunks_per_doc``), scored chunk by chunk: the document's score is its best
chunk's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from kserve.protocol.infer_type import InferRequest

from predictor.api.http.responses import v2_rest_response
from predictor.api.kserve.embedder import admitted_tokenize, raise_too_many_tokens, validate_texts
from predictor.api.kserve.embedder_tensors import infer_response, request_parameters
from predictor.api.kserve.model import EngineModel
from predictor.api.params import as_bool, as_int
from predictor.core.types import ScoreItem
from predictor.errors import BadRequestError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ScoreResult:
    scores: list[float]  # raw logits, or sigmoid of them when normalised; input order
    num_tokens: int  # tokens of all pairs as the model saw them (after truncation)
    truncated: int = 0  # how many documents were cut to fit
    chunks: list[int] | None = None  # with max_chunks: chunks scored per document, input order


class PairTemplate:
    """How the tokenizer joins a query and a document: ``prefix + q + middle + d + suffix``.

    Learnt once from the tokenizer's own pair encoding and checked on samples, so that a pair
    built from separately tokenised pieces has exactly the ids ``tokenizer(query, document)``
    gives (FlagReranker's), and each piece is tokenised once however many pairs share it.
    """

    SAMPLES = (("a query", "a document"), ("what is it?", " Two  words, then more."),
               ("x", "y z"))

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        encoded = self._encode_pairs([self.SAMPLES[0]])
        ids, seq = encoded["input_ids"][0], encoded.sequence_ids(0)
        q_start, q_end = seq.index(0), len(seq) - seq[::-1].index(0)
        d_start, d_end = seq.index(1), len(seq) - seq[::-1].index(1)
        self.prefix, self.middle = ids[:q_start], ids[q_end:d_start]
        self.suffix = ids[d_end:]
        self.overhead = len(self.prefix) + len(self.middle) + len(self.suffix)
        queries, documents = zip(*self.SAMPLES, strict=True)
        expected = self._encode_pairs(list(self.SAMPLES))["input_ids"]
        built = [self.pair(q, d) for q, d in zip(self.tokenize(list(queries)),
                                                 self.tokenize(list(documents)), strict=True)]
        if built != expected:
            raise ValueError("the tokenizer's pair encoding is not 'specials, query, specials, "
                             "document, specials'; this cross-encoder is not supported")

    def _encode_pairs(self, pairs):
        return self.tokenizer([q for q, _ in pairs], [d for _, d in pairs], truncation=False,
                              add_special_tokens=True, return_attention_mask=False,
                              return_token_type_ids=False, verbose=False)

    def tokenize(self, texts: Sequence[str], limit: int | None = None) -> list[list[int]]:
        """Token ids of each text alone, without special tokens; the first ``limit`` only
        (the same ids as a cut of the whole, as the tokenizer truncates after tokenising)."""
        return self.tokenizer(list(texts), add_special_tokens=False,
                              truncation=limit is not None, max_length=limit,
                              return_attention_mask=False, return_token_type_ids=False,
                              verbose=False)["input_ids"]

    def pair(self, query_ids: list[int], document_ids: list[int]) -> list[int]:
        return self.prefix + query_ids + self.middle + document_ids + self.suffix


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
        from predictor.runtime.families import load_reranker_runner

        runner = load_reranker_runner(self.model_id, self.settings, self.spec)
        self.pair_template = PairTemplate(runner.tokenizer)
        return runner

    def describe(self) -> dict:
        facts = {"kind": self.kind, "root": self.model_id, "max_model_len": self.max_length,
                 "family": "cross-encoder"}
        if self.aliases:
            facts["aliases"] = list(self.aliases)
        return facts

    async def score(self, queries: Sequence[str], documents: Sequence[str], *,
                    normalize: bool = True, max_length: int | None = None,
                    max_document_tokens: int | None = None, truncate: bool = True,
                    max_chunks: int | None = None, query_param: str = "query",
                    documents_param: str = "documents") -> ScoreResult:
        """Score pairs (``queries`` has one query for all documents, or one per document).

        ``max_length`` bounds a whole pair (default: the model's limit); ``max_document_tokens``
        also bounds each document's own tokens. Over ``max_length``, the document is cut, unless
        ``truncate`` is false: then 400. A query that leaves no room for a document is a 400.
        ``max_chunks``: split each document into chunks that fit beside the query (of
        ``max_document_tokens`` when given), score the first ``max_chunks`` of them and keep
        each document's best; what is past the last chunk is cut (or a 400 without
        ``truncate``).
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
        if max_chunks is not None and max_chunks < 1:
            raise BadRequestError("max_chunks_per_doc must be at least 1.",
                                  param="max_chunks_per_doc")
        chars = sum(map(len, documents)) + sum(map(len, set(queries)))
        ids, truncated, chunks = await admitted_tokenize(
            self, chars, documents_param, self._pairs, queries, documents, max_length,
            max_document_tokens, truncate, query_param, documents_param, max_chunks)
        logits = await self.run([ScoreItem(seq) for seq in ids])
        if chunks is not None:  # a document's score is its best chunk's
            ends = np.cumsum(chunks)
            logits = [max(logits[end - n:end]) for end, n in zip(ends, chunks, strict=True)]
        scores = [sigmoid(x) for x in logits] if normalize else list(logits)
        return ScoreResult(scores=scores, num_tokens=sum(len(seq) for seq in ids),
                           truncated=truncated, chunks=chunks)

    def _pairs(self, queries: list[str], documents: list[str], max_length: int,
               max_document_tokens: int | None, truncate: bool, query_param: str,
               documents_param: str, max_chunks: int | None = None
               ) -> tuple[list[list[int]], int, list[int] | None]:
        """Token ids of every pair, documents cut to fit (any thread).

        Each distinct query and each document is tokenised once, on its own; every limit is
        checked on those counts before a pair is built, so the work done and the memory held
        are bounded by ``max_request_tokens``, never by documents x query length.
        """
        template = self.pair_template
        limit = self.settings.max_request_tokens
        query_ids = dict(zip(unique := list(dict.fromkeys(queries)),
                             template.tokenize(unique), strict=True))
        for i, query in enumerate(queries if len(queries) > 1 else queries[:1]):
            n_query = len(query_ids[query])
            if n_query + template.overhead + 1 > max_length:
                param = query_param if len(queries) == 1 else f"{query_param}[{i}]"
                raise BadRequestError(
                    f"The query has {n_query} tokens; with the special tokens and at least one "
                    f"document token it does not fit in {max_length} tokens.", param=param,
                    code="context_length_exceeded")
        pair_queries = [query_ids[q] for q in queries] * (len(documents) if len(queries) == 1
                                                          else 1)
        # Each pair holds at least its query and the special tokens: refuse before tokenising
        # the documents when that alone is over the limit.
        floor = sum(len(q) for q in pair_queries) + template.overhead * len(documents)
        if floor > limit:
            raise_too_many_tokens(floor, limit, documents_param, at_least=True)
        if max_chunks is not None:  # every chunk is scored: the whole document is needed
            return self._chunk_pairs(pair_queries, template.tokenize(documents), max_length,
                                     max_document_tokens, max_chunks, truncate, documents_param)
        # No pair can use more of a document than the longest room a query leaves (one more
        # token tells "too long" when truncation is off): the ids beyond are never held.
        cap = max_length - template.overhead - min(map(len, pair_queries)) + 1
        if max_document_tokens is not None:
            cap = min(cap, max_document_tokens + 1)
        document_ids = template.tokenize(documents, cap)
        keeps, truncated, total = [], 0, 0
        for i, (q, d) in enumerate(zip(pair_queries, document_ids, strict=True)):
            room = max_length - len(q) - template.overhead
            keep = len(d) if max_document_tokens is None else min(len(d), max_document_tokens)
            if keep > room:
                if not truncate:
                    raise BadRequestError(
                        f"{documents_param}[{i}] makes a pair of more than {max_length} tokens "
                        "with the query; shorten it or allow truncation.",
                        param=f"{documents_param}[{i}]", code="context_length_exceeded")
                keep = room
                truncated += 1
            keeps.append(keep)
            total += len(q) + template.overhead + keep
        if total > limit:
            raise_too_many_tokens(total, limit, documents_param)
        pairs = [template.pair(q, d[:keep])
                 for q, d, keep in zip(pair_queries, document_ids, keeps, strict=True)]
        return pairs, truncated, None

    def _chunk_pairs(self, pair_queries: list[list[int]], document_ids: list[list[int]],
                     max_length: int, max_document_tokens: int | None, max_chunks: int,
                     truncate: bool, documents_param: str
                     ) -> tuple[list[list[int]], int, list[int]]:
        """Cohere's ``max_chunks_per_doc``: each document's pairs with its first chunks.

        A chunk is as long as fits beside the query (``max_length`` less the query and the
        special tokens), or ``max_document_tokens`` when that is shorter, so the first chunk is
        exactly the document as truncation would cut it: the best chunk never scores below it.
        Every chunk's pair counts against ``max_request_tokens``, checked before any is built.
        """
        template = self.pair_template
        limit = self.settings.max_request_tokens
        spans, counts, truncated, total = [], [], 0, 0
        for i, (q, d) in enumerate(zip(pair_queries, document_ids, strict=True)):
            size = max_length - len(q) - template.overhead
            if max_document_tokens is not None:
                size = min(size, max_document_tokens)
            n = max(1, -(-len(d) // size))  # ceil; an empty document is one empty chunk
            if n > max_chunks:
                if not truncate:
                    raise BadRequestError(
                        f"{documents_param}[{i}] has {len(d)} tokens: more than "
                        f"max_chunks_per_doc={max_chunks} chunks of {size}; shorten it, raise "
                        "max_chunks_per_doc or allow truncation.",
                        param=f"{documents_param}[{i}]", code="context_length_exceeded")
                n = max_chunks
                truncated += 1
            spans.append(size)
            counts.append(n)
            total += n * (len(q) + template.overhead) + min(len(d), n * size)
        if total > limit:
            raise_too_many_tokens(total, limit, documents_param)
        pairs = [template.pair(q, d[start:start + size])
                 for q, d, size, n in zip(pair_queries, document_ids, spans, counts, strict=True)
                 for start in range(0, n * size, size)]
        return pairs, truncated, counts

    # -- KServe V1 / V2 ------------------------------------------------------------------
    async def infer(self, payload):
        if not isinstance(payload, InferRequest):
            return await self._infer_v1(payload)
        from predictor.api.kserve.embedder_tensors import texts_of_input

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
        return await v2_rest_response(payload, infer_response(
            self.name, payload, {"scores": scores}, {"prompt_tokens": result.num_tokens}))

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
    """``normalize`` (default true), ``max_length``, ``truncate``, ``max_tokens_per_doc`` and
    ``max_chunks_per_doc`` from V1/V2 parameters."""
    def optional_int(name: str) -> int | None:
        return None if params.get(name) is None else as_int(params[name], name)

    return {"normalize": as_bool(params.get("normalize", True), "normalize"),
            "max_length": optional_int("max_length"),
            "truncate": as_bool(params.get("truncate", True), "truncate"),
            "max_document_tokens": optional_int("max_tokens_per_doc"),
            "max_chunks": optional_int("max_chunks_per_doc")}
