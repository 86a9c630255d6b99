"""The Dockerfile's torch step, run as Docker runs it, without Docker.

The ``RUN`` that installs torch per ``TORCH_VARIANT`` (cpu, cuda, rocm) is taken from the
Dockerfile text, joined the way Docker joins continued lines, and run by ``/bin/sh -c`` with the
stage's ``ARG`` defaults in the environment (as Docker passes them). ``pip`` is a stand-in that
records its arguments; ``python`` is the real interpreter with a stand-in ``torch`` package whose
``torch.version.cuda`` / ``torch.version.hip`` play each kind of wheel. So what is checked is the
Dockerfile's own logic: which index each variant installs from, and that the image refuses a
torch of the wrong kind. (Building the images needs a Docker engine and PyTorch's index:
tests/docker/ runs the built image.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"
ROCM_TORCH = {"FAKE_TORCH_VERSION": "2.13.0+rocm6.4", "FAKE_TORCH_HIP": "6.4.43482"}
CUDA_TORCH = {"FAKE_TORCH_VERSION": "2.13.0", "FAKE_TORCH_CUDA": "12.8"}
CPU_TORCH = {"FAKE_TORCH_VERSION": "2.13.0+cpu"}


def instructions(text: str) -> list[str]:
    """Logical Dockerfile lines: comments dropped, ``\\``-newline continuations joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            current += raw[:-1]
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    return lines


def builder_stage() -> tuple[dict[str, str], str]:
    """(the builder stage's ARG defaults, the shell command of its torch RUN)."""
    stage, froms = [], 0
    for line in instructions(DOCKERFILE.read_text()):
        froms += line.startswith("FROM ")
        if froms == 2:  # the runtime stage
            break
        stage.append(line)
    args = {}
    for line in stage:
        match = re.fullmatch(r"ARG (\w+)(?:=(.*))?", line)
        if match and match.group(2) is not None:
            args[match.group(1)] = match.group(2)
    torch_runs = [line[4:] for line in stage
                  if line.startswith("RUN ") and 'case "$TORCH_VARIANT"' in line]
    assert len(torch_runs) == 1
    return args, torch_runs[0]


@pytest.fixture
def stubs(tmp_path):
    bin_dir, lib_dir = tmp_path / "bin", tmp_path / "lib" / "torch"
    bin_dir.mkdir()
    lib_dir.mkdir(parents=True)
    (bin_dir / "pip").write_text('#!/bin/sh\necho "$*" >> "$PIP_LOG"\n')
    (bin_dir / "python").write_text(
        f'#!/bin/sh\nPYTHONPATH="{tmp_path / "lib"}" exec "{sys.executable}" "$@"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    (lib_dir / "__init__.py").write_text(
        "import os\n__version__ = os.environ['FAKE_TORCH_VERSION']\nfrom . import version\n")
    (lib_dir / "version.py").write_text(
        "import os\ncuda = os.environ.get('FAKE_TORCH_CUDA')\n"
        "hip = os.environ.get('FAKE_TORCH_HIP')\n")
    return tmp_path


def run_torch_step(stubs: Path, variant: str, torch_env: dict[str, str],
                   **build_args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    args, command = builder_stage()
    log = stubs / "pip.log"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{stubs / 'bin'}:/usr/bin:/bin", "PIP_LOG": str(log), **args,
           "TORCH_VARIANT": variant, **build_args, **torch_env}
    proc = subprocess.run(["/bin/sh", "-c", command], cwd=stubs, env=env, capture_output=True,
                          text=True, timeout=60)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_rocm_installs_the_rocm_wheel_and_checks_it_is_one(stubs):
    args, _ = builder_stage()
    assert args["TORCH_ROCM_INDEX_URL"].startswith("https://download.pytorch.org/whl/rocm")
    proc, pip = run_torch_step(stubs, "rocm", ROCM_TORCH)
    assert proc.returncode == 0, proc.stderr
    assert pip == [f"install --index-url {args['TORCH_ROCM_INDEX_URL']} -c constraints.txt "
                   "torch"]
    assert "hip 6.4.43482" in proc.stdout


@pytest.mark.parametrize("wrong", [CUDA_TORCH, CPU_TORCH], ids=["cuda-wheel", "cpu-wheel"])
def test_rocm_refuses_a_torch_without_hip(stubs, wrong):
    proc, _ = run_torch_step(stubs, "rocm", wrong)
    assert proc.returncode != 0
    assert "TORCH_VARIANT=rocm but torch" in proc.stderr


def test_rocm_index_can_come_from_the_pip_settings(stubs):
    proc, pip = run_torch_step(stubs, "rocm", ROCM_TORCH, TORCH_ROCM_INDEX_URL="")
    assert proc.returncode == 0, proc.stderr
    assert pip == ["install -c constraints.txt torch"]
    proc, pip = run_torch_step(stubs, "rocm", ROCM_TORCH,
                               TORCH_ROCM_INDEX_URL="https://mirror.example/whl/rocm7.0")
    assert pip == ["install --index-url https://mirror.example/whl/rocm7.0 -c constraints.txt "
                   "torch"]


def test_cpu_and_cuda_variants_are_unchanged(stubs):
    args, _ = builder_stage()
    proc, pip = run_torch_step(stubs, "cpu", CPU_TORCH)
    assert proc.returncode == 0, proc.stderr
    assert pip == [f"install --index-url {args['TORCH_CPU_INDEX_URL']} -c constraints.txt torch"]
    proc, pip = run_torch_step(stubs, "cuda", CUDA_TORCH)
    assert proc.returncode == 0, proc.stderr
    assert pip == ["install -c constraints.txt torch"]
    for variant, wrong in (("cpu", CUDA_TORCH), ("cpu", ROCM_TORCH), ("cuda", CPU_TORCH),
                           ("cuda", ROCM_TORCH)):
        proc, _ = run_torch_step(stubs, variant, wrong)
        assert proc.returncode != 0, (variant, wrong)
        assert f"TORCH_VARIANT={variant} but torch" in proc.stderr


def test_an_unknown_variant_names_the_choices(stubs):
    proc, pip = run_torch_step(stubs, "metal", CPU_TORCH)
    assert proc.returncode == 2 and pip == []
    assert "TORCH_VARIANT must be cuda, cpu or rocm, not 'metal'" in proc.stderr


def test_the_label_records_the_variant():
    text = DOCKERFILE.read_text()
    assert 'io.bge-predictor.torch-variant="${TORCH_VARIANT}"' in text
