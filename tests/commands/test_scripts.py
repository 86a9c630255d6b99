"""Static checks of the shell scripts (hack/*.sh, .ci/*.sh) and kind-e2e.sh's tool check."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*ROOT.glob("hack/*.sh"), *ROOT.glob(".ci/*.sh")])
KIND_E2E = ROOT / "hack" / "kind-e2e.sh"
BASH = shutil.which("bash")

# What kind-e2e.sh may use before its tool check: bash and a few coreutils.
COREUTILS = ["env", "dirname", "basename", "cat", "mkdir", "mktemp", "rm", "ls", "printf", "id"]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_scripts_found() -> None:
    names = _ids(SCRIPTS)
    for expected in ("hack/build-base-image.sh", "hack/kind-e2e.sh", ".ci/docker.sh"):
        assert expected in names


@pytest.mark.parametrize("script", SCRIPTS, ids=_ids(SCRIPTS))
def test_bash_syntax(script: Path) -> None:
    assert BASH, "bash is required"
    proc = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=_ids(SCRIPTS))
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(
        [shellcheck, "--external-sources", str(script)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


OWN_SCRIPTS = [
    ROOT / p
    for p in (
        "hack/build-base-image.sh", "hack/kind-e2e.sh", "hack/refresh-kserve-crds.sh",
        ".ci/docker.sh",
    )
]


@pytest.mark.parametrize("script", OWN_SCRIPTS, ids=_ids(OWN_SCRIPTS))
def test_strict_mode_and_executable(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK), f"{script} is not executable"


def _bin_with_bash_and_coreutils(tmp_path: Path) -> Path:
    """A PATH folder holding bash and coreutils only: the scripts' tool check sees nothing else."""
    assert BASH
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "bash").symlink_to(BASH)
    for tool in COREUTILS:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    return bindir


