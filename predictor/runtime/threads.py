"""torch's CPU threads: how many, and on which thread.

How many: torch starts one intra-op thread per CPU it can see. In a pod with a CPU limit, the
container sees every core of the node but the kernel grants only the quota (``cpu.max``): 64
threads on a 4-CPU quota spend their time throttled and waiting for each other. So the count is
the smaller of the CPU affinity and the cgroup quota, rounded up; ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` set by the operator win.

Which thread: every model runs on its engine's worker thread, and libgomp keeps one OpenMP
team per thread that starts parallel work. When the main thread (loading the models) has a
team of its own, libgomp counts more busy threads than CPUs and stops spinning between parallel
regions; each of the ~400 small regions of a forward pass then pays a futex wake-up (measured:
one short text 8.4 ms instead of 5.9 ms on 2 CPUs). So the CLI keeps the main thread at one
torch thread (``single_thread_here``) and each worker takes the CPUs for itself
(``use_cpus_here``), before its first batch.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs granted by the cgroup quota (v2 ``cpu.max``, else v1 CFS), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def torch_threads(environ=os.environ) -> int:
    """The intra-op thread count a model's worker thread should use."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        try:
            value = int(environ.get(name, ""))
        except ValueError:
            continue
        if value > 0:
            return value
    return usable_cpus()


def single_thread_here() -> None:
    """One torch thread for the calling thread (the main thread: loading, no model work)."""
    import torch

    torch.set_num_threads(1)


def use_cpus_here(environ=os.environ) -> int:
    """On a worker thread: take ``torch_threads()`` intra-op threads; returns the count."""
    import torch

    threads = torch_threads(environ)
    torch.set_num_threads(threads)
    return threads
