"""The chart's output and manifests/ against a real kube-apiserver (etcd on loopback).

Server-side apply of every object, after KServe's CRDs are installed: the server checks what
schema validation cannot (defaulting, structural pruning of custom resources, quantities, merge
keys). A refused object fails the test, and so does any field the server dropped (pruned).
Skips with the reason when no kube-apiserver or etcd binary is found (see apiserver.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver import (
    LiveApiServer,
    adapt_for_1_20,
    crd_for_1_20,
    find_binaries,
    pruned_paths,
)
from validate import (
    CRDS_DIR,
    MANIFESTS_DIR,
    MONITORING_GROUP,
    NAMESPACE,
    describe,
    load_documents,
    manifest_files,
)

VALUES_FULL = Path(__file__).parent / "values-full.yaml"

#: mode x value set: the defaults and the full set (values-full.yaml), in both modes.
CASES = {
    "standalone-default": [{"mode": "standalone"}],
    "standalone-full": ["full", {"mode": "standalone"}],
    "kserve-default": [{"mode": "kserve"}],
    "kserve-full": ["full", {"mode": "kserve"}],
}


@pytest.fixture(scope="module")
def api() -> Iterator[LiveApiServer]:
    apiserver, etcd, reason = find_binaries()
    if reason:
        pytest.skip(reason)
    assert apiserver and etcd
    server = LiveApiServer(apiserver, etcd)
    try:
        server.start()
        for path in sorted((CRDS_DIR / "kserve").glob("*.yaml")):
            for crd in load_documents(path.read_text()):
                server.install_crd(crd_for_1_20(crd))
        yield server
    finally:
        server.stop()


def full_values() -> dict[str, Any]:
    return yaml.safe_load(VALUES_FULL.read_text())


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_all(api: LiveApiServer, objs: list[dict[str, Any]], namespace: str) -> list[str]:
    """Apply each object; returns what was refused or pruned, one line each."""
    api.ensure_namespace(namespace)
    problems = []
    for obj in objs:
        if obj["apiVersion"].startswith(MONITORING_GROUP + "/"):
            # No Prometheus Operator CRDs here; test_chart checks these structurally.
            continue
        sent = adapt_for_1_20(obj)
        try:
            stored = api.apply(sent, namespace)
        except AssertionError as err:
            problems.append(str(err))
            continue
        for part in ("spec", "data", "metadata"):
            lost = pruned_paths(sent.get(part), stored.get(part), part)
            if lost:
                problems.append(f"{describe(obj)}: the server dropped {lost}")
    return problems


@pytest.mark.parametrize("name", sorted(CASES))
def test_chart_applies(api: LiveApiServer, chart: Any, name: str) -> None:
    parts = [full_values() if p == "full" else p for p in CASES[name]]
    values: dict[str, Any] = {}
    for part in parts:
        values = deep_merge(values, part)
    out = chart.render(values, name="rel", namespace=NAMESPACE, is_install=True)
    objs = [o for path, text in sorted(out.items()) if path.endswith(".yaml")
            for o in load_documents(text)]
    kinds = {o["kind"] for o in objs}
    want = {"InferenceService", "ServingRuntime"} if "kserve" in name else {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert want <= kinds, kinds
    problems = apply_all(api, objs, f"{NAMESPACE}-{name}")
    assert not problems, "\n".join(problems)


def test_manifests_apply(api: LiveApiServer) -> None:
    objs = [o for path in manifest_files() for o in load_documents(path.read_text())]
    assert objs, MANIFESTS_DIR
    problems = apply_all(api, objs, "manifests")
    assert not problems, "\n".join(problems)


def test_a_pruned_field_is_caught(api: LiveApiServer) -> None:
    """The check itself: a field KServe's CRD does not know is dropped, and reported."""
    (isvc,) = load_documents((MANIFESTS_DIR / "examples" / "inferenceservice-bge-m3-gpu.yaml")
                             .read_text())
    isvc["metadata"]["name"] = "pruned-check"
    isvc["spec"]["predictor"]["minReplica"] = 3
    problems = apply_all(api, [isvc], "pruned-check")
    assert len(problems) == 1 and "spec.predictor.minReplica" in problems[0], problems


def test_a_refused_object_is_caught(api: LiveApiServer) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "refused"},
           "spec": {"ports": [{"port": 70000}]}}
    problems = apply_all(api, [svc], "refused-check")
    assert len(problems) == 1 and "refused (422)" in problems[0], problems


# --- the helpers, without a server ----------------------------------------------------------


def test_adapt_for_1_20_changes_only_what_1_20_lacks():
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "h"}, "spec": {"maxReplicas": 2}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
           "spec": {"maxUnavailable": 0}}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"template": {"spec": {"containers": [{
               "name": "c", "ports": [{"containerPort": 8080}],
               "resources": {"limits": {"nvidia.com/gpu": 2, "memory": "1Gi"}}}]}}}}
    assert adapt_for_1_20(hpa)["apiVersion"] == "autoscaling/v2beta2"
    assert adapt_for_1_20(pdb) == {**pdb, "apiVersion": "policy/v1beta1"}
    (container,) = adapt_for_1_20(dep)["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2", "memory": "1Gi"}
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 8080}]  # the original is untouched
    crd = {"spec": {"a": {"default": "", "type": "string"}, "b": {"default": "x"}}}
    assert crd_for_1_20(crd) == {"spec": {"a": {"type": "string"}, "b": {"default": "x"}}}


def test_pruned_paths():
    sent = {"a": 1, "b": {"c": 2, "gone": 3}, "l": [{"x": 1}, {"y": 2}], "empty": {}}
    stored = {"a": 1, "b": {"c": 2}, "l": [{"y": 2}, {"x": 1}]}  # reordered list: fine
    assert pruned_paths(sent, stored) == ["b.gone"]
    assert pruned_paths({"l": [{"x": 1}, {"z": 1}]}, {"l": [{"x": 1}, {"y": 1}]}) == ["l[1].z"]
    assert pruned_paths({"l": [1, 2]}, {"l": [1]}) == ["l"]
    assert pruned_paths({"q": "1000m"}, {"q": "1"}) == []  # normalised, not dropped
