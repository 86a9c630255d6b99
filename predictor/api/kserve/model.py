"""What every served model shares: loading then ``ready``, its engine, auth, errors in gRPC terms.

A thin ``kserve.Model`` around a service of ``predictor/core`` (``Embedder``, ``Reranker``):
``load()`` builds the runner(s), the engine and the service (``_load_runner``,
``_build_service``); ``infer`` decodes V1/V2 with the model's codec, calls the service and
encodes its result. The domain (validation, tokenising, limits, engine refusals) is the
service's.

Devices (``--device``, core/devices.py): one, or several (``auto`` = every visible GPU,
``cuda:0,cuda:1``); the model is loaded on each and one engine queue feeds them all
(engine/engine.py). The runtime is reached only through the ``ModelHost`` port
(core/ports.py) that the composition root gives (cli.build_models: runtime/host.TorchHost).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kserve

from predictor.auth import check_token
from predictor.core.devices import device_worker, resolve_devices, torch_device
from predictor.core.ports import BatchRunner, LoadedRunner, ModelHost
from predictor.core.service import EngineService
from predictor.engine import BatchEngine
from predictor.errors import ApiError, NotReadyError
from predictor.metrics import EngineMetrics
from predictor.settings import Settings

logger = logging.getLogger(__name__)


class EngineModel(kserve.Model):
    kind = "model"

    def __init__(self, name: str, model_id: str, settings: Settings, spec: Any = None, *,
                 host: ModelHost | None = None):
        """``spec``: a ``models_config.ModelSpec`` (family, aliases, max_length...), or None.
        ``host``: the runtime that loads and runs the model (``runtime/host.TorchHost``);
        needed by ``load()``."""
        super().__init__(name)
        self.model_id = model_id
        self.settings = settings
        self.spec = spec
        self.host = host
        self.runner: Any = None  # a LoadedRunner once loaded (the first, with several devices)
        self.batcher: BatchEngine | None = None
        self.service: Any = None  # the core service, once loaded
        self.aliases: tuple[str, ...] = tuple(getattr(spec, "aliases", ()) or ())
        self.metrics = EngineMetrics(name)

    def start(self) -> None:
        """KServe's default marks every model ready here; ours is ready only once loaded."""

    def _load_runner(self, settings: Settings) -> Any:
        """The runner for this model, loaded on ``settings.device``."""
        raise NotImplementedError

    def _build_service(self) -> EngineService:
        """The core service around ``self.runner`` and ``self.batcher``."""
        raise NotImplementedError

    def _is_ready(self) -> bool:
        return bool(self.ready)

    def _host(self) -> ModelHost:
        if self.host is None:
            raise RuntimeError(f"{self.kind} {self.name}: no runtime host to load it with "
                               "(cli.build_models gives one)")
        return self.host

    def load(self) -> bool:
        started = time.monotonic()
        s = self.settings
        devices = resolve_devices(s.device, self._host().cuda_count)
        if len(devices) == 1:
            self.runner = self._load_runner(s if s.device in (None, devices[0])
                                            else self._settings_on(devices[0]))
            lanes = [(self.runner.device, self._batch_runner(self.runner))]
        else:
            runners = [self._load_runner(self._settings_on(device)) for device in devices]
            self.runner = runners[0]
            lanes = [(device, self._batch_runner(runner))
                     for device, runner in zip(devices, runners, strict=True)]
        self.batcher = BatchEngine(
            lanes[0][1], max_batch_tokens=s.batch_tokens_for(self.runner.device),
            max_batch_size=s.max_batch_size,
            max_wait_s=s.batch_wait_ms / 1000.0, max_queue_items=s.max_queue_size,
            request_timeout_s=s.request_timeout, name=f"{self.name}-engine",
            observer=self.metrics, on_worker_start=self._prepare_worker,
            worker=device_worker(lanes[0][0]), device=lanes[0][0],
            replicas=[(device, runner, device_worker(device)) for device, runner in lanes[1:]])
        self.service = self._build_service()  # before the worker starts: may refuse the model
        self.batcher.start()
        self.load_seconds = time.monotonic() - started
        self.ready = True
        precision = self.runner.precision
        batching = self.batcher.describe()
        logger.info("%s %s loaded from %s on %s (dtype=%s: %s; max_length=%d; batch cost %s, "
                    "pipeline depth %d) in %.1fs",
                    self.kind, self.name, self.model_id, ", ".join(d for d, _ in lanes),
                    precision.dtype, precision.reason, self.runner.max_length,
                    batching["batch_cost"], batching["pipeline_depth"], self.load_seconds)
        return self.ready

    def _settings_on(self, device: str) -> Settings:
        """This model's settings naming ``device`` (as torch knows it) to load it there."""
        return self.settings.model_copy(update={"device": torch_device(device)})

    def _batch_runner(self, runner: LoadedRunner) -> BatchRunner:
        """What the engine calls for ``runner``: on CPU, the length splitter around it."""
        runner.observe_stage = self.metrics.stage
        return self._host().engine_runner(runner, self.settings.sub_batches)

    def _prepare_worker(self, lane: Any = None) -> None:
        """On the engine's worker thread: torch threads, warm-up (runtime/worker_setup.py). CPU
        replicas share the CPUs: each worker takes its share."""
        if lane is None:
            self._host().prepare_worker(self.batcher.runner)
            return
        cpu_lanes = sum(1 for other in self.batcher.lanes if other.device.startswith("cpu"))
        self._host().prepare_worker(lane.runner, lane.device, cpu_lanes)

    @property
    def max_length(self) -> int:
        return self.runner.max_length

    def stop(self) -> None:
        """Shutdown: not ready any more. The engine keeps taking work: a request admitted before
        the signal (even one still being tokenised) must complete; the servers stop admitting
        new ones, and what is left at the grace deadline gets 503 (shutdown.py)."""
        self.ready = False

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """KServe's V1/V2 entry (REST and gRPC): auth, then ``infer``; errors in gRPC terms.

        REST requests were already authenticated by the HTTP middleware; gRPC metadata reaches
        us here as ``headers``.
        """
        try:
            check_token(headers or {}, self.settings.api_token)
            return await self.infer(payload)
        except ApiError as exc:
            if getattr(payload, "from_grpc", False):
                raise exc.to_grpc() from None
            raise

    async def infer(self, payload: Any) -> Any:
        raise NotImplementedError

    def ensure_loaded(self) -> None:
        """A request to a model not loaded (or unloaded) is a 503."""
        if self.service is None:
            raise NotReadyError(self.name)

    def describe(self) -> dict:
        """Facts for ``/v1/models``: the service's, with the model's source and aliases."""
        facts = {"kind": self.kind, "root": self.model_id, **self.service.describe()}
        if self.aliases:
            facts["aliases"] = list(self.aliases)
        return facts

    def stats(self) -> dict:
        s = self.settings
        summary = {"kind": self.kind, "ready": bool(self.ready), "model": self.model_id}
        if self.batcher is not None:
            summary |= {"queue_size": self.batcher.queue_size, **self.batcher.stats.summary()}
            summary["devices"] = self.batcher.device_stats()
            summary["config"] = {
                "device": ",".join(lane.device for lane in self.batcher.lanes),
                "fp16": self.runner.half, **self.runner.precision.describe(),
                "max_length": self.max_length, "max_batch_tokens": self.batcher.max_batch_tokens,
                **self.batcher.describe(),
                "max_batch_size": s.max_batch_size, "batch_wait_ms": s.batch_wait_ms,
                "max_queue_size": s.max_queue_size, "request_timeout_s": s.request_timeout}
        return summary
