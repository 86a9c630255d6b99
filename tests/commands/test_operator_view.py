"""What an operator sees first: ``--help`` and the server's log."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from server_process import REPO, triton_grpc


def test_help_lists_our_flags_first_grouped_with_defaults_then_kserves():
    out = subprocess.run([sys.executable, "-m", "predictor", "--help"], capture_output=True,
                         text=True, timeout=120, cwd=REPO, env={"PATH": "/usr/bin:/bin",
                                                                "HF_HUB_OFFLINE": "1"}).stdout
    titles = [line.rstrip(":") for line in out.splitlines() if re.fullmatch(r"[A-Z][^ ].*:", line)]
    assert titles[0] == "Models to serve" and titles[-1] == "KServe ModelServer options", titles
    ours, kserve = out.split("KServe ModelServer options:")
    for flag in ("--embedder", "--reranker", "--model SPEC", "--demo", "--max_queue_size",
                 "--api_token", "--sparse_token_mapping"):
        assert flag in ours
    for flag in ("--http_port", "--grpc_port", "--workers", "--enable_grpc"):
        assert flag in kserve and flag not in ours
    # Defaults shown, ours and KServe's.
    assert re.search(r"--max_queue_size .*?\(default: 8192\)", ours, re.S)
    assert re.search(r"--http_port .*?\(default: 8080\)", kserve, re.S)
    # The --model example is one unbroken line.
    assert ("--model 'name=e5,kind=embedder,path=intfloat/multilingual-e5-large,"
            "aliases=e5-large|me5'") in out


def test_start_up_log_says_what_is_served_where_and_one_line_per_request(server, client):
    deadline = time.monotonic() + 30
    while "listening: HTTP on" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = server.log()
    assert re.search(r"serving embedder 'bge-m3' from \S+ on cpu \(float32\)", log), log[-3000:]
    assert re.search(r"serving reranker 'bge-reranker' from \S+ on cpu", log)
    assert f"listening: HTTP on :{server.http_port}" in log
    assert f"gRPC V2 on :{server.grpc_port}" in log
    assert "auth: off" in log and "memory allocator:" in log
    for noise in ("endpoints not registered", "loading existing colbert_linear",
                  "Loading weights"):
        assert noise not in log, noise
    # One access line per request, no kserve.trace latency lines.
    # The probe is a parameter NAME: access lines keep names and hide values (security).
    name = f"probe{time.monotonic_ns()}"
    assert client.get(f"/v1/models?{name}=1").status_code == 200
    deadline = time.monotonic() + 10
    while name not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in server.log().splitlines() if name in line]
    assert len(lines) == 1, lines
    assert "kserve.trace" not in server.log()


def test_a_clients_grpc_mistake_is_logged_at_info_in_one_line(server):
    model = f"no-such-model-{time.monotonic_ns()}"
    (unknown,) = triton_grpc([{"url": server.grpc_url, "model": model,
                               "inputs": [{"name": "text", "data": ["x"]}]}])
    assert unknown["error"]["status"] == "StatusCode.NOT_FOUND"
    deadline = time.monotonic() + 10
    while model not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in server.log().splitlines() if model in line]
    assert lines and all(" INFO " in line and "ERROR" not in line for line in lines), lines
    assert "Traceback" not in server.log()
