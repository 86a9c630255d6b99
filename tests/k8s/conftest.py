"""Fixtures for the offline Kubernetes checks: the loaded chart, a renderer, CRD validators."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import validate  # noqa: E402


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    loaded = helm.Chart.load(validate.CHART_DIR)
    try:
        yield loaded
    finally:
        loaded.close()


@pytest.fixture(scope="session")
def crds() -> validate.CrdValidators:
    directory = validate.schemas_dir() / "kserve"
    if not directory.is_dir():
        pytest.fail(
            f"KServe CRDs not found at {directory}: they live in tests/k8s/crds/kserve "
            "(hack/refresh-kserve-crds.sh), or K8S_SCHEMAS_DIR points at another copy"
        )
    return validate.CrdValidators(directory)


Rendered = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[[dict[str, Any]], Rendered]:
    """Render the chart offline with Helm's own engine: template path -> objects."""
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any]) -> Rendered:
        key = repr(sorted(values.items()))
        if key not in cache:
            out = chart.render(
                values, name=validate.RELEASE, namespace=validate.NAMESPACE, is_install=True
            )
            cache[key] = {
                path: validate.load_documents(text)
                for path, text in out.items()
                if path.endswith((".yaml", ".yml"))
            }
        return cache[key]

    return _render
