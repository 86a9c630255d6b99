"""A real ``python -m predictor`` process on loopback ports, as users run it, for the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 ready_models: tuple[str, ...] = ("bge-m3",), timeout: float = 180,
                 launcher: tuple[str, ...] = ("-m", "predictor")) -> Server:
    """``launcher``: what follows the interpreter (a test-only wrapper such as gated_server.py)."""
    http_port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, *launcher, "--http_port", str(http_port),
           "--grpc_port", str(grpc_port), "--device", "cpu", *args]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                **(env or {})}
    log = open(log_path, "wb")  # noqa: SIM115 - closed when the process is
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    server = Server(proc, http_port, grpc_port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()[-4000:]}")
        try:
            if all(httpx.get(f"{server.url}/v2/models/{name}/ready", timeout=2).status_code == 200
                   for name in ready_models):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"server not ready in {timeout}s:\n{server.log()[-4000:]}")


def stop_server(server: Server, timeout: float = 30) -> int:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


def triton_grpc(calls: list[dict]) -> list[dict]:
    """Run tritonclient.grpc calls in a child process (see tests/support/triton_grpc_probe.py).

    Each call: ``{"url", "model", "inputs": [{"name", "data": [str | "b64:..."]}],
    "outputs"?: [names], "parameters"?: {...}, "headers"?: {...}}`` or
    ``{"op": "ready", "url", "model"}``. Results carry numpy arrays rebuilt from the JSON.
    """
    import json

    import numpy as np

    probe = REPO / "tests" / "support" / "triton_grpc_probe.py"
    proc = subprocess.run([sys.executable, str(probe)],
                          input=json.dumps(calls), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    for result in results:
        for name, tensor in result.get("outputs", {}).items():
            result["outputs"][name] = np.asarray(tensor["data"], dtype=tensor["dtype"]).reshape(
                tensor["shape"])
    return results
