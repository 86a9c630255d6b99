"""Dynamic batching engine: queue, token-budget batches, one worker thread for model work."""

from predictor.engine.batcher import BatchEngine, BatchRunner
from predictor.engine.errors import EngineDraining, EngineError, QueueFull, QueueTimeout
from predictor.engine.stats import EngineObserver, EngineStats
from predictor.engine.worker import EngineWorker

__all__ = ["BatchEngine", "BatchRunner", "EngineDraining", "EngineError", "EngineObserver",
           "EngineStats", "EngineWorker", "QueueFull", "QueueTimeout"]
