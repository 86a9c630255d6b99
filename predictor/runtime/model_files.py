"""A model's files: read one from a local directory or the Hugging Face cache, and refuse an
incomplete directory before it is served.

Loaders fill gaps silently: without its tokenizer files transformers builds a tokenizer of the
special tokens alone (every text becomes <unk>), and without colbert_linear.pt or
sparse_linear.pt FlagEmbedding initialises that head at random (an INFO line). Both would serve
plausible-looking nonsense, so a model must have its files, or it fails to load
(``check_model_files``, ``check_vocabulary``; ``loaders.py`` calls them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def model_file(model: str, filename: str, *, revision: str | None = None) -> Path | None:
    """``filename`` of a local model directory or a Hugging Face repo, or None if it has none.

    Hub files come through ``hf_hub_download`` (the same cache the loaders use; honours
    ``HF_HUB_OFFLINE``). A missing file is None; other hub errors are raised.
    """
    local = Path(model)
    if local.is_dir():
        path = local / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(model, filename, revision=revision))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def read_json(model: str, filename: str) -> dict | list | None:
    path = model_file(model, filename)
    if path is None:
        return None
    return json.loads(path.read_text(encoding="utf-8"))


M3_HEADS = ("colbert_linear.pt", "sparse_linear.pt")
# Any one of these holds a vocabulary transformers can build a tokenizer from.
TOKENIZER_VOCABULARIES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model",
                          "tokenizer.model", "vocab.txt", "vocab.json")
MIN_VOCABULARY = 16  # a real vocabulary has thousands of tokens; a degenerate one, a handful


class IncompleteModelError(ValueError):
    """The model's directory lacks a file it needs (the message names it)."""


def model_directory(model: str) -> Path | None:
    """The local directory of ``model``: itself, or its Hugging Face cache snapshot once
    downloaded; None when neither can be found (nothing to check)."""
    local = Path(model)
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not a Hub id, or not in the cache: the loader has said what it could
        return None


def check_model_files(model: str, *, m3: bool) -> None:
    """Raise ``IncompleteModelError`` naming what ``model``'s directory lacks."""
    directory = model_directory(model)
    if directory is None:
        return
    missing = []
    if not (directory / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not any((directory / name).is_file() for name in TOKENIZER_VOCABULARIES):
        missing.append("tokenizer.json (or another tokenizer vocabulary: "
                       f"{', '.join(TOKENIZER_VOCABULARIES[1:])})")
    if m3:
        missing += [name for name in M3_HEADS if not (directory / name).is_file()]
    if missing:
        raise IncompleteModelError(f"{model}: the model directory {directory} is incomplete, "
                                   f"missing {'; '.join(missing)}")


def check_vocabulary(model: str, tokenizer: Any) -> None:
    """The tokenizer that loaded must have a real vocabulary (not the special tokens alone)."""
    size = len(tokenizer)
    if size < MIN_VOCABULARY:
        raise IncompleteModelError(f"{model}: its tokenizer has only {size} tokens; the "
                                   "tokenizer files are missing or broken")
