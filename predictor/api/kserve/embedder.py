"""The embedder as a KServe model: a thin wrapper around ``core.embedder.Embedder``.

``load()`` builds the runner (through the runtime host the composition root gives), the engine
and the service, then sets ``ready``. ``infer`` is KServe's V1 / V2 (REST and gRPC) entry:
``embedder_codec`` decodes the request, ``Embedder.encode`` does the work, the codec encodes the
result.
"""

from __future__ import annotations

from typing import Any

from kserve.protocol.infer_type import InferRequest, InferResponse

from predictor.api.kserve import embedder_codec as codec
from predictor.api.kserve.model import EngineModel
from predictor.api.kserve.rest import v2_rest_response
from predictor.core.embedder import Embedder
from predictor.core.ports import ModelHost
from predictor.settings import Settings


class EmbedderModel(EngineModel):
    kind = "embedder"
    service: Embedder

    def __init__(self, name: str, model_id: str, settings: Settings, spec: Any = None, *,
                 default_family: str | None = "bge-m3", host: ModelHost | None = None):
        """``spec``: a ``models_config.ModelSpec`` (family, prefixes, aliases...), or None.
        ``default_family``: used when nothing tells the family (the SPEC ``--embedder``)."""
        super().__init__(name, model_id, settings, spec, host=host)
        self.default_family = default_family

    def _load_runner(self, settings: Settings) -> Any:
        return self._host().load_embedder(self.model_id, settings, self.spec,
                                          fallback=self.default_family)

    def _build_service(self) -> Embedder:
        return Embedder(self.name, self.runner, self.batcher, self.settings,
                        is_ready=self._is_ready, observe_stage=self.metrics.stage)

    async def infer(self, payload: dict | InferRequest) -> dict | InferResponse:
        self.ensure_loaded()
        if isinstance(payload, InferRequest):
            texts, options = codec.v2_request(payload)
            result = await self.service.encode(texts, options, param="inputs[0]")
            return await v2_rest_response(
                payload, codec.v2_response(self.name, payload, result, options))
        texts, options = codec.v1_request(payload)
        return codec.v1_response(await self.service.encode(texts, options, param="instances"))

    def get_input_types(self) -> list[dict]:
        return codec.input_types()

    def get_output_types(self) -> list[dict]:
        return codec.output_types(self.service)
