"""Closed-loop HTTP load: N clients, each sends a request, waits for it, sends the next.

One aiohttp session with keep-alive connections (one per client), on loopback. Clients stop
sending at the deadline; requests in flight then finish and count. The same generator drives
our server and the peer, so client-side costs (JSON encoding and parsing on this machine's
cores) weigh on both alike.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Protocol

import aiohttp
import orjson

from ..stats import Cell
from ..workloads import Corpus, Request, Workload


class HttpSpec(Protocol):
    """How one server spells a workload's requests and answers."""

    name: str

    def supports(self, workload: Workload) -> bool: ...

    def body(self, workload: Workload, req: Request) -> tuple[str, dict]: ...

    def count(self, workload: Workload, answer: dict) -> int: ...


async def _post(session: aiohttp.ClientSession, path: str, body: dict) -> tuple[int, bytes]:
    async with session.post(path, data=orjson.dumps(body),
                            headers={"content-type": "application/json"}) as resp:
        return resp.status, await resp.read()


def _session(base_url: str, clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url, connector=aiohttp.TCPConnector(limit=clients, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=900))


async def _closed_loop(base_url: str, spec: HttpSpec, workload: Workload, corpus: Corpus,
                       clients: int, duration: float) -> Cell:
    cell = Cell(spec.name, workload.name, clients)
    async with _session(base_url, clients) as session:
        warm = corpus.request(workload, 0)
        status, raw = await _post(session, *spec.body(workload, warm))
        if status != 200:
            raise RuntimeError(f"{spec.name} {workload.name}: HTTP {status}: {raw[:300]!r}")
        counter = itertools.count()
        start = time.perf_counter()
        deadline = start + duration

        async def client() -> None:
            while time.perf_counter() < deadline:
                req = corpus.request(workload, next(counter))
                t0 = time.perf_counter()
                try:
                    status, raw = await _post(session, *spec.body(workload, req))
                    ok = status == 200 and spec.count(workload, orjson.loads(raw)) == len(
                        req.texts)
                except (TimeoutError, aiohttp.ClientError, ValueError):
                    ok = False
                t1 = time.perf_counter()
                cell.requests += 1
                if ok:
                    cell.texts += len(req.texts)
                    cell.tokens += req.tokens
                    cell.latencies_s.append(t1 - t0)
                else:
                    cell.errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        cell.elapsed_s = time.perf_counter() - start
    return cell


def closed_loop(base_url: str, spec: HttpSpec, workload: Workload, corpus: Corpus,
                clients: int, duration: float) -> Cell:
    return asyncio.run(_closed_loop(base_url, spec, workload, corpus, clients, duration))


async def _one_by_one(base_url: str, spec: HttpSpec, workload: Workload, req: Request,
                      repeats: int) -> list[float]:
    async with _session(base_url, 1) as session:
        times = []
        for _ in range(repeats + 3):
            t0 = time.perf_counter()
            status, raw = await _post(session, *spec.body(workload, req))
            times.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"{spec.name}: HTTP {status}: {raw[:300]!r}")
            await asyncio.sleep(0.02)  # idle between requests: nothing to batch with
        return times[3:]


def one_by_one(base_url: str, spec: HttpSpec, workload: Workload, req: Request,
               repeats: int) -> list[float]:
    """Latencies of ``repeats`` single requests sent one at a time to an idle server."""
    return asyncio.run(_one_by_one(base_url, spec, workload, req, repeats))


def post_json(base_url: str, path: str, body: dict) -> dict:
    async def go() -> dict:
        async with _session(base_url, 1) as session:
            status, raw = await _post(session, path, body)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {raw[:300]!r}")
            return orjson.loads(raw)

    return asyncio.run(go())


def get_ok(url: str) -> bool:
    """True if GET ``url`` answers 200 (readiness probes)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
