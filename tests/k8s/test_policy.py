"""checkov's Kubernetes policies over the rendered chart (both modes, defaults and
values-full.yaml). Every finding must be accepted, with its reason, in checkov-accepted.yaml.

checkov pins old versions of common packages (packaging<24, networkx<2.7, ...), so it lives in
its own virtualenv: $CHECKOV_BIN, else ``checkov`` on PATH (CI makes one: .ci/run). Skips with
that reason when there is none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from validate import NAMESPACE, RELEASE

HERE = Path(__file__).parent
ACCEPTED = HERE / "checkov-accepted.yaml"
VALUE_SETS = {
    "standalone-default": {},
    "kserve-default": {"mode": "kserve"},
    "standalone-full": "full",
    "kserve-full": "full-kserve",
}


def checkov_bin() -> str:
    found = os.environ.get("CHECKOV_BIN") or shutil.which("checkov")
    if not found:
        pytest.skip("checkov not found: set CHECKOV_BIN or put checkov on PATH "
                    "(python -m venv V && V/bin/pip install 'checkov>=3.2,<4')")
    return found


def _values(spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict):
        return spec
    full = yaml.safe_load((HERE / "values-full.yaml").read_text())
    return {**full, "mode": "kserve"} if spec == "full-kserve" else full


def run_checkov(chart: Any, folder: Path) -> list[dict[str, Any]]:
    for name, spec in VALUE_SETS.items():
        out = chart.render(_values(spec), name=RELEASE, namespace=NAMESPACE, is_install=True)
        docs = [text for path, text in sorted(out.items()) if path.endswith(".yaml")]
        (folder / f"{name}.yaml").write_text("\n---\n".join(d for d in docs if d.strip()))
    proc = subprocess.run(
        [checkov_bin(), "-d", str(folder), "--framework", "kubernetes", "--output", "json",
         "--quiet", "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: there are failed checks
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    (kube,) = [r for r in reports if r["check_type"] == "kubernetes"]
    assert kube["summary"]["passed"] > 100 and kube["summary"]["parsing_errors"] == 0
    return kube["results"]["failed_checks"]


def test_checkov_findings_are_all_accepted(chart, tmp_path):
    failed = run_checkov(chart, tmp_path)
    accepted = {a["id"]: a for a in yaml.safe_load(ACCEPTED.read_text())}
    for entry in accepted.values():
        assert len(entry["reason"]) > 40, entry["id"]
    unaccepted, used = [], set()
    for finding in failed:
        kind = finding["resource"].split(".")[0]
        entry = accepted.get(finding["check_id"])
        if entry is None or kind not in entry["kinds"]:
            unaccepted.append(f"{finding['check_id']} {finding['check_name']}: "
                              f"{finding['resource']} ({finding['file_path']})")
        else:
            used.add((finding["check_id"], kind))
    assert not unaccepted, "checkov findings not in checkov-accepted.yaml:\n" + "\n".join(
        unaccepted)
    stale = [(i, k) for i, a in accepted.items() for k in a["kinds"] if (i, k) not in used]
    assert not stale, f"accepted but no longer found (remove them): {stale}"
