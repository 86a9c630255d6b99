"""Seed 002's training routes over HTTP, child-process mode: start -> status -> completed, one
job at a time (429), the seed's request and status shapes, clear errors; and the Job the cluster
mode would create, validated as the API server would (strict schema)."""

from __future__ import annotations

import json
import time

import httpx
import kubernetes_validate
import pytest

from predictor.api.compat import training
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
        r = client.post("/fine-tune", json={"text_content": PAIRS, "model_name": "my-full",
                                            "max_steps": 2, "heads": "dense"})
        assert r.status_code == 200, r.text
        final = wait_done(client, r.json()["job_id"])[-1]
    assert final["status"] == "completed" and final["steps"] == 2, final
    record = json.loads((trainer_server.models / "my-full" / "training.json").read_text())
    assert record["method"] == "full" and record["heads"] == "dense"


def test_routes_are_off_without_training():
    from predictor.api.registry import ServedModels
    from predictor.settings import Settings

    paths = {r.path for router in training.build_routers(ServedModels([]), Settings())
             for r in router.routes}
    assert paths == {"/fine-tune", "/fine-tune-lora", "/train-status/{job_id}"}
    from predictor.api.compat import compat_routers

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
