"""What the KServe wrappers (``api/kserve/model.py``) need of the runtime, handed to them by
the composition root (``cli.build_models``) so that ``api/`` imports neither ``runtime`` nor
torch: device discovery, runner loading, the engine's view of a runner (the length splitter on
CPU) and the worker thread's set-up (torch threads, current CUDA device, warm-up).

``TorchHost`` satisfies ``core.ports.ModelHost`` structurally; it imports nothing of
``api``.
"""

from __future__ import annotations

from typing import Any


class TorchHost:
    def cuda_count(self) -> int:
        """Visible CUDA (or ROCm) GPUs; 0 without any."""
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def load_embedder(self, model_id: str, settings: Any, spec: Any = None, *,
                      fallback: str | None = None) -> Any:
        from predictor.runtime.families import load_embedder_runner

        return load_embedder_runner(model_id, settings, spec, fallback=fallback)

    def load_reranker(self, model_id: str, settings: Any, spec: Any = None) -> Any:
        from predictor.runtime.families import load_reranker_runner

        return load_reranker_runner(model_id, settings, spec)

    def engine_runner(self, runner: Any, sub_batches: str) -> Any:
        """What the engine calls for ``runner``: on CPU, the length splitter around it
        (unless ``--sub_batches off``, or the runner packs its batches: no padding to save)."""
        if (sub_batches != "off" and runner.device == "cpu"
                and not getattr(runner, "packs_batches", False)):
            from predictor.runtime.sub_batches import SplitByLength

            return SplitByLength(runner)
        return runner

    def prepare_worker(self, runner: Any, device: str | None = None,
                       cpu_lanes: int | None = None) -> None:
        """On an engine's worker thread, before its first batch (runtime/worker_setup.py).
        ``device``: the lane's device when the model runs on several; ``cpu_lanes``: how many
        CPU lanes share the CPUs (each takes its share of the torch threads)."""
        from predictor.runtime.worker_setup import prepare_worker

        if device is None:
            prepare_worker(runner)
            return
        if device.startswith("cuda:"):
            import torch

            # this thread's current device: what torch allocates without naming one goes there
            torch.cuda.set_device(device)
        threads = None
        if device.startswith("cpu"):
            from predictor.runtime.threads import torch_threads

            threads = max(1, torch_threads() // max(1, cpu_lanes or 1))
        prepare_worker(runner, threads=threads)
