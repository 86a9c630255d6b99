"""Model families and the multi-model configuration, in process (no server).

Each family's runner is compared with the library that defines the family, on small
random-weight models (tests/support/family_fixtures.py), within 1e-5: FlagEmbedding's
FlagAutoModel for BGE v1.5 and E5, sentence-transformers for GTE and generic
sentence-transformers models (and a hand-written mean pool for E5), sentence-transformers'
CrossEncoder and FlagReranker for a
BERT cross-encoder.
"""

from __future__ import annotations

import json

import family_fixtures as ff
import numpy as np
import pytest
import torch

from predictor.core.types import EncodeItem, ScoreItem
from predictor.models_config import (
    ModelsConfigError,
    ModelSpec,
    load_models_config,
    parse_model_flag,
    resolve_specs,
)
from predictor.runtime.detection import detect_family, detect_kind
from predictor.runtime.families import short_names  # its home moves (models_config)
from predictor.runtime.family_defaults import BGE_EN_QUERY, BGE_ZH_QUERY, dense_config
from predictor.runtime.loaders import load_embedder_runner, load_reranker_runner
from predictor.settings import Settings

ATOL = 1e-5
TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Kubernetes schedules containers onto nodes in a cluster. " * 6,
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Why does the engine compress a dense vector?",
]
CPU = Settings(device="cpu", use_fp16=False)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return ff.zoo(tmp_path_factory)


def encode(runner, texts, input_type=None, batches=((0, None),)):
    """Our vectors, the texts split into the given batches (whatever batch a text lands in)."""
    ids = runner.tokenize(list(texts), runner.max_length, True, input_type)
    out = [None] * len(ids)
    for start, stop in batches:
        rows = list(range(len(ids)))[start:stop]
        for row, emb in zip(rows, runner.run_batch([EncodeItem(ids[r]) for r in rows]),
                            strict=True):
            out[row] = emb.dense
    return np.stack(out)


MIXED = ((0, 2), (2, 3), (3, None))


# --------------------------------------------------------------------------- fidelity

def test_bge_v15_equals_flagembedding(zoo):
    from FlagEmbedding import FlagAutoModel

    runner = load_embedder_runner(str(zoo["bge"]), CPU)
    assert (runner.family, runner.config.pooling, runner.config.normalize) == ("bge", ("cls",),
                                                                               True)
    flag = FlagAutoModel.from_finetuned(str(zoo["bge"]), use_fp16=False, devices="cpu",
                                        query_instruction_for_retrieval=BGE_EN_QUERY)
    queries = flag.encode_queries(TEXTS)
    passages = flag.encode_corpus(TEXTS)
    np.testing.assert_allclose(encode(runner, TEXTS, "query"), queries, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, "query", MIXED), queries, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, "passage"), passages, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, "document", MIXED), passages, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS), passages, atol=ATOL)  # no instruction
    assert np.abs(queries - passages).max() > 1e-3  # the instruction does change the vector
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1, atol=1e-6)


def test_e5_equals_flagembedding_and_a_manual_mean_pool(zoo):
    from FlagEmbedding import FlagAutoModel
    from transformers import AutoModel, AutoTokenizer

    runner = load_embedder_runner(str(zoo["e5"]), CPU)
    assert (runner.family, runner.config.pooling) == ("e5", ("mean",))
    flag = FlagAutoModel.from_finetuned(str(zoo["e5"]), use_fp16=False, devices="cpu",
                                        query_instruction_for_retrieval="query: ",
                                        passage_instruction_for_retrieval="passage: ")
    queries, passages = flag.encode_queries(TEXTS), flag.encode_corpus(TEXTS)
    np.testing.assert_allclose(encode(runner, TEXTS, "query", MIXED), queries, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, "passage"), passages, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, None, MIXED), passages, atol=ATOL)

    # The E5 model card's own recipe: average_pool over the mask, then L2-normalise.
    tok = AutoTokenizer.from_pretrained(str(zoo["e5"]))
    model = AutoModel.from_pretrained(str(zoo["e5"])).eval()
    batch = tok(["query: " + t for t in TEXTS], max_length=512, padding=True, truncation=True,
                return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    hidden = hidden.masked_fill(~batch["attention_mask"][..., None].bool(), 0.0)
    manual = hidden.sum(dim=1) / batch["attention_mask"].sum(dim=1)[..., None]
    manual = torch.nn.functional.normalize(manual, dim=-1).numpy()
    np.testing.assert_allclose(encode(runner, TEXTS, "query"), manual, atol=ATOL)


def test_gte_equals_sentence_transformers(zoo):
    from sentence_transformers import SentenceTransformer

    runner = load_embedder_runner(str(zoo["gte"]), CPU)
    assert (runner.family, runner.config.pooling, runner.config.normalize) == ("gte", ("mean",),
                                                                               True)
    st = SentenceTransformer(str(zoo["gte"]), device="cpu")
    reference = st.encode(TEXTS)
    np.testing.assert_allclose(encode(runner, TEXTS, None, MIXED), reference, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, "query"), reference, atol=ATOL)


