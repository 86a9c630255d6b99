"""The container image, run the way Kubernetes runs it.

Needs a Docker engine and a built image named by ``BGE_PREDICTOR_IMAGE`` (CI: ``.ci/docker.sh``
builds ``bge-predictor:ci``); skipped otherwise. Each model runs in its own container, as the
chart deploys it: the model directory mounted read-only at /mnt/models, a read-only root
filesystem with tmpfs on /tmp and HF_HOME, uid 1000, ports published on 127.0.0.1 only. The
test waits on the chart's probe paths, calls the JSON API once, then stops the container with
SIGTERM and expects a clean exit (code 0) well within the grace period.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("BGE_PREDICTOR_IMAGE", "").strip()
HF_HOME = "/home/app/.cache/huggingface"
STARTUP_TIMEOUT_S = float(os.environ.get("BGE_DOCKER_STARTUP_TIMEOUT", "240"))
STOP_GRACE_S = 30

if not IMAGE:
    pytest.skip(
        "BGE_PREDICTOR_IMAGE is not set: build the image (.ci/docker.sh or `make image`) and "
        "set BGE_PREDICTOR_IMAGE=<tag> to run the container tests",
        allow_module_level=True,
    )


def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


@pytest.fixture(scope="module", autouse=True)
def _image_present() -> None:
    if shutil.which("docker") is None:
        pytest.fail(f"BGE_PREDICTOR_IMAGE={IMAGE} is set but the docker CLI is not installed")
    info = _docker("info", check=False, timeout=30)
    if info.returncode != 0:
        pytest.fail(
            f"BGE_PREDICTOR_IMAGE={IMAGE} is set but no Docker engine answers: "
            f"{info.stderr.strip()}"
        )
    inspect = _docker("image", "inspect", IMAGE, check=False, timeout=30)
    if inspect.returncode != 0:
        pytest.fail(f"image {IMAGE} does not exist: {inspect.stderr.strip()}")


def _make_readable(root: Path) -> None:
    """The container runs as uid 1000: open the model files to everyone (read-only mount)."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if path.is_dir():
            extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        path.chmod(mode | extra)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from predictor.demo import build_m3, build_reranker

    root = tmp_path_factory.mktemp("docker-models")
    dirs = {
        "embedder": Path(build_m3(root / "bge-m3")),
        "reranker": Path(build_reranker(root / "bge-reranker")),
    }
    _make_readable(root)
    return dirs


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Container:
    name: str
    base_url: str
    model_name: str

    def logs(self, tail: int = 80) -> str:
        out = _docker("logs", "--tail", str(tail), self.name, check=False, timeout=30)
        return (out.stdout + out.stderr)[-8000:]

    def state(self) -> dict[str, str]:
        fmt = "{{.State.Status}}|{{.State.ExitCode}}|{{.State.OOMKilled}}"
        out = _docker("inspect", "-f", fmt, self.name, check=False, timeout=30)
        status, code, oom = (out.stdout.strip().split("|") + ["", "", ""])[:3]
        return {"status": status, "exit_code": code, "oom_killed": oom}


def _run_container(model_dir: Path | None, model_name: str, args: list[str]) -> Container:
    """Start the image as the chart runs it; model_dir (if any) is mounted at /mnt/models."""
    name = f"bge-test-{model_name}-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    options = [
        *("--detach", "--name", name),
        "--read-only",
        *("--user", "1000:1000"),
        *("--tmpfs", "/tmp"),
        # Plain --tmpfs, no uid/mode options: the image's HF_HOME mode must make it writable.
        *("--tmpfs", HF_HOME),
        *("--publish", f"127.0.0.1:{port}:8080"),
        *("--stop-timeout", str(STOP_GRACE_S)),
    ]
    if model_dir is not None:
        options += ["--volume", f"{model_dir}:/mnt/models:ro"]
    _docker("run", *options, IMAGE, *args, "--device", "cpu")
    return Container(name=name, base_url=f"http://127.0.0.1:{port}", model_name=model_name)


