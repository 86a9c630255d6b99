"""What KServe's own sources and a live API server showed about the chart and manifests/
(issue 14): each test here failed on the chart before the fix it covers.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from validate import (
    CHART_DIR,
    MANIFESTS_DIR,
    NAMESPACE,
    RELEASE,
    by_kind,
    env_map,
    load_documents,
    manifest_files,
    one,
)

FULLNAME = f"{RELEASE}-bge-predictor"
COMPONENTS = ("embedder", "reranker")
GPU_EXAMPLES = sorted((MANIFESTS_DIR / "examples").glob("inferenceservice-*-gpu.yaml"))


def objects(render: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for docs in render(values).values() for o in docs]


def pod_parts(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod-level spec, predictor container) of a Deployment or an InferenceService."""
    if obj["kind"] == "Deployment":
        pod = obj["spec"]["template"]["spec"]
        return pod, pod["containers"][0]
    predictor = obj["spec"]["predictor"]
    return predictor, predictor["model"]


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(objs, "Deployment") + by_kind(objs, "InferenceService")


# --- 2. PodDisruptionBudget ---------------------------------------------------------------


def test_pdb_max_unavailable_zero_stays_zero(render):
    objs = objects(render, {"embedder": {"pdb": {"maxUnavailable": 0}}})
    pdb = one(objs, "PodDisruptionBudget", f"{FULLNAME}-embedder")
    assert pdb["spec"]["maxUnavailable"] == 0


# --- 3. external runtimes: one per model format --------------------------------------------


def cluster_runtimes() -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for path in manifest_files() for o in load_documents(path.read_text())
        if o["kind"] == "ClusterServingRuntime"
    }


def runtime_for(isvc: dict[str, Any], runtimes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The runtime KServe picks: the one named, else the auto-selected one for the format."""
    model = isvc["spec"]["predictor"]["model"]
    fmt = model["modelFormat"]["name"]
    if model.get("runtime"):
        runtime = runtimes[model["runtime"]]
    else:
        (runtime,) = [r for r in runtimes.values() if any(
            f["name"] == fmt and f.get("autoSelect") for f in r["spec"]["supportedModelFormats"])]
    formats = [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert fmt in formats, (
        f"{isvc['metadata']['name']} asks {runtime['metadata']['name']} for {fmt}: KServe "
        "refuses it (specified runtime does not support specified framework/version)"
    )
    return runtime


@pytest.mark.parametrize(
    "values",
    [
        {"kserve": {"servingRuntime": {"create": False}}},
        {
            "kserve": {"servingRuntime": {"create": False}},
            "embedder": {"runtime": "bge-embedder"},
            "reranker": {"runtime": "bge-reranker"},
        },
    ],
    ids=["auto-select", "named"],
)
def test_external_runtimes_serve_both_components(render, values):
    """Pointed at manifests/' ClusterServingRuntimes, each component gets one that supports
    its model format."""
    objs = objects(render, {"mode": "kserve", **values})
    assert by_kind(objs, "ServingRuntime") == []
    runtimes = cluster_runtimes()
    picked = {}
    for component in COMPONENTS:
        isvc = one(objs, "InferenceService", f"{FULLNAME}-{component}")
        picked[component] = runtime_for(isvc, runtimes)["metadata"]["name"]
    assert picked == {"embedder": "bge-embedder", "reranker": "bge-reranker"}


def test_one_runtime_name_for_both_components_is_refused(chart):
    """The old way (servingRuntime.name with create=false) would send both to one runtime."""
    import helm_python as helm

    values = {"mode": "kserve", "kserve": {"servingRuntime": {"create": False,
                                                              "name": "bge-embedder"}}}
    with pytest.raises(helm.HelmError, match="embedder.runtime"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_values_yaml_mentions_only_values_that_exist():
    text = (CHART_DIR / "values.yaml").read_text()
    assert "runtimeName" not in text


# --- 4. Prometheus annotations where KServe reads them ---------------------------------------


def runtime_objects(render: Any) -> list[tuple[str, dict[str, Any]]]:
    found = [("chart", r) for r in by_kind(objects(render, {"mode": "kserve"}), "ServingRuntime")]
    for path in manifest_files():
        for obj in load_documents(path.read_text()):
            if obj["kind"] in ("ServingRuntime", "ClusterServingRuntime"):
                found.append((path.name, obj))
    return found


def test_prometheus_annotations_in_runtime_spec(render):
    runtimes = runtime_objects(render)
    assert len(runtimes) == 5
    for where, runtime in runtimes:
        meta = runtime["metadata"].get("annotations") or {}
        assert not [k for k in meta if k.startswith("prometheus.kserve.io/")], where
        spec = runtime["spec"].get("annotations") or {}
        assert spec.get("prometheus.kserve.io/port") == "8080", where
        assert spec.get("prometheus.kserve.io/path") == "/metrics", where


# --- 5. no scraping of Knative's queue-proxy port in Standard mode -------------------------


def test_no_queue_proxy_scrape_port(render):
    sources = [(o["metadata"]["name"], o) for o in objects(render, {"mode": "kserve"})]
    sources += [(p.name, o) for p in manifest_files() for o in load_documents(p.read_text())]
    for where, obj in sources:
        if obj["kind"] != "InferenceService":
            continue
        annotations = obj["metadata"].get("annotations") or {}
        assert annotations.get("serving.kserve.io/enable-prometheus-scraping") != "true", where
        pod_annotations = obj["spec"]["predictor"].get("annotations") or {}
        assert pod_annotations.get("prometheus.io/port") in (None, "8080"), where


# --- 6. rollout strategy ------------------------------------------------------------------


def test_default_strategy_needs_no_spare_gpu(render):
    """On a full GPU pool a surge pod never schedules: by default replace, don't surge."""
    for mode in ("standalone", "kserve"):
        for obj in workloads(objects(render, {"mode": mode})):
            if obj["kind"] == "Deployment":
                strategy = obj["spec"]["strategy"]
            else:
                strategy = obj["spec"]["predictor"]["deploymentStrategy"]
            assert strategy["type"] == "RollingUpdate"
            assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}, mode


