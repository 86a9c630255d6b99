"""A model directory missing a file it needs fails to load (exit 1), naming the file, instead of
being served with a degenerate tokenizer or randomly initialised heads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from server_process import REPO, free_port

CASES = {  # case: (which model, files removed, words the error must contain)
    "m3 without colbert_linear.pt": ("embedder", ["colbert_linear.pt"], "colbert_linear.pt"),
    "m3 without sparse_linear.pt": ("embedder", ["sparse_linear.pt"], "sparse_linear.pt"),
    "m3 without tokenizer.json": ("embedder", ["tokenizer.json"], "tokenizer.json"),
    "m3 without tokenizer_config.json": ("embedder", ["tokenizer_config.json"],
                                         "tokenizer_config.json"),
    "reranker without tokenizer.json": ("reranker", ["tokenizer.json"], "tokenizer.json"),
}


def _broken_copy(source, root, case, removed):
    target = root / case.replace(" ", "_") / "bge-m3"  # the name alone says BGE-M3
    shutil.copytree(source, target)
    for name in removed:
        (target / name).unlink()
    return target


def _serve(kind, path):
    args = (["--embedder", str(path), "--reranker", "none"] if kind == "embedder"
            else ["--embedder", "none", "--reranker", str(path)])
    return subprocess.run(
        [sys.executable, "-m", "predictor", "--device", "cpu", "--http_port", str(free_port()),
         "--grpc_port", str(free_port()), *args], cwd=REPO, capture_output=True, text=True,
        timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


@pytest.fixture(scope="module")
def outcomes(m3_dir, reranker_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    jobs = {case: (kind, _broken_copy(m3_dir if kind == "embedder" else reranker_dir, root,
                                      case, removed))
            for case, (kind, removed, _) in CASES.items()}
    with ThreadPoolExecutor(3) as pool:
        futures = {case: pool.submit(_serve, *job) for case, job in jobs.items()}
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_incomplete_model_fails_to_load_naming_the_file(outcomes, case):
    proc = outcomes[case]
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: failed to load models:"), last
    assert "incomplete" in last and CASES[case][2] in last, last
