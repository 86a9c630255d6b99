"""Soak run: saturating mixed load on a real server, bounded in time and requests, loopback only.

    python -m bench.soak --duration 600            # the 10-minute local run
    python -m bench.soak --requests 400 --clients 16  # the CI version (tests/server/test_soak.py)

Starts ``python -m predictor`` on random-weight models, drives every route (embeddings dense,
sparse, hybrid, V2 infer, rerank) plus ~10% invalid requests from N concurrent clients, and
checks: no lost request (transport error or timeout), no unexpected status (valid requests get
200, or 429 when the queue is full; each invalid request its documented 4xx), and server RSS
growth under 5% between the end of warm-up and the end of the run. Exit status 1 if any fails.

``--duration`` runs for a time and reports how much got done (the figures for
docs/benchmarks.md). ``--requests`` runs a fixed number of requests however long they take (then
``--duration`` is only a safety bound): what CI checks is what happened, not how fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
WORDS = ("retrieval dense sparse colbert rerank vector index query passage hybrid search "
         "kubernetes serving batch token model bge embedding qdrant milvus").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    body: object
    expected: frozenset[int]


def make_call(rng: random.Random) -> Call:
    """One request of the mix: mostly valid work across routes, some invalid on purpose."""
    ok = frozenset({200, 429})
    texts = [_text(rng, rng.randint(3, 60)) for _ in range(rng.randint(1, 6))]
    roll = rng.random()
    if roll < 0.25:
        return Call("embeddings", "POST", "/v1/embeddings", {"input": texts}, ok)
    if roll < 0.40:
        return Call("sparse", "POST", "/v1/sparse-embeddings", {"input": texts}, ok)
    if roll < 0.55:
        return Call("hybrid", "POST", "/v1/hybrid-embeddings",
                    {"input": texts, "return_colbert": rng.random() < 0.3}, ok)
    if roll < 0.70:
        tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
        return Call("v2", "POST", "/v2/models/bge-m3/infer",
                    {"inputs": [tensor], "parameters": {"return_sparse": True}}, ok)
    if roll < 0.90:
        return Call("rerank", "POST", "/v1/rerank",
                    {"query": _text(rng, 6), "documents": texts, "model": "bge-reranker"}, ok)
    bad = rng.choice([
        Call("bad-empty", "POST", "/v1/embeddings", {"input": []}, frozenset({400})),
        Call("bad-type", "POST", "/v1/embeddings", {"input": 42}, frozenset({400})),
        Call("bad-model", "POST", "/v1/embeddings", {"input": "x", "model": "nope"},
             frozenset({404})),
        Call("bad-json", "POST", "/v1/embeddings", b"{not json", frozenset({400})),
        Call("bad-topn", "POST", "/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0},
             frozenset({400})),
        Call("bad-v2", "POST", "/v2/models/bge-m3/infer", {"inputs": "x"}, frozenset({400})),
    ])
    return bad


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    warm_end: float | None = None  # seconds from the start when warm-up ended (by count)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def client_loop(client: httpx.AsyncClient, rng: random.Random, tally: Tally,
                      deadline: float, max_requests: int, warm_count: int | None,
                      start: float) -> None:
    while time.monotonic() < deadline and tally.sent < max_requests:
        call = make_call(rng)
        tally.sent += 1
        if warm_count is not None and tally.sent == warm_count:
            tally.warm_end = time.monotonic() - start
        started = time.monotonic()
        try:
            if isinstance(call.body, bytes):
                response = await client.request(call.method, call.path, content=call.body,
                                                headers={"content-type": "application/json"})
            else:
                response = await client.request(call.method, call.path, json=call.body)
        except httpx.HTTPError as exc:
            tally.lost.append(f"{call.name}: {type(exc).__name__}: {exc}")
            continue
        tally.latencies.append(time.monotonic() - started)
        tally.statuses[f"{call.name}:{response.status_code}"] += 1
        if response.status_code not in call.expected:
            tally.unexpected.append(f"{call.name}: {response.status_code} {response.text[:200]}")
        elif response.status_code == 429:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")) / 10)


async def drive(url: str, pid: int, args: argparse.Namespace) -> dict:
    tally = Tally()
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    deadline = start + args.duration
    max_requests = args.requests or args.max_requests
    warm_count = max(1, int(args.requests * args.warmup_fraction)) if args.requests else None
    running = True

    async def sample_rss() -> None:
        while running and time.monotonic() < deadline:
            samples.append((time.monotonic() - start, rss_bytes(pid)))
            await asyncio.sleep(0.25)  # a --requests run may be short on a fast machine

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        sampler = asyncio.create_task(sample_rss())
        await asyncio.gather(*(client_loop(client, random.Random(args.seed + i), tally, deadline,
                                           max_requests, warm_count, start)
                               for i in range(args.clients)))
        running = False
        sampler.cancel()
    elapsed = time.monotonic() - start
    samples.append((elapsed, rss_bytes(pid)))
    warm_end = (tally.warm_end if tally.warm_end is not None
                else args.duration * args.warmup_fraction)
    # Median RSS over the last few seconds of warm-up and of the run (shorter on a short run,
    # so the idle server before the first request is never the baseline).
    warm_window = min(5.0, max(0.5, warm_end / 3))
    tail_window = min(5.0, max(0.5, (elapsed - warm_end) / 3))
    warm = ([rss for t, rss in samples if warm_end - warm_window <= t <= warm_end]
            or [samples[0][1]])
    tail = [rss for t, rss in samples if t >= elapsed - tail_window] or [samples[-1][1]]
    growth = statistics.median(tail) / statistics.median(warm) - 1
    lat = sorted(tally.latencies)
    pct = (lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat else None
    return {
        "duration_s": round(elapsed, 1), "clients": args.clients,
        "requests": tally.sent, "requests_per_s": round(tally.sent / elapsed, 1),
        "completed": sum(tally.statuses.values()),
        "statuses": dict(sorted(tally.statuses.items())),
        "lost": len(tally.lost), "unexpected": len(tally.unexpected),
        "lost_examples": tally.lost[:5], "unexpected_examples": tally.unexpected[:5],
        "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)} if lat else {},
        "rss_mb": {"after_warmup": round(statistics.median(warm) / 2**20, 1),
                   "end": round(statistics.median(tail) / 2**20, 1),
                   "peak": round(max(r for _, r in samples) / 2**20, 1)},
        "rss_growth_pct": round(100 * growth, 2),
        "rss_mb_every_10s": [round(rss / 2**20) for t, rss in samples[::40]],
    }


def start_server(m3: Path, reranker: Path, port: int, grpc_port: int, log: Path,
                 env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "predictor", "--embedder", str(m3), "--reranker", str(reranker),
           "--device", "cpu", "--http_port", str(port), "--grpc_port", str(grpc_port)]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            env=full_env, cwd=REPO)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
        try:
            if all(httpx.get(f"{url}/v2/models/{m}/ready", timeout=2).status_code == 200
                   for m in ("bge-m3", "bge-reranker")):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("server not ready in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="hard bound")
    parser.add_argument("--requests", type=int, default=None,
                        help="run exactly this many requests, however long they take "
                             "(--duration is then only a safety bound)")
    parser.add_argument("--warmup-fraction", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=60, help="per-request timeout (s)")
    parser.add_argument("--port", type=int, default=18480, help="loopback HTTP port")
    parser.add_argument("--grpc-port", type=int, default=None,
                        help="gRPC port (default: --port + 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-queue-size", type=int, default=256,
                        help="server MAX_QUEUE_SIZE, small so saturation meets backpressure")
    parser.add_argument("--models", type=Path, default=None,
                        help="directory for the random-weight models (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server (repeatable)")
    args = parser.parse_args(argv)

    from predictor.demo import build_m3, build_reranker

    with tempfile.TemporaryDirectory() as tmp:
        root = args.models or Path(tmp)
        m3 = build_m3(root / "m3") if not (root / "m3" / "config.json").exists() else root / "m3"
        rr = (build_reranker(root / "reranker")
              if not (root / "reranker" / "config.json").exists() else root / "reranker")
        url = f"http://127.0.0.1:{args.port}"
        log = Path(tmp) / "server.log"
        env = {"MAX_QUEUE_SIZE": str(args.max_queue_size),
               **dict(item.split("=", 1) for item in args.server_env)}
        proc = start_server(m3, rr, args.port, args.grpc_port or args.port + 1, log, env)
        try:
            wait_ready(url, proc, log)
            summary = asyncio.run(drive(url, proc.pid, args))
        finally:
            proc.terminate()
            code = proc.wait(60)
        summary["server_exit_code"] = code
    ok = (summary["lost"] == 0 and summary["unexpected"] == 0
          and summary["rss_growth_pct"] < 5 and code == 0
          and (args.requests is None or summary["completed"] == args.requests))
    summary["pass"] = ok
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
