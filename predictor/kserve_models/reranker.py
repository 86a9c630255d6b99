"""Cross-encoder reranker as a KServe model.

``score()`` is the one entry point (the rerank routes, V2 REST and gRPC): it validates, tokenises
query-document pairs off the event loop, and queues them on the shared batching engine.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from kserve.protocol.infer_type import InferRequest

from ..api.params import as_bool
from ..api.v2_tensors import infer_response, request_parameters
from ..errors import BadRequestError
from ..primitives import ScoreItem
from .base import EngineModel
from .embedder import check_request_tokens, validate_texts

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ScoreResult:
    scores: list[float]  # raw logits, or sigmoid of them when normalised; input order
    num_tokens: int


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class RerankerModel(EngineModel):
    kind = "reranker"

    def _load_runner(self):
        from ..runtime.cross_encoder import CrossEncoderRunner

        return CrossEncoderRunner(self.model_id, device=self.settings.device,
                                  use_fp16=self.settings.use_fp16)

    def describe(self) -> dict:
        return {"kind": self.kind, "root": self.model_id, "max_model_len": self.max_length}

    async def score(self, queries: Sequence[str], documents: Sequence[str], *,
                    normalize: bool = True, max_length: int | None = None,
                    truncate: bool = True, query_param: str = "query",
                    documents_param: str = "documents") -> ScoreResult:
        """Score pairs (``queries`` has one query for all documents, or one per document)."""
        self.ensure_ready()
        documents = validate_texts(list(documents), documents_param,
                                   self.settings.max_rerank_documents)
        queries = validate_texts(list(queries), query_param, len(documents))
        if len(queries) not in (1, len(documents)):
            raise BadRequestError(f"Give one query, or one per document ({len(documents)}).",
                                  param=query_param)
        if max_length is None:
            max_length = self.max_length
        elif not 1 <= max_length <= self.max_length:
            raise BadRequestError(f"max_length must be between 1 and {self.max_length}.",
                                  param="max_length")
        loop = asyncio.get_running_loop()
        room = max_length - self.runner.pair_overhead - 1
        for i, query in enumerate(dict.fromkeys(queries)):
            q_len = await loop.run_in_executor(None, self.runner.query_length, query)
            if q_len > room:
                param = query_param if len(queries) == 1 else f"{query_param}[{i}]"
                raise BadRequestError(f"The query has {q_len} tokens; at most {room} fit with a "
                                      f"document in {max_length} tokens.", param=param,
                                      code="context_length_exceeded")
        pair_queries = queries * len(documents) if len(queries) == 1 else queries
        if not truncate:
            full = await loop.run_in_executor(None, self.runner.tokenize_pairs, pair_queries,
                                              documents, 10**9)
            for i, seq in enumerate(full):
                if len(seq) > max_length:
                    raise BadRequestError(
                        f"{documents_param}[{i}] makes a pair of {len(seq)} tokens with the "
                        f"query, more than {max_length}; shorten it or allow truncation.",
                        param=f"{documents_param}[{i}]", code="context_length_exceeded")
        ids = await loop.run_in_executor(None, self.runner.tokenize_pairs, pair_queries,
                                         documents, max_length)
        check_request_tokens(ids, self.settings.max_request_tokens, documents_param)
        logits = await self.run([ScoreItem(seq) for seq in ids])
        scores = [sigmoid(x) for x in logits] if normalize else list(logits)
        return ScoreResult(scores=scores, num_tokens=sum(len(seq) for seq in ids))

    # -- KServe V2 -----------------------------------------------------------------------
    async def predict(self, payload, headers: dict[str, str] | None = None):
        self.authorize(headers)
        if not isinstance(payload, InferRequest):
            raise BadRequestError("The reranker speaks V2: inputs 'query' and 'documents'.",
                                  param="inputs")
        from ..api.v2_tensors import texts_of_input

        by_name = {tensor.name: tensor for tensor in payload.inputs}
        missing = [name for name in ("query", "documents") if name not in by_name]
        if missing:
            raise BadRequestError(f"Missing input tensor(s): {', '.join(missing)}.",
                                  param="inputs")
        queries = texts_of_input(by_name["query"], "query")
        documents = texts_of_input(by_name["documents"], "documents")
        params = request_parameters(payload)
        normalize = as_bool(params.get("normalize", True), "normalize")
        result = await self.score(queries, documents, normalize=normalize)
        scores = np.asarray(result.scores, dtype=np.float32)
        return infer_response(self.name, payload, {"scores": scores},
                              {"prompt_tokens": result.num_tokens})

    def get_input_types(self) -> list[dict]:
        return [{"name": "query", "datatype": "BYTES", "shape": [-1]},
                {"name": "documents", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "scores", "datatype": "FP32", "shape": [-1]}]