def test_strategy_is_a_value_per_component(render):
    recreate = {"type": "Recreate"}
    surge = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    for mode in ("standalone", "kserve"):
        objs = objects(render, {"mode": mode, "embedder": {"strategy": recreate},
                                "reranker": {"strategy": surge}})
        got = {}
        for obj in workloads(objs):
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            got[component] = (obj["spec"]["strategy"] if mode == "standalone"
                              else obj["spec"]["predictor"]["deploymentStrategy"])
        assert got == {"embedder": recreate, "reranker": surge}, mode


# --- 7. autoscaling on by default; queue depth where it can be had --------------------------


def test_autoscaling_on_by_default_with_a_metric_any_cluster_has(render):
    objs = objects(render, {})
    hpas = by_kind(objs, "HorizontalPodAutoscaler")
    assert len(hpas) == 2
    for hpa in hpas:
        (metric,) = hpa["spec"]["metrics"]
        # metrics-server's CPU utilisation: needs no Prometheus stack.
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    for isvc in by_kind(objects(render, {"mode": "kserve"}), "InferenceService"):
        annotations = isvc["metadata"]["annotations"]
        assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
        predictor = isvc["spec"]["predictor"]
        assert predictor["maxReplicas"] > predictor["minReplicas"]


@pytest.mark.parametrize("path", GPU_EXAMPLES, ids=lambda p: p.name)
def test_gpu_examples_scale_on_queue_depth(path):
    (isvc,) = load_documents(path.read_text())
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    metrics = isvc["spec"]["predictor"]["autoScaling"]["metrics"]
    assert [m["type"] for m in metrics] == ["External"]
    external = metrics[0]["external"]
    assert external["metric"]["backend"] == "prometheus"
    assert "bge_predictor_queue_depth" in external["metric"]["query"]
    assert external["target"]["type"] == "AverageValue"
    text = path.read_text()
    assert "KEDA" in text and "prometheus" in text.lower()  # prerequisites spelled out


# --- 8. OpenShift, modelcars, Standard mode -------------------------------------------------


IDS = ("runAsUser", "runAsGroup", "fsGroup")


def security_ids(obj: dict[str, Any]) -> set[str]:
    pod, container = pod_parts(obj)
    found = {k for k in IDS if k in (pod.get("securityContext") or {})}
    return found | {k for k in IDS if k in (container.get("securityContext") or {})}