def test_sentence_transformers_modules_prompts_and_limit(zoo):
    """max+mean pooling, a Dense (Tanh) layer, no Normalize, prompts, max_seq_length 24."""
    from sentence_transformers import SentenceTransformer

    runner = load_embedder_runner(str(zoo["st"]), CPU)
    assert runner.family == "sentence-transformers"
    assert runner.config.pooling == ("max", "mean") and not runner.config.normalize
    assert (runner.max_length, runner.dense_dim) == (24, 16)
    st = SentenceTransformer(str(zoo["st"]), device="cpu")
    assert st.max_seq_length == 24
    queries = st.encode(TEXTS, prompt_name="query")
    documents = st.encode(TEXTS, prompt_name="document")
    default = st.encode(TEXTS)  # default_prompt_name: document
    np.testing.assert_allclose(encode(runner, TEXTS, "query", MIXED), queries, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, "passage"), documents, atol=ATOL)
    np.testing.assert_allclose(encode(runner, TEXTS, None, MIXED), default, atol=ATOL)
    assert not np.allclose(np.linalg.norm(default, axis=1), 1)  # really not normalised
    ids = runner.tokenize([TEXTS[2]], runner.max_length, True, None)
    assert len(ids[0]) == 24


def test_bert_cross_encoder_equals_sentence_transformers_and_flagreranker(zoo):
    from FlagEmbedding import FlagReranker
    from sentence_transformers import CrossEncoder

    runner = load_reranker_runner(str(zoo["cross"]), CPU)
    assert runner.sep_id is not None  # BERT: segment ids matter
    query = "what is a panda?"
    docs = TEXTS + ["The giant panda is a bear native to China."]
    pairs = runner.tokenize_pairs([query] * len(docs), docs)
    ours = np.array(runner.run_batch([ScoreItem(ids) for ids, _, _ in pairs]))
    ce = CrossEncoder(str(zoo["cross"]), device="cpu", activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(ours, ce.predict([(query, d) for d in docs]), atol=ATOL)
    flag = FlagReranker(str(zoo["cross"]), use_fp16=False, devices="cpu")
    np.testing.assert_allclose(ours, flag.compute_score([[query, d] for d in docs]), atol=ATOL)
    runner.sep_id = None  # without segment ids the scores are wrong: the check above bites
    assert np.abs(np.array(runner.run_batch([ScoreItem(ids) for ids, _, _ in pairs]))
                  - ours).max() > 1e-3


# --------------------------------------------------------------------------- detection

def _config_only(tmp_path, name, **config):
    path = tmp_path / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "bert", **config}))
    return str(path)


@pytest.mark.parametrize(("model", "family", "pooling", "query"), [
    ("BAAI/bge-large-en-v1.5", "bge", ("cls",), BGE_EN_QUERY),
    ("BAAI/bge-small-zh-v1.5", "bge", ("cls",), BGE_ZH_QUERY),
    ("BAAI/bge-base-en", "bge", ("cls",), BGE_EN_QUERY),
    ("intfloat/e5-base-v2", "e5", ("mean",), None),
    ("intfloat/multilingual-e5-large", "e5", ("mean",), None),
    ("intfloat/multilingual-e5-large-instruct", "e5-instruct", ("mean",), None),
    ("thenlper/gte-base", "gte", ("mean",), None),
    ("thenlper/gte-base-zh", "gte", ("cls",), None),
    ("BAAI/bge-m3", "bge-m3", None, None),
    ("maidalun1020/bce-embedding-base_v1", "dense", ("cls",), None),
])
def test_family_from_flagembedding_mapping(model, family, pooling, query):
    found = detect_family(model)
    assert (found.family, found.pooling, found.query_prefix) == (family, pooling, query)
    assert "FlagEmbedding" in found.reason


