"""Security over the wire: gRPC auth on every non-probe call, the repository API (off by default,
token-only when on), tokens kept out of the logs, header and connection limits."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from server_process import REPO, start_server, stop_server

TOKEN = "sec-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_TIMEOUT = 3


@pytest.fixture(scope="module")
def guarded(m3_dir, tmp_path_factory):
    """A token, and the repository API switched on (so only the token guards it)."""
    log = tmp_path_factory.mktemp("sec") / "server.log"
    srv = start_server(["--embedder", str(m3_dir), "--reranker", "none",
                        "--repository_api", "true", "--max_header_bytes", "8192",
                        "--read_timeout", str(READ_TIMEOUT)], log, env={"API_TOKEN": TOKEN})
    yield srv
    assert TOKEN not in srv.log(), "the token never appears in logs"
    stop_server(srv)


def _stub(server) -> tuple[grpc.Channel, GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.grpc_url)
    return channel, GRPCInferenceServiceStub(channel)


def _code(call, *args, **kwargs) -> grpc.StatusCode:
    try:
        call(*args, timeout=30, **kwargs)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _infer_request() -> pb.ModelInferRequest:
    text = pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"hello"]))
    return pb.ModelInferRequest(model_name="bge-m3", inputs=[text])


def _ready(server) -> bool:
    return httpx.get(f"{server.url}/v2/models/bge-m3/ready", timeout=10).status_code == 200


def test_grpc_probes_stay_open_everything_else_needs_the_token(guarded):
    channel, stub = _stub(guarded)
    with channel:
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="bge-m3"), timeout=30).ready
        assert stub.ModelMetadata(pb.ModelMetadataRequest(name="bge-m3"), timeout=30).name
        assert stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=30).name
        calls = [(stub.ModelInfer, _infer_request()),
                 (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="bge-m3")),
                 (stub.RepositoryModelUnload,
                  pb.RepositoryModelUnloadRequest(model_name="bge-m3"))]
        for call, request in calls:
            for metadata in (None, [("authorization", "Bearer wrong")],
                             [("authorization", TOKEN)]):
                assert _code(call, request, metadata=metadata) == \
                    grpc.StatusCode.UNAUTHENTICATED, (call, metadata)
        assert _code(stub.ModelInfer, _infer_request(),
                     metadata=[("authorization", f"Bearer {TOKEN}")]) == grpc.StatusCode.OK
    assert _ready(guarded), "an anonymous unload must not take the model offline"


def test_rest_repository_needs_the_token(guarded):
    for action in ("load", "unload"):
        r = httpx.post(f"{guarded.url}/v2/repository/models/bge-m3/{action}", timeout=30)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
    assert _ready(guarded)


def test_a_token_in_the_url_is_refused_and_kept_out_of_the_log(guarded):
    r = httpx.get(f"{guarded.url}/v1/models?api_key={TOKEN}", timeout=30)
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]["message"]
    r = httpx.get(f"{guarded.url}/v2/health/live?token={TOKEN}&{TOKEN}", timeout=30)
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while "/v2/health/live?token=<redacted>&<redacted>" not in guarded.log():
        assert time.monotonic() < deadline, guarded.log()[-2000:]
        time.sleep(0.1)
    assert "/v1/models?api_key=<redacted>" in guarded.log()
    assert TOKEN not in guarded.log()


def _raw(server, data: bytes, wait: float = 30) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes; (what came back, seconds it took)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=wait) as sock:
        if data:
            sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


def _status_and_error(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), reply[:300]
    return int(head.split()[1]), json.loads(body)["error"]


def test_oversized_request_headers_are_refused_431(guarded):
    request = (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
               + b"\r\n\r\n")
    status, err = _status_and_error(_raw(guarded, request)[0])
    assert status == 431 and err["code"] == "headers_too_large" and "8192" in err["message"]
    ok = httpx.get(f"{guarded.url}/v2/health/live", headers={"X-Small": "a" * 4000}, timeout=30)
    assert ok.status_code == 200


def test_malformed_http_gets_the_error_shape(guarded):
    status, err = _status_and_error(_raw(guarded, b"NONSENSE\r\n\r\n")[0])
    assert status == 400 and err["type"] == "invalid_request_error"


def test_stalled_connections_are_closed(guarded):
    reply, seconds = _raw(guarded, b"")  # connects, never sends anything
    assert reply == b"" and seconds < READ_TIMEOUT + 10
    reply, seconds = _raw(guarded, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
    assert _status_and_error(reply)[0] == 408 and seconds < READ_TIMEOUT + 10
    head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n")
    reply, seconds = _raw(guarded, head + b'{"input": ')  # the body stops part-way
    assert _status_and_error(reply)[0] == 408 and seconds < READ_TIMEOUT + 10
    assert httpx.get(f"{guarded.url}/v2/health/live", timeout=30).status_code == 200


def test_repository_with_the_token_works(guarded):
    """Last in this module: the token opens the repository API; unload takes the model away."""
    r = httpx.post(f"{guarded.url}/v2/repository/models/bge-m3/load", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    channel, stub = _stub(guarded)
    with channel:
        reply = stub.RepositoryModelUnload(
            pb.RepositoryModelUnloadRequest(model_name="bge-m3"),
            metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30)
    assert reply.isUnloaded and reply.model_name == "bge-m3"
    assert not _ready(guarded)
    # Our routes still know the model, now not ready: 503 with a Retry-After.
    r = httpx.post(f"{guarded.url}/v1/embeddings", json={"input": "x"}, headers=AUTH, timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "model_not_ready" and r.headers["retry-after"] == "5"


def test_repository_api_is_off_by_default(server):
    """Without a token (the shared server) nobody may load or unload: 403 / PERMISSION_DENIED."""
    for action in ("load", "unload"):
        r = httpx.post(f"{server.url}/v2/repository/models/bge-m3/{action}", timeout=30)
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert err["code"] == "repository_api_disabled" and "--repository_api" in err["message"]
    channel, stub = _stub(server)
    with channel:
        for call, request in (
                (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="bge-m3")),
                (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="bge-m3"))):
            assert _code(call, request) == grpc.StatusCode.PERMISSION_DENIED
        assert _code(stub.ModelInfer, _infer_request()) == grpc.StatusCode.OK
    assert _ready(server)


def test_repository_api_without_a_token_refuses_to_start(m3_dir):
    proc = subprocess.run([sys.executable, "-m", "predictor", "--embedder", str(m3_dir),
                           "--reranker", "none", "--device", "cpu", "--repository_api", "true"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "API_TOKEN": ""})
    assert proc.returncode != 0
    assert "--repository_api needs --api_token" in proc.stderr
