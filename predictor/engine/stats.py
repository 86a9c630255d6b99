"""Running totals of an engine, for ``/stats`` and the Prometheus observer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class EngineStats:
    requests: int = 0
    items: int = 0
    batches: int = 0
    padded_tokens: int = 0
    tokens: int = 0
    busy_seconds: float = 0.0
    rejected: int = 0
    timed_out: int = 0
    failed_batches: int = 0

    def summary(self) -> dict:
        return {
            "processed_requests": self.requests,
            "processed_items": self.items,
            "processed_tokens": self.tokens,
            "batches": self.batches,
            "average_batch_size": round(self.items / self.batches, 3) if self.batches else 0,
            "average_processing_time_ms": (round(1000 * self.busy_seconds / self.batches, 3)
                                           if self.batches else 0),
            "padding_ratio": (round(1 - self.tokens / self.padded_tokens, 4)
                              if self.padded_tokens else 0),
            "rejected_queue_full": self.rejected,
            "timed_out": self.timed_out,
            "failed_batches": self.failed_batches,
        }

    def device_summary(self) -> dict:
        """What one device of an engine did (requests belong to the engine, not a device)."""
        return {
            "batches": self.batches,
            "processed_items": self.items,
            "processed_tokens": self.tokens,
            "busy_seconds": round(self.busy_seconds, 6),
            "average_batch_size": round(self.items / self.batches, 3) if self.batches else 0,
            "failed_batches": self.failed_batches,
        }


class EngineObserver(Protocol):
    """Hooks for metrics; called from the event loop and the engine's worker thread."""

    def queue_depth(self, items: int) -> None: ...

    def batch_done(self, size: int, tokens: int, padded_tokens: int, queue_waits: list[float],
                   seconds: float, ok: bool, device: str = "",
                   busy: float | None = None) -> None:
        """A batch is done: ``seconds`` from its start to its results; ``busy`` the device time
        to count for it (less where batches overlap in a pipeline; None: ``seconds``)."""
