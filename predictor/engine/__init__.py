"""Dynamic batching engine: queue, token-budget batches, one worker thread for model work."""

from .batcher import BatchEngine, BatchRunner
from .errors import EngineDraining, EngineError, QueueFull, QueueTimeout
from .stats import EngineObserver, EngineStats
from .worker import EngineWorker

__all__ = ["BatchEngine", "BatchRunner", "EngineDraining", "EngineError", "EngineObserver",
           "EngineStats", "EngineWorker", "QueueFull", "QueueTimeout"]
