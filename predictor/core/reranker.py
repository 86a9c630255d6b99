"""The cross-encoder reranker service: ``Reranker.score`` is the one entry point (the rerank
routes, KServe V1, V2 REST and gRPC).

It validates, tokenises query-document pairs (off the event loop when large, under the
process's tokenising budget) and queues them on the batching engine, where pairs from
concurrent requests share batches on a token budget. A pair longer than the limit is truncated
on the document side (never the query; never dropped), or, with ``max_chunks`` (Cohere's
``max_chunks_per_doc``), scored chunk by chunk: the document's score is its best chunk's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from predictor.core import limits
from predictor.core.ports import RerankerRunner, StageObserver
from predictor.core.service import EngineService, ServiceLimits, always_ready
from predictor.core.types import ScoreItem
from predictor.engine import BatchEngine
from predictor.errors import BadRequestError


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

    def __init__(self, tokenizer: Any):
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

    def _encode_pairs(self, pairs: list[tuple[str, str]]) -> Any:
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


class Reranker(EngineService):
    kind = "reranker"

    def __init__(self, name: str, runner: RerankerRunner | None, engine: BatchEngine | None,
                 settings: ServiceLimits, *, template: PairTemplate | None = None,
                 is_ready: Callable[[], bool] = always_ready,
                 observe_stage: StageObserver | None = None):
        """``template``: how pairs are built; learnt from ``runner.tokenizer`` when not given
        (tests give one without a runner to check pair building alone)."""
        super().__init__(name, engine, settings, is_ready=is_ready, observe_stage=observe_stage)
        if template is None:
            if runner is None:
                raise ValueError("a Reranker needs a runner or a pair template")
            template = PairTemplate(runner.tokenizer)
        self.runner = runner
        self.template = template

    @property
    def max_length(self) -> int:
        if self.runner is None:
            return self.settings.max_request_tokens
        return self.runner.max_length

    def describe(self) -> dict[str, Any]:
        """Facts for ``/v1/models``."""
        return {"kind": self.kind, "max_model_len": self.max_length, "family": "cross-encoder"}

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
        if isinstance(documents, list | tuple):
            limits.check_document_count(len(documents), self.settings.max_rerank_documents,
                                        documents_param)
        documents = limits.validate_texts(documents, documents_param,
                                          self.settings.max_rerank_documents)
        queries = limits.validate_texts(queries, query_param, len(documents))
        if len(queries) not in (1, len(documents)):
            raise BadRequestError(f"Give one query, or one per document ({len(documents)}).",
                                  param=query_param)
        max_length = limits.check_max_length(max_length, self.max_length)
        if max_document_tokens is not None and max_document_tokens < 1:
            raise BadRequestError("max_tokens_per_doc must be at least 1.",
                                  param="max_tokens_per_doc")
        if max_chunks is not None and max_chunks < 1:
            raise BadRequestError("max_chunks_per_doc must be at least 1.",
                                  param="max_chunks_per_doc")
        chars = sum(map(len, documents)) + sum(map(len, set(queries)))
        ids, truncated, chunks = await self.admitted_tokenize(
            chars, documents_param, self._pairs, queries, documents, max_length,
            max_document_tokens, truncate, query_param, documents_param, max_chunks)
        logits: list[float] = await self.submit([ScoreItem(seq) for seq in ids])
        if chunks is not None:  # a document's score is its best chunk's
            ends = np.cumsum(chunks)
            logits = [max(logits[end - n:end]) for end, n in zip(ends.tolist(), chunks,
                                                                 strict=True)]
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
        template = self.template
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
            limits.raise_too_many_tokens(floor, limit, documents_param, at_least=True)
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
            limits.raise_too_many_tokens(total, limit, documents_param)
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
        template = self.template
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
            limits.raise_too_many_tokens(total, limit, documents_param)
        pairs = [template.pair(q, d[start:start + size])
                 for q, d, size, n in zip(pair_queries, document_ids, spans, counts, strict=True)
                 for start in range(0, n * size, size)]
        return pairs, truncated, counts
