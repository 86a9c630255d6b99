"""SIGTERM over the wire: an admitted request still being tokenised completes; one still running
when ``--grace_period`` ends gets a clean 503 ``shutting_down``; the process exits 0. Also a 429
raised while a sibling request waits (seed-002 ``/rerank``) leaves no ERROR in the log.

The server is ``tests/support/held_predictor.py``: the test holds tokenisation and forward
passes with files, so every step happens when the test says, not when a timer guesses."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import httpx
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from server_process import REPO, Server, start_server, stop_server

GRACE = 12  # seconds: room for the released request to finish on a busy machine


def _start_held(args: list[str], hold: Path, log_path: Path) -> Server:
    """The server under tests/support/held_predictor.py, whose steps wait on files in ``hold``."""
    return start_server(args, log_path, env={"HOLD_DIR": str(hold)}, timeout=240,
                        launcher=(str(REPO / "tests" / "support" / "held_predictor.py"),))


def _wait_for(path: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.02)


def _grpc_infer(server: Server, texts: list[str]) -> tuple[grpc.StatusCode, str]:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[len(texts)],
        contents=pb.InferTensorContents(bytes_contents=[t.encode() for t in texts]))
    with grpc.insecure_channel(server.grpc_url) as channel:
        try:
            GRPCInferenceServiceStub(channel).ModelInfer(
                pb.ModelInferRequest(model_name="bge-m3", inputs=[tensor]), timeout=120)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def _not_ready(server: Server) -> bool:
    try:
        return httpx.get(f"{server.url}/v2/models/bge-m3/ready", timeout=2).status_code != 200
    except httpx.HTTPError:
        return True


def test_sigterm_completes_admitted_work_and_cuts_cleanly_at_the_grace_period(m3_dir, tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    srv = _start_held(["--embedder", str(m3_dir), "--reranker", "none",
                       "--grace_period", str(GRACE)], hold, tmp_path / "server.log")
    # Over 4096 characters each, so each is tokenised on a thread and the event loop stays free.
    texts = {name: [f"{name} text number {i} " * 3 for i in range(80)]
             for name in ("bravo", "charlie", "delta")}
    results: dict[str, httpx.Response] = {}

    def post(name: str) -> None:
        if name == "delta":  # over gRPC
            results[name] = _grpc_infer(srv, texts[name])
            return
        results[name] = httpx.post(f"{srv.url}/v1/embeddings", json={"input": texts[name]},
                                   timeout=120)

    try:
        for name in texts:
            (hold / f"tok-{name}").touch()
        threads = {name: threading.Thread(target=post, args=(name,)) for name in texts}
        for name, thread in threads.items():
            thread.start()
            _wait_for(hold / f"tok-{name}.entered", f"{name} tokenising")
        # Both requests are fully received and admitted, and held in tokenisation.
        srv.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not _not_ready(srv):
            assert time.monotonic() < deadline, "still ready after SIGTERM"
            time.sleep(0.05)
        sigterm_at = time.monotonic()

        (hold / "tok-bravo").unlink()  # (b): admitted before the signal, so it completes
        threads["bravo"].join(60)
        bravo = results["bravo"]
        assert bravo.status_code == 200, bravo.text
        assert len(bravo.json()["data"]) == len(texts["bravo"])

        (hold / "forward").touch()  # (a): charlie's batch then runs past the grace period
        (hold / "tok-charlie").unlink()
        _wait_for(hold / "forward.entered", "charlie's forward pass")
        threads["charlie"].join(GRACE + 30)
        charlie = results["charlie"]
        assert charlie.status_code == 503, charlie.text
        assert charlie.json()["error"]["code"] == "shutting_down"
        assert charlie.json()["error"]["type"] == "service_unavailable"
        assert charlie.headers["retry-after"] == "1"
        assert time.monotonic() - sigterm_at < GRACE + 5
        threads["delta"].join(30)  # the gRPC call held in tokenisation: UNAVAILABLE
        assert results["delta"][0] == grpc.StatusCode.UNAVAILABLE, results["delta"]
        assert "shutting_down" in results["delta"][1]
        (hold / "tok-delta").unlink()  # its tokenising thread ends: the process may exit

        # The worker thread is still inside the held batch: the process must still exit 0.
        assert srv.process.wait(60) == 0, srv.log()[-3000:]
        log = srv.log()
        assert "terminate called" not in log and "Exception in ASGI application" not in log
        assert "ended 2 request(s) still running" in log
    finally:
        for path in hold.iterdir():
            path.unlink()
        stop_server(srv)


def test_a_429_on_seed002_rerank_logs_no_error(m3_dir, tmp_path):
    """The query's encode waits while the documents' encode is refused (queue full): the 429
    must not leave an unretrieved future behind ("exception was never retrieved")."""
    hold = tmp_path / "hold"
    hold.mkdir()
    srv = _start_held(["--embedder", str(m3_dir), "--reranker", "none", "--max_queue_size",
                       "4"], hold, tmp_path / "server.log")
    try:
        (hold / "forward").touch()  # the worker holds a first request's batch
        first = {}
        thread = threading.Thread(target=lambda: first.setdefault("r", httpx.post(
            f"{srv.url}/v1/embeddings", json={"input": "first"}, timeout=60)))
        thread.start()
        _wait_for(hold / "forward.entered", "the first batch")
        r = httpx.post(f"{srv.url}/rerank", timeout=60,
                       json={"query": "q", "candidates": [f"c{i}" for i in range(8)]})
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "queue_full" and r.headers["retry-after"] == "1"
        (hold / "forward").unlink()
        thread.join(60)
        assert first["r"].status_code == 200
        ok = httpx.post(f"{srv.url}/rerank", json={"query": "q", "candidates": ["a", "b"]},
                        timeout=60)
        assert ok.status_code == 200, ok.text
    finally:
        for path in hold.iterdir():
            path.unlink()
        stop_server(srv)
    log = srv.log()
    assert "never retrieved" not in log and " ERROR " not in log, log[-3000:]
