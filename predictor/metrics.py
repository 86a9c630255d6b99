"""Prometheus metrics, served by KServe's ``/metrics`` (the default prometheus-client registry).

The engine and the runners report through small hooks (``EngineMetrics``, ``observe_stage``);
they do not import this module.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144)
_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                 30)

QUEUE_DEPTH = Gauge("bge_predictor_queue_depth", "Items waiting in the model's batching queue",
                    ["model"])
BATCH_SIZE = Histogram("bge_predictor_batch_size", "Sequences per forward pass", ["model"],
                       buckets=_SIZE_BUCKETS)
BATCH_TOKENS = Histogram("bge_predictor_batch_tokens", "Padded tokens per forward pass",
                         ["model"], buckets=_TOKEN_BUCKETS)
STAGE_SECONDS = Histogram("bge_predictor_stage_seconds",
                          "Time per stage: queue_wait, tokenize, forward, postprocess, batch",
                          ["model", "stage"], buckets=_TIME_BUCKETS)
TOKENS = Counter("bge_predictor_tokens_total", "Tokens processed (without padding)", ["model"])
BATCHES = Counter("bge_predictor_batches_total", "Forward passes run", ["model", "outcome"])
# Per device (one series per device the model runs on; several with --device cuda:0,cuda:1).
DEVICE_BATCHES = Counter("bge_predictor_device_batches_total",
                         "Forward passes run, by device", ["model", "device", "outcome"])
DEVICE_ITEMS = Counter("bge_predictor_device_items_total", "Sequences run, by device",
                       ["model", "device"])
DEVICE_BUSY = Counter("bge_predictor_device_busy_seconds_total",
                      "Seconds the device spent running the model's batches", ["model", "device"])
REQUESTS = Counter("bge_predictor_requests_total", "HTTP requests by route and status",
                   ["route", "status"])


class EngineMetrics:
    """``EngineObserver`` that feeds the Prometheus metrics of one model."""

    def __init__(self, model: str):
        self.model = model
        self._depth = QUEUE_DEPTH.labels(model)
        self._size = BATCH_SIZE.labels(model)
        self._tokens = BATCH_TOKENS.labels(model)
        self._wait = STAGE_SECONDS.labels(model, "queue_wait")
        self._batch = STAGE_SECONDS.labels(model, "batch")
        self._processed = TOKENS.labels(model)
        self._devices: dict[str, tuple] = {}  # device -> its label children, made once

    def queue_depth(self, items: int) -> None:
        self._depth.set(items)

    def batch_done(self, size: int, tokens: int, padded_tokens: int, queue_waits: list[float],
                   seconds: float, ok: bool, device: str = "",
                   busy: float | None = None) -> None:
        self._size.observe(size)
        self._tokens.observe(padded_tokens)
        for wait in queue_waits:
            self._wait.observe(wait)
        self._batch.observe(seconds)
        BATCHES.labels(self.model, "ok" if ok else "error").inc()
        if ok:
            self._processed.inc(tokens)
        if device:
            children = self._devices.get(device)
            if children is None:
                children = self._devices[device] = (
                    DEVICE_BATCHES.labels(self.model, device, "ok"),
                    DEVICE_BATCHES.labels(self.model, device, "error"),
                    DEVICE_ITEMS.labels(self.model, device), DEVICE_BUSY.labels(self.model, device))
            batches_ok, batches_failed, items, device_busy = children
            (batches_ok if ok else batches_failed).inc()
            items.inc(size)
            device_busy.inc(seconds if busy is None else busy)

    def stage(self, stage: str, seconds: float) -> None:
        STAGE_SECONDS.labels(self.model, stage).observe(seconds)
