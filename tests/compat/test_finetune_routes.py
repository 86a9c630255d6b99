"""Seed 002's training routes over HTTP, child-process mode: start -> status -> completed, one
job at a time (429), the seed's request and status shapes, clear errors; and the Job the cluster
mode would create, validated as the API server would (strict schema)."""

from __future__ import annotations

import json
import time

import httpx
import kubernetes_validate
import pytest

from predictor.api.http.dropin import training
from predictor.finetune import job as jobs

from server_process import start_server, stop_server

PAIRS = "".join(f"what is a {t}\tA {t} is described here: {t} {t}.\n"
                for t in ("apple", "river", "engine", "violin"))
SEED_BODY = {"text_content": PAIRS + "not a pair\n", "model_name": "my-lora-model",
             "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "use_qlora": False}


@pytest.fixture(scope="module")
def trainer_server(m3_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    srv = start_server(["--embedder", str(m3_dir), "--reranker", "none", "--training",
                        "--training_output_dir", str(root / "models")], root / "server.log")
    srv.models = root / "models"
    yield srv
    stop_server(srv)


def wait_done(client: httpx.Client, job_id: str, timeout: float = 600) -> list[dict]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/train-status/{job_id}")
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if seen[-1]["status"] in ("completed", "failed"):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not done: {seen[-1]}")


def test_lora_job_flow_over_http(trainer_server):
    with httpx.Client(base_url=trainer_server.url, timeout=60) as client:
        r = client.post("/fine-tune-lora", json={**SEED_BODY, "max_steps": 3, "batch_size": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "pending" and set(body) == {"job_id", "status"}
        # One at a time: the child is still loading torch when this arrives.
        busy = client.post("/fine-tune", json={"text_content": PAIRS, "model_name": "other"})
        assert busy.status_code == 429, busy.text
        assert busy.json()["error"]["code"] == "training_busy"
        assert busy.headers["retry-after"] == "30"
        seen = wait_done(client, body["job_id"])
    final = seen[-1]
    assert final["status"] == "completed", final
    assert set(final) == {"status", "progress", "message", "error", "steps", "epoch"}
    assert final["progress"] == 100 and final["steps"] == 3 and final["error"] is None
    assert "my-lora-model" in final["message"]
    assert all(s["status"] in ("running", "completed") for s in seen)
    assert all(0 <= s["progress"] <= 100 for s in seen)
    out = trainer_server.models / "my-lora-model"
    record = json.loads((out / "training.json").read_text())
    assert record["method"] == "lora" and record["parameters"]["lora_r"] == 4
    assert record["data"]["pairs"] == 4 and record["steps"] == 3
    assert (out / "colbert_linear.pt").is_file() and (out / "model.safetensors").is_file()


def test_full_job_and_errors(trainer_server):
    with httpx.Client(base_url=trainer_server.url, timeout=60) as client:
        # The name of a finished model is taken unless overwrite.
        taken = client.post("/fine-tune", json={"text_content": PAIRS,
                                                "model_name": "my-lora-model"})
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "model_exists"
        for bad, param in [({"text_content": "no tabs\nat all"}, "text_content"),
                           ({"text_content": PAIRS, "model_name": "../escape"}, "model_name"),
                           ({"text_content": PAIRS, "use_qlora": True}, "use_qlora")]:
            r = client.post("/fine-tune-lora", json=bad)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == param
        r = client.post("/fine-tune", json={"model_name": "x"})
        assert r.status_code in (400, 422) and "error" in r.json()
        assert client.get("/train-status/no-such-job").status_code == 404
        # No max_steps: one epoch (the seed's), 4 pairs in batches of 2.
        r = client.post("/fine-tune", json={"text_content": PAIRS, "model_name": "my-full",
                                            "batch_size": 2, "heads": "dense"})
        assert r.status_code == 200, r.text
        final = wait_done(client, r.json()["job_id"])[-1]
    assert final["status"] == "completed" and final["steps"] == 2, final
    assert final["epoch"] == 1
    record = json.loads((trainer_server.models / "my-full" / "training.json").read_text())
    assert record["method"] == "full" and record["heads"] == "dense"


def test_routes_are_off_without_training():
    from predictor.api.http.registry import ServedModels
    from predictor.settings import Settings

    paths = {r.path for router in training.build_routers(ServedModels([]), Settings())
             for r in router.routes}
    assert paths == {"/fine-tune", "/fine-tune-lora", "/train-status/{job_id}"}
    from predictor.api.http.dropin import compat_routers

    off = {r.path for router in compat_routers(ServedModels([]), Settings())
           for r in router.routes}
    on = {r.path for router in compat_routers(ServedModels([]), Settings(training=True))
          for r in router.routes}
    assert not paths & off and paths <= on


def test_status_of_a_failed_run_carries_the_error():
    log = ('finetune: {"event": "progress", "step": 2, "max_steps": 8, "epoch": 1.5, '
           '"loss": 1.0}\r fine-tuning: 25%\nfinetune: {"event": "error", "exit_code": 3, '
           '"message": "bad data: x"}\n')
    body = training.status_from(training.read_events(log), "failed", "/out")
    assert body == {"status": "failed", "progress": 25, "message": "Training failed",
                    "error": "bad data: x", "steps": 2, "epoch": 1}


def test_cluster_mode_job_object_is_valid(m3_dir):
    req = training.FineTuneLoraRequest(**SEED_BODY)
    args = training.command_args(req, "BAAI/bge-m3", training.Path("/output/my-lora-model"))
    template = jobs.default_template("ghcr.io/example/bge-predictor:1.0",
                                     output_claim="finetune-output", output_dir="/output",
                                     service_account="bge-predictor")
    job = jobs.build_job(template, job_id="2f1c0e6e-9d2a-4c1b-8f3e-0a1b2c3d4e5f",
                         namespace="ml", args=[*args, "--data", "env:FINETUNE_DATA"],
                         data=PAIRS)
    kubernetes_validate.validate(job, "1.33", strict=True)
    assert job["metadata"]["name"] == "finetune-2f1c0e6e-9d2a-4c1b-8f3e-0a1b2c3d4e5f"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "predictor.finetune"]
    assert container["args"][:2] == ["--model", "BAAI/bge-m3"]
    assert {"--method", "lora", "--lora_r", "4"} <= set(container["args"])
    assert {"name": "FINETUNE_DATA", "value": PAIRS} in container["env"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert template["metadata"].get("name") is None  # the template itself is untouched


class FakeApiServer:
    """Just enough of the Kubernetes API for the cluster backend, over real HTTP: create/get
    Jobs, list pods by label, read a pod's log. Created Jobs are validated strictly."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.jobs: dict[str, dict] = {}
        self.log = ""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                assert self.path == "/apis/batch/v1/namespaces/ml/jobs", self.path
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                kubernetes_validate.validate(job, "1.33", strict=True)
                fake.jobs[job["metadata"]["name"]] = job
                self.reply(201, job)

            def do_GET(self):
                path, _, query = self.path.partition("?")
                prefix = "/apis/batch/v1/namespaces/ml/jobs/"
                if path.startswith(prefix):
                    job = fake.jobs.get(path[len(prefix):])
                    if job is None:
                        return self.reply(404, {"kind": "Status", "apiVersion": "v1",
                                                "status": "Failure", "code": 404,
                                                "reason": "NotFound"})
                    return self.reply(200, job)
                if path == "/api/v1/namespaces/ml/pods":
                    assert jobs.JOB_ID_LABEL in query
                    return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "items": [
                        {"metadata": {"name": "finetune-pod",
                                      "creationTimestamp": "2026-01-01T00:00:00Z"}}]})
                if path == "/api/v1/namespaces/ml/pods/finetune-pod/log":
                    data = fake.log.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return self.wfile.write(data)
                self.reply(404, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_cluster_backend_creates_the_job_and_reads_its_status():
    from kubernetes import client

    api = FakeApiServer()
    try:
        config = client.Configuration()
        config.host = api.url
        backend = training.KubernetesBackend(jobs.default_template("img:1"), "ml",
                                             api_client=client.ApiClient(config))
        req = training.FineTuneRequest(text_content=PAIRS, model_name="m", max_steps=4)
        args = training.command_args(req, "BAAI/bge-m3", training.Path("/output/m"))
        backend.start("abc-123", args, PAIRS, "/output/m")
        (job,) = api.jobs.values()
        assert job["metadata"]["name"] == "finetune-abc-123"
        assert container_env(job)["FINETUNE_DATA"] == PAIRS
        assert job["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == [
            "--data", "env:FINETUNE_DATA"]

        assert backend.status("abc-123")["status"] == "pending"
        job["status"] = {"active": 1}
        api.log = ('fine-tuning:  50%\rfinetune: {"event": "progress", "step": 2, '
                   '"max_steps": 4, "epoch": 1.0, "loss": 1.2}\n')
        running = backend.status("abc-123")
        assert (running["status"], running["progress"], running["steps"]) == ("running", 50, 2)
        job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        done = backend.status("abc-123")
        assert done["status"] == "completed" and "/output/m" in done["message"]
        job["status"] = {"failed": 3, "conditions": [
            {"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}
        api.log = ""
        failed = backend.status("abc-123")
        assert failed["status"] == "failed" and failed["error"] == "BackoffLimitExceeded"
        with pytest.raises(training.NotFoundError):
            backend.status("nope")
    finally:
        api.server.shutdown()


def container_env(job):
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_outside_a_cluster_auto_means_child_processes(monkeypatch, tmp_path):
    from predictor.settings import Settings

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    backend = training.make_backend(Settings(training_output_dir=str(tmp_path)))
    assert isinstance(backend, training.LocalBackend)
