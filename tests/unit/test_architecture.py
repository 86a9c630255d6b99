"""The layering of issue 12 cannot drift: import-linter's contracts and mypy run in the suite.

The contracts live in pyproject.toml (``[tool.importlinter]``), mypy's settings too
(``[tool.mypy]``: core/ and engine/). Both run from the repository root as a developer runs
them, so a failure shows the same report (``lint-imports``; ``mypy``). Each test skips only
when its tool is not installed (the ``test`` extra has both).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The console script's own entry point, run with this interpreter (importlinter.cli has no
# ``__main__``); lint-imports puts the working directory first on sys.path, so it analyses
# this checkout's ``predictor``.
_LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept() -> None:
    pytest.importorskip("importlinter", reason="import-linter is not installed (extra: test)")
    proc = _run([sys.executable, "-c", _LINT_IMPORTS, "--no-cache"])
    assert proc.returncode == 0, \
        f"lint-imports reports broken contracts:\n{proc.stdout}{proc.stderr}"


def test_mypy_is_clean_on_core_and_engine(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (extra: test)")
    proc = _run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")])
    assert proc.returncode == 0, f"mypy reports problems:\n{proc.stdout}{proc.stderr}"


def test_engine_imports_only_the_standard_library() -> None:
    """The forbidden contract lists the third-party packages the project uses; this catches
    one it does not list yet (a module counts if grimp sees engine import it, even lazily)."""
    grimp = pytest.importorskip("grimp", reason="grimp (import-linter's graph) is not installed")
    sys.path.insert(0, str(ROOT))  # this checkout's predictor, as lint-imports sees it
    try:
        graph = grimp.build_graph("predictor", include_external_packages=True, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    engine = {m for m in graph.modules if m == "predictor.engine"
              or m.startswith("predictor.engine.")}
    imported = set().union(*(graph.find_modules_directly_imported_by(m) for m in engine))
    outside = sorted(m for m in imported - engine
                     if m.split(".")[0] not in sys.stdlib_module_names)
    assert not outside, f"predictor.engine imports beyond the standard library: {outside}"
