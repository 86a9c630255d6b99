"""The GPU benchmark kit (bench/gpu.sh, hack/gpu-wheelhouse.sh, bench/verdict.py), on CPU.

The whole dry run (wheelhouse download, offline install into a fresh venv over an existing torch,
``bench/gpu.sh OUT --tiny``) takes 2-3 minutes on a busy 2-core machine, so by default these
tests check its pieces: that the wheelhouse list holds every distribution the server and the
benchmark import where FlagEmbedding is absent, beyond what the GPU machine has; the kit's
errors; the verdict lines; the GPU batch budget of ``limit``. ``BGE_GPU_KIT_DRY_RUN=1`` also
runs the whole dry run (docs/benchmarks.md, "GPU", gives the same commands by hand).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "bench" / "gpu.sh"
WHEELHOUSE_SH = ROOT / "hack" / "gpu-wheelhouse.sh"
BASH = shutil.which("bash")

#: What the GPU machine has installed (issue 15); their own dependencies come with them.
GPU_MACHINE = ["torch", "transformers", "tokenizers", "numpy", "grpcio", "protobuf",
               "prometheus-client", "httpx", "aiohttp", "psutil", "uvloop"]

# Imports everything the kit runs, loads both tiny models through the runners, and prints the
# distributions whose modules got imported. Run in a venv that sees only the GPU machine's
# packages and the wheelhouse's (see ``_gpu_like_venv``), so FlagEmbedding is absent there too.
_TRACE = r"""
import importlib.metadata as md, sys
import kserve.model_server, uvicorn, uvicorn.protocols.http.h11_impl
import predictor.cli, predictor.api.http.app
# what cli.main imports once the models are loaded
import predictor.api.http.middleware, predictor.api.http.registry, predictor.api.http.wire_limits
import predictor.api.kserve.grpc_guard, predictor.api.kserve.rest, predictor.api.kserve.tensors
import predictor.shutdown
import predictor.api.kserve.embedder, predictor.api.kserve.reranker
import bench.run, bench.fidelity, bench.verdict, bench.modes.limit, bench.modes.ours
import bench.modes.http_load, bench.modes.inproc
from predictor.runtime.m3 import M3Runner
from predictor.runtime.cross_encoder import CrossEncoderRunner
M3Runner(sys.argv[1], device="cpu")
CrossEncoderRunner(sys.argv[2], device="cpu")
assert "FlagEmbedding" not in sys.modules
dists = md.packages_distributions()
print("\n".join(sorted({d for m in list(sys.modules) for d in dists.get(m.split(".")[0], [])})))
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names: list[str]) -> set[str]:
    """The names and, recursively, their installed unconditional requirements."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _wheelhouse_list() -> set[str]:
    names = set()
    for line in (ROOT / "hack" / "gpu-wheelhouse.txt").read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.add(_norm(name))
    return names


def _gpu_like_venv(tmp: Path, names: set[str]) -> Path:
    """A venv that sees, of this venv's packages, only the distributions ``names`` (linked into
    one folder, added by a .pth as --system-site-packages would): the GPU machine after the
    kit's install, with the very versions the wheelhouse pins."""
    import importlib.metadata as md

    farm = tmp / "site"
    farm.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in names:
        try:
            files = md.distribution(name).files or []
        except md.PackageNotFoundError:
            continue
        for top in {Path(str(f)).parts[0] for f in files if not str(f).startswith("..")}:
            if (site / top).exists() and not (farm / top).exists() and top != "__pycache__":
                (farm / top).symlink_to(site / top)
    venv = tmp / "venv"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix) / "bin" / f"python{version}"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "_gpu_like.pth").write_text(f"{farm}\n")
    return venv / "bin" / "python"


def test_wheelhouse_list_holds_what_the_gpu_machine_lacks(model_dirs, tmp_path: Path) -> None:
    """With only the GPU machine's packages and the wheelhouse's, the server loads both models
    and every module of the kit imports; and nothing in the list goes unused."""
    python = _gpu_like_venv(tmp_path, _closure(GPU_MACHINE) | _wheelhouse_list())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(python), "-c", _TRACE, *map(str, model_dirs)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {_norm(d) for d in proc.stdout.split()}
    assert {"kserve", "fastapi", "torch", "pydantic"} <= imported
    unused = _wheelhouse_list() - imported - {"tzdata"}  # pandas's, read on first tz use
    assert not unused, f"in the wheelhouse list but never imported: {unused}"
    assert "flagembedding" not in _wheelhouse_list()


