"""The command line: flags over environment, failures that exit non-zero, the demo mode."""

from __future__ import annotations

import argparse
import subprocess
import sys

import httpx
import pytest

from predictor.cli import build_parser, settings_from_args

from server_process import REPO, start_server, stop_server


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("EMBEDDING_MODEL_NAME", "/models/from-env")
    monkeypatch.setenv("RERANKER_MODEL_NAME", "none")
    monkeypatch.setenv("SPARSE_TOKEN_MAPPING", "hash")
    monkeypatch.setenv("USE_FP16", "false")
    monkeypatch.setenv("MAX_BATCH_TOKENS", "4096")
    settings = settings_from_args(build_parser().parse_args(["--sparse_index_space", "1024"]))
    assert settings.embedder == "/models/from-env" and not settings.reranker_enabled
    assert settings.sparse_token_mapping == "hash" and settings.sparse_index_space == 1024
    assert settings.use_fp16 is False and settings.max_batch_tokens == 4096
    flags = build_parser().parse_args(["--embedder", "BAAI/bge-m3", "--use_fp16", "true",
                                       "--http_port", "9000"])
    settings = settings_from_args(flags)
    assert settings.embedder == "BAAI/bge-m3" and settings.use_fp16 is True
    assert flags.http_port == 9000, "KServe's own flags keep working"


def test_defaults_are_the_hub_models(monkeypatch):
    for var in ("EMBEDDING_MODEL_NAME", "RERANKER_MODEL_NAME"):
        monkeypatch.delenv(var, raising=False)
    settings = settings_from_args(build_parser().parse_args([]))
    assert settings.embedder == "BAAI/bge-m3" and settings.reranker == "BAAI/bge-reranker-v2-m3"
    assert settings.embedder_name == "bge-m3" and settings.reranker_name == "bge-reranker"


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "predictor", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_help_lists_our_and_kserve_flags():
    out = _run("--help").stdout
    for flag in ("--embedder", "--reranker", "--sparse_token_mapping", "--demo", "--http_port",
                 "--grpc_port", "--enable_grpc"):
        assert flag in out


def test_nothing_to_serve_exits_non_zero():
    proc = _run("--embedder", "none", "--reranker", "none")
    assert proc.returncode != 0 and "nothing to serve" in proc.stderr


def test_a_model_that_fails_to_load_exits_non_zero(tmp_path):
    proc = _run("--embedder", str(tmp_path / "missing"), "--reranker", "none", "--device", "cpu")
    assert proc.returncode == 1
    assert "failed to load models" in proc.stderr


def test_more_than_one_worker_is_refused():
    proc = _run("--workers", "2", "--embedder", "none", "--reranker", "none")
    assert proc.returncode != 0 and "--workers must be 1" in proc.stderr


def test_demo_mode_serves_random_models_and_says_so(tmp_path):
    server = start_server(["--demo"], tmp_path / "demo.log",
                          env={"BGE_PREDICTOR_CACHE": str(tmp_path / "cache")},
                          ready_models=("bge-m3", "bge-reranker"))
    try:
        r = httpx.post(f"{server.url}/v1/embeddings", json={"input": "hello"}, timeout=30)
        assert r.status_code == 200 and r.json()["data"][0]["embedding"]
        assert "RANDOM-WEIGHT" in server.log()
    finally:
        assert stop_server(server) == 0, server.log()[-2000:]


def test_every_boolean_reader_takes_the_same_words(monkeypatch):
    """Flags, env, --model specs, the models config file and V2 parameters: one vocabulary."""
    from predictor.api.params import as_bool
    from predictor.cli import _bool
    from predictor.errors import BadRequestError
    from predictor.models_config import ModelsConfigError, ModelSpec, parse_model_flag
    from predictor.settings import FALSE_WORDS, TRUE_WORDS, Settings

    words = [(w, True) for w in TRUE_WORDS] + [(w, False) for w in FALSE_WORDS]
    for word, truth in [(v, t) for w, t in words for v in (w, f" {w.upper()} ")]:
        assert _bool(word) is truth
        monkeypatch.setenv("USE_FP16", word)
        assert Settings().use_fp16 is truth
        assert parse_model_flag(f"p,normalize={word}").normalize is truth
        assert ModelSpec(path="p", trust_remote_code=word).trust_remote_code is truth
        assert as_bool(word, "truncate") is truth
    for word in ("maybe", "2", "", "enable"):
        with pytest.raises(argparse.ArgumentTypeError):
            _bool(word)
        monkeypatch.setenv("USE_FP16", word)
        with pytest.raises(ValueError):
            Settings()
        with pytest.raises(ModelsConfigError):
            parse_model_flag(f"p,normalize={word}")
        with pytest.raises(BadRequestError):
            as_bool(word, "truncate")


def test_a_models_aliases_are_computed_once_in_its_spec():
    """Explicit aliases then the short names, in ``resolve_specs``; the served model reads them."""
    from predictor.api.kserve.reranker import RerankerModel
    from predictor.models_config import resolve_specs
    from predictor.settings import Settings

    settings = Settings(model_specs=["path=jinaai/jina-reranker-v2-base-multilingual,"
                                     "kind=reranker,aliases=jr|jina-reranker-v2-multilingual"])
    (spec,) = resolve_specs(settings)
    assert spec.aliases == ("jr", "jina-reranker-v2-multilingual")
    (spec,) = resolve_specs(Settings(model_specs=["path=nvidia/NV-Embed-v2,name=nv"]))
    assert spec.aliases == ("nv-embed-v2",)
    model = RerankerModel(spec.served_name, spec.path, settings, spec)
    assert model.aliases == ("nv-embed-v2",)


def test_every_setting_is_one_flag_with_its_env_and_group():
    """A knob is written once (``settings.knob``): its flag, group and env come from there."""
    from predictor.cli import FLAGS, GROUP_TITLES
    from predictor.settings import Settings

    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    by_flag = {"model_specs", "models_config", "demo"}  # written out in build_parser
    for name, field in Settings.model_fields.items():
        assert name in actions, f"setting {name} has no flag: declare it with settings.knob"
        if name in by_flag:
            continue
        assert FLAGS[name]["group"] in GROUP_TITLES
        aliases = getattr(field.validation_alias, "choices", ())
        if len(aliases) > 1:
            assert f"env {aliases[-1]}" in actions[name].help, name
    settings = settings_from_args(parser.parse_args(["--max_queue_size", "7", "--training"]))
    assert settings.max_queue_size == 7 and settings.training is True
