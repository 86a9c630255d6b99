"""``limit``: the bare forward pass, the most this hardware can do with this model.

The model is loaded the way ``predictor/runtime`` loads it (FlagEmbedding's ``BGEM3FlagModel``
and ``FlagReranker``) and called the same way, but on texts tokenised, length-sorted and padded
into full batches before the clock starts (the server's own limits: ``max_batch_size``
sequences and ``max_batch_tokens`` padded tokens). No tokenising, no post-processing, no
queueing, no HTTP: whatever a server adds on top shows as the gap to this line.

The forward passes run on one dedicated thread, as in the server's engine, not on the main
thread: with libgomp's default active waiting, a main thread whose OpenMP helper is preempted
by another process spins at every barrier, and on a busy 2-core machine that made the same
forward ~4x slower than from a worker thread (OMP_WAIT_POLICY=PASSIVE removed the gap too).
Like the server (predictor/runtime/threads.py), the main thread loads on one torch thread and
the forward thread takes the CPUs for itself: two OpenMP teams would stop libgomp spinning
between parallel regions (one short text 8.4 ms instead of 5.9 ms on 2 CPUs).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from ..stats import Cell
from ..workloads import COLBERT, DENSE, SPARSE, Corpus, Workload


class LimitRunner:
    def __init__(self, m3_dir: str, rr_dir: str, device: str, fp16: bool,
                 max_batch_size: int = 64, max_batch_tokens: int = 16384,
                 dtype: str | None = None):
        """``dtype``: run the models as the server does in that ``--dtype``
        (predictor.runtime.device); None: float32, or float16 on CUDA with ``fp16``."""
        try:
            from FlagEmbedding import BGEM3FlagModel, FlagReranker
        except ImportError:  # the offline GPU kit: the same loading without FlagEmbedding
            from predictor.runtime.flag_free import BGEM3FlagModel, FlagReranker

        from predictor.runtime.device import apply_precision, resolve_precision
        from predictor.runtime.threads import single_thread_here, use_cpus_here

        single_thread_here()
        self.device, self.half = device, fp16 and device.startswith("cuda")
        if dtype is not None:
            precision = resolve_precision(dtype, device, fp16)
            self.half = precision.half
        m3 = BGEM3FlagModel(m3_dir, use_fp16=self.half, devices=device)
        self.m3_tok = m3.tokenizer
        rr = FlagReranker(rr_dir, use_fp16=self.half, devices=device)
        self.rr_tok = rr.tokenizer
        if dtype is None:
            self.m3 = (m3.model.half() if self.half else m3.model.float()).to(device).eval()
            self.rr = (rr.model.half() if self.half else rr.model.float()).to(device).eval()
        else:
            self.m3 = apply_precision(m3.model, precision, device, "model", m3_dir)
            self.rr = apply_precision(rr.model, precision, device, rr.model.base_model_prefix,
                                      rr_dir)
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="limit-forward",
                                          initializer=use_cpus_here)

    # -- batches, built before the clock starts -------------------------------------------
    def _sequences(self, workload: Workload, corpus: Corpus) -> list[list[int]]:
        """The token ids of every text (or query-document pair) of one pass over the pool."""
        pool = corpus.passages[workload.length]
        if workload.task == "embed":
            return self.m3_tok(pool.texts, add_special_tokens=True)["input_ids"]
        k = corpus.texts_per_request[workload.length]
        queries, docs = [], []
        for i in range(max(1, len(pool) // k)):
            req = corpus.request(workload, i)
            queries += [req.query] * len(req.texts)
            docs += req.texts
        return self.rr_tok(queries, docs, truncation="only_second", max_length=10**6)["input_ids"]

    def _batches(self, seqs: list[list[int]], pad_id: int) -> list[tuple]:
        seqs = sorted(seqs, key=len)
        groups, current = [], []
        for seq in seqs:
            width = max(len(seq), len(current[-1]) if current else 0)
            if current and (len(current) + 1 > self.max_batch_size
                            or width * (len(current) + 1) > self.max_batch_tokens):
                groups.append(current)
                current = []
            current.append(seq)
        if current:
            groups.append(current)
        batches = []
        for group in groups:
            width = max(len(s) for s in group)
            ids = torch.full((len(group), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for row, seq in enumerate(group):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            batches.append((ids.to(self.device), mask.to(self.device), len(group),
                            sum(len(s) for s in group)))
        random.Random(0).shuffle(batches)  # lengths in every stretch of time, not short first
        return batches

    # -- the forward pass ------------------------------------------------------------------
    def _forward(self, workload: Workload, ids, mask) -> None:
        if workload.task == "embed":
            self.m3({"input_ids": ids, "attention_mask": mask},
                    return_dense=DENSE in workload.outputs,
                    return_sparse=SPARSE in workload.outputs,
                    return_colbert_vecs=COLBERT in workload.outputs)
        else:
            self.rr(input_ids=ids, attention_mask=mask, return_dict=True)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(self, workload: Workload, corpus: Corpus, clients: int, duration: float) -> Cell:
        tok = self.m3_tok if workload.task == "embed" else self.rr_tok
        batches = self._batches(self._sequences(workload, corpus), tok.pad_token_id)
        return self._thread.submit(self._timed, workload, batches, clients, duration).result()

    @torch.inference_mode()
    def _timed(self, workload: Workload, batches: list[tuple], clients: int,
               duration: float) -> Cell:
        self._forward(workload, *batches[0][:2])  # warm-up
        cell = Cell("limit", workload.name, clients, note="latency = one batch")
        start = time.perf_counter()
        deadline = start + duration
        i = padded = 0
        while True:
            ids, mask, n_texts, n_tokens = batches[i % len(batches)]
            t0 = time.perf_counter()
            self._forward(workload, ids, mask)
            t1 = time.perf_counter()
            cell.latencies_s.append(t1 - t0)
            cell.texts += n_texts
            cell.tokens += n_tokens
            cell.requests += 1
            padded += ids.numel()
            i += 1
            if t1 >= deadline and i >= min(len(batches), 2):
                break
        cell.elapsed_s = time.perf_counter() - start
        cell.engine = {"batches": i, "avg_batch_size": round(cell.texts / i, 1),
                       "padded_tokens": padded,
                       "forward_ms_per_batch": round(1000 * cell.elapsed_s / i, 2)}
        return cell

    def single(self, text: str, repeats: int) -> list[float]:
        """Seconds of the forward pass of one text (dense only), ``repeats`` times."""
        return self._thread.submit(self._single, text, repeats).result()

    @torch.inference_mode()
    def _single(self, text: str, repeats: int) -> list[float]:
        ids = torch.tensor([self.m3_tok(text)["input_ids"]], device=self.device)
        mask = torch.ones_like(ids)
        workload = Workload("single", "embed", frozenset({DENSE}), "short")
        times = []
        for _ in range(repeats + 3):
            t0 = time.perf_counter()
            self._forward(workload, ids, mask)
            times.append(time.perf_counter() - t0)
        return times[3:]
