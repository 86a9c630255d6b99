"""One measured cell (mode x workload x clients) and the figures derived from it."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field


@dataclass
class Cell:
    """Raw counts of one timed run; every rate is derived from these.

    ``elapsed_s`` runs from the first request sent to the last answer received (clients stop
    sending at the deadline and the requests in flight finish), so ``texts / elapsed_s`` counts
    only finished work. ``latencies_s`` holds one entry per request (for ``limit``: per batch).
    """

    mode: str
    workload: str
    clients: int
    texts: int = 0
    tokens: int = 0
    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    cpu_s: float | None = None  # CPU seconds the contender's process(es) used in the cell
    client_cpu_s: float | None = None  # CPU seconds of the HTTP load generator (this process)
    load_avg: float | None = None  # the machine's 1-minute load average at the end of the cell
    engine: dict | None = None  # ours: batches the server ran in the cell (from its /stats)
    note: str = ""

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def texts_per_cpu_s(self) -> float | None:
        """Texts per CPU-second of the contender: less sensitive to other load on the machine
        than texts/s, since time spent waiting for a core is not counted."""
        return self.texts / self.cpu_s if self.cpu_s else None

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies_s, q) * 1000.0

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("latencies_s")
        out.update(texts_per_s=self.texts_per_s, tokens_per_s=self.tokens_per_s,
                   texts_per_cpu_s=self.texts_per_cpu_s,
                   p50_ms=self.latency_ms(50), p95_ms=self.latency_ms(95),
                   p99_ms=self.latency_ms(99))
        return out


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --------------------------------------------------------------------------- peak RSS

def reset_peak_rss(pid: int) -> None:
    """Reset the kernel's high-water mark (VmHWM) of ``pid``: ``echo 5 > clear_refs``."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of ``pid`` in MiB: the most resident memory since start or the last reset."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (a server may fork helpers)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return [pid] + [child.pid for child in proc.children(recursive=True)]
    except Exception:
        return [pid]


def reset_tree_peak(pid: int) -> None:
    for p in tree_pids(pid):
        reset_peak_rss(p)


def tree_peak_mb(pid: int) -> float | None:
    peaks = [peak_rss_mb(p) for p in tree_pids(pid)]
    peaks = [p for p in peaks if p is not None]
    return sum(peaks) if peaks else None


def self_peak_mb() -> float | None:
    return peak_rss_mb(os.getpid())


def tree_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` and its descendants."""
    try:
        import psutil

        total = 0.0
        for p in tree_pids(pid):
            times = psutil.Process(p).cpu_times()
            total += times.user + times.system
        return total
    except Exception:
        return None
