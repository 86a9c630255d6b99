"""``peer``: Infinity (``infinity-emb``), an open-source embedding and reranking server.

It runs from its own virtualenv (``bench/.peer-venv``, made by ``bench/setup_peer.sh``: it
needs numpy<2 and transformers<5) with the same torch 2.13.0, serves the same model files
(the embedder through a sentence-transformers view of the directory, CLS pooling and
normalisation as bge-m3 ships them; the reranker as is) and answers OpenAI-style
``/embeddings`` (dense only: it has no sparse or ColBERT output for this model) and
``/rerank``. Settings are Infinity's defaults except: CPU or CUDA as asked, fp32 on CPU, batch
size equal to our ``max_batch_size``, no start-up warm-up pass (the harness warms up every
contender the same way) and no telemetry.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

from ..procs import Server, free_port
from ..workloads import DENSE, Request, Workload
from .http_load import get_ok

BENCH_DIR = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_VENV = BENCH_DIR / ".peer-venv"
EMBEDDER, RERANKER = "bge-m3", "bge-reranker"


class PeerSpec:
    name = "peer"

    def supports(self, workload: Workload) -> bool:
        return workload.task == "rerank" or workload.outputs == frozenset({DENSE})

    def body(self, workload: Workload, req: Request) -> tuple[str, dict]:
        if workload.task == "rerank":
            return "/rerank", {"model": RERANKER, "query": req.query, "documents": req.texts,
                               "return_documents": False}
        return "/embeddings", {"model": EMBEDDER, "input": req.texts}

    def count(self, workload: Workload, answer: dict) -> int:
        return len(answer["results"] if workload.task == "rerank" else answer["data"])


def ensure_venv(venv: pathlib.Path, install: bool) -> str | None:
    """None if the peer can run, else why not (after trying setup_peer.sh if ``install``)."""
    cli = venv / "bin" / "infinity_emb"
    if not cli.exists() and install:
        done = subprocess.run(["bash", str(BENCH_DIR / "setup_peer.sh")],
                              env={**os.environ, "PEER_VENV": str(venv)},
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            return "bench/setup_peer.sh failed: " + " | ".join(tail)
    if not cli.exists():
        return f"{cli} missing (run bash bench/setup_peer.sh)"
    return None


def start(venv: pathlib.Path, st_dir: pathlib.Path, rr_dir: pathlib.Path, device: str,
          fp16: bool, batch_size: int, log_dir: pathlib.Path, timeout: float = 600) -> tuple:
    """Start Infinity on a free port; returns (server, base_url)."""
    port = free_port()
    dtype = "float16" if fp16 and device.startswith("cuda") else "float32"
    argv = [str(venv / "bin" / "infinity_emb"), "v2",
            "--model-id", str(st_dir), "--served-model-name", EMBEDDER,
            "--model-id", str(rr_dir), "--served-model-name", RERANKER,
            "--engine", "torch", "--device", "cuda" if device.startswith("cuda") else "cpu",
            "--dtype", dtype, "--batch-size", str(batch_size), "--no-model-warmup",
            "--no-vector-disk-cache", "--host", "127.0.0.1", "--port", str(port)]
    env = {"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    server = Server("peer", argv, log_dir / "peer.log", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(lambda: get_ok(f"{base}/models") and get_ok(f"{base}/health"),
                          timeout)
    except BaseException:
        server.stop()
        raise
    return server, base
