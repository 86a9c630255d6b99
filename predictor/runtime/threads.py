"""torch's CPU thread count from the CPUs this process may really use.

torch starts one intra-op thread per CPU it can see. In a pod with a CPU limit, the container
sees every core of the node but the kernel grants only the quota (``cpu.max``): 64 threads on a
4-CPU quota spend their time throttled and waiting for each other (OpenMP threads spin on a
barrier; measured here: a forward whose helper thread lost its core ran ~4x slower). So the
count is the smaller of the CPU affinity and the cgroup quota, rounded up. ``OMP_NUM_THREADS``
or ``MKL_NUM_THREADS`` set by the operator win.
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


def set_torch_threads(environ=os.environ) -> int:
    """Set torch's intra-op threads to the usable CPUs; returns the count torch uses."""
    import torch

    if environ.get("OMP_NUM_THREADS") or environ.get("MKL_NUM_THREADS"):
        return torch.get_num_threads()
    threads = usable_cpus()
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    logger.info("torch CPU threads: %d", torch.get_num_threads())
    return torch.get_num_threads()
