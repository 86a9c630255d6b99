"""charts/bge-predictor/README.md: its values table is generated from values.yaml and current,
and it says which metric each autoscaling mode scales on."""

from __future__ import annotations

import subprocess
import sys

import yaml
from validate import CHART_DIR, REPO

SCRIPT = REPO / "hack" / "chart-values-table.py"


def _leaves(value, prefix=""):
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _leaves(inner, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_values_table_is_current():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_values_table_lists_every_value():
    readme = (CHART_DIR / "README.md").read_text()
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for key in _leaves(values):
        if key.startswith("reranker."):
            key = "embedder." + key.removeprefix("reranker.")
        assert f"| `{key}` |" in readme, key


def test_readme_names_each_autoscaling_metric():
    readme = (CHART_DIR / "README.md").read_text()
    section = readme.split("## Autoscaling", 1)[1].split("\n## ", 1)[0]
    for needle in ("standalone", "kserve", "CPU utilisation", "bge_predictor_queue_depth",
                   "prometheus-adapter", "KEDA", "metrics-server"):
        assert needle in section, needle