def _run_kind_e2e(bindir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """kind-e2e.sh under bash from ``bindir``, with ``bindir`` as the whole PATH."""
    env = {"PATH": str(bindir), "HOME": str(tmp_path), "PYTHON": "python3"}
    return subprocess.run([str(bindir / "bash"), str(KIND_E2E)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)


def test_kind_e2e_reports_missing_tools(tmp_path: Path) -> None:
    """With only bash and coreutils on PATH it names the missing tools and exits non-zero."""
    bindir = _bin_with_bash_and_coreutils(tmp_path)
    proc = _run_kind_e2e(bindir, tmp_path)
    assert proc.returncode != 0
    for tool in ("kind", "kubectl", "helm", "docker"):
        assert f'required tool "{tool}" not found in PATH' in proc.stderr, proc.stderr
    assert "https://kind.sigs.k8s.io" in proc.stderr
    assert "missing required tools:" in proc.stderr
    # It stopped at the check: nothing was created.
    assert "creating kind cluster" not in proc.stderr


def test_kind_e2e_reports_only_kind_when_only_kind_is_missing(tmp_path: Path) -> None:
    """Every other tool present (as stubs): the message names kind alone."""
    bindir = _bin_with_bash_and_coreutils(tmp_path)
    for stub in ("docker", "kubectl", "helm", "python3"):
        path = bindir / stub
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    proc = _run_kind_e2e(bindir, tmp_path)
    assert proc.returncode != 0
    assert 'required tool "kind" not found in PATH' in proc.stderr, proc.stderr
    assert "missing required tools: kind\n" in proc.stderr, proc.stderr
    for tool in ("docker", "kubectl", "helm"):
        assert f'"{tool}" not found' not in proc.stderr


# --- refresh-kserve-crds.sh ---------------------------------------------------------------

REFRESH_CRDS = ROOT / "hack" / "refresh-kserve-crds.sh"
CRD_FILES = (
    "serving.kserve.io_inferenceservices.yaml",
    "serving.kserve.io_servingruntimes.yaml",
    "serving.kserve.io_clusterservingruntimes.yaml",
)


def _refresh(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert BASH
    return subprocess.run(
        [BASH, str(REFRESH_CRDS), *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DEST": str(tmp_path / "out"), **env},
    )


def test_refresh_crds_copies_and_records_the_ref(tmp_path: Path) -> None:
    """--from copies KServe's three CRD files unchanged and writes SOURCE.md with the ref."""
    repo_crds = ROOT / "tests" / "k8s" / "crds" / "kserve"
    proc = _refresh(tmp_path, "--from", str(repo_crds), KSERVE_REF="v9.9.9")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    for name in CRD_FILES:
        assert (out / name).read_bytes() == (repo_crds / name).read_bytes()
    assert "KServe ref: `v9.9.9`" in (out / "SOURCE.md").read_text()


def test_refresh_crds_refuses_what_is_not_a_crd(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in CRD_FILES:
        (src / name).write_text("<html>404</html>\n")
    proc = _refresh(tmp_path, "--from", str(src))
    assert proc.returncode != 0
    assert "is not a CustomResourceDefinition" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_refresh_crds_dry_run_prints_the_downloads(tmp_path: Path) -> None:
    proc = _refresh(tmp_path, "--dry-run", KSERVE_REF="v0.21.0")
    assert proc.returncode == 0, proc.stderr
    for name in CRD_FILES:
        assert f"kserve/kserve/v0.21.0/config/crd/full/{name}" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_committed_crds_name_their_kserve_ref() -> None:
    folder = ROOT / "tests" / "k8s" / "crds" / "kserve"
    for name in CRD_FILES:
        assert (folder / name).read_text().lstrip("-\n").startswith("apiVersion: apiextensions")
    source = (folder / "SOURCE.md").read_text()
    assert "KServe ref: `" in source and "config/crd/full" in source


# --- kind-e2e.sh, dry run -----------------------------------------------------------------


def _kind_dry_run(**env: str) -> list[list[str]]:
    """The commands kind-e2e.sh would run (DRY_RUN=1: printed, none run), split into words."""
    import shlex

    assert BASH
    proc = subprocess.run(
        [BASH, str(KIND_E2E)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "DRY_RUN": "1", "PYTHON": "python3", **env},
    )
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


def _flag_values(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, word in enumerate(cmd[:-1]) if word == flag]


def _helm_installs(cmds: list[list[str]]) -> list[tuple[str, list[str]]]:
    """("release chart", the helm upgrade --install command), in order."""
    return [(f"{c[3]} {c[4]}", c) for c in cmds if c[:3] == ["helm", "upgrade", "--install"]]


def test_kind_e2e_dry_run_changes_nothing(tmp_path: Path) -> None:
    cmds = _kind_dry_run(TMPDIR=str(tmp_path))
    assert cmds and ["kind", "create", "cluster"] == cmds[1][:3]
    assert list(tmp_path.iterdir()) == []  # its work folder is gone again


@pytest.mark.parametrize(
    ("version", "chart", "mode"),
    [
        ("v0.17.1", "kserve-resources", "Standard"),
        ("v0.20.0", "kserve-resources", "Standard"),
        ("v0.16.0", "kserve", "Standard"),
        ("v0.15.2", "kserve", "RawDeployment"),
    ],
)
def test_kind_e2e_installs_kserve_charts_that_exist(version: str, chart: str, mode: str) -> None:
    """From v0.17 KServe publishes kserve-crd + kserve-resources; v0.16 was the last "kserve"."""
    installs = dict(_helm_installs(_kind_dry_run(KSERVE_VERSION=version)))
    crd = installs["kserve-crd oci://ghcr.io/kserve/charts/kserve-crd"]
    controller = installs[f"kserve oci://ghcr.io/kserve/charts/{chart}"]
    for cmd in (crd, controller):
        assert _flag_values(cmd, "--version") == [version]
    assert f"kserve.controller.deploymentMode={mode}" in controller
    predictor = [c for k, c in _helm_installs(_kind_dry_run(KSERVE_VERSION=version))
                 if k.endswith("charts/bge-predictor")]
    assert predictor and all(f"kserve.deploymentMode={mode}" in c for c in predictor)


def test_kind_e2e_deploys_both_modes_as_shipped_and_runs_helm_test() -> None:
    cmds = _kind_dry_run()
    installs = [c for k, c in _helm_installs(cmds) if k.endswith("charts/bge-predictor")]
    modes = {v.removeprefix("mode=") for c in installs for v in _flag_values(c, "--set")
             if v.startswith("mode=")}
    assert modes == {"kserve", "standalone"}
    for cmd in installs:
        sets = _flag_values(cmd, "--set")
        assert not [s for s in sets if ".hpa.enabled=" in s or ".pdb.enabled=" in s], sets
        (ns,) = _flag_values(cmd, "--namespace")
        assert ["helm", "test", cmd[3], "--namespace", ns] in [c[:5] for c in cmds]
    e2e = [c for c in cmds if c[0] == "env" and "tests/e2e" in " ".join(c)]
    assert len(e2e) == 2


def test_kind_e2e_waits_longer_than_the_startup_allowance() -> None:
    import yaml

    values = yaml.safe_load((ROOT / "charts" / "bge-predictor" / "values.yaml").read_text())
    probe = values["embedder"]["startupProbe"]
    allowance = probe["failureThreshold"] * probe["periodSeconds"]
    waits = [c for c in _kind_dry_run() if c[:3] == ["kubectl", "-n", c[2]] and (
        "wait" in c or "rollout" in c) and "kserve-controller-manager" not in " ".join(c)]
    assert len(waits) == 4
    for cmd in waits:
        (timeout,) = _flag_values(cmd, "--timeout")
        assert int(timeout.removesuffix("s")) > allowance, cmd


def test_kind_e2e_needs_no_host_path_for_a_remote_docker() -> None:
    """No kind extraMounts (a path on this machine, absent where a remote engine runs):
    the models are streamed onto the node through the Docker API."""
    assert "extraMounts" not in KIND_E2E.read_text()
    cmds = _kind_dry_run(DOCKER_HOST="tcp://docker.example.com:2376")
    assert any(c[:2] == ["docker", "cp"] and "|" in c for c in cmds)
    assert not any("-v" in c for c in cmds if c[0] == "docker")


@pytest.mark.parametrize(
    ("image", "want"),
    [
        ("localhost:5000/bge-predictor", ["image.repository=localhost:5000/bge-predictor",
                                          "image.tag=latest"]),
        ("localhost:5000/ml/bge:1.2", ["image.repository=localhost:5000/ml/bge",
                                       "image.tag=1.2"]),
        ("bge-predictor:e2e", ["image.repository=bge-predictor", "image.tag=e2e"]),
        ("reg.example.com/bge@sha256:abc", ["image.repository=reg.example.com/bge",
                                            "image.digest=sha256:abc"]),
    ],
)
def test_kind_e2e_splits_image_references(image: str, want: list[str]) -> None:
    cmds = _kind_dry_run(IMAGE=image, MODES="standalone")
    (install,) = [c for k, c in _helm_installs(cmds) if k.endswith("bge-predictor")]
    sets = [s for s in _flag_values(install, "--set") if s.startswith("image.")]
    assert sorted(s for s in sets if "pullPolicy" not in s) == sorted(want)