def test_family_detection_order_and_overrides(tmp_path, m3_dir, zoo):
    assert detect_family(str(m3_dir)).family == "bge-m3"  # colbert/sparse heads
    assert detect_family(str(zoo["st"])).family == "sentence-transformers"  # modules.json
    assert detect_family(str(zoo["bge"])).family == "bge"  # name beats modules.json
    assert detect_family(str(zoo["bge"]), family="e5").family == "e5"
    assert detect_family(str(zoo["st"]), family="st").family == "sentence-transformers"
    assert detect_family(_config_only(tmp_path, "my-e5-finetune")).family == "e5"
    assert detect_family(_config_only(tmp_path, "bge-custom-zh")).query_prefix == BGE_ZH_QUERY
    unknown = _config_only(tmp_path, "mystery-model")
    with pytest.raises(ValueError, match="cannot tell the family"):
        detect_family(unknown)
    assert detect_family(unknown, fallback="bge-m3").family == "bge-m3"
    with pytest.raises(ValueError, match="unknown family"):
        detect_family(unknown, family="word2vec")
    with pytest.raises(ValueError, match="decoder-only"):
        detect_family("intfloat/e5-mistral-7b-instruct")


def test_checkpoint_dirs_are_named_by_their_parent(tmp_path):
    path = tmp_path / "e5-small-v2" / "checkpoint-500"
    path.mkdir(parents=True)
    assert detect_family(str(path)).family == "e5"


def test_kind_from_config(tmp_path, zoo, reranker_dir, m3_dir):
    assert detect_kind(str(zoo["cross"])) == "reranker"
    assert detect_kind(str(reranker_dir)) == "reranker"
    assert detect_kind(str(m3_dir)) == "embedder"
    assert detect_kind(str(zoo["e5"])) == "embedder"


def test_spec_overrides_win(zoo):
    spec = ModelSpec(path=str(zoo["e5"]), pooling="cls", normalize=False, query_prefix="Q: ",
                     passage_prefix="")
    config = dense_config(str(zoo["e5"]), detect_family(str(zoo["e5"])), spec)
    assert (config.pooling, config.normalize) == (("cls",), False)
    assert (config.query_prefix, config.passage_prefix, config.default_prefix) == ("Q: ", "", "")
    with pytest.raises(ValueError, match="unknown pooling"):
        dense_config(str(zoo["e5"]), detect_family(str(zoo["e5"])),
                     ModelSpec(path="x", pooling="median"))


def test_max_length_override(zoo):
    runner = load_embedder_runner(str(zoo["gte"]), CPU, ModelSpec(path="x", max_length=16))
    assert runner.max_length == 16
    assert len(runner.tokenize([TEXTS[2]], runner.max_length, True)[0]) == 16
    with pytest.raises(ValueError, match="over the model's own limit"):
        load_embedder_runner(str(zoo["gte"]), CPU, ModelSpec(path="x", max_length=4096))


def test_short_names_from_seed_list():
    assert short_names("jinaai/jina-reranker-v2-base-multilingual") == (
        "jina-reranker-v2-multilingual",)
    assert short_names("intfloat/e5-mistral-7b-instruct") == ("e5-mistral-7b",)
    assert short_names("/mnt/models") == ()


# --------------------------------------------------------------------------- configuration

def test_model_flag_parsing():
    spec = parse_model_flag("name=e5,kind=embedder,path=intfloat/multilingual-e5-large,"
                            "aliases=e5-large|me5,normalize=false,max_length=256")
    assert (spec.name, spec.kind, spec.path) == ("e5", "embedder",
                                                 "intfloat/multilingual-e5-large")
    assert spec.aliases == ("e5-large", "me5") and spec.normalize is False
    assert spec.max_length == 256
    bare = parse_model_flag("BAAI/bge-small-en-v1.5")
    assert (bare.path, bare.served_name, bare.kind) == ("BAAI/bge-small-en-v1.5",
                                                        "bge-small-en-v1.5", None)
    for bad, match in [("name=x", "path"), ("path=x,colour=red", "colour"),
                       ("path=x,kind=tokenizer", "kind"), ("path=x,path=y", "twice"),
                       ("path=x,oops", "key=value"), ("path=x,normalize=maybe", "normalize"),
                       ("path=x,max_length=0", "max_length")]:
        with pytest.raises(ModelsConfigError, match=match):
            parse_model_flag(bad)


