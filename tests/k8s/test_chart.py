"""The Helm chart: lint, render several value sets with Helm's engine, validate every object and
check what the deployment depends on (GPU, probes, scaling, disruption budget, auth, hardening).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from validate import (
    CHART_DIR,
    K8S_VERSION,
    NAMESPACE,
    RELEASE,
    by_kind,
    env_map,
    flag_value,
    one,
    resolve_port,
    selector_matches,
    validate_object,
)

COMPONENTS = ("embedder", "reranker")
FULLNAME = f"{RELEASE}-bge-predictor"
TOKEN = "s3cr3t-token-value-do-not-leak"

KSERVE = {"mode": "kserve"}
NO_GPU = {"gpu": {"enabled": False}}
HPA = {
    c: {
        "hpa": {
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 6,
            "targetCPUUtilizationPercentage": 60,
            "targetMemoryUtilizationPercentage": 80,
            "queueDepth": {"enabled": True, "averageValue": "16"},
        }
    }
    for c in COMPONENTS
}
HPA_CPU_ONLY = {c: {"hpa": {"enabled": True, "maxReplicas": 3}} for c in COMPONENTS}
AUTH_CREATED = {"apiToken": {"value": TOKEN}}
AUTH_EXISTING = {"apiToken": {"existingSecret": "team-token", "secretKey": "token"}}
MONITORING = {"serviceMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
SCHEDULING = {
    "imagePullSecrets": [{"name": "regcred"}],
    "extraEnv": [{"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "0"}],
    "embedder": {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "runtimeClassName": "nvidia",
        "engine": {"maxBatchTokens": 32768, "maxQueueSize": 512},
        "sparse": {"tokenMapping": "hash", "indexSpace": 1048576},
        "pdb": {"minAvailable": 1},
    },
    "reranker": {"gpu": {"enabled": False}, "device": "cpu", "useFp16": False},
}


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        _merge_into(out, part)
    return out


def _merge_into(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_into(dst[key], value)
        else:
            dst[key] = json.loads(json.dumps(value))


CASES: dict[str, dict[str, Any]] = {
    "standalone-default": {},
    "standalone-cpu": NO_GPU,
    "standalone-hpa": HPA,
    "standalone-hpa-cpu-only": merge(NO_GPU, HPA_CPU_ONLY),
    "standalone-auth-created": AUTH_CREATED,
    "standalone-auth-existing": AUTH_EXISTING,
    "standalone-monitoring": MONITORING,
    "standalone-pvc": {"modelCache": {"persistence": {"enabled": True, "size": "50Gi"}}},
    "standalone-pvc-existing": {
        "modelCache": {"persistence": {"enabled": True, "existingClaim": "hf-cache"}}
    },
    "standalone-scheduling": SCHEDULING,
    "standalone-baked-models": {
        "modelCache": {"enabled": False, "persistence": {"enabled": True}},
        "extraEnv": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
    },
    "standalone-embedder-only": {"reranker": {"enabled": False}},
    "standalone-reranker-only": merge({"embedder": {"enabled": False}}, AUTH_CREATED),
    "kserve-default": KSERVE,
    "kserve-cpu": merge(KSERVE, NO_GPU),
    "kserve-hpa": merge(KSERVE, HPA_CPU_ONLY),
    "kserve-keda-queue-depth": merge(KSERVE, {"kserve": {"autoscalerClass": "keda"}}, HPA),
    "kserve-storage-uri": merge(
        KSERVE,
        {
            "embedder": {"storageUri": "s3://models/bge-m3"},
            "reranker": {"storageUri": "pvc://models/bge-reranker-v2-m3"},
        },
    ),
    "kserve-auth-created": merge(KSERVE, AUTH_CREATED),
    "kserve-auth-existing": merge(KSERVE, AUTH_EXISTING),
    "kserve-monitoring": merge(KSERVE, MONITORING),
    "kserve-scheduling": merge(KSERVE, SCHEDULING),
    "kserve-external-runtime": merge(
        KSERVE, {"kserve": {"servingRuntime": {"create": False}}},
        {"embedder": {"runtime": "bge-embedder"}, "reranker": {"runtime": "bge-reranker"}},
    ),
    "kserve-external-runtime-auto-select": merge(
        KSERVE, {"kserve": {"servingRuntime": {"create": False}}},
        {"reranker": {"enabled": False}},
    ),
    "standalone-no-hpa": {c: {"hpa": {"enabled": False}, "replicas": 2} for c in COMPONENTS},
    "kserve-no-hpa": merge(KSERVE, {c: {"hpa": {"enabled": False}} for c in COMPONENTS}),
    "standalone-openshift": {"runAsFixedUser": False},
    "kserve-openshift": merge(KSERVE, {"runAsFixedUser": False}),
    "kserve-pvc-existing": merge(
        KSERVE, {"modelCache": {"persistence": {"enabled": True, "existingClaim": "hf-cache"}}}
    ),
    "kserve-baked-models": merge(KSERVE, {"modelCache": {"enabled": False}}),
    "kserve-embedder-only": merge(KSERVE, {"reranker": {"enabled": False}}),
    "kserve-reranker-only": merge(KSERVE, {"embedder": {"enabled": False}}),
    "none-enabled": {"embedder": {"enabled": False}, "reranker": {"enabled": False}},
}


# The full value set the live API-server test applies too (one file, so features add to it).
FULL = yaml.safe_load((Path(__file__).parent / "values-full.yaml").read_text())
CASES["standalone-full"] = merge(FULL, {"mode": "standalone"})
CASES["kserve-full"] = merge(FULL, KSERVE)


STANDALONE_CASES = sorted(n for n, v in CASES.items() if v.get("mode") != "kserve")
KSERVE_CASES = sorted(n for n, v in CASES.items() if v.get("mode") == "kserve")


def _case(name, chart, render):
    values = CASES[name]
    rendered = render(values)
    objs = [o for docs in rendered.values() for o in docs]
    return {
        "name": name,
        "values": values,
        "merged": chart.merge_values(values),
        "rendered": rendered,
        "objs": objs,
    }


@pytest.fixture(params=sorted(CASES), scope="module")
def case(request, chart, render):
    return _case(request.param, chart, render)


@pytest.fixture(params=STANDALONE_CASES, scope="module")
def standalone_case(request, chart, render):
    return _case(request.param, chart, render)


@pytest.fixture(params=KSERVE_CASES, scope="module")
def kserve_case(request, chart, render):
    return _case(request.param, chart, render)


# --- workload views -----------------------------------------------------------------------


def enabled(merged: dict[str, Any]) -> list[str]:
    return [c for c in COMPONENTS if merged[c]["enabled"]]


def gpu_on(merged: dict[str, Any], component: str) -> bool:
    own = merged[component].get("gpu") or {}
    return bool(own["enabled"]) if "enabled" in own else bool(merged["gpu"]["enabled"])


def workload(case: dict[str, Any], component: str) -> tuple[dict, dict, dict]:
    """(owner object, pod spec, predictor container) of a component, in either mode."""
    name = f"{FULLNAME}-{component}"
    if case["merged"]["mode"] == "standalone":
        dep = one(case["objs"], "Deployment", name)
        pod = dep["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == "predictor"]
        return dep, pod, container
    isvc = one(case["objs"], "InferenceService", name)
    predictor = isvc["spec"]["predictor"]
    return isvc, predictor, predictor["model"]


def effective_args(case: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """Container args as the pod sees them (KServe appends the model's args to the runtime's)."""
    args = list(container.get("args") or [])
    if case["merged"]["mode"] == "kserve":
        runtimes = by_kind(case["objs"], "ServingRuntime")
        if runtimes:
            (runtime_container,) = runtimes[0]["spec"]["containers"]
            args = list(runtime_container.get("args") or []) + args
    return args


# --- lint and validation ------------------------------------------------------------------


def test_lint_default_values_strict():
    report = helm.lint(CHART_DIR, strict=True, kube_version=f"v{K8S_VERSION}.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("name", sorted(CASES))
def test_lint_value_sets(name):
    report = helm.lint(CHART_DIR, CASES[name], kube_version=f"v{K8S_VERSION}.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_every_object_validates(case, crds):
    assert case["objs"] or case["name"] == "none-enabled"
    for obj in case["objs"]:
        validate_object(obj, crds)


def test_objects_are_named_and_labelled(case):
    seen = set()
    for obj in case["objs"]:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/instance") == RELEASE, key
        assert labels.get("app.kubernetes.io/name") == "bge-predictor", key
        assert "namespace" not in obj["metadata"] or obj["metadata"]["namespace"] == NAMESPACE


def test_mode_selects_kinds(case):
    kinds = {o["kind"] for o in case["objs"]}
    comps = enabled(case["merged"])
    if case["merged"]["mode"] == "kserve":
        assert not kinds & {"Deployment", "Service", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget", "PersistentVolumeClaim"}
        assert len(by_kind(case["objs"], "InferenceService")) == len(comps)
        want_runtime = case["merged"]["kserve"]["servingRuntime"]["create"]
        assert len(by_kind(case["objs"], "ServingRuntime")) == (1 if want_runtime else 0)
    else:
        assert not kinds & {"InferenceService", "ServingRuntime"}
        assert len(by_kind(case["objs"], "Deployment")) == len(comps)
        assert len(by_kind(case["objs"], "Service")) == len(comps)


# --- per-component behaviour --------------------------------------------------------------


def test_disabled_components_render_nothing(case):
    for component in COMPONENTS:
        if case["merged"][component]["enabled"]:
            continue
        for obj in case["objs"]:
            labels = obj["metadata"].get("labels") or {}
            assert labels.get("app.kubernetes.io/component") != component, obj["metadata"]
            assert not obj["metadata"]["name"].endswith(f"-{component}")


def test_args_select_one_model(case):
    merged = case["merged"]
    for component in enabled(merged):
        _, _, container = workload(case, component)
        args = effective_args(case, container)
        other = "reranker" if component == "embedder" else "embedder"
        c = merged[component]
        want_model = "/mnt/models" if merged["mode"] == "kserve" and c["storageUri"] else c["model"]
        assert flag_value(args, f"--{component}") == want_model
        assert flag_value(args, f"--{other}") == "none"
        assert flag_value(args, f"--{component}_name") == c["name"]
        assert flag_value(args, "--http_port") == "8080"
        assert flag_value(args, "--grpc_port") == "8081"
        if merged["mode"] == "kserve":
            if c["storageUri"]:
                assert container["storageUri"] == c["storageUri"]
            else:
                assert "storageUri" not in container


def test_gpu_resources(case):
    merged = case["merged"]
    for component in enabled(merged):
        _, _, container = workload(case, component)
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        env = env_map(container.get("env"))
        own = merged[component].get("gpu") or {}
        name = own.get("resourceName") or merged["gpu"]["resourceName"]
        count = own.get("count") or merged["gpu"]["count"]
        gpus = {k for k in {**limits, **requests} if k.endswith("/gpu")}
        if gpu_on(merged, component):
            assert limits.get(name) == count and requests.get(name) == count, resources
            assert gpus == {name}, resources
            # Unset: the server's default takes every GPU the pod gets.
            want_device = merged[component]["device"] or None
        else:
            assert gpus == set(), resources
            want_device = merged[component]["device"] or "cpu"
        assert env.get("DEVICE", {}).get("value") == want_device


def test_probes(case):
    merged = case["merged"]
    for component in enabled(merged):
        _, _, container = workload(case, component)
        name = merged[component]["name"]
        http_port = merged["containerPorts"]["http"]
        ports = container.get("ports")
        if merged["mode"] == "kserve":
            # The model container inherits the runtime's ports; probes use the number.
            runtimes = by_kind(case["objs"], "ServingRuntime")
            if runtimes:
                ports = runtimes[0]["spec"]["containers"][0]["ports"]
        view = dict(container, ports=ports or [])
        assert http_port in [p["containerPort"] for p in view["ports"]] or not ports
        ready = f"/v2/models/{name}/ready"
        expected = {
            "startupProbe": ready,
            "readinessProbe": ready,
            "livenessProbe": "/v2/health/live",
        }
        for probe_name, path in expected.items():
            probe = container[probe_name]
            assert probe["httpGet"]["path"] == path, probe_name
            assert resolve_port(probe["httpGet"]["port"], view) == http_port, probe_name
        startup = container["startupProbe"]
        budget = startup.get("initialDelaySeconds", 0) + (
            startup["failureThreshold"] * startup["periodSeconds"]
        )
        assert budget >= 1800, f"startup budget {budget}s is too short for a model download"


def test_container_hardened(case):
    merged = case["merged"]
    for component in enabled(merged):
        _, pod, container = workload(case, component)
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True
        if merged["runAsFixedUser"]:
            assert psc["runAsUser"] == 1000 and psc["fsGroup"] == 1000
        else:
            assert "runAsUser" not in psc and "fsGroup" not in psc
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert pod.get("automountServiceAccountToken") is False
        # A read-only root needs writable /tmp, /dev/shm (memory) and the HF cache.
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert "emptyDir" in volumes[mounts["/tmp"]]
        cache = merged["modelCache"]["mountPath"]
        if not merged["modelCache"]["enabled"]:
            # Models baked into the image: HF_HOME is the image's, nothing mounted over it.
            assert cache not in mounts and "model-cache" not in volumes
            assert "HF_HOME" not in env_map(container["env"])
            assert by_kind(case["objs"], "PersistentVolumeClaim") == []
            continue
        assert cache in mounts
        assert env_map(container["env"])["HF_HOME"]["value"] == cache
        persistence = merged["modelCache"]["persistence"]
        cache_volume = volumes[mounts[cache]]
        if persistence["enabled"] and (merged["mode"] == "standalone"
                                       or persistence["existingClaim"]):
            claim = cache_volume["persistentVolumeClaim"]["claimName"]
            want = persistence["existingClaim"] or f"{FULLNAME}-{component}-cache"
            assert claim == want
            if not persistence["existingClaim"]:
                pvc = one(case["objs"], "PersistentVolumeClaim", want)
                assert pvc["spec"]["resources"]["requests"]["storage"] == persistence["size"]
        else:
            assert "emptyDir" in cache_volume


def test_engine_and_scheduling_settings(case):
    merged = case["merged"]
    for component in enabled(merged):
        _, pod, container = workload(case, component)
        c = merged[component]
        env = env_map(container["env"])
        for key, var in (("maxBatchTokens", "MAX_BATCH_TOKENS"), ("maxBatchSize", "MAX_BATCH_SIZE"),
                         ("maxQueueSize", "MAX_QUEUE_SIZE")):
            if c["engine"].get(key) is None:
                assert var not in env
            else:
                assert env[var]["value"] == str(c["engine"][key])
        assert env["USE_FP16"]["value"] == str(c["useFp16"]).lower()
        if component == "embedder":
            assert env["SPARSE_TOKEN_MAPPING"]["value"] == c["sparse"]["tokenMapping"]
            assert env["SPARSE_INDEX_SPACE"]["value"] == str(c["sparse"]["indexSpace"])
        else:
            assert "SPARSE_TOKEN_MAPPING" not in env
        for extra in merged["extraEnv"] + c["extraEnv"]:
            assert env[extra["name"]] == extra
        assert pod.get("nodeSelector") == (c["nodeSelector"] or None)
        assert pod.get("tolerations") == (c["tolerations"] or None)
        assert pod.get("runtimeClassName") == (c["runtimeClassName"] or None)
        assert pod.get("imagePullSecrets") == (merged["imagePullSecrets"] or None)


def test_api_token(case):
    merged = case["merged"]
    token = merged["apiToken"]
    secret_name = token["existingSecret"] or (f"{FULLNAME}-api-token" if token["value"] else "")
    secrets = by_kind(case["objs"], "Secret")
    if token["value"] and not token["existingSecret"]:
        (secret,) = secrets
        assert secret["metadata"]["name"] == secret_name
        assert set(secret["data"]) == {token["secretKey"]}
    else:
        assert secrets == []
    for component in enabled(merged):
        owner, _, container = workload(case, component)
        env = env_map(container["env"])
        if secret_name:
            ref = env["API_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": secret_name, "key": token["secretKey"]}
            assert "value" not in env["API_TOKEN"]
        else:
            assert "API_TOKEN" not in env
    # The token itself only ever appears (base64) in the Secret.
    for obj in case["objs"]:
        if obj["kind"] != "Secret":
            assert TOKEN not in yaml.safe_dump(obj), f"token leaked into {obj['kind']}"


# --- standalone objects -------------------------------------------------------------------


def test_services_select_pods(standalone_case):
    case = standalone_case
    for component in enabled(case["merged"]):
        dep, pod, container = workload(case, component)
        svc = one(case["objs"], "Service", dep["metadata"]["name"])
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector_matches({"matchLabels": svc["spec"]["selector"]}, pod_labels)
        assert selector_matches(dep["spec"]["selector"], pod_labels)
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        assert resolve_port(ports["http"]["targetPort"], container) == 8080
        assert resolve_port(ports["grpc"]["targetPort"], container) == 8081
        # Components never share pods.
        for other in enabled(case["merged"]):
            if other != component:
                other_dep, _, _ = workload(case, other)
                assert not selector_matches(
                    {"matchLabels": svc["spec"]["selector"]},
                    other_dep["spec"]["template"]["metadata"]["labels"],
                )


def test_hpa(standalone_case):
    case = standalone_case
    merged = case["merged"]
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in by_kind(case["objs"], "HorizontalPodAutoscaler")
    }
    for component in enabled(merged):
        dep, _, _ = workload(case, component)
        hpa_values = merged[component]["hpa"]
        name = dep["metadata"]["name"]
        if not hpa_values["enabled"]:
            assert name not in hpas
            assert dep["spec"]["replicas"] == merged[component]["replicas"]
            continue
        hpa = hpas.pop(name)
        assert "replicas" not in dep["spec"], "the HPA owns the replica count"
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
        }
        assert hpa["spec"]["minReplicas"] == hpa_values["minReplicas"]
        assert hpa["spec"]["maxReplicas"] == hpa_values["maxReplicas"]
        metrics = hpa["spec"]["metrics"]
        resource = {m["resource"]["name"]: m["resource"]["target"] for m in metrics
                    if m["type"] == "Resource"}
        for res, key in (("cpu", "targetCPUUtilizationPercentage"),
                         ("memory", "targetMemoryUtilizationPercentage")):
            if hpa_values.get(key) is None:
                assert res not in resource
            else:
                want = {"type": "Utilization", "averageUtilization": hpa_values[key]}
                assert resource[res] == want
        pods = [m["pods"] for m in metrics if m["type"] == "Pods"]
        if hpa_values["queueDepth"]["enabled"]:
            assert pods == [{
                "metric": {"name": "bge_predictor_queue_depth"},
                "target": {"type": "AverageValue",
                           "averageValue": str(hpa_values["queueDepth"]["averageValue"])},
            }]
        else:
            assert pods == []
        # Utilization targets need requests on the container.
        _, _, container = workload(case, component)
        for res in resource:
            assert res in container["resources"]["requests"]
    assert hpas == {}, f"HPAs without a component: {list(hpas)}"


def test_pdb(standalone_case):
    case = standalone_case
    merged = case["merged"]
    pdbs = by_kind(case["objs"], "PodDisruptionBudget")
    assert len(pdbs) == sum(merged[c]["pdb"]["enabled"] for c in enabled(merged))
    for component in enabled(merged):
        dep, _, _ = workload(case, component)
        mine = [p for p in pdbs if p["metadata"]["name"] == dep["metadata"]["name"]]
        if not merged[component]["pdb"]["enabled"]:
            assert mine == []
            continue
        (pdb,) = mine
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector_matches(pdb["spec"]["selector"], pod_labels)
        assert len({"minAvailable", "maxUnavailable"} & set(pdb["spec"])) == 1
        for other in enabled(merged):
            if other != component:
                other_dep, _, _ = workload(case, other)
                labels = other_dep["spec"]["template"]["metadata"]["labels"]
                assert not selector_matches(pdb["spec"]["selector"], labels)


# --- KServe objects -----------------------------------------------------------------------


def test_inference_services(kserve_case):
    case = kserve_case
    merged = case["merged"]
    runtimes = {r["metadata"]["name"]: r for r in by_kind(case["objs"], "ServingRuntime")}
    create = merged["kserve"]["servingRuntime"]["create"]
    runtime_name = merged["kserve"]["servingRuntime"]["name"] or FULLNAME
    if create:
        runtime = runtimes[runtime_name]
        (container,) = runtime["spec"]["containers"]
        assert container["name"] == "kserve-container"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http1": 8080, "h2c": 8081}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for component in enabled(merged):
        isvc, predictor, model = workload(case, component)
        annotations = isvc["metadata"]["annotations"]
        assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
        if create:
            assert model["runtime"] == runtime_name
        else:  # the component's runtime, or none named: KServe picks by model format
            assert model.get("runtime", "") == merged[component]["runtime"]
        assert model["modelFormat"]["name"] == f"bge-{component}"
        if runtime_name in runtimes:
            formats = runtimes[runtime_name]["spec"]["supportedModelFormats"]
            assert model["modelFormat"]["name"] in [f["name"] for f in formats]
        hpa_values = merged[component]["hpa"]
        if hpa_values["enabled"]:
            want_class = merged["kserve"]["autoscalerClass"]
            assert annotations["serving.kserve.io/autoscalerClass"] == want_class
            assert predictor["minReplicas"] == hpa_values["minReplicas"]
            assert predictor["maxReplicas"] == hpa_values["maxReplicas"]
            metrics = predictor["autoScaling"]["metrics"]
            types = [m["type"] for m in metrics]
            if hpa_values.get("targetCPUUtilizationPercentage") is not None:
                assert {"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization",
                    "averageUtilization": hpa_values["targetCPUUtilizationPercentage"]}}} in metrics
            if hpa_values["queueDepth"]["enabled"]:
                (external,) = [m["external"] for m in metrics if m["type"] == "External"]
                assert "bge_predictor_queue_depth" in external["metric"]["query"]
                assert external["metric"]["backend"] == "prometheus"
            else:
                assert "External" not in types
        else:
            assert annotations["serving.kserve.io/autoscalerClass"] == "none"
            replicas = merged[component]["replicas"]
            assert predictor["minReplicas"] == predictor["maxReplicas"] == replicas


def test_kserve_queue_depth_needs_keda(render):
    values = merge(KSERVE, HPA)
    with pytest.raises(helm.HelmError, match="autoscalerClass=keda"):
        render(values)


# --- monitoring, dashboard, helm test -----------------------------------------------------


def test_monitoring(case):
    merged = case["merged"]
    monitors = by_kind(case["objs"], "ServiceMonitor") + by_kind(case["objs"], "PodMonitor")
    if not merged["serviceMonitor"]["enabled"] or not enabled(merged):
        assert monitors == []
        return
    (monitor,) = monitors
    if merged["mode"] == "standalone":
        assert monitor["kind"] == "ServiceMonitor"
        services = by_kind(case["objs"], "Service")
        assert services
        for svc in services:
            assert selector_matches(monitor["spec"]["selector"], svc["metadata"]["labels"])
            assert "http" in [p["name"] for p in svc["spec"]["ports"]]
        assert monitor["spec"]["endpoints"][0]["port"] == "http"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    else:
        assert monitor["kind"] == "PodMonitor"
        for component in enabled(merged):
            isvc, _, _ = workload(case, component)
            kserve_labels = {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
            assert selector_matches(monitor["spec"]["selector"], kserve_labels)
        assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_grafana_dashboard(case):
    maps = [
        c for c in by_kind(case["objs"], "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboard")
    ]
    if not case["merged"]["grafanaDashboard"]["enabled"]:
        assert maps == []
        return
    (cm,) = maps
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["bge-predictor.json"])
    assert dashboard["panels"]
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in ("bge_predictor_queue_depth", "bge_predictor_batch_size",
                   "bge_predictor_batch_tokens", "bge_predictor_stage_seconds",
                   "bge_predictor_requests_total", "bge_predictor_tokens_total"):
        assert metric in exprs, metric
    on_disk = json.loads((CHART_DIR / "dashboards" / "bge-predictor.json").read_text())
    assert dashboard == on_disk


def test_helm_test_hook(case):
    merged = case["merged"]
    hooks = case["rendered"].get("bge-predictor/templates/tests/test-connection.yaml", [])
    if not enabled(merged):
        assert hooks == []
        return
    (pod,) = hooks
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    command = " ".join(container["command"])
    for component in enabled(merged):
        name = merged[component]["name"]
        base = f"{FULLNAME}-{component}"
        if merged["mode"] == "kserve":
            url = f"http://{base}-predictor.{NAMESPACE}.svc:80/v2/models/{name}/ready"
        else:
            url = f"http://{base}.{NAMESPACE}.svc:8080/v2/models/{name}/ready"
            one(case["objs"], "Service", base)
        assert url in container["command"], command
    for component in COMPONENTS:
        if component not in enabled(merged):
            assert f"-{component}" not in command


def test_notes_render(chart):
    out = chart.render(CASES["standalone-auth-created"], name=RELEASE, namespace=NAMESPACE)
    notes = out["bge-predictor/templates/NOTES.txt"]
    assert "/v2/models/bge-m3/ready" in notes and "Authorization: Bearer" in notes
    assert TOKEN not in notes


# --- values schema ------------------------------------------------------------------------


def test_values_yaml_matches_schema():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)
    # Every top-level key in values.yaml is declared, and the schema rejects undeclared ones.
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])
    assert set(values["embedder"]) == set(schema["properties"]["embedder"]["properties"])
    assert set(values["reranker"]) == set(schema["properties"]["reranker"]["properties"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "foo"}, "/mode"),
        ({"modee": "kserve"}, "modee"),
        ({"embedder": {"nmae": "x"}}, "nmae"),
        ({"embedder": {"name": "Not A DNS Label"}}, "/embedder/name"),
        ({"reranker": {"hpa": {"targetCPUUtilizationPercentage": "70%"}}}, "targetCPUUtilization"),
        ({"embedder": {"sparse": {"tokenMapping": "bpe"}}}, "tokenMapping"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"kserve": {"autoscalerClass": "kpa"}}, "autoscalerClass"),
        ({"gpu": {"enabled": "yes"}}, "/gpu/enabled"),
        ({"embedder": {"gracePeriod": 0}}, "gracePeriod"),
        ({"reranker": {"strategy": {"type": "Surge"}}}, "strategy"),
        ({"runAsFixedUser": "no"}, "runAsFixedUser"),
    ],
)
def test_schema_rejects_bad_values(chart, values, message):
    with pytest.raises(helm.HelmValuesError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART_DIR, values)
    assert report["errors"], report