def test_wheelhouse_script_refuses_a_bad_python_version(tmp_path: Path) -> None:
    proc = subprocess.run([BASH, str(WHEELHOUSE_SH), "--python-version", "312", "--out",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--python-version wants 3.N" in proc.stderr


def test_kit_needs_an_output_folder() -> None:
    proc = subprocess.run([BASH, str(KIT), "--tiny"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "OUT_DIR" in proc.stderr


def test_kit_says_where_the_wheelhouse_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "KIT_VENV": str(tmp_path / "venv")}
    env.pop("PYTHON", None)
    proc = subprocess.run([BASH, str(KIT), str(tmp_path / "out"), "--tiny", "--wheelhouse",
                           str(tmp_path / "nowhere")], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "no wheelhouse at" in proc.stderr and "hack/gpu-wheelhouse.sh" in proc.stderr
    assert not (tmp_path / "venv").exists()


def test_limit_batches_like_the_server_on_each_device() -> None:
    from bench.run import parse_args
    from predictor.settings import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS

    assert parse_args(["--device", "cuda"]).max_batch_tokens == GPU_BATCH_TOKENS == 16384
    assert parse_args(["--device", "cpu"]).max_batch_tokens == CPU_BATCH_TOKENS
    assert parse_args(["--device", "cuda", "--max-batch-tokens", "999"]).max_batch_tokens == 999


def _payload(shape: str, device: str, **over) -> dict:
    cells = [
        {"workload": "dense-long", "mode": "ours", "clients": 32, "tokens_per_s": 450_000.0,
         "texts_per_s": 900.0},
        {"workload": "dense-long", "mode": "limit", "clients": 32, "tokens_per_s": 520_000.0,
         "texts_per_s": 1000.0},
        {"workload": "hybrid-long", "mode": "ours", "clients": 32, "tokens_per_s": 300_000.0,
         "texts_per_s": 600.0},
    ]
    payload = {"meta": {"settings": {"clients": 32, "device": device, "fp16": True},
                        "models": {"shape": shape}},
               "cells": cells, "idle_p50_ms": {"ours": 9.5, "limit": 4.0},
               "fidelity": {"texts": 16, "dense_cosine_min": 0.9995,
                            "colbert_cosine_min": 0.9981}}
    payload.update(over)
    return payload


def test_verdict_lines_one_per_target(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_payload("full", "cuda")))
    proc = subprocess.run([sys.executable, "-m", "bench.verdict", str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("MET") and "dense >= 400,000 tokens/s: ours 450,000" in lines[0]
    assert "(limit 520,000)" in lines[0]
    assert lines[1].startswith("SHORT") and "dense+sparse" in lines[1]
    assert lines[2].startswith("NOT MEASURED") and "rerank" in lines[2]
    assert lines[3].startswith("MET") and "9.50 ms" in lines[3]
    assert lines[4].startswith("MET") and "dense cosine (fp16 served)" in lines[4]
    assert lines[5].startswith("SHORT") and "ColBERT" in lines[5] and "0.998100" in lines[5]
    assert not any("dry run" in line for line in lines)


def test_verdict_compares_another_server_of_the_run_with_ours() -> None:
    """``bench/gpu.sh --compile`` serves ``ours@compile`` beside ``ours``: ratios to ours."""
    from bench.verdict import verdicts

    payload = _payload("full", "cuda")
    payload["cells"].append({"workload": "dense-long", "mode": "ours@compile", "clients": 32,
                             "tokens_per_s": 495_000.0, "texts_per_s": 990.0})
    payload["idle_p50_ms"]["ours@compile"] = 7.6
    compare = [line for line in verdicts(payload) if line.startswith("COMPARE")]
    assert compare == [
        "COMPARE ours@compile vs ours, dense: 495,000 vs 450,000 tokens/s (1.10x)",
        "COMPARE ours@compile vs ours, idle p50: 7.60 vs 9.50 ms"]
    assert len(verdicts(payload)) == 8, "the six target lines stay"


def test_bench_modes_name_a_dtype_and_server_settings() -> None:
    from bench.run import split_mode

    assert split_mode("ours") == ("ours", "", [], {})
    assert split_mode("ours@float32") == ("ours", "float32", [], {})
    assert split_mode("ours@compile") == ("ours", "", ["--torch_compile=true"], {})
    assert split_mode("ours@float16+compile") == ("ours", "float16", ["--torch_compile=true"],
                                                  {})
    assert split_mode("ours@pipeline0") == ("ours", "", [], {"BGE_PREDICTOR_PIPELINE": "0"})
    with pytest.raises(ValueError, match="one dtype"):
        split_mode("ours@float16+bfloat16")
    with pytest.raises(ValueError, match="server setting"):
        split_mode("limit@compile")


def test_verdict_marks_a_cpu_run_as_a_dry_run() -> None:
    from bench.verdict import verdicts

    lines = verdicts(_payload("tiny", "cpu", fidelity=None))
    assert all("[dry run" in line for line in lines)
    assert sum(line.startswith("NOT MEASURED") for line in lines) == 3  # rerank, 2 cosines


@pytest.mark.skipif(os.environ.get("BGE_GPU_KIT_DRY_RUN") != "1",
                    reason="the whole dry run takes minutes; BGE_GPU_KIT_DRY_RUN=1 runs it")
def test_kit_dry_run_offline_install_over_an_existing_torch(tmp_path: Path) -> None:
    """Wheelhouse for this Python, a 'system' of only the GPU machine's packages (linked from
    this venv), the kit's venv over it, then ``bench/gpu.sh OUT --tiny``."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheelhouse = tmp_path / "wheelhouse"
    proc = subprocess.run([BASH, str(WHEELHOUSE_SH), "--python-version", version, "--out",
                           str(wheelhouse)], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MiB" in proc.stdout
    (tmp_path / "system").mkdir()
    python = _gpu_like_venv(tmp_path / "system", _closure(GPU_MACHINE))  # torch & co. only
    system = python.parent.parent.parent / "site"
    assert system.is_dir()
    out = tmp_path / "out"
    env = {**os.environ, "KIT_VENV": str(tmp_path / "kit-venv"),
           "BASE_PYTHON": str(Path(sys.base_prefix) / "bin" / f"python{version}")}
    env.pop("PYTHON", None)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([BASH, str(KIT), str(out), "--tiny", "--wheelhouse", str(wheelhouse),
                           "--system-site", str(system), "--duration", "1",
                           "--idle-requests", "5"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = (out / "verdicts.txt").read_text().splitlines()
    assert len(verdicts) == 6 and all("[dry run" in line for line in verdicts)
    assert sum(line.startswith("MET") for line in verdicts[4:]) == 2  # fp32 vs fp32 cosines
    assert not any(line.startswith("NOT MEASURED") for line in verdicts)