def test_fixed_uid_is_optional_for_openshift(render):
    for mode in ("standalone", "kserve"):
        objs = objects(render, {"mode": mode, "runAsFixedUser": False})
        for obj in workloads(objs):
            assert security_ids(obj) == set(), mode
            pod, container = pod_parts(obj)
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert container["securityContext"]["runAsNonRoot"] is True
        for pod in by_kind(objs, "Pod"):  # the helm test pod
            assert not {k for k in IDS if k in pod["spec"]["securityContext"]}
        for obj in workloads(objects(render, {"mode": mode})):  # the default: fixed ids
            assert {"runAsUser", "fsGroup"} <= security_ids(obj), mode


def test_oci_modelcar_leaves_uid_to_kserve(render):
    values = {"mode": "kserve", "embedder": {"storageUri": "oci://registry.example.com/m3:1"}}
    objs = objects(render, values)
    embedder = one(objs, "InferenceService", f"{FULLNAME}-embedder")
    reranker = one(objs, "InferenceService", f"{FULLNAME}-reranker")
    assert security_ids(embedder) == set()
    assert "runAsUser" in security_ids(reranker)
    readme = (CHART_DIR / "README.md").read_text()
    assert "oci://" in readme and "MODEL_INIT_MODE" in readme


def test_manifests_say_standard_needs_kserve_0_16():
    for path in manifest_files():
        objs = load_documents(path.read_text())
        if any((o["metadata"].get("annotations") or {}).get(
                "serving.kserve.io/deploymentMode") == "Standard" for o in objs):
            assert "0.16" in path.read_text(), path.name


# --- hooks for other engineers: GPU resource name, graceful shutdown ------------------------


@pytest.mark.parametrize("mode", ["standalone", "kserve"])
def test_gpu_resource_name_per_component(render, mode):
    values = {"mode": mode, "embedder": {"gpu": {"resourceName": "amd.com/gpu", "count": 2}}}
    objs = objects(render, values)
    for obj in workloads(objs):
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        _, container = pod_parts(obj)
        limits = container["resources"]["limits"]
        requests = container["resources"]["requests"]
        if component == "embedder":
            assert limits["amd.com/gpu"] == requests["amd.com/gpu"] == 2
            assert "nvidia.com/gpu" not in limits
        else:
            assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == 1
            assert "amd.com/gpu" not in limits


@pytest.mark.parametrize("mode", ["standalone", "kserve"])
def test_gpu_count_alone_makes_a_pod_multi_gpu(render, mode):
    """DEVICE stays unset with the GPU on: the server's default uses every GPU it is given
    (DEVICE=cuda would pin it to one)."""
    objs = objects(render, {"mode": mode, "gpu": {"count": 4}})
    for obj in workloads(objs):
        _, container = pod_parts(obj)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
        assert "DEVICE" not in env_map(container["env"])
    objs = objects(render, {"mode": mode, "gpu": {"enabled": False}})
    for obj in workloads(objs):
        _, container = pod_parts(obj)
        assert env_map(container["env"])["DEVICE"]["value"] == "cpu"


@pytest.mark.parametrize("mode", ["standalone", "kserve"])
def test_grace_period_reaches_the_server_and_the_pod(render, mode):
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    margin = defaults["gracePeriodMarginSeconds"]
    for values, component_grace in (({}, 30), ({"reranker": {"gracePeriod": 90}}, 90)):
        objs = objects(render, {"mode": mode, **values})
        for obj in workloads(objs):
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            grace = component_grace if component == "reranker" else 30
            pod, container = pod_parts(obj)
            assert env_map(container["env"])["GRACE_PERIOD"]["value"] == str(grace)
            assert pod["terminationGracePeriodSeconds"] == grace + margin
    # An explicit terminationGracePeriodSeconds wins.
    objs = objects(render, {"mode": mode, "embedder": {"terminationGracePeriodSeconds": 300}})
    pod, _ = pod_parts(one(workloads(objs), "Deployment" if mode == "standalone"
                           else "InferenceService", f"{FULLNAME}-embedder"))
    assert pod["terminationGracePeriodSeconds"] == 300
