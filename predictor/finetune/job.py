"""The Kubernetes Job a training request becomes in a cluster (seed 002's routes, cluster mode).

The pod spec comes from a Job *template*: the chart renders one (``finetune.routes``) from the
same values as its own ``finetune`` Job, so a Job the routes create runs the same image, on the
same kind of node, with the same volumes. The server fills in what is per request: the name,
labels, the command's arguments and the training pairs (in an environment variable the command
reads with ``--data env:FINETUNE_DATA``, so no ConfigMap and no extra RBAC is needed; a request's
text is bounded well below the API server's object size limit).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

CONTAINER = "finetune"
DATA_ENV = "FINETUNE_DATA"
JOB_ID_LABEL = "bge-predictor.io/finetune-job-id"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: Largest request text that goes into a Job (the API server takes objects up to ~1.5 MiB).
MAX_INLINE_DATA_BYTES = 1 << 20


def default_template(image: str, *, output_claim: str | None = None,
                     output_dir: str = "/output", gpus: int = 1,
                     service_account: str | None = None) -> dict[str, Any]:
    """A minimal Job template for clusters without the chart's (``TRAINING_JOB_TEMPLATE``)."""
    container: dict[str, Any] = {
        "name": CONTAINER, "image": image,
        "command": ["python", "-m", "predictor.finetune"],
        "env": [{"name": "TOKENIZERS_PARALLELISM", "value": "false"}],
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {},
    }
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if service_account:
        pod["serviceAccountName"] = service_account
    if output_claim:
        container["volumeMounts"] = [{"name": "output", "mountPath": output_dir}]
        pod["volumes"] = [{"name": "output",
                           "persistentVolumeClaim": {"claimName": output_claim}}]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"labels": {COMPONENT_LABEL: "finetune"}},
            "spec": {"backoffLimit": 2, "ttlSecondsAfterFinished": 86400,
                     "template": {"metadata": {"labels": {COMPONENT_LABEL: "finetune"}},
                                  "spec": pod}}}


def load_template(path: str | Path) -> dict[str, Any]:
    """A Job template from a YAML or JSON file (the chart mounts one from a ConfigMap)."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("kind") != "Job":
        raise ValueError(f"{path} is not a Kubernetes Job template")
    return doc


def job_name(job_id: str) -> str:
    return f"finetune-{job_id}"[:63].rstrip("-")


def build_job(template: dict[str, Any], *, job_id: str, namespace: str, args: list[str],
              data: str | None = None) -> dict[str, Any]:
    """The Job for one request: ``template`` with name, labels, arguments and data filled in."""
    job = copy.deepcopy(template)
    meta = job.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta["name"] = job_name(job_id)
    meta["namespace"] = namespace
    meta.setdefault("labels", {})[JOB_ID_LABEL] = job_id
    pod_meta = job["spec"]["template"].setdefault("metadata", {})
    pod_meta.setdefault("labels", {})[JOB_ID_LABEL] = job_id
    containers = job["spec"]["template"]["spec"]["containers"]
    container = next((c for c in containers if c.get("name") == CONTAINER), containers[0])
    container["args"] = list(args)
    if data is not None:
        env = [e for e in container.get("env") or [] if e.get("name") != DATA_ENV]
        container["env"] = [*env, {"name": DATA_ENV, "value": data}]
    return job
