"""manifests/: ClusterServingRuntimes and example InferenceServices, validated offline against
KServe's CRDs (unknown fields rejected), plus what KServe will make of them: the merged args,
the probes and the GPU requests.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from validate import (
    MANIFESTS_DIR,
    CrdValidators,
    by_kind,
    env_map,
    flag_value,
    load_documents,
    manifest_files,
    resolve_port,
    validate_object,
)

FILES = manifest_files()
RUNTIME_KINDS = ("ClusterServingRuntime", "ServingRuntime")
CPU_KIND_DIR = MANIFESTS_DIR / "examples" / "cpu-kind"


def rel(path: Path) -> str:
    return str(path.relative_to(MANIFESTS_DIR))


def load(path: Path) -> list[dict[str, Any]]:
    return load_documents(path.read_text())


def all_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, obj) for path in FILES for obj in load(path)]


def runtimes_for(path: Path) -> dict[str, dict[str, Any]]:
    """Runtimes an InferenceService in ``path`` can use: cluster-wide ones, and namespaced
    ones shipped in the same folder."""
    found = {}
    for other, obj in all_objects():
        if obj["kind"] == "ClusterServingRuntime" or (
            obj["kind"] == "ServingRuntime" and other.parent == path.parent
        ):
            found[obj["metadata"]["name"]] = obj
    return found


def merged_container(isvc: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """The container KServe builds: runtime container, model fields laid over it, args appended,
    env merged by name, resources merged key by key, and {{.Name}} filled in."""
    (base,) = runtime["spec"]["containers"]
    model = isvc["spec"]["predictor"]["model"]
    out = copy.deepcopy(base)
    for key, value in model.items():
        if key in ("modelFormat", "runtime", "storageUri", "protocolVersion", "args", "env",
                   "resources"):
            continue
        out[key] = copy.deepcopy(value)
    out["args"] = list(base.get("args") or []) + list(model.get("args") or [])
    env = env_map(base.get("env"))
    env.update(env_map(model.get("env")))
    out["env"] = list(env.values())
    resources = copy.deepcopy(base.get("resources") or {})
    for section, quantities in (model.get("resources") or {}).items():
        resources.setdefault(section, {}).update(quantities)
    out["resources"] = resources
    name = isvc["metadata"]["name"]

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{{.Name}}", name)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return fill(out)


def test_manifests_exist():
    names = {rel(p) for p in FILES}
    assert "clusterservingruntime-bge-embedder.yaml" in names
    assert "clusterservingruntime-bge-reranker.yaml" in names
    assert any(n.startswith("examples/cpu-kind/") for n in names)
    isvcs = [o for _, o in all_objects() if o["kind"] == "InferenceService"]
    assert len(isvcs) >= 4


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_file_validates(path: Path, crds: CrdValidators):
    text = path.read_text()
    assert text.lstrip().startswith("#"), f"{rel(path)}: start with a comment saying what it is"
    objs = load(path)
    assert objs, f"{rel(path)} is empty"
    for obj in objs:
        assert validate_object(obj, crds) in ("crd", "kubernetes")


def test_cluster_runtimes():
    runtimes = {o["metadata"]["name"]: o for _, o in all_objects()
                if o["kind"] == "ClusterServingRuntime"}
    assert set(runtimes) == {"bge-embedder", "bge-reranker"}
    for component in ("embedder", "reranker"):
        runtime = runtimes[f"bge-{component}"]
        other = "reranker" if component == "embedder" else "embedder"
        assert [f["name"] for f in runtime["spec"]["supportedModelFormats"]] == [f"bge-{component}"]
        (container,) = runtime["spec"]["containers"]
        assert container["name"] == "kserve-container"
        args = container["args"]
        assert flag_value(args, f"--{component}") == "/mnt/models"
        assert flag_value(args, f"--{other}") == "none"
        assert flag_value(args, f"--{component}_name") == "{{.Name}}"
        # GPUs are asked for by each InferenceService, so CPU services can share the runtime.
        for section in (container.get("resources") or {}).values():
            assert "nvidia.com/gpu" not in section


@pytest.mark.parametrize(
    "path", [p for p in FILES if any(o["kind"] == "InferenceService" for o in load(p))], ids=rel
)
def test_inference_services(path: Path):
    runtimes = runtimes_for(path)
    for isvc in by_kind(load(path), "InferenceService"):
        name = isvc["metadata"]["name"]
        annotations = isvc["metadata"].get("annotations") or {}
        assert annotations.get("serving.kserve.io/deploymentMode") == "Standard", name
        predictor = isvc["spec"]["predictor"]
        model = predictor["model"]
        runtime = runtimes[model["runtime"]]
        assert model["modelFormat"]["name"] in [
            f["name"] for f in runtime["spec"]["supportedModelFormats"]
        ]
        assert model.get("protocolVersion", "v2") in runtime["spec"]["protocolVersions"]
        component = model["modelFormat"]["name"].removeprefix("bge-")
        other = "reranker" if component == "embedder" else "embedder"
        container = merged_container(isvc, runtime)
        args = container["args"]

        # One model per pod, served under the InferenceService's name.
        model_arg = flag_value(args, f"--{component}")
        if "storageUri" in model:
            assert model_arg == "/mnt/models"
        else:
            assert model_arg and model_arg not in ("/mnt/models", "none")
        assert flag_value(args, f"--{other}") == "none"
        assert flag_value(args, f"--{component}_name") == name

        # Probes hit the HTTP port the container declares.
        http = [p for p in container["ports"] if p["name"] == "http1"][0]["containerPort"]
        assert http == 8080 == int(flag_value(args, "--http_port"))
        for probe, path_ in (("readinessProbe", f"/v2/models/{name}/ready"),
                             ("startupProbe", f"/v2/models/{name}/ready"),
                             ("livenessProbe", "/v2/health/live")):
            assert container[probe]["httpGet"]["path"] == path_, probe
            assert resolve_port(container[probe]["httpGet"]["port"], container) == http
        startup = container["startupProbe"]
        assert startup["failureThreshold"] * startup["periodSeconds"] >= 1800

        # Hardened pod and container.
        assert predictor["securityContext"]["runAsNonRoot"] is True
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert "/tmp" in mounts

        # Bearer token only ever from a Secret.
        token = env_map(container["env"]).get("API_TOKEN")
        if token is not None:
            assert "value" not in token and "secretKeyRef" in token["valueFrom"]

        # GPU examples ask for a GPU; the kind example runs on CPU.
        limits = container["resources"].get("limits") or {}
        requests = container["resources"].get("requests") or {}
        device = flag_value(args, "--device") or env_map(container["env"]).get("DEVICE", {}).get(
            "value"
        )
        if path.parent == CPU_KIND_DIR:
            assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests
            assert device == "cpu"
            assert flag_value(args, "--device") == "cpu"
        else:
            assert str(limits.get("nvidia.com/gpu")) == "1"
            assert str(requests.get("nvidia.com/gpu")) == "1"
            assert device in (None, "cuda")


def test_examples_cover_both_components():
    for folder in (MANIFESTS_DIR / "examples", CPU_KIND_DIR):
        formats = set()
        for path in folder.glob("*.yaml"):
            for obj in by_kind(load(path), "InferenceService"):
                formats.add(obj["spec"]["predictor"]["model"]["modelFormat"]["name"])
        assert formats == {"bge-embedder", "bge-reranker"}, folder


# --- the validators themselves ------------------------------------------------------------


def _example_isvc() -> dict[str, Any]:
    path = MANIFESTS_DIR / "examples" / "inferenceservice-bge-m3-gpu.yaml"
    (isvc,) = load(path)
    return isvc


def test_crd_validation_rejects_unknown_fields(crds: CrdValidators):
    assert ("serving.kserve.io/v1beta1", "InferenceService") in crds.kinds()
    assert ("serving.kserve.io/v1alpha1", "ClusterServingRuntime") in crds.kinds()
    assert ("serving.kserve.io/v1alpha1", "ServingRuntime") in crds.kinds()
    good = _example_isvc()
    validate_object(good, crds)
    for mutate in (
        lambda o: o["spec"]["predictor"]["model"].update(storageURI="s3://typo"),
        lambda o: o["spec"]["predictor"].update(minReplica=1),
        lambda o: o["spec"].update(predicter={}),
        lambda o: o["spec"]["predictor"]["model"]["resources"].update(limit={"cpu": "1"}),
        lambda o: o["spec"]["predictor"].update(minReplicas="one"),
        lambda o: o["metadata"].update(name="Bad_Name"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(AssertionError):
            validate_object(bad, crds)


def test_core_validation_is_strict(crds: CrdValidators):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": 8080}]}}
    assert validate_object(svc, crds) == "kubernetes"
    svc["spec"]["prot"] = []
    with pytest.raises(AssertionError, match="prot"):
        validate_object(svc, crds)


def test_monitoring_validation_is_structural(crds: CrdValidators):
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "m"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "endpoints": [{"port": "http", "interval": "30s"}]},
    }
    assert validate_object(monitor, crds) == "structural"
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(AssertionError):
        validate_object(monitor, crds)
