"""Dynamic batching engine: queue, token-budget batches, one worker thread for model work."""

from .batcher import BatchEngine, BatchRunner

__all__ = ["BatchEngine", "BatchRunner"]
