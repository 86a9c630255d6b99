"""Auth, limits, backpressure, fault isolation, metrics, shutdown: the server under duress."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fidelity import TEXTS
from server_process import start_server, stop_server, triton_grpc

TOKEN = "s3cret-token-value"
LONG = " ".join(f"word{i % 97}" for i in range(400))
MEDIUM = " ".join(f"word{i % 97}" for i in range(150))  # 4 fit the 3000-token limit


@pytest.fixture(scope="module")
def guarded(model_dirs, tmp_path_factory):
    """A server with a token, a tiny queue, a short timeout and small limits."""
    m3, reranker = model_dirs
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    srv = start_server(["--embedder", str(m3), "--reranker", str(reranker)], log,
                       env={"API_TOKEN": TOKEN, "MAX_QUEUE_SIZE": "8", "MAX_BATCH_SIZE": "2",
                            "MAX_REQUEST_BYTES": "200000", "MAX_REQUEST_TOKENS": "3000",
                            "MAX_INPUT_TEXTS": "16", "REQUEST_TIMEOUT": "20"},
                       ready_models=("bge-m3", "bge-reranker"))
    yield srv
    assert TOKEN not in srv.log(), "the token never appears in logs"
    stop_server(srv)


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def test_inference_routes_need_the_token(guarded):
    url = guarded.url
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    calls = [("POST", "/v1/embeddings", {"input": "x"}),
             ("POST", "/openai/v1/embeddings", {"input": "x"}),
             ("POST", "/v1/sparse-embeddings", {"input": "x"}),
             ("POST", "/v1/hybrid-embeddings", {"input": "x"}),
             ("POST", "/v2/models/bge-m3/infer", {"inputs": [text]}),
             ("POST", "/v1/models/bge-m3:predict", {"instances": ["x"]}),
             ("GET", "/v1/models", None), ("GET", "/stats", None)]
    for method, path, body in calls:
        for headers in ({}, auth("wrong"), {"Authorization": TOKEN}):
            r = httpx.request(method, url + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (path, headers, r.text)
            err = r.json()["error"]
            assert err["type"] == "authentication_error" and TOKEN not in r.text
            assert r.headers["www-authenticate"] == "Bearer"
        r = httpx.request(method, url + path, json=body, headers=auth(), timeout=30)
        assert r.status_code == 200, (path, r.text)


def test_probes_and_metrics_stay_open(guarded):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/bge-m3/ready",
                 "/v2/models/bge-m3", "/metrics"):
        assert httpx.get(guarded.url + path, timeout=10).status_code == 200, path


def test_grpc_needs_the_token(guarded):
    call = {"url": guarded.grpc_url, "model": "bge-m3", "inputs": [{"name": "text",
                                                                   "data": ["x"]}]}
    missing, wrong, good = triton_grpc([call, {**call, "headers": {"authorization": "Bearer no"}},
                                        {**call, "headers": {"authorization": f"Bearer {TOKEN}"}}])
    assert missing["error"]["status"] == "StatusCode.UNAUTHENTICATED"
    assert wrong["error"]["status"] == "StatusCode.UNAUTHENTICATED"
    assert TOKEN not in wrong["error"]["message"]
    assert good["outputs"]["dense"].shape[0] == 1


def test_limits_name_the_offending_field(guarded):
    post = lambda body, **kw: httpx.post(f"{guarded.url}/v1/embeddings", json=body,  # noqa: E731
                                         headers=auth(), timeout=30, **kw)
    too_many = post({"input": ["x"] * 17})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "input"
    too_many_tokens = post({"input": [LONG] * 8})
    assert too_many_tokens.status_code == 400
    assert too_many_tokens.json()["error"]["code"] == "request_too_large"
    huge = httpx.post(f"{guarded.url}/v1/embeddings", content=b"x" * 300_000, headers={
        **auth(), "content-type": "application/json"}, timeout=30)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(30):
            yield b" " * 10_000

    streamed = httpx.post(f"{guarded.url}/v1/embeddings", content=chunks(),
                          headers={**auth(), "content-type": "application/json"}, timeout=30)
    assert streamed.status_code == 413


def test_queue_full_is_an_immediate_429_and_nothing_is_lost(guarded):
    """Saturate a queue of 8 items: every answer is 200 or 429 with Retry-After, fast."""

    def call(i):
        started = time.monotonic()
        r = httpx.post(f"{guarded.url}/v1/embeddings", json={"input": [MEDIUM] * 4},
                       headers=auth(), timeout=60)
        return r, time.monotonic() - started

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(24)))
    statuses = [r.status_code for r, _ in results]
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
    for r, seconds in results:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "queue_full"
            assert seconds < 5, "refused at once, not after a wait"
        else:
            assert len(r.json()["data"]) == 4
    stats = httpx.get(f"{guarded.url}/stats", headers=auth(), timeout=10).json()
    assert stats["batching"]["queue_size"] == 0
    assert stats["models"]["bge-m3"]["rejected_queue_full"] >= statuses.count(429)


def test_metrics_move_after_traffic(guarded):
    def scrape():
        text = httpx.get(f"{guarded.url}/metrics", timeout=10).text
        values = {}
        for line in text.splitlines():
            if line.startswith("bge_predictor_") and " " in line:
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    before = scrape()
    r = httpx.post(f"{guarded.url}/v1/embeddings", json={"input": TEXTS[:3]}, headers=auth(),
                   timeout=30)
    assert r.status_code == 200
    after = scrape()

    def moved(prefix):
        return sum(v for k, v in after.items() if k.startswith(prefix)) > sum(
            v for k, v in before.items() if k.startswith(prefix))

    assert moved('bge_predictor_tokens_total{model="bge-m3"}')
    assert moved('bge_predictor_batch_size_count{model="bge-m3"}')
    assert moved('bge_predictor_batch_tokens_sum{model="bge-m3"}')
    for stage in ("queue_wait", "tokenize", "forward", "postprocess"):
        assert moved(f'bge_predictor_stage_seconds_count{{model="bge-m3",stage="{stage}"}}')
    assert moved('bge_predictor_requests_total{route="/v1/embeddings",status="200"}')
    assert 'bge_predictor_queue_depth{model="bge-m3"}' in after


def test_stats_summary(guarded):
    body = httpx.get(f"{guarded.url}/stats", headers=auth(), timeout=10).json()
    assert set(body["batching"]) == {"queue_size", "processed_requests", "average_batch_size",
                                     "average_processing_time"}
    assert body["config"]["batch_size"] == 2 and body["config"]["max_queue_size"] == 8
    assert body["models"]["bge-m3"]["processed_requests"] > 0


# -- fault isolation, in process, through the real routes -------------------------------------

class FailingRunner:
    """Wraps a real runner; a batch containing the poison text fails."""

    def __init__(self, runner, poison_ids):
        self.runner, self.poison = runner, poison_ids

    def run_batch(self, items):
        if any(item.input_ids == self.poison for item in items):
            raise RuntimeError("injected fault")
        return self.runner.run_batch(items)


async def test_a_failing_batch_answers_500_and_the_engine_keeps_serving(m3_dir):
    from fastapi import FastAPI

    from predictor.api.http.app import install_routes
    from predictor.api.http.registry import ServedModels
    from predictor.api.kserve.embedder import EmbedderModel
    from predictor.runtime.host import TorchHost
    from predictor.settings import Settings

    settings = Settings(embedder=str(m3_dir), reranker="none", device="cpu", max_batch_size=1)
    model = EmbedderModel("bge-m3", str(m3_dir), settings, host=TorchHost())
    model.load()
    poison = model.runner.tokenize(["poison pill"], 64, True)[0]
    model.batcher.runner = FailingRunner(model.runner, poison)
    app = FastAPI()
    install_routes(app, ServedModels([model]), settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        bad, good = await asyncio.gather(
            client.post("/v1/embeddings", json={"input": "poison pill"}),
            client.post("/v1/embeddings", json={"input": "healthy text"}))
        assert bad.status_code == 500 and bad.json()["error"]["type"] == "server_error"
        assert good.status_code == 200
        again = await client.post("/v1/embeddings", json={"input": ["more", "text"]})
        assert again.status_code == 200 and len(again.json()["data"]) == 2
    await model.batcher.stop()


def test_request_timeout_answers_503_and_empties_the_queue(model_dirs, tmp_path):
    m3, _ = model_dirs
    srv = start_server(["--embedder", str(m3), "--reranker", "none"], tmp_path / "t.log",
                       env={"REQUEST_TIMEOUT": "0.3", "MAX_BATCH_SIZE": "1"})
    try:
        def call(_):  # seconds of one-item batches against a 0.3 s timeout
            return httpx.post(f"{srv.url}/v1/embeddings", json={"input": [LONG] * 64},
                              timeout=60)

        with ThreadPoolExecutor(8) as pool:
            statuses = [r.status_code for r in pool.map(call, range(8))]
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        time.sleep(1)
        stats = httpx.get(f"{srv.url}/stats", timeout=10).json()
        assert stats["batching"]["queue_size"] == 0
        # The server still serves. One short text can itself outlast 0.3 s on a busy machine
        # (a 503 then is the timeout working): a wedged queue would never answer 200.
        answers = []
        for _ in range(20):
            answers.append(httpx.post(f"{srv.url}/v1/embeddings", json={"input": "short"},
                                      timeout=30).status_code)
            if answers[-1] == 200:
                break
        assert answers[-1] == 200 and set(answers) <= {200, 503}, answers
    finally:
        stop_server(srv)


def test_sigterm_finishes_in_flight_work_then_exits_zero(model_dirs, tmp_path):
    m3, _ = model_dirs
    srv = start_server(["--embedder", str(m3), "--reranker", "none"], tmp_path / "s.log",
                       env={"MAX_BATCH_SIZE": "2"})
    result = {}

    def slow_request():
        result["r"] = httpx.post(f"{srv.url}/v1/embeddings", json={"input": [LONG] * 16},
                                 timeout=60)

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.5)  # the request is in flight
    srv.process.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with pytest.raises(httpx.HTTPError):  # not ready (503) or not accepting connections
        r = httpx.get(f"{srv.url}/v2/models/bge-m3/ready", timeout=2)
        if r.status_code != 200:
            raise httpx.HTTPError(str(r.status_code))
    worker.join(60)
    assert result["r"].status_code == 200 and len(result["r"].json()["data"]) == 16
    assert srv.process.wait(30) == 0, srv.log()[-3000:]


def _model_stats(srv, name="bge-m3"):
    return httpx.get(f"{srv.url}/stats", timeout=10).json()["models"][name]


def _wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_client_that_disconnects_has_its_queued_work_dropped(model_dirs, tmp_path):
    """A's first batch is held at a gate (tests/support/gated_server.py), so B's work stays queued
    behind it for as long as the test likes; B goes away, and its items must leave the queue
    uncomputed. Counts, not timings: whatever the machine's speed."""
    m3, _ = model_dirs
    gate = tmp_path / "gate"
    srv = start_server(["--embedder", str(m3), "--reranker", "none"], tmp_path / "d.log",
                       env={"MAX_BATCH_SIZE": "1", "REQUEST_TIMEOUT": "600"},
                       launcher=("tests/support/gated_server.py", str(gate)))
    try:
        busy = {}
        worker = threading.Thread(target=lambda: busy.setdefault("r", httpx.post(
            f"{srv.url}/v1/embeddings", json={"input": [LONG] * 4}, timeout=600)))
        worker.start()
        # A: one item held at the gate, three queued behind it.
        _wait_for(lambda: _model_stats(srv)["queue_size"] == 3, "A's items to queue")
        # B: eight items queued behind A; then B's client goes away (closes its connection).
        body = json.dumps({"input": [LONG + " b"] * 8}).encode()
        with socket.create_connection(("127.0.0.1", srv.http_port)) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            _wait_for(lambda: _model_stats(srv)["queue_size"] == 11, "B's items to queue")
        _wait_for(lambda: _model_stats(srv)["queue_size"] == 3, "B's items to be dropped")
        gate.touch()
        worker.join(600)
        assert busy["r"].status_code == 200 and len(busy["r"].json()["data"]) == 4
        _wait_for(lambda: _model_stats(srv)["queue_size"] == 0, "the queue to empty")
        assert _model_stats(srv)["processed_items"] == 4, "B's items were dropped, not computed"
    finally:
        stop_server(srv)
