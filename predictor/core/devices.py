"""Which devices a model is served on, and the one worker thread each device has.

``--device``: one device, or several (``auto`` = every visible GPU, ``cuda:0,cuda:1``); the
model is loaded on each and one engine queue feeds them all (engine/engine.py). How many GPUs
there are is the runtime's to say (``ModelHost.cuda_count``): nothing here imports torch.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from predictor.engine import EngineWorker

# One worker thread per device for all models on it (engine/worker.py says why). The workers of
# several devices share one lock: the engines' queues are shared between them.
_DEVICE_WORKERS: dict[str, EngineWorker] = {}
_DEVICES_LOCK = threading.Condition()


def device_worker(device: str) -> EngineWorker:
    if device not in _DEVICE_WORKERS:
        _DEVICE_WORKERS[device] = EngineWorker(f"{device}-worker", lock=_DEVICES_LOCK)
    return _DEVICE_WORKERS[device]


_DEVICE_NAME = re.compile(r"^(cpu|cuda)(:\d+)?$")


def resolve_devices(spec: str | None, cuda_count: Callable[[], int] | None = None) -> list[str]:
    """The devices named by ``--device``, in order.

    Unset or ``auto``: every visible GPU (``cuda`` when there is one, ``cuda:0``... when
    several; ROCm GPUs appear as ``cuda`` too), else ``cpu``. A comma-separated list names
    devices: ``cuda:0,cuda:1``. ``cpu:N`` entries are CPU replicas, each a copy of the model on
    a worker of its own sharing the CPUs (for tests of several devices without a GPU).
    """
    if spec is None or spec.strip().lower() in ("", "auto"):
        if cuda_count is None:
            raise ValueError("resolve_devices: 'auto' needs cuda_count (the runtime host's)")
        count = cuda_count()
        return ["cpu"] if count == 0 else ["cuda"] if count == 1 else [
            f"cuda:{i}" for i in range(count)]
    devices = [part.strip() for part in spec.split(",")]
    if len(devices) == 1:
        return devices  # one device: passed to torch as it is, as before
    for device in devices:
        if not _DEVICE_NAME.match(device):
            raise ValueError(f"--device: {device!r} in {spec!r} is not cpu, cpu:N, cuda or "
                             "cuda:N")
    if len(set(devices)) != len(devices):
        raise ValueError(f"--device: {spec!r} names a device twice")
    return devices


def torch_device(device: str) -> str:
    """What torch is given for a device name: ``cpu:N`` replicas all run on ``cpu``."""
    return "cpu" if device.startswith("cpu") else device
