"""Peak resident memory of a server process while a block runs (sampled from /proc by psutil)."""

from __future__ import annotations

import threading
import time

import psutil


class PeakRSS:
    """``with PeakRSS(pid) as peak: ...`` then ``peak.base``, ``peak.peak``, ``peak.growth``
    in bytes. Sampling every few milliseconds catches any allocation that lives longer than
    that, which is what takes a process down."""

    def __init__(self, pid: int, interval: float = 0.005):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self) -> int:
        try:
            return self.process.memory_info().rss
        except psutil.Error:  # the process died: the caller's asserts will say so
            return self.peak

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base
