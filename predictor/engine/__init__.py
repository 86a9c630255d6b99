"""Dynamic batching engine: queue, token-budget batches, one worker thread for model work."""

from .batcher import BatchEngine, BatchRunner
from .errors import EngineDraining, EngineError, QueueFull, QueueTimeout
from .stats import EngineObserver, EngineStats

__all__ = ["BatchEngine", "BatchRunner", "EngineDraining", "EngineError", "EngineObserver",
           "EngineStats", "QueueFull", "QueueTimeout"]