def _wait_ready(c: Container) -> None:
    """Poll the chart's probe targets: liveness /v2/health/live, readiness /v2/models/<n>/ready."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    paths = ["/v2/health/live", f"/v2/models/{c.model_name}/ready"]
    last = ""
    with httpx.Client(base_url=c.base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            state = c.state()
            if state["status"] not in ("created", "running"):
                pytest.fail(f"container {c.name} stopped before ready ({state}):\n{c.logs()}")
            try:
                codes = [client.get(p).status_code for p in paths]
                if codes == [200, 200]:
                    return
                last = f"{dict(zip(paths, codes, strict=True))}"
            except httpx.HTTPError as exc:  # not listening yet
                last = repr(exc)
            time.sleep(1)
    pytest.fail(f"{c.name} not ready after {STARTUP_TIMEOUT_S:.0f}s (last: {last}):\n{c.logs()}")


def _stop_and_check_clean_exit(c: Container) -> None:
    start = time.monotonic()
    _docker("stop", "--time", str(STOP_GRACE_S), c.name, timeout=STOP_GRACE_S + 60)
    elapsed = time.monotonic() - start
    state = c.state()
    assert state["status"] == "exited", state
    assert state["exit_code"] == "0", (
        f"exit code {state['exit_code']} after SIGTERM ({elapsed:.1f}s; 137 means it ignored "
        f"SIGTERM and was killed after the {STOP_GRACE_S}s grace period):\n{c.logs()}"
    )
    assert elapsed < STOP_GRACE_S, f"took {elapsed:.1f}s to stop on SIGTERM"


@pytest.fixture
def run_container() -> Iterator:
    started: list[Container] = []

    def _start(model_dir: Path | None, model_name: str, args: list[str]) -> Container:
        c = _run_container(model_dir, model_name, args)
        started.append(c)
        return c

    yield _start
    for c in started:
        _docker("rm", "--force", "--volumes", c.name, check=False, timeout=90)


def test_image_metadata() -> None:
    fmt = (
        "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.ExposedPorts}}"
        "|{{json .Config.Env}}"
    )
    out = _docker("image", "inspect", "-f", fmt, IMAGE).stdout.strip()
    user, entrypoint, ports, env = out.split("|")
    assert user in ("1000", "1000:1000", "app")
    assert entrypoint == '["python","-m","predictor"]'
    assert "8080/tcp" in ports and "8081/tcp" in ports
    assert f"HF_HOME={HF_HOME}" in env


def test_torch_in_the_image_is_its_variant() -> None:
    """The label's TORCH_VARIANT (cpu, cuda, rocm) is the torch inside: no CUDA or HIP build for
    cpu, CUDA for cuda, HIP (ROCm devices appear as ``cuda``) for rocm."""
    label = '{{index .Config.Labels "io.bge-predictor.torch-variant"}}'
    variant = _docker("image", "inspect", "-f", label, IMAGE).stdout.strip()
    out = _docker("run", "--rm", "--entrypoint", "python", IMAGE, "-c",
                  "import torch; print(torch.version.cuda, getattr(torch.version, 'hip', None))",
                  timeout=300).stdout.split()
    cuda, hip = (None if v == "None" else v for v in out[-2:])
    expected = {"cpu": cuda is None and hip is None, "cuda": cuda is not None,
                "rocm": hip is not None}
    assert expected[variant], f"TORCH_VARIANT={variant} but torch has cuda={cuda} hip={hip}"


def test_embedder_container(model_dirs: dict[str, Path], run_container) -> None:
    c = run_container(
        model_dirs["embedder"],
        "bge-m3",
        ["--embedder", "/mnt/models", "--reranker", "none", "--embedder_name", "bge-m3"],
    )
    _wait_ready(c)
    r = httpx.post(
        f"{c.base_url}/v1/embeddings", json={"input": ["hello"], "model": "bge-m3"}, timeout=60
    )
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{c.logs()}"
    body = r.json()
    assert body["object"] == "list"
    assert len(body["data"]) == 1
    vector = body["data"][0]["embedding"]
    assert isinstance(vector, list) and len(vector) > 1
    assert all(isinstance(x, float) for x in vector)
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-3)
    # The image ships jemalloc; the predictor re-executes itself with it preloaded.
    full = _docker("logs", c.name, check=False, timeout=30)
    assert "memory allocator: jemalloc" in full.stdout + full.stderr, c.logs()
    _stop_and_check_clean_exit(c)


def test_reranker_container(model_dirs: dict[str, Path], run_container) -> None:
    c = run_container(
        model_dirs["reranker"],
        "bge-reranker",
        ["--reranker", "/mnt/models", "--embedder", "none", "--reranker_name", "bge-reranker"],
    )
    _wait_ready(c)
    r = httpx.post(
        f"{c.base_url}/v1/rerank",
        json={"query": "q", "documents": ["a", "b"], "model": "bge-reranker"},
        timeout=60,
    )
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{c.logs()}"
    results = r.json()["results"]
    assert len(results) == 2
    assert sorted(x["index"] for x in results) == [0, 1]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    _stop_and_check_clean_exit(c)


def test_demo_mode_container(run_container) -> None:
    """`--demo` builds its random-weight models inside the container (read-only root fs: under
    HF_HOME) and serves both models from one process."""
    c = run_container(None, "bge-m3", ["--demo"])
    _wait_ready(c)
    with httpx.Client(base_url=c.base_url, timeout=60) as client:
        assert client.get("/v2/models/bge-reranker/ready").status_code == 200
        r = client.post("/v1/embeddings", json={"input": "hello"})
        assert r.status_code == 200, f"{r.status_code} {r.text}\n{c.logs()}"
        r = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
        assert r.status_code == 200, f"{r.status_code} {r.text}\n{c.logs()}"
        assert len(r.json()["results"]) == 2
    _stop_and_check_clean_exit(c)