def test_models_config_file(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n"
                    "  - name: e5\n    path: intfloat/multilingual-e5-large\n"
                    "    aliases: [e5-large, me5]\n    query_prefix: 'query: '\n"
                    "  - path: BAAI/bge-reranker-base\n    kind: reranker\n")
    specs = load_models_config(path)
    assert [s.served_name for s in specs] == ["e5", "bge-reranker-base"]
    assert specs[0].aliases == ("e5-large", "me5") and specs[0].query_prefix == "query: "
    as_json = tmp_path / "models.json"
    as_json.write_text(json.dumps([{"path": "a/b", "aliases": "x|y"}]))
    assert load_models_config(as_json)[0].aliases == ("x", "y")
    for text, match in [("models: 3", "list"), ("- {path: a, pooling_method: cls}",
                                                "pooling_method"),
                        ("other: []", "top-level"), ("- just-a-string", "mapping")]:
        path.write_text(text)
        with pytest.raises(ModelsConfigError, match=match):
            load_models_config(path)
    with pytest.raises(ModelsConfigError, match="No such file"):
        load_models_config(tmp_path / "missing.yaml")


def test_resolve_specs_keeps_spec_flags_and_adds_models(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBEDDING_MODEL_NAME", raising=False)
    monkeypatch.delenv("RERANKER_MODEL_NAME", raising=False)
    # No extra models: exactly the SPEC pair, defaults included.
    names = [(s.served_name, s.kind, s.path) for s in resolve_specs(Settings())]
    assert names == [("bge-m3", "embedder", "BAAI/bge-m3"),
                     ("bge-reranker", "reranker", "BAAI/bge-reranker-v2-m3")]
    assert [s.served_name for s in resolve_specs(Settings(reranker="none"))] == ["bge-m3"]
    # Extra models: the SPEC pair only when set explicitly (flag or env) or in demo mode.
    extra = ["name=e5,path=intfloat/e5-small-v2"]
    assert [s.served_name for s in resolve_specs(Settings(model_specs=extra))] == ["e5"]
    assert [s.served_name for s in resolve_specs(Settings(model_specs=extra, embedder="/m"))] \
        == ["bge-m3", "e5"]
    monkeypatch.setenv("RERANKER_MODEL_NAME", "/r")
    assert [s.served_name for s in resolve_specs(Settings(model_specs=extra))] \
        == ["bge-reranker", "e5"]
    assert [s.served_name for s in resolve_specs(Settings(model_specs=extra, demo=True))] \
        == ["bge-m3", "bge-reranker", "e5"]
    config = tmp_path / "models.yaml"
    config.write_text("- {name: gte, path: thenlper/gte-small}\n")
    specs = resolve_specs(Settings(models_config=str(config), model_specs=extra))
    assert [s.served_name for s in specs] == ["bge-reranker", "gte", "e5"]


def test_names_and_aliases_must_not_clash():
    with pytest.raises(ModelsConfigError, match="two models are named 'E5'"):
        resolve_specs(Settings(model_specs=["name=e5,path=a", "name=E5,path=b"]))
    with pytest.raises(ModelsConfigError, match="alias 'bge-m3'"):
        resolve_specs(Settings(embedder="/m", model_specs=["name=e5,path=a,aliases=bge-m3"]))
    with pytest.raises(ModelsConfigError, match="alias 'x'"):
        resolve_specs(Settings(model_specs=["name=a,path=a,aliases=x",
                                            "name=b,path=b,aliases=x"]))


def test_cli_flags_reach_settings(tmp_path):
    from predictor.cli import build_models, build_parser, settings_from_args

    args = build_parser().parse_args(["--model", "name=a,path=x", "--model", "path=y",
                                      "--models_config", "m.yaml"])
    settings = settings_from_args(args)
    assert settings.model_specs == ["name=a,path=x", "path=y"]
    assert settings.models_config == "m.yaml"
    assert settings_from_args(build_parser().parse_args([])).model_specs == []
    with pytest.raises(SystemExit, match="two models are named"):
        build_models(Settings(model_specs=["name=a,path=x", "name=a,path=y"]))
