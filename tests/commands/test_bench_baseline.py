"""``python -m bench.run --baseline DIR``: contender ``before`` served from another checkout.

What can be checked without starting a server: the flag's parsing and its clear errors, the
environment that makes the child import the baseline's ``predictor`` (checked here with the
bench's own probe, which the bench runs before starting ``before``), and the ratio table.
The measurement itself is a manual command (docs/benchmarks.md, "Restructuring (issue 12)").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.modes import ours
from bench.report import BASELINE_HEADER, baseline_rows
from bench.run import ROOT, parse_args
from bench.stats import Cell


def _checkout(tmp_path: Path) -> Path:
    """A minimal stand-in for another checkout: a ``predictor`` package that says where it is."""
    pkg = tmp_path / "old" / "predictor"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("MARK = 'old checkout'\n")
    return pkg.parent


def test_baseline_adds_contender_before(tmp_path: Path) -> None:
    old = _checkout(tmp_path)
    args = parse_args(["--baseline", str(old), "--modes", "ours"])
    assert args.baseline == old.resolve()
    assert args.modes.split(",") == ["ours", "before"]
    # Named explicitly (also with a dtype): kept as given, nothing added.
    args = parse_args(["--baseline", str(old), "--modes", "before@float32,ours@float32"])
    assert args.modes == "before@float32,ours@float32"
    assert parse_args([]).baseline is None


@pytest.mark.parametrize("case", ["missing", "file", "no-package", "this-checkout", "no-flag"])
def test_invalid_baseline_is_a_clear_error(tmp_path: Path, case: str) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "a-file").write_text("x")
    argv, expected = {
        "missing": (["--baseline", str(tmp_path / "nowhere")], "not a directory"),
        "file": (["--baseline", str(tmp_path / "a-file")], "not a directory"),
        "no-package": (["--baseline", str(tmp_path / "plain")], "no predictor/ package"),
        "this-checkout": (["--baseline", str(ROOT)], "that is this checkout"),
        "no-flag": (["--modes", "ours,before"], "needs --baseline DIR"),
    }[case]
    # The real command line: argparse's usage error, exit status 2, before anything starts.
    proc = subprocess.run([sys.executable, "-m", "bench.run", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert "starting contenders" not in proc.stdout


def test_before_imports_the_baseline_checkout(tmp_path: Path) -> None:
    old = _checkout(tmp_path)
    env = ours.baseline_env(old, {"PYTHONPATH": str(ROOT)})
    assert env["PYTHONPATH"].split(":")[0] == str(old)
    # This interpreter (with the venv's editable install of another checkout) run as the server
    # is run: the baseline's package wins.
    where = ours.check_import(old, env)
    assert Path(where) == old / "predictor" / "__init__.py"
    out = subprocess.run([sys.executable, "-c", "import predictor; print(predictor.MARK)"],
                         cwd=old, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "old checkout"


def test_check_import_refuses_a_checkout_that_resolves_elsewhere(tmp_path: Path) -> None:
    # PYTHONPATH pointing at this checkout ahead of the directory: predictor comes from ROOT.
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RuntimeError, match="not that checkout|cannot import"):
        ours.check_import(plain, {"PYTHONPATH": str(ROOT)})


def test_baseline_ratios_pair_rounds() -> None:
    def cell(mode: str, texts: int, cpu: float) -> Cell:
        c = Cell(mode, "dense-short", 4, texts=texts, elapsed_s=1.0)
        c.mode, c.cpu_s = mode, cpu
        return c

    cells = [cell("ours", 100, 2.0), cell("before", 80, 2.0),   # round 1: 1.25
             cell("before", 100, 2.0), cell("ours", 90, 1.0),   # round 2: 0.90
             cell("ours", 110, 2.0), cell("before", 100, 2.0)]  # round 3: 1.10
    rows = baseline_rows(cells, 4)
    assert len(rows) == 1
    row = dict(zip(BASELINE_HEADER, rows[0], strict=True))
    assert row["contenders"] == "ours / before"
    assert row["median ratio"] == "1.10x"
    assert row["per-round ratios"] == "1.25 0.90 1.10"
    assert (row["texts/s"], row["before texts/s"]) == ("110.0", "100.0")
    assert row["texts/CPU-s ratio"] == "1.25x"
    assert baseline_rows(cells, 16) == []


def test_a_baseline_run_keeps_the_docs_charts(tmp_path: Path) -> None:
    old = _checkout(tmp_path)
    out = tmp_path / "out"
    assert parse_args(["--out", str(out)]).plots_dir == ROOT / "docs" / "img"
    assert parse_args(["--out", str(out), "--baseline", str(old)]).plots_dir == out


def test_charts_draw_before_and_skip_dtype_only_runs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench import plots

    def cell(mode: str) -> Cell:
        c = Cell(mode, "dense-short", 4, texts=40, tokens=600, elapsed_s=1.0,
                 latencies_s=[0.1, 0.2, 0.3])
        c.mode = mode
        return c

    both = [cell("ours"), cell("before")]
    out = plots.latency_percentiles(both, 4, tmp_path / "lat.png", "t")
    assert out is not None and out.stat().st_size > 0
    assert plots.throughput_vs_clients(both, "dense-short", tmp_path / "c.png", "t") is not None
    # Only contender@dtype cells (``--modes ours@float32,before@float32``): no chart, no crash.
    dtyped = [cell("ours@float32"), cell("before@float32")]
    assert plots.latency_percentiles(dtyped, 4, tmp_path / "x.png", "t") is None
    assert plots.throughput_vs_clients(dtyped, "dense-short", tmp_path / "y.png", "t") is None
    assert plots.throughput_by_workload(dtyped + [cell("limit")], 4, tmp_path / "z.png",
                                        "t") is None
