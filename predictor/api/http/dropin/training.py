"""Seed 002's training routes: ``POST /fine-tune``, ``POST /fine-tune-lora``,
``GET /train-status/{job_id}``; served only with ``--training`` (env ``TRAINING``).

Training never runs inside the serving process (it would starve inference). A request becomes
one run of ``python -m predictor.finetune`` (docs/finetune.md), the command the chart's
``finetune`` Job runs:

- in a cluster, where the pod's service account may create Jobs (``--training_backend auto``
  asks the API server), a Kubernetes Job from the same image, built from the chart's Job
  template (``predictor.finetune.job``); status reads the Job and the ``finetune: {...}``
  progress lines of its pod's log (when the account may read pod logs);
- elsewhere, a child process, one at a time (429 while one runs), its output in
  ``<training_output_dir>/.jobs/<job_id>.log``, read back for status.

The model is written to ``<training_output_dir>/<model_name>``; the served embedder (or the one
``model`` names) is the base. Beyond the seed's fields a request may give ``epochs``,
``max_steps``, ``batch_size``, ``learning_rate``, ``heads`` and ``overwrite``. Statuses:
``pending``, ``running``, ``completed``, ``failed``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from predictor.api.http.openapi import ERROR_RESPONSES
from predictor.api.http.registry import ServedModels
from predictor.errors import (
    ApiError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
)
from predictor.finetune import job as jobs
from predictor.finetune.data import MIN_PAIRS, Pairs, parse_lines
from predictor.finetune.events import TRAINING_FILE, read_events, status_from
from predictor.settings import Settings

logger = logging.getLogger("predictor.training")

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class FineTuneRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text_content: str = Field(..., description="query<TAB>passage lines; others are skipped.")
    model_name: str = Field("fine-tuned-model",
                            description="Name of the result: <training_output_dir>/<model_name>.")
    model: str | None = Field(None, description="Served embedder to start from (default: first).")
    epochs: float | None = Field(None, gt=0, le=100)
    max_steps: int | None = Field(None, gt=0, le=1_000_000)
    batch_size: int | None = Field(None, gt=0, le=4096)
    learning_rate: float | None = Field(None, gt=0, lt=1)
    heads: Literal["all", "dense"] | None = None
    overwrite: bool = Field(False, description="Replace an existing model of that name.")


class FineTuneLoraRequest(FineTuneRequest):
    r: int = Field(16, gt=0, le=1024)
    lora_alpha: int = Field(32, gt=0, le=4096)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    use_qlora: bool = False


class JobResponse(BaseModel):
    job_id: str
    status: str


class TrainStatus(BaseModel):
    status: str
    progress: int
    message: str
    error: str | None = None
    steps: int
    epoch: int


# --------------------------------------------------------------------------- backends

class LocalBackend:
    """Child processes, one at a time; logs under ``<root>/.jobs``."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        atexit.register(self.stop_all)

    def _running(self) -> str | None:
        for job_id, job in self.jobs.items():
            if job["process"].poll() is None:
                return job_id
        return None

    def start(self, job_id: str, args: list[str], data: str, output: str) -> None:
        with self.lock:
            busy = self._running()
            if busy:
                raise QueueFullError(f"Training job {busy} is still running; one runs at a time "
                                     "here. Retry when it is done.", code="training_busy",
                                     headers={"Retry-After": "30"})
            job_dir = self.root / ".jobs"
            job_dir.mkdir(parents=True, exist_ok=True)
            data_path = job_dir / f"{job_id}.tsv"
            data_path.write_text(data, encoding="utf-8")
            log_path = job_dir / f"{job_id}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(  # noqa: S603 - our own command
                    [sys.executable, "-m", "predictor.finetune", *args, "--data", str(data_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                    start_new_session=True)
            self.jobs[job_id] = {"process": process, "log": log_path, "data": data_path,
                                 "output": output}

    def status(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"No training job {job_id}.", param="job_id",
                                code="job_not_found")
        code = job["process"].poll()
        try:
            text = job["log"].read_text(errors="replace")
        except OSError:
            text = ""
        state = "running" if code is None else ("completed" if code == 0 else "failed")
        if code is not None:
            job["data"].unlink(missing_ok=True)
        return status_from(read_events(text), state, job["output"], text[-2000:])

    def stop_all(self) -> None:
        """On shutdown: SIGTERM makes a run checkpoint and stop (it resumes when re-run)."""
        for job in self.jobs.values():
            if job["process"].poll() is None:
                job["process"].terminate()


class KubernetesBackend:
    """A Job per request through the official client; status from the Job and its pod's log."""

    name = "kubernetes"

    def __init__(self, template: dict, namespace: str, *, api_client: Any = None) -> None:
        """``api_client``: the in-cluster configuration's client unless given one."""
        from kubernetes import client, config

        if api_client is None:
            config.load_incluster_config()
        self.template = template
        self.namespace = namespace
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.outputs: dict[str, str] = {}

    @staticmethod
    def allowed(namespace: str) -> bool:
        """Whether this pod's service account may create Jobs in ``namespace``."""
        from kubernetes import client, config

        config.load_incluster_config()
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace, verb="create", group="batch", resource="jobs")))
        result = client.AuthorizationV1Api().create_self_subject_access_review(review)
        return bool(result.status.allowed)

    def start(self, job_id: str, args: list[str], data: str, output: str) -> None:
        from kubernetes.client.exceptions import ApiException

        body = jobs.build_job(self.template, job_id=job_id, namespace=self.namespace,
                              args=[*args, "--data", f"env:{jobs.DATA_ENV}"], data=data)
        try:
            self.batch.create_namespaced_job(self.namespace, body)
        except ApiException as exc:
            raise ApiError(f"Kubernetes refused the training Job: {exc.reason}",
                           code="job_create_failed") from exc
        self.outputs[job_id] = output

    def status(self, job_id: str) -> dict:
        from kubernetes.client.exceptions import ApiException

        try:
            job = self.batch.read_namespaced_job(jobs.job_name(job_id), self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFoundError(f"No training job {job_id}.", param="job_id",
                                    code="job_not_found") from exc
            raise
        from kubernetes.client import V1JobStatus

        st = job.status or V1JobStatus()  # a Job just created has none yet
        conditions = {c.type: c for c in st.conditions or [] if c.status == "True"}
        if st.succeeded or "Complete" in conditions:
            state = "completed"
        elif "Failed" in conditions:
            state = "failed"
        elif st.active:
            state = "running"
        else:
            state = "pending"
        text = self._log(job_id)
        body = status_from(read_events(text), state, self.outputs.get(job_id, ""), text)
        if state == "failed" and "Failed" in conditions and not read_events(text):
            body["error"] = conditions["Failed"].message or body["error"]
        return body

    def _log(self, job_id: str) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{jobs.JOB_ID_LABEL}={job_id}").items
            if not pods:
                return ""
            pod = max(pods, key=lambda p: p.metadata.creation_timestamp)
            return self.core.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, container=jobs.CONTAINER, tail_lines=400)
        except ApiException:  # no RBAC for pods/log, or the container has not started
            return ""


