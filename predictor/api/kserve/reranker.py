"""The cross-encoder reranker as a KServe model: a thin wrapper around
``core.reranker.Reranker``.

``load()`` builds the runner (through the runtime host the composition root gives), the engine
and the service, then sets ``ready``. ``infer`` is KServe's V1 / V2 (REST and gRPC) entry:
``reranker_codec`` decodes the request, ``Reranker.score`` does the work, the codec encodes the
result.
"""

from __future__ import annotations

from typing import Any

from kserve.protocol.infer_type import InferRequest, InferResponse

from predictor.api.kserve import reranker_codec as codec
from predictor.api.kserve.model import EngineModel
from predictor.api.kserve.rest import v2_rest_response
from predictor.core.reranker import Reranker
from predictor.settings import Settings


class RerankerModel(EngineModel):
    kind = "reranker"
    service: Reranker

    def _load_runner(self, settings: Settings) -> Any:
        return self._host().load_reranker(self.model_id, settings, self.spec)

    def _build_service(self) -> Reranker:
        return Reranker(self.name, self.runner, self.batcher, self.settings,
                        is_ready=self._is_ready, observe_stage=self.metrics.stage)

    async def infer(self, payload: dict | InferRequest) -> dict | InferResponse:
        self.ensure_loaded()
        if isinstance(payload, InferRequest):
            queries, documents, options = codec.v2_request(payload)
            result = await self.service.score(queries, documents, **options)
            return await v2_rest_response(payload, codec.v2_response(self.name, payload, result))
        queries, documents, options = codec.v1_request(payload)
        result = await self.service.score(queries, documents, query_param="instances.query",
                                          documents_param="instances.document", **options)
        return codec.v1_response(result)

    def get_input_types(self) -> list[dict]:
        return codec.input_types()

    def get_output_types(self) -> list[dict]:
        return codec.output_types()
