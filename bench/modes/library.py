"""``library``: what a user would do without a server, FlagEmbedding called once per request.

``BGEM3FlagModel.encode(texts)`` and ``FlagReranker.compute_score(pairs)``, each client request
one call, from ``clients`` threads. Two ways to share one model between threads:

- ``threads``: every client thread calls the library at once (torch releases the GIL, so the
  calls overlap and contend for the cores);
- ``serial``: a lock lets one call run at a time, as a naive one-worker server would; a
  request's latency includes its wait for the lock.

Each call tokenises, pads, runs FlagEmbedding's batch-size probe pass (a forward over the first
batch, to find a size that fits in memory) and then the real pass: that probe is part of what
``encode`` costs a caller, so it is measured, not worked around.
"""

from __future__ import annotations

import itertools
import threading
import time

from ..stats import Cell
from ..workloads import COLBERT, DENSE, SPARSE, Corpus, Workload

MAX_LENGTH = 8192  # the server's default max_length; FlagEmbedding's own default is 512


class LibraryRunner:
    def __init__(self, m3_dir: str, rr_dir: str, device: str, fp16: bool,
                 sharing: str = "serial", dtype: str | None = None):
        """``dtype`` bfloat16 (or auto where that means bfloat16): each call runs under
        ``torch.autocast``, the way a library user gets bf16 from FlagEmbedding (it has no
        bf16 option of its own)."""
        from FlagEmbedding import BGEM3FlagModel, FlagReranker

        from predictor.runtime.device import resolve_precision

        half = fp16 and device.startswith("cuda")
        self.autocast = None
        if dtype is not None:
            precision = resolve_precision(dtype, device, fp16)
            half = precision.half
            if precision.dtype == "bfloat16":
                self.autocast = device.split(":")[0]
            elif precision.dtype == "int8":
                raise ValueError("the library has no int8 mode")
        self.m3 = BGEM3FlagModel(m3_dir, use_fp16=half, devices=device,
                                 normalize_embeddings=True)
        self.rr = FlagReranker(rr_dir, use_fp16=half, devices=device)
        if sharing not in ("serial", "threads"):
            raise ValueError(f"library sharing must be serial or threads, not {sharing!r}")
        self.sharing = sharing

    def call(self, workload: Workload, texts: list[str], query: str | None) -> int:
        """One client request through the library; returns the number of results."""
        if self.autocast is not None:
            import torch

            with torch.autocast(self.autocast, dtype=torch.bfloat16):
                return self._call(workload, texts, query)
        return self._call(workload, texts, query)

    def _call(self, workload: Workload, texts: list[str], query: str | None) -> int:
        if workload.task == "rerank":
            scores = self.rr.compute_score([[query, doc] for doc in texts],
                                           max_length=MAX_LENGTH)
            return len(scores) if isinstance(scores, list) else 1
        out = self.m3.encode(texts, max_length=MAX_LENGTH,
                             return_dense=DENSE in workload.outputs,
                             return_sparse=SPARSE in workload.outputs,
                             return_colbert_vecs=COLBERT in workload.outputs)
        first = next(v for v in out.values() if v is not None)
        return len(first)

    def single(self, text: str, repeats: int) -> list[float]:
        """Seconds of ``encode([text])`` (dense only), ``repeats`` times, after a warm-up."""
        workload = Workload("single", "embed", frozenset({DENSE}), "short")
        times = []
        for _ in range(repeats + 3):
            t0 = time.perf_counter()
            self.call(workload, [text], None)
            times.append(time.perf_counter() - t0)
        return times[3:]

    def run(self, workload: Workload, corpus: Corpus, clients: int, duration: float) -> Cell:
        req = corpus.request(workload, 0)
        self.call(workload, req.texts, req.query)  # warm-up
        cell = Cell("library", workload.name, clients, note=f"{clients} threads, {self.sharing}")
        counter = itertools.count()
        lock = threading.Lock() if self.sharing == "serial" else None
        record = threading.Lock()
        start = time.perf_counter()
        deadline = start + duration

        def client() -> None:
            while time.perf_counter() < deadline:
                req = corpus.request(workload, next(counter))
                t0 = time.perf_counter()
                try:
                    if lock is not None:
                        with lock:
                            n = self.call(workload, req.texts, req.query)
                    else:
                        n = self.call(workload, req.texts, req.query)
                    ok = n == len(req.texts)
                except Exception:
                    ok = False
                t1 = time.perf_counter()
                with record:
                    cell.requests += 1
                    if ok:
                        cell.texts += len(req.texts)
                        cell.tokens += req.tokens
                        cell.latencies_s.append(t1 - t0)
                    else:
                        cell.errors += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cell.elapsed_s = time.perf_counter() - start
        return cell
