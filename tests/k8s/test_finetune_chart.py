"""The chart's fine-tuning objects (templates/finetune-job.yaml, finetune-rbac.yaml), rendered
with Helm's engine and validated strictly; the Job template the /fine-tune routes create Jobs
from, filled in as the server does. Self-contained: helm_python and kubernetes_validate only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from predictor.finetune import job as jobs

CHART = Path(__file__).resolve().parents[2] / "charts" / "bge-predictor"
RELEASE, NAMESPACE, K8S = "rel", "ml", "1.33"
FT = f"{RELEASE}-bge-predictor-finetune"
PAIRS = "what is a tiger\tA tiger is a big cat.\nwhat is a river\tA river is flowing water.\n"


@pytest.fixture(scope="module")
def chart():
    loaded = helm.Chart.load(CHART)
    yield loaded
    loaded.close()


def render(chart, values: dict[str, Any]) -> list[dict]:
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objs = [doc for path, text in out.items() if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S, strict=True)
    return objs


def finetune(**values) -> dict[str, Any]:
    return {"finetune": {"enabled": True, **values}}


def only(objs, kind):
    (obj,) = [o for o in objs if o["kind"] == kind and "finetune" in o["metadata"]["name"]]
    return obj


def container_of(job):
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def flag(args, name):
    return args[args.index(name) + 1]


def test_off_by_default(chart):
    objs = render(chart, {})
    assert not [o for o in objs if "finetune" in o["metadata"]["name"]]


def test_job_with_inline_data_and_a_new_output_pvc(chart):
    objs = render(chart, finetune(data={"inline": PAIRS}, maxSteps=500, batchSize=32))
    job, cm, pvc = only(objs, "Job"), only(objs, "ConfigMap"), only(objs, "PersistentVolumeClaim")
    assert job["metadata"]["name"].startswith(f"{FT}-")
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["ttlSecondsAfterFinished"] == 86400
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    c = container_of(job)
    assert c["image"] == "bge-predictor:0.1.0" or c["image"].startswith("bge-predictor:")
    assert c["command"] == ["python", "-m", "predictor.finetune"]
    args = c["args"]
    assert flag(args, "--model") == "BAAI/bge-m3" and flag(args, "--method") == "lora"
    assert flag(args, "--data") == "/data/train.tsv"
    assert flag(args, "--output") == "/output/bge-m3-finetuned"
    assert flag(args, "--max_steps") == "500" and flag(args, "--batch_size") == "32"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert cm["data"]["train.tsv"] == PAIRS
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["configMap"]["name"] == cm["metadata"]["name"]
    assert volumes["output"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["output"] == "/output" and mounts["data"] == "/data"
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp", "/cache"}  # read-only root


def test_job_name_follows_the_values(chart):
    a = only(render(chart, finetune(data={"inline": PAIRS})), "Job")["metadata"]["name"]
    b = only(render(chart, finetune(data={"inline": PAIRS}, maxSteps=9)), "Job")
    assert a != b["metadata"]["name"]  # a Job's template is immutable: new values, new Job


def test_data_from_a_pvc_into_an_existing_output_claim(chart):
    objs = render(chart, finetune(data={"pvc": {"claimName": "pairs", "path": "set/a.tsv"}},
                                  output={"existingClaim": "models", "subPath": "m3-shop"},
                                  method="full", heads="dense"))
    assert not [o for o in objs if o["kind"] in ("PersistentVolumeClaim", "ConfigMap")
                and "finetune" in o["metadata"]["name"]]
    job = only(objs, "Job")
    args = container_of(job)["args"]
    assert flag(args, "--data") == "/data/set/a.tsv" and flag(args, "--method") == "full"
    assert flag(args, "--heads") == "dense" and flag(args, "--output") == "/output/m3-shop"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "pairs", "readOnly": True}
    assert volumes["output"]["persistentVolumeClaim"]["claimName"] == "models"


def test_data_from_a_url_on_cpu(chart):
    url = "https://data.example.com/pairs.tsv"
    job = only(render(chart, finetune(data={"url": url}, gpu={"enabled": False},
                                      ttlSecondsAfterFinished=None, backoffLimit=5)), "Job")
    c = container_of(job)
    assert flag(c["args"], "--data") == url
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert "data" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert job["spec"]["backoffLimit"] == 5 and "ttlSecondsAfterFinished" not in job["spec"]


@pytest.mark.parametrize("data", [{}, {"inline": PAIRS, "url": "https://x.example/a.tsv"}])
def test_exactly_one_data_source(chart, data):
    with pytest.raises(helm.HelmError, match="exactly one of finetune.data"):
        chart.render(finetune(data=data), name=RELEASE, namespace=NAMESPACE)


def test_schema_rejects_unknown_method(chart):
    with pytest.raises(helm.HelmValuesError):
        chart.render(finetune(data={"inline": PAIRS}, method="adapter"), name=RELEASE,
                     namespace=NAMESPACE)


def test_the_embedder_serves_the_output(chart):
    """The documented second step: mount the output claim, point the embedder at the model."""
    claim = f"{FT}-output"
    values = {
        **finetune(data={"inline": PAIRS}),
        "embedder": {"model": "/output/bge-m3-finetuned"},
        "extraVolumes": [{"name": "finetuned", "persistentVolumeClaim": {"claimName": claim}}],
        "extraVolumeMounts": [{"name": "finetuned", "mountPath": "/output", "readOnly": True}],
    }
    objs = render(chart, values)
    job = only(objs, "Job")
    (dep,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(
        "-embedder")]
    pod = dep["spec"]["template"]["spec"]
    (predictor,) = [c for c in pod["containers"] if c["name"] == "predictor"]
    assert claim in {v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    assert flag(container_of(job)["args"], "--output") in " ".join(predictor["args"])


def test_routes_rbac_and_job_template(chart):
    objs = render(chart, {"finetune": {"routes": {"enabled": True}},
                          "serviceAccount": {"automount": True}})
    role = only(objs, "Role")
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    binding = only(objs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-bge-predictor",
                                    "namespace": NAMESPACE}]
    assert only(objs, "PersistentVolumeClaim")  # the output the Jobs write to
    assert not [o for o in objs if o["kind"] == "Job"]  # the routes create them
    template = yaml.safe_load(only(objs, "ConfigMap")["data"]["job.yaml"])
    job = jobs.build_job(template, job_id="0b5c1e7a-3f7d-4c55-9a61-2d1f0e9c8b7a",
                         namespace=NAMESPACE, data=PAIRS,
                         args=["--model", "BAAI/bge-m3", "--output", "/output/my-model",
                               "--method", "lora", "--data", "env:FINETUNE_DATA"])
    kubernetes_validate.validate(job, K8S, strict=True)
    c = container_of(job)
    assert c["args"][-1] == "env:FINETUNE_DATA"
    assert {"name": "FINETUNE_DATA", "value": PAIRS} in c["env"]
    assert job["metadata"]["labels"][jobs.JOB_ID_LABEL] == "0b5c1e7a-3f7d-4c55-9a61-2d1f0e9c8b7a"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_routes_rbac_can_be_left_to_the_operator(chart):
    objs = render(chart, {"finetune": {"routes": {"enabled": True, "rbac": {"create": False}},
                                       "output": {"existingClaim": "models"}}})
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding", "PersistentVolumeClaim")
                and "finetune" in o["metadata"]["name"]]
    assert only(objs, "ConfigMap")


@pytest.mark.parametrize("values", [
    finetune(data={"inline": PAIRS}),
    finetune(data={"url": "https://x.example/a.tsv"}, routes={"enabled": True}),
], ids=["job", "job-and-routes"])
def test_lint_strict(values):
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{K8S}.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report
