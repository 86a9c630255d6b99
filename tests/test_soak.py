"""The CI version of the soak run (bench/soak.py): 60 s of saturating mixed load on loopback."""

from __future__ import annotations

import json
import subprocess
import sys

from server_process import REPO, free_port


def test_soak_60s_loses_nothing_and_does_not_grow(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--duration", "60", "--clients",
                           "16", "--port", str(free_port()), "--grpc-port", str(free_port()),
                           "--json", str(out),
                           "--models", str(tmp_path / "models")],
                          capture_output=True, text=True, timeout=400, cwd=REPO)
    assert out.exists(), proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["lost"] == 0, summary["lost_examples"]
    assert summary["unexpected"] == 0, summary["unexpected_examples"]
    assert summary["rss_growth_pct"] < 5, summary["rss_mb_every_10s"]
    assert summary["server_exit_code"] == 0
    assert summary["requests"] > 500
    assert any(key.startswith("bad-") for key in summary["statuses"])
    assert proc.returncode == 0
