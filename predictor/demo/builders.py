"""Random-weight model directories in the exact layout of bge-m3 and bge-reranker-v2-m3.

torch and transformers are imported lazily so importing ``predictor.demo`` stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
from dataclasses import dataclass

from predictor.demo.corpus import corpus
from predictor.demo.tokenizer import UNK_ID, train_tokenizer


@dataclass(frozen=True)
class ModelShape:
    """Sizes of a demo model. The defaults give a ~0.7M-parameter model that builds in well
    under a second once torch/transformers are imported; bge-m3 itself is
    ``ModelShape(layers=24, hidden=1024, heads=16, intermediate=4096, vocab_size=250002)``.
    """

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    intermediate: int = 128
    vocab_size: int = 2000  # target size of the trained tokenizer vocab
    max_position: int = 8194  # XLM-R: max_length 8192 + 2 (padding_idx offset), like bge-m3
    seed: int = 0


def xlmr_config(shape: ModelShape, vocab_size: int, **extra):
    """XLMRobertaConfig mirroring bge-m3's config.json except for the sizes."""
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_position,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        **extra,
    )


def _readme(path: pathlib.Path, mimics: str, shape: ModelShape) -> None:
    text = (
        f"# Random-weight demo model shaped like {mimics}\n\n"
        "Built by `predictor.demo` for offline smoke tests, the test suite and benchmarks.\n"
        "**The weights are random**: outputs are deterministic but carry no meaning. "
        "Do not use for real retrieval or ranking.\n\n"
        f"Shape: `{json.dumps(dataclasses.asdict(shape))}`\n"
    )
    (path / "README.md").write_text(text, encoding="utf-8")


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch inside a forked RNG so building a model never disturbs the caller's RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _calibrate_sparse_bias(model, tok, sparse, seed: int) -> None:
    """Set the sparse head's bias so ~80% of (non-special) tokens get a positive weight.

    Why: with default ``nn.Linear`` init only about a third of the tokens of this random
    encoder survive the ReLU, and short inputs such as "hello world" end up with *empty*
    lexical weights, which hides bugs in the sparse path. Real bge-m3 weights most content
    tokens, so we aim for a similar, still sparse, mix. The bias is rounded so tiny float
    differences between CPUs cannot change the saved bytes.
    """
    import torch

    # A few hundred tokens are plenty for a quantile and keep this cheap for bge-m3-sized
    # benchmark models (a 24-layer forward pass on CPU).
    texts = corpus(seed)[:16]
    batch = tok(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        keep = batch["attention_mask"].bool() & (batch["input_ids"] > UNK_ID)
        logits = hidden[keep] @ sparse.weight[0]
        bias = -float(torch.quantile(logits, 0.2))
        sparse.bias.fill_(round(bias, 3))


@contextlib.contextmanager
def quiet_progress():
    """Hide transformers' "Writing model shards" bar; it is noise for a one-shard toy model."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def fix_permissions(path: pathlib.Path) -> None:
    """Make the model world-readable.

    Why: transformers 5 writes model.safetensors with mode 0600 and ``mkdtemp`` dirs are 0700;
    a model baked into an image by root must still be readable by a non-root server user.
    """
    os.chmod(path, 0o755)
    for child in path.iterdir():
        os.chmod(child, 0o755 if child.is_dir() else 0o644)


def build_m3(path, shape: ModelShape = ModelShape()) -> pathlib.Path:
    """Write a random XLM-R encoder + ColBERT/sparse heads in bge-m3's on-disk layout.

    Why: ``BGEM3FlagModel`` loads ``AutoModel`` from the dir and, only if both files exist,
    ``colbert_linear.pt`` (Linear(hidden, hidden)) and ``sparse_linear.pt`` (Linear(hidden, 1)).
    Default ``nn.Linear`` init of the sparse head yields a mix of positive and zero ReLU
    outputs, i.e. non-empty yet sparse lexical weights.
    """
    import torch
    from transformers import XLMRobertaModel

    path = pathlib.Path(path)
    tok = train_tokenizer(path, shape.vocab_size, shape.seed)
    config = xlmr_config(shape, len(tok), architectures=["XLMRobertaModel"])
    with _seeded(shape.seed):
        model = XLMRobertaModel(config)
        colbert = torch.nn.Linear(shape.hidden, shape.hidden)
        sparse = torch.nn.Linear(shape.hidden, 1)
    model.eval()
    _calibrate_sparse_bias(model, tok, sparse, shape.seed)
    with quiet_progress():
        model.save_pretrained(str(path))
    torch.save(colbert.state_dict(), path / "colbert_linear.pt")
    torch.save(sparse.state_dict(), path / "sparse_linear.pt")
    _readme(path, "BAAI/bge-m3", shape)
    fix_permissions(path)
    return path


def build_reranker(path, shape: ModelShape = ModelShape()) -> pathlib.Path:
    """Write a random XLM-R cross-encoder (one logit) in bge-reranker-v2-m3's layout.

    Why: ``FlagReranker`` loads ``AutoModelForSequenceClassification`` and uses logit 0 as the
    relevance score, so ``num_labels=1`` is all it needs.
    """
    from transformers import XLMRobertaForSequenceClassification

    path = pathlib.Path(path)
    tok = train_tokenizer(path, shape.vocab_size, shape.seed)
    config = xlmr_config(
        shape, len(tok), num_labels=1, architectures=["XLMRobertaForSequenceClassification"]
    )
    with _seeded(shape.seed + 1):  # different weights from the embedder's encoder
        model = XLMRobertaForSequenceClassification(config)
    model.eval()
    with quiet_progress():
        model.save_pretrained(str(path))
    _readme(path, "BAAI/bge-reranker-v2-m3", shape)
    fix_permissions(path)
    return path
