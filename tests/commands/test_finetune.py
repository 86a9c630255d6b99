"""``python -m predictor.finetune`` run as users run it, on the tiny random BGE-M3.

LoRA and full runs lower the training loss on a learnable toy set; the output directory serves
as it is (the server's outputs equal FlagEmbedding's on it); bad data, Q-LoRA without CUDA and a
finished output give their exit codes; SIGTERM checkpoints and the same command resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fidelity import assert_colbert_close, assert_dense_close
from server_process import REPO, start_server, stop_server

TOPICS = ["apple", "river", "engine", "violin", "planet", "castle", "coffee", "tiger"]
TOY = "".join(f"what is a {t}\tA {t} is described here: {t} {t}.\n" for t in TOPICS)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def finetune(*args: str, data: str | None = None, timeout: float = 600) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "predictor.finetune", *args], cwd=REPO,
                          env=ENV, input=data, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stderr


def events(stderr: str) -> list[dict]:
    from predictor.api.http.dropin.training import read_events

    return read_events(stderr)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "toy.tsv"
    path.write_text(TOY + "a line without a tab\n\n")
    return path


def train(m3_dir, toy, out, method, lr, steps, *extra):
    code, err = finetune("--model", str(m3_dir), "--data", str(toy), "--output", str(out),
                         "--method", method, "--max_steps", str(steps), "--batch_size", "8",
                         "--learning_rate", lr, *extra)
    assert code == 0, err[-4000:]
    return json.loads((out / "training.json").read_text()), err


@pytest.fixture(scope="module")
def lora_run(m3_dir, toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "model"
    record, err = train(m3_dir, toy, out, "lora", "5e-3", 10)
    return out, record, err


def assert_loss_falls(record, steps):
    losses = [entry["loss"] for entry in record["loss"]]
    assert [entry["step"] for entry in record["loss"]] == list(range(1, steps + 1))
    first, last = np.mean(losses[:2]), np.mean(losses[-3:])
    # Measured: LoRA 1.74 -> 0.80, full 1.96 -> 0.91 (about -55%); asserted: at least -20%.
    assert last < 0.8 * first, losses


def test_lora_lowers_the_loss_and_writes_a_served_model_dir(lora_run, m3_dir):
    out, record, err = lora_run
    assert_loss_falls(record, 10)
    assert record["method"] == "lora" and record["heads"] == "all"
    assert record["steps"] == 10 and record["family"] == "bge-m3"
    assert record["data"]["pairs"] == len(TOPICS) and record["data"]["skipped_lines"] == 1
    assert len(record["data"]["sha256"]) == 64 and record["time_s"] > 0
    assert record["parameters"]["lora_r"] == 16
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "colbert_linear.pt", "sparse_linear.pt",
            "tokenizer.json", "tokenizer_config.json", "training.json"} <= names
    assert not {"adapter_config.json", ".checkpoints"} & names  # merged; checkpoints removed
    assert (out / "tokenizer.json").read_bytes() == (m3_dir / "tokenizer.json").read_bytes()
    kinds = [e["event"] for e in events(err)]
    assert kinds[0] == "data" and "start" in kinds and kinds[-1] == "done"
    assert "fine-tuning" in err  # the tqdm bar


def test_full_fine_tuning_with_checkpointing_lowers_the_loss(m3_dir, toy, tmp_path):
    record, _ = train(m3_dir, toy, tmp_path / "full", "full", "1e-3", 8, "--heads", "dense",
                      "--gradient_checkpointing")
    assert_loss_falls(record, 8)
    assert record["heads"] == "dense" and record["parameters"]["gradient_checkpointing"]
    for head in ("colbert_linear.pt", "sparse_linear.pt"):  # dense only: heads copied as is
        assert (tmp_path / "full" / head).read_bytes() == (m3_dir / head).read_bytes()


def test_output_serves_as_is_and_matches_flagembedding(lora_run, m3_dir, tmp_path):
    from FlagEmbedding import BGEM3FlagModel

    out, _, _ = lora_run
    texts = ["what is a tiger", "A castle is described here: castle castle.", "hello world"]
    flag = BGEM3FlagModel(str(out), use_fp16=False, devices="cpu")
    ref = flag.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    base = BGEM3FlagModel(str(m3_dir), use_fp16=False, devices="cpu").encode(texts)
    assert not np.allclose(ref["dense_vecs"], base["dense_vecs"], atol=1e-3)  # it trained
    server = start_server(["--embedder", str(out), "--reranker", "none"], tmp_path / "log")
    try:
        r = httpx.post(f"{server.url}/vectorize-batch-hybrid", timeout=60, json={
            "items": texts, "return_colbert": True, "sparse_keys": "token_id"})
        assert r.status_code == 200, r.text
        for i, vec in enumerate(r.json()["hybrid_vectors"]):
            assert_dense_close(vec["dense"], ref["dense_vecs"][i])
            assert_colbert_close(vec["colbert"], ref["colbert_vecs"][i])
            want = {str(k): float(v) for k, v in ref["lexical_weights"][i].items()}
            assert vec["sparse"] == pytest.approx(want, abs=1e-5)
    finally:
        stop_server(server)


def test_finished_output_is_not_overwritten(lora_run, m3_dir, toy):
    out, _, _ = lora_run
    code, err = finetune("--model", str(m3_dir), "--data", str(toy), "--output", str(out))
    assert code == 6, err[-2000:]
    assert "already holds a finished run" in events(err)[-1]["message"]


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"no tab here\nnor here\n", "0 usable 'query<TAB>passage' line(s), 2 skipped"),
    (b"one\tpair only\n", "at least 2 are needed"),
    (b"caf\xe9\tbad bytes\n", "is not UTF-8"),
])
def test_bad_data_gives_a_clear_error_and_exit_3(content, message, m3_dir, tmp_path):
    data = tmp_path / "data.tsv"
    if content is not None:
        data.write_bytes(content)
    code, err = finetune("--model", str(m3_dir), "--data", str(data),
                         "--output", str(tmp_path / "out"))
    assert code == 3, err[-2000:]
    last = events(err)[-1]
    assert last["event"] == "error" and last["exit_code"] == 3 and message in last["message"]
    assert not (tmp_path / "out").exists()


def test_data_from_stdin_and_directories(tmp_path):
    from predictor.finetune.data import read_pairs

    (tmp_path / "a.tsv").write_text("q1\tp1\nbad\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("q2\tp2\r\n")
    (tmp_path / "notes.md").write_text("q3\tp3\n")  # not a data suffix
    pairs = read_pairs(str(tmp_path))
    assert pairs.queries == ["q1", "q2"] and pairs.skipped == 1
    import io

    same = read_pairs("-", stdin=io.BytesIO(b"q1\tp1\n\nq2\tp2\n"))
    assert same.sha256 == pairs.sha256  # the pairs as used, not the bytes


def test_qlora_without_cuda_is_a_clear_error(m3_dir, toy, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the 4-bit path itself runs instead")
    code, err = finetune("--model", str(m3_dir), "--data", str(toy), "--method", "qlora",
                         "--output", str(tmp_path / "out"))
    assert code == 5, err[-2000:]
    assert "needs a CUDA GPU" in events(err)[-1]["message"]


def test_sigterm_checkpoints_and_the_same_command_resumes(m3_dir, toy, tmp_path):
    out = tmp_path / "resumed"
    args = [sys.executable, "-m", "predictor.finetune", "--model", str(m3_dir), "--data",
            str(toy), "--output", str(out), "--method", "lora", "--max_steps", "6",
            "--save_steps", "2", "--batch_size", "8", "--learning_rate", "5e-3"]
    log, gate = tmp_path / "first.log", tmp_path / "gate"
    gated = [sys.executable, str(REPO / "tests" / "support" / "finetune_gated.py"), "3",
             str(gate), *args[3:]]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(gated, cwd=REPO, env=ENV, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 300
        while not any(e.get("event") == "progress" and e["step"] >= 3
                      for e in events(log.read_text(errors="replace"))):
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # training waits at the gate until this has landed
        while not any(e.get("event") == "signal" for e in events(log.read_text(errors="replace"))):
            assert time.monotonic() < deadline, "the signal was not seen"
            time.sleep(0.05)
        gate.touch()
        assert proc.wait(120) == 75, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = events(log.read_text())
    assert stopped[-1]["exit_code"] == 75 and "resumes" in stopped[-1]["message"]
    assert list((out / ".checkpoints").glob("checkpoint-*"))
    assert not (out / "training.json").exists()

    code, err = finetune(*args[3:])
    assert code == 0, err[-4000:]
    resumed = next(e for e in events(err) if e["event"] == "resume")
    assert "checkpoint-" in resumed["checkpoint"]
    first_step = next(e for e in events(err) if e["event"] == "progress")["step"]
    assert first_step > 1  # continued, not restarted
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 6 and record["resumed_from"] == resumed["checkpoint"]
    assert [e["step"] for e in record["loss"]] == list(range(1, 7))


def test_dense_family_output_describes_itself(toy, tmp_path):
    """An E5 model fine-tuned into a directory whose name says nothing: the output's
    sentence-transformers files carry its pooling and prefixes, so the server's runner finds
    them and equals sentence-transformers on it."""
    import family_fixtures as ff
    from sentence_transformers import SentenceTransformer

    from predictor.runtime.families import load_embedder_runner
    from predictor.settings import Settings

    base = ff.build_e5(tmp_path / "base")
    out = tmp_path / "shop-model"
    record, _ = train(base, toy, out, "full", "1e-3", 3)
    assert record["family"] == "e5" and record["heads"] is None
    runner = load_embedder_runner(str(out), Settings(device="cpu", use_fp16=False))
    assert runner.family == "sentence-transformers"
    assert (runner.config.pooling, runner.config.normalize) == (("mean",), True)
    assert (runner.config.query_prefix, runner.config.passage_prefix) == ("query: ", "passage: ")
    texts = ["what is a tiger", "A river is described here: river river."]
    ids = runner.tokenize(texts, runner.max_length, True, "query")
    from predictor.core.types import EncodeItem

    ours = np.stack([e.dense for e in runner.run_batch([EncodeItem(i) for i in ids])])
    st = SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(ours, st.encode(texts, prompt_name="query"), atol=1e-5)
    before = SentenceTransformer(str(base), device="cpu").encode(texts, prompt="query: ")
    assert not np.allclose(ours, before, atol=1e-3)  # it trained


def test_data_from_a_url_and_from_the_environment(tmp_path, monkeypatch):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from predictor.finetune.data import DataError, read_pairs

    (tmp_path / "pairs.tsv").write_text(TOY)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        pairs = read_pairs(f"{url}/pairs.tsv")
        assert len(pairs) == len(TOPICS) and pairs.sources == [f"{url}/pairs.tsv"]
        with pytest.raises(DataError, match="cannot download"):
            read_pairs(f"{url}/missing.tsv")
    finally:
        server.shutdown()
    monkeypatch.setenv("PAIRS", TOY)
    assert read_pairs("env:PAIRS").sha256 == pairs.sha256
    with pytest.raises(DataError, match="is not set"):
        read_pairs("env:NO_SUCH_VARIABLE")


@pytest.mark.parametrize("model, message", [
    ("/no/such/model", "is not a model directory"),
    ("nobody/not-in-the-cache", "cannot fetch model"),  # HF_HUB_OFFLINE=1 here
])
def test_a_model_that_cannot_be_found_exits_4(model, message, toy, tmp_path):
    code, err = finetune("--model", model, "--data", str(toy), "--output", str(tmp_path / "o"))
    assert code == 4, err[-2000:]
    assert message in events(err)[-1]["message"]
    assert not (tmp_path / "o" / ".checkpoints" / "run.json").exists()
