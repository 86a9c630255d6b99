"""A worker process for the in-process contenders (``limit`` and ``library``).

Why a process of its own: each contender gets a clean peak-RSS reading and its own torch
thread pool, and the models stay loaded across cells, so every workload is measured with
all contenders loaded side by side (no contender warms up while another is timed).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from typing import Any

from ..stats import Cell, peak_rss_mb, reset_peak_rss


class InProcWorker:
    """Parent side: send a command, get its result; the child holds the models."""

    def __init__(self, mode: str, **load_args: Any):
        ctx = mp.get_context("spawn")
        self.mode = mode
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_main, args=(child, mode, load_args),
                                name=f"bench-{mode}", daemon=True)
        self.proc.start()
        child.close()
        self.info = self._reply()

    def _reply(self) -> Any:
        if not self._conn.poll(1800):
            raise RuntimeError(f"{self.mode} worker did not answer")
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"{self.mode} worker failed:\n{value}")
        return value

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((method, args, kwargs))
        return self._reply()

    def run(self, workload, corpus, clients: int, duration: float) -> Cell:
        return self.call("run", workload, corpus, clients, duration)

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self._conn.send(("exit", (), {}))
            except OSError:
                pass
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def _main(conn, mode: str, load_args: dict) -> None:
    """Child side: load the contender, then serve commands until told to exit."""
    try:
        if mode == "limit":
            from .limit import LimitRunner as runner_cls
        elif mode == "library":
            from .library import LibraryRunner as runner_cls
        else:
            raise ValueError(f"unknown in-process mode {mode!r}")
        runner = runner_cls(**load_args)
        conn.send(("ok", {"pid": os.getpid()}))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        method, args, kwargs = conn.recv()
        if method == "exit":
            return
        try:
            if method == "run":
                reset_peak_rss(os.getpid())
                cpu0 = time.process_time()  # all threads of this process
                cell = runner.run(*args, **kwargs)
                cell.cpu_s = time.process_time() - cpu0
                cell.peak_rss_mb = peak_rss_mb(os.getpid())
                conn.send(("ok", cell))
            else:
                conn.send(("ok", getattr(runner, method)(*args, **kwargs)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
