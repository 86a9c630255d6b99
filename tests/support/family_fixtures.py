"""Small random-weight models of the non-M3 families, laid out as their published checkpoints.

- ``build_bge_v15``: BERT + sentence-transformers files (CLS pooling, Normalize), named like
  ``BAAI/bge-small-en-v1.5`` so the name finds it in FlagEmbedding's mapping.
- ``build_e5``: XLM-R (the demo tokenizer) + sentence-transformers files (mean, Normalize),
  named like ``intfloat/multilingual-e5-small``.
- ``build_gte``: BERT + sentence-transformers files (mean, Normalize), named ``gte-small``.
- ``build_st``: an unknown name with max+mean pooling, a Dense (Tanh) layer, no Normalize,
  ``prompts`` and a ``max_seq_length`` (every sentence-transformers knob we read).
- ``build_bert_cross_encoder``: ``BertForSequenceClassification`` with one logit (segment
  embeddings matter, unlike XLM-R's).

Weights are random; only the file layout is real. Builders take a directory and return it.
"""

from __future__ import annotations

import json
from pathlib import Path

_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ST_TRANSFORMER = "sentence_transformers.models.Transformer"
ST_POOLING = "sentence_transformers.models.Pooling"
ST_DENSE = "sentence_transformers.models.Dense"
ST_NORMALIZE = "sentence_transformers.models.Normalize"


def train_bert_tokenizer(path: Path, vocab_size: int = 1200):
    """An uncased WordPiece tokenizer trained on the demo corpus, saved BERT-style."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertTokenizerFast

    from predictor.demo import corpus

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus(0), WordPieceTrainer(vocab_size=vocab_size,
                                                         special_tokens=_BERT_SPECIALS,
                                                         show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                             pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                             do_lower_case=True, model_max_length=512)
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return fast


def _bert_config(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                      type_vocab_size=2, pad_token_id=0, **extra)


def _save(model, path: Path) -> None:
    from predictor.demo import quiet_progress

    model.eval()
    with quiet_progress():
        model.save_pretrained(str(path))


def build_bert_encoder(path: Path, seed: int) -> int:
    """A random ``BertModel`` and its tokenizer in ``path``; returns the hidden size."""
    import torch
    from transformers import BertModel

    tok = train_bert_tokenizer(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(_bert_config(len(tok), architectures=["BertModel"]))
    _save(model, path)
    return model.config.hidden_size


def build_xlmr_encoder(path: Path, seed: int) -> int:
    """A random XLM-R encoder (512 positions, like multilingual-e5) with the demo tokenizer."""
    import torch
    from transformers import XLMRobertaModel

    from predictor.demo import ModelShape, train_tokenizer, xlmr_config

    shape = ModelShape(hidden=32, heads=2, intermediate=64, max_position=514, seed=seed)
    tok = train_tokenizer(path, shape.vocab_size, 0)
    tok.model_max_length = 512
    tok.save_pretrained(str(path))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XLMRobertaModel(xlmr_config(shape, len(tok), architectures=["XLMRobertaModel"]))
    _save(model, path)
    return shape.hidden


def write_st_files(path: Path, hidden: int, *, pooling: tuple[str, ...] = ("mean",),
                   normalize: bool = True, dense_out: int | None = None,
                   prompts: dict[str, str] | None = None, default_prompt_name: str | None = None,
                   max_seq_length: int | None = None, seed: int = 0) -> None:
    """``modules.json`` and module folders as sentence-transformers saves them."""
    import torch

    modules = [{"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST_POOLING}]
    legacy = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
              "mean": "pooling_mode_mean_tokens"}
    (path / "1_Pooling").mkdir(exist_ok=True)
    pooling_config = {"word_embedding_dimension": hidden}
    pooling_config |= {key: mode in pooling for mode, key in legacy.items()}
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    if dense_out is not None:
        from safetensors.torch import save_file

        folder = path / "2_Dense"
        folder.mkdir(exist_ok=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 100)
            linear = torch.nn.Linear(hidden * len(pooling), dense_out)
        save_file({"linear.weight": linear.weight.detach().contiguous(),
                   "linear.bias": linear.bias.detach().contiguous()},
                  str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({
            "in_features": hidden * len(pooling), "out_features": dense_out, "bias": True,
            "activation_function": "torch.nn.modules.activation.Tanh"}))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": ST_DENSE})
    if normalize:
        modules.append({"idx": len(modules), "name": str(len(modules)),
                        "path": f"{len(modules)}_Normalize", "type": ST_NORMALIZE})
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_seq_length or 512, "do_lower_case": False}))
    st = {"__version__": {"sentence_transformers": "3.0.0"}}
    if prompts:
        st |= {"prompts": prompts, "default_prompt_name": default_prompt_name}
    (path / "config_sentence_transformers.json").write_text(json.dumps(st))


def build_bge_v15(root: Path, name: str = "bge-small-en-v1.5") -> Path:
    path = root / name
    hidden = build_bert_encoder(path, seed=11)
    write_st_files(path, hidden, pooling=("cls",), normalize=True)
    return path


def build_e5(root: Path, name: str = "multilingual-e5-small") -> Path:
    path = root / name
    hidden = build_xlmr_encoder(path, seed=12)
    write_st_files(path, hidden, pooling=("mean",), normalize=True)
    return path


def build_gte(root: Path, name: str = "gte-small") -> Path:
    path = root / name
    hidden = build_bert_encoder(path, seed=13)
    write_st_files(path, hidden, pooling=("mean",), normalize=True)
    return path


ST_PROMPTS = {"query": "Query> ", "document": "Doc> "}


def build_st(root: Path, name: str = "tiny-sentence-model") -> Path:
    path = root / name
    hidden = build_bert_encoder(path, seed=14)
    write_st_files(path, hidden, pooling=("max", "mean"), normalize=False, dense_out=16,
                   prompts=ST_PROMPTS, default_prompt_name="document", max_seq_length=24,
                   seed=14)
    return path


def build_bert_cross_encoder(root: Path, name: str = "ms-marco-tiny-L2") -> Path:
    import torch
    from transformers import BertForSequenceClassification

    path = root / name
    tok = train_bert_tokenizer(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(15)
        model = BertForSequenceClassification(_bert_config(
            len(tok), num_labels=1, architectures=["BertForSequenceClassification"]))
        # Default init leaves segment embeddings tiny; make segments matter to the score.
        model.bert.embeddings.token_type_embeddings.weight.data.normal_(0, 0.5)
        model.classifier.weight.data.normal_(0, 1.0)  # scores spread beyond ~1e-2
    _save(model, path)
    return path


_ZOO: dict[str, Path] = {}


def zoo(tmp_path_factory) -> dict[str, Path]:
    """Every family fixture, built once per test process (shared by the test modules)."""
    if not _ZOO:
        root = tmp_path_factory.mktemp("zoo")
        _ZOO.update(bge=build_bge_v15(root), e5=build_e5(root), gte=build_gte(root),
                    st=build_st(root), cross=build_bert_cross_encoder(root))
    return dict(_ZOO)
