"""Dynamic batching engine: standard library only, nothing of torch or HTTP.

What a caller uses::

    engine = BatchEngine(runner, max_batch_tokens=16384, max_batch_size=64, max_wait_s=0.002,
                         max_queue_items=8192, request_timeout_s=30, observer=metrics,
                         worker=EngineWorker("cpu-worker"), device="cpu")
    engine.start()                                   # at load: the worker's set-up runs
    results = await engine.submit(items, lengths)    # QueueFull, QueueTimeout, EngineDraining
    engine.queue_size, engine.stats.summary(), engine.device_stats()
    engine.drain(); await engine.stop()

- ``BatchRunner`` (engine.py): what the engine calls, ``run_batch(payloads) -> results``.
- ``EngineWorker`` (worker.py): one thread per device, shared by the engines on it; it takes
  batches from any ``BatchSource`` (an engine). Its ``lock`` guards the queues too.
- ``BatchQueue`` (queue.py): the waiting items and how the next batch is chosen.
- ``EngineStats``, ``EngineObserver`` (stats.py): totals, and the hooks metrics implement.
- ``EngineError`` and its kinds (errors.py): why work was refused or dropped.
- ``admission.process_budget`` (admission.py): a process-wide budget held while tokenising.

Imports run one way: errors, stats, queue ← worker ← engine.
"""

from predictor.engine.engine import BatchEngine, BatchRunner, Lane
from predictor.engine.errors import EngineDraining, EngineError, QueueFull, QueueTimeout
from predictor.engine.queue import Batch, BatchQueue, Ticket
from predictor.engine.stats import EngineObserver, EngineStats
from predictor.engine.worker import BatchSource, EngineWorker

__all__ = ["Batch", "BatchEngine", "BatchQueue", "BatchRunner", "BatchSource", "EngineDraining",
           "EngineError", "EngineObserver", "EngineStats", "EngineWorker", "Lane", "QueueFull",
           "QueueTimeout", "Ticket"]
