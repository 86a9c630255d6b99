"""Shared fixtures: random-weight model directories and a real server process on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server_process import Server, start_server, stop_server

# The parity tests compare with FlagEmbedding in float32 at 1e-5: every server and Settings the
# suite makes runs float32 unless a test names its dtype (--dtype auto would pick bfloat16 on
# a CPU with native bf16). tests/unit/runtime/test_dtype.py covers the other dtypes.
os.environ.setdefault("DTYPE", "float32")


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(m3_dir, reranker_dir): small random-weight models shaped like the real ones."""
    from predictor.demo import build_m3, build_reranker

    root = tmp_path_factory.mktemp("models")
    return build_m3(root / "m3"), build_reranker(root / "reranker")


@pytest.fixture(scope="session")
def m3_dir(model_dirs) -> Path:
    return model_dirs[0]


@pytest.fixture(scope="session")
def reranker_dir(model_dirs) -> Path:
    return model_dirs[1]


@pytest.fixture(scope="session")
def flag_m3(m3_dir):
    """FlagEmbedding's own BGE-M3 on the same directory: the reference for fidelity."""
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel(str(m3_dir), use_fp16=False, devices="cpu")


@pytest.fixture(scope="session")
def flag_reranker(reranker_dir):
    from FlagEmbedding import FlagReranker

    return FlagReranker(str(reranker_dir), use_fp16=False, devices="cpu")


@pytest.fixture(scope="session")
def server(model_dirs, tmp_path_factory) -> Iterator[Server]:
    """One server with both models, shared by the HTTP, SDK and V2 tests."""
    m3, reranker = model_dirs
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    srv = start_server(["--embedder", str(m3), "--reranker", str(reranker), "--dtype", "float32"],
                       log_path,
                       ready_models=("bge-m3", "bge-reranker"))
    yield srv
    stop_server(srv)


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c

