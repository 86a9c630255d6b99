"""``ours``: the predictor server (``python -m predictor``) over HTTP on loopback.

Dense goes to the OpenAI route ``/v1/embeddings`` (what the peer also serves), dense+sparse to
``/v1/hybrid-embeddings``, dense+sparse+ColBERT to the same route with ``return_colbert``, and
reranking to ``/v1/rerank``. The server is started once with both models and measured on every
workload; its peak RSS is that of the whole process.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import urllib.request

from ..procs import Server, free_port
from ..workloads import COLBERT, SPARSE, Request, Workload
from .http_load import get_ok

EMBEDDER, RERANKER = "bge-m3", "bge-reranker"


class OursSpec:
    name = "ours"

    def supports(self, workload: Workload) -> bool:
        return True

    def body(self, workload: Workload, req: Request) -> tuple[str, dict]:
        if workload.task == "rerank":
            return "/v1/rerank", {"model": RERANKER, "query": req.query,
                                  "documents": req.texts}
        if SPARSE not in workload.outputs:
            return "/v1/embeddings", {"model": EMBEDDER, "input": req.texts}
        body = {"model": EMBEDDER, "input": req.texts}
        if COLBERT in workload.outputs:
            body["return_colbert"] = True
        return "/v1/hybrid-embeddings", body

    def count(self, workload: Workload, answer: dict) -> int:
        return len(answer["results"] if workload.task == "rerank" else answer["data"])


def engine_totals(base_url: str) -> dict[str, float]:
    """The server's own running totals (Prometheus ``/metrics``), to difference around a cell.

    Sums over both models of: forward passes and their sequences and padded tokens, and the
    seconds spent per stage (queue_wait, tokenize, forward, postprocess, batch).
    """
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        stage = re.search(r'stage="([^"]+)"', labels or "")
        key = f"{name}:{stage.group(1)}" if stage else name
        totals[key] = totals.get(key, 0.0) + float(value)
    return totals


_METRIC = re.compile(r"^bge_predictor_(batch_size_sum|batch_size_count|batch_tokens_sum|"
                     r"stage_seconds_sum|stage_seconds_count|device_busy_seconds_total)"
                     r"(\{[^}]*\})? ([0-9.eE+-]+)$")


def engine_delta(before: dict, after: dict, elapsed_s: float) -> dict:
    """What the server did during a cell: batches, their size and padding, time per stage."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    batches = d.get("batch_size_count", 0)
    if not batches:
        return {}

    def mean_ms(stage: str) -> float | None:
        n = d.get(f"stage_seconds_count:{stage}", 0)
        return round(1000 * d.get(f"stage_seconds_sum:{stage}", 0) / n, 2) if n else None

    return {"batches": int(batches),
            "avg_batch_size": round(d.get("batch_size_sum", 0) / batches, 1),
            "padded_tokens": int(d.get("batch_tokens_sum", 0)),
            # the devices' busy time (batches overlapping in a pipeline counted once)
            "engine_busy": round(d.get("device_busy_seconds_total",
                                       d.get("stage_seconds_sum:batch", 0)) / elapsed_s, 3),
            "forward_ms_per_batch": mean_ms("forward"),
            "postprocess_ms_per_batch": mean_ms("postprocess"),
            "tokenize_ms_per_request": mean_ms("tokenize"),
            "queue_wait_ms_per_text": mean_ms("queue_wait")}


def baseline_env(checkout: pathlib.Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``checkout`` first on PYTHONPATH, so that ``python -m predictor`` run there
    imports that checkout's package, not the venv's editable install (setuptools appends its
    editable finder to ``sys.meta_path``, after the path entries)."""
    rest = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(checkout), rest) if p)}


def check_import(checkout: pathlib.Path, env: dict[str, str]) -> str:
    """Where ``predictor`` comes from for this interpreter, cwd and environment (the server's
    own); raises unless it is ``checkout``'s copy. Returns its ``__file__``."""
    probe = subprocess.run([sys.executable, "-c", "import predictor; print(predictor.__file__)"],
                           cwd=checkout, env={**os.environ, **env}, capture_output=True,
                           text=True, timeout=120)
    if probe.returncode != 0:
        raise RuntimeError(f"cannot import predictor from {checkout}: "
                           f"{probe.stderr.strip()[-500:]}")
    where = pathlib.Path(probe.stdout.strip().splitlines()[-1]).resolve()
    if not where.is_relative_to(checkout.resolve()):
        raise RuntimeError(f"predictor in {checkout} resolves to {where}, not that checkout")
    return str(where)


def start(m3_dir: pathlib.Path, rr_dir: pathlib.Path, device: str, fp16: bool,
          log_dir: pathlib.Path, extra_args: list[str], env: dict[str, str] | None = None,
          timeout: float = 600, dtype: str | None = None, name: str | None = None,
          cwd: pathlib.Path | None = None) -> tuple:
    """Start the server on free ports; returns (server, base_url). ``dtype``: its
    ``--dtype`` (None: float32 on CPU, like the other contenders' defaults; fp16 rules on
    CUDA). ``name``: the contender's name (log file); ``cwd``: where the server runs (the
    baseline checkout for ``before``)."""
    http_port, grpc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "predictor", "--embedder", str(m3_dir),
            "--reranker", str(rr_dir), "--embedder_name", EMBEDDER,
            "--reranker_name", RERANKER, "--device", device,
            "--use_fp16", "true" if fp16 else "false",
            "--http_port", str(http_port), "--grpc_port", str(grpc_port), *extra_args]
    name = name or (f"ours@{dtype}" if dtype else "ours")
    if dtype is None and not device.startswith("cuda"):
        dtype = "float32"  # plain ``ours`` runs what plain limit and library run on CPU
    if dtype is not None:
        argv += ["--dtype", dtype]
    server = Server(name, argv, log_dir / f"{name}.log", env=env, cwd=cwd)
    base = f"http://127.0.0.1:{http_port}"

    def ready() -> bool:
        # Another user's server may hold a port we were told was free: check it is ours.
        if not all(get_ok(f"{base}/v2/models/{m}/ready") for m in (EMBEDDER, RERANKER)):
            return False
        with urllib.request.urlopen(f"{base}/v1/models", timeout=2) as resp:
            roots = {m.get("root") for m in json.load(resp)["data"]}
        if str(m3_dir) not in roots:
            raise RuntimeError(f"port {http_port} answers for another server ({roots})")
        return True

    try:
        server.wait_ready(ready, timeout)
    except BaseException:
        server.stop()
        raise
    return server, base
