"""``python -m bench.compact``: response size and end-to-end time of each vector format.

Starts the predictor on a random-weight BGE-M3 (``--shape``), then asks for dense + ColBERT of
the same ~``--tokens``-token texts in each format: JSON floats, base64 float32, base64 float16 on
``/v1/embeddings``, and V2 JSON FP32 vs binary FP16. Each request is timed from send to the
numpy arrays decoded in the client (JSON parse or base64/binary decode included), median of
``--repeats``. Prints a Markdown table (docs/benchmarks.md "Compact ColBERT output").
"""

from __future__ import annotations

import argparse
import base64
import json
import pathlib
import statistics
import sys
import tempfile
import time

import httpx
import numpy as np

from .models import SHAPES, ensure_models
from .procs import Server, free_port


def _openai(fmt: str, dtype: str | None):
    def body(texts):
        b = {"input": texts, "return_colbert": True}
        if fmt == "base64":
            b |= {"encoding_format": "base64", "embed_dtype": dtype}
        return "/v1/embeddings", {"json": b}

    def decode(r: httpx.Response, dim: int) -> list[np.ndarray]:
        data = r.json()["data"]
        if fmt == "float":
            return [np.asarray(d["colbert_embedding"], np.float32) for d in data]
        le = {"float32": "<f4", "float16": "<f2"}[dtype]
        return [np.frombuffer(base64.b64decode(d["colbert_embedding"]), le).reshape(-1, dim)
                for d in data]
    return body, decode


def _v2(binary: bool):
    def body(texts):
        params = {"return_dense": True, "return_colbert": True}
        if binary:
            params |= {"embed_dtype": "float16", "binary_data_output": True}
        return "/v2/models/bge-m3/infer", {"json": {
            "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                        "data": texts}], "parameters": params}}

    def decode(r: httpx.Response, dim: int) -> list[np.ndarray]:
        if not binary:
            out = {o["name"]: o for o in r.json()["outputs"]}
            return [np.asarray(out["colbert"]["data"], np.float32).reshape(-1, dim)]
        n = int(r.headers["inference-header-content-length"])
        head, pos, arrays = json.loads(r.content[:n]), n, {}
        for o in head["outputs"]:
            size = o["parameters"]["binary_data_size"]
            dtype = {"FP16": "<f2", "FP32": "<f4", "INT64": "<i8"}[o["datatype"]]
            arrays[o["name"]] = np.frombuffer(r.content[pos:pos + size], dtype)
            pos += size
        return [arrays["colbert"].reshape(-1, dim)]
    return body, decode


FORMATS = {
    "/v1/embeddings JSON floats": _openai("float", None),
    "/v1/embeddings base64 float32": _openai("base64", "float32"),
    "/v1/embeddings base64 float16": _openai("base64", "float16"),
    "V2 REST JSON FP32": _v2(False),
    "V2 REST binary FP16": _v2(True),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compact", description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    p.add_argument("--m3", help="a BGE-M3 directory instead of a random-weight one")
    p.add_argument("--tokens", type=int, default=512, help="tokens per text (about)")
    p.add_argument("--texts", type=int, default=1, help="texts per request")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    m3 = pathlib.Path(args.m3) if args.m3 else ensure_models(SHAPES[args.shape])[0]
    port = free_port()
    log = pathlib.Path(tempfile.mkdtemp(prefix="bench-compact-")) / "server.log"
    server = Server("ours", [sys.executable, "-m", "predictor", "--embedder", str(m3),
                             "--reranker", "none", "--http_port", str(port),
                             "--grpc_port", str(free_port())], log)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(lambda: httpx.get(f"{url}/v2/models/bge-m3/ready").status_code == 200,
                          600)
        with httpx.Client(base_url=url, timeout=300) as client:
            words = " ".join(f"word{i % 97}" for i in range(args.tokens // 2))
            texts = [f"{i} {words}" for i in range(args.texts)]
            dim = None
            rows = []
            for name, (body, decode) in FORMATS.items():
                path, kwargs = body(texts)
                times, size, shape = [], 0, None
                for _ in range(args.repeats + 1):  # the first is a warm-up
                    started = time.perf_counter()
                    r = client.post(path, **kwargs)
                    r.raise_for_status()
                    if dim is None:
                        dim = len(r.json()["data"][0]["colbert_embedding"][0])
                    arrays = decode(r, dim)
                    times.append(time.perf_counter() - started)
                    size, shape = len(r.content), arrays[0].shape
                rows.append((name, size, statistics.median(times[1:]) * 1000, shape))
        base = rows[0][1]
        print(f"{args.texts} text(s) of ~{args.tokens} tokens, ColBERT dim {dim}, "
              f"model {m3.name} ({args.shape if not args.m3 else 'given'})\n")
        print("| format | response bytes | vs JSON floats | median end-to-end ms | "
              "ColBERT rows x dim |")
        print("|---|---:|---:|---:|---|")
        for name, size, ms, shape in rows:
            print(f"| {name} | {size:,} | {size / base:.2f} | {ms:.1f} | "
                  f"{shape[0]} x {shape[1]} |")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