def in_cluster_namespace() -> str | None:
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    try:
        return (SA_DIR / "namespace").read_text().strip()
    except OSError:
        return None


def make_backend(settings: Settings) -> LocalBackend | KubernetesBackend:
    root = Path(settings.training_output_dir)
    choice = settings.training_backend
    namespace = in_cluster_namespace()
    if choice == "local" or (choice == "auto" and namespace is None):
        return LocalBackend(root)
    if namespace is None:
        raise RuntimeError("--training_backend kubernetes needs to run in a pod")
    if choice == "auto":
        try:
            if not KubernetesBackend.allowed(namespace):
                logger.info("training: may not create Jobs in %s; child processes", namespace)
                return LocalBackend(root)
        except Exception as exc:  # noqa: BLE001 - no API access: fall back, say why
            logger.warning("training: cannot ask the API server (%s); child processes", exc)
            return LocalBackend(root)
    if settings.training_job_template:
        template = jobs.load_template(settings.training_job_template)
    else:
        image = settings.training_image or os.environ.get("TRAINING_IMAGE")
        if not image:
            raise RuntimeError("cluster training needs TRAINING_JOB_TEMPLATE or TRAINING_IMAGE")
        template = jobs.default_template(image)
    logger.info("training: Kubernetes Jobs in namespace %s", namespace)
    return KubernetesBackend(template, namespace)


# --------------------------------------------------------------------------- routes

def command_args(req: FineTuneRequest, base: str, output: Path) -> list[str]:
    """``python -m predictor.finetune`` arguments for a request (``--data`` added by the
    backend)."""
    args = ["--model", base, "--output", str(output)]
    if isinstance(req, FineTuneLoraRequest):
        args += ["--method", "qlora" if req.use_qlora else "lora", "--lora_r", str(req.r),
                 "--lora_alpha", str(req.lora_alpha), "--lora_dropout", str(req.lora_dropout)]
    else:
        args += ["--method", "full"]
    for flag in ("epochs", "max_steps", "batch_size", "learning_rate", "heads"):
        value = getattr(req, flag)
        if value is not None:
            args += [f"--{flag}", str(value)]
    if req.overwrite:
        args.append("--overwrite")
    return args


def build_routers(served: ServedModels, settings: Settings, *,
                  gpu_available: Callable[[], bool] | None = None) -> list[APIRouter]:
    """``gpu_available``: told by the composition root (this layer has no torch). Without it a
    Q-LoRA request on a machine with no GPU is refused by the training command instead (the
    job fails with that message)."""
    router = APIRouter(tags=["compat: seed 002 training"], responses=ERROR_RESPONSES)
    root = Path(settings.training_output_dir)
    state: dict[str, Any] = {}

    def backend():
        if "backend" not in state:
            state["backend"] = make_backend(settings)
        return state["backend"]

    def check(req: FineTuneRequest) -> tuple[str, Path, str]:
        if not MODEL_NAME.match(req.model_name):
            raise BadRequestError("'model_name' must be 1-100 letters, digits, '.', '_' or '-' "
                                  "and start with a letter or digit.", param="model_name")
        pairs = Pairs()
        parse_lines(req.text_content.splitlines(), pairs)
        if len(pairs) < MIN_PAIRS:
            raise BadRequestError(
                f"'text_content' has {len(pairs)} usable 'query<TAB>passage' line(s) "
                f"({pairs.skipped} skipped); at least {MIN_PAIRS} are needed.",
                param="text_content", code="not_enough_pairs")
        output = root / req.model_name
        if (output / TRAINING_FILE).exists() and not req.overwrite:
            raise ConflictError(f"A model named '{req.model_name}' exists; choose another "
                                "model_name or set overwrite.", param="model_name",
                                code="model_exists")
        base = served.get(req.model, "embedder").model_id
        data = "".join(f"{q}\t{p}\n" for q, p in zip(pairs.queries, pairs.passages,
                                                      strict=True))
        return base, output, data

    async def start(req: FineTuneRequest) -> dict:
        base, output, data = check(req)
        runner = await asyncio.to_thread(backend)
        if isinstance(req, FineTuneLoraRequest) and req.use_qlora \
                and isinstance(runner, LocalBackend) and gpu_available is not None:
            if not gpu_available():
                raise BadRequestError("use_qlora needs a CUDA GPU (4-bit weights) and this "
                                      "server has none; use LoRA (use_qlora: false).",
                                      param="use_qlora", code="qlora_unavailable")
        if isinstance(runner, KubernetesBackend) \
                and len(data.encode()) > jobs.MAX_INLINE_DATA_BYTES:
            raise PayloadTooLargeError(
                f"'text_content' is over {jobs.MAX_INLINE_DATA_BYTES} bytes, the most a "
                "training Job carries inline; use the chart's finetune Job with a PVC or URL.",
                param="text_content", code="training_data_too_large")
        job_id = str(uuid.uuid4())
        args = command_args(req, base, output)
        await asyncio.to_thread(runner.start, job_id, args, data, str(output))
        logger.info("training job %s (%s): %s", job_id, runner.name, " ".join(args))
        return {"job_id": job_id, "status": "pending"}

    @router.post("/fine-tune", response_model=JobResponse)
    async def fine_tune(req: FineTuneRequest) -> dict:
        """Full contrastive fine-tuning (in-batch negatives) of the embedder."""
        return await start(req)

    @router.post("/fine-tune-lora", response_model=JobResponse)
    async def fine_tune_lora(req: FineTuneLoraRequest) -> dict:
        """LoRA (or 4-bit Q-LoRA on CUDA) fine-tuning; the adapter is merged into the result."""
        return await start(req)

    @router.get("/train-status/{job_id}", response_model=TrainStatus)
    async def train_status(job_id: str) -> dict:
        started = time.monotonic()
        body = await asyncio.to_thread(backend().status, job_id)
        logger.debug("status of %s in %.3fs", job_id, time.monotonic() - started)
        return body

    return [router]
