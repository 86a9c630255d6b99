"""An XLM-R-like Unigram tokenizer trained on the demo corpus (bge-m3's special ids, template).

``tokenizers`` and ``transformers`` are imported lazily so importing ``predictor.demo`` stays
cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import threading
from typing import TYPE_CHECKING

from predictor.demo.corpus import corpus

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

MODEL_MAX_LENGTH = 8192

# XLM-R ids: <s>=0 <pad>=1 </s>=2 <unk>=3, and <mask> is the very last id.
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_MASK = "<mask>"
UNK_ID = 3

_TOKENIZER_CACHE: dict[tuple[int, int], str] = {}
_TOKENIZER_LOCK = threading.Lock()


def _pre_tokenizer_and_decoder():
    """The exact pre-tokenizer/decoder transformers' XLMRobertaTokenizer rebuilds on load.

    Why: transformers 5 does not load tokenizer.json verbatim for XLM-R; it re-creates the
    pipeline from the Unigram vocab (WhitespaceSplit + Metaspace, no normaliser unless a
    SentencePiece charsmap is present). Training with the same pipeline keeps the tokenizer
    returned by :func:`train_tokenizer` and the one ``AutoTokenizer`` loads identical.
    """
    from tokenizers import decoders, pre_tokenizers

    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁")]
    )
    return pre, decoders.Metaspace(replacement="▁")


def _train_backend(vocab_size: int, seed: int) -> str:
    """Train the Unigram backend and return its JSON; memoised per (vocab_size, seed)."""
    key = (vocab_size, seed)
    with _TOKENIZER_LOCK:
        if key in _TOKENIZER_CACHE:
            return _TOKENIZER_CACHE[key]

    from tokenizers import AddedToken, Tokenizer, processors
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    if vocab_size < len(_SPECIALS) + 1 + 64:
        raise ValueError(f"vocab_size={vocab_size} is too small (need at least 69)")
    pre, dec = _pre_tokenizer_and_decoder()
    tok = Tokenizer(Unigram())
    tok.pre_tokenizer = pre
    trainer = UnigramTrainer(
        vocab_size=vocab_size - 1,  # <mask> is appended afterwards as the last id
        special_tokens=list(_SPECIALS),
        unk_token="<unk>",
        show_progress=False,
        max_piece_length=16,
    )
    # Train single-threaded: less float noise, and tokenizers' "parallelism already used"
    # flag stays unset, so later fork()s (servers, DataLoader workers) do not warn or degrade.
    with _env("TOKENIZERS_PARALLELISM", "false"):
        tok.train_from_iterator(corpus(seed), trainer=trainer)

    trained = json.loads(tok.to_str())["model"]["vocab"]
    if [p for p, _ in trained[: len(_SPECIALS)]] != list(_SPECIALS):
        raise RuntimeError(f"unexpected special token order: {trained[:5]}")
    vocab = [(p, 0.0) for p in _SPECIALS] + _canonical_pieces(trained[len(_SPECIALS) :])
    # A tiny corpus cannot yield a huge vocab (e.g. bge-m3's 250002); pad with pieces that
    # never match normal text so the embedding matrix has the requested size.
    floor = min(score for _, score in vocab[len(_SPECIALS):]) - 10.0
    known = {p for p, _ in vocab}
    i = 0
    while len(vocab) < vocab_size - 1:
        piece = f"<unused{i}>"
        if piece not in known:
            vocab.append((piece, floor))
        i += 1
    vocab.append((_MASK, 0.0))

    final = Tokenizer(Unigram(vocab, unk_id=UNK_ID, byte_fallback=False))
    final.pre_tokenizer, final.decoder = pre, dec
    final.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _SPECIALS]
        + [AddedToken(_MASK, special=True, lstrip=True, normalized=False)]
    )
    final.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    blob = final.to_str()
    with _TOKENIZER_LOCK:
        _TOKENIZER_CACHE[key] = blob
    return blob


def _canonical_pieces(pieces: list) -> list[tuple[str, float]]:
    """Make the trainer's output independent of process-level randomness.

    Why: the Rust trainer iterates hash sets, so across processes (a) EM scores differ by
    ~1e-12 and (b) the characters it re-adds at the end get the scores ``min + k * 1e-4`` in
    random order, which also reorders ids. The piece *set* is stable, so we round the scores,
    redistribute the scores of the bottom band (where the re-added characters live) in sorted
    piece order, and sort by (score desc, piece) to get byte-identical files on every run.
    """
    scored = [(p, round(float(s), 6)) for p, s in pieces]
    low = min(s for _, s in scored)
    singles = sum(1 for p, _ in scored if len(p) == 1)
    cutoff = low + max(0.05, 1e-4 * singles + 0.01)
    band = sorted(p for p, s in scored if s <= cutoff)
    band_scores = sorted((s for _, s in scored if s <= cutoff), reverse=True)
    fixed = dict(zip(band, band_scores, strict=True))
    scored = [(p, fixed.get(p, s)) for p, s in scored]
    return sorted(scored, key=lambda ps: (-ps[1], ps[0]))


@contextlib.contextmanager
def _env(name: str, value: str):
    """Temporarily set an environment variable (read by the Rust side at call time)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _check_tokenizer(tok) -> None:
    """Fail loudly if the tokenizer drifts from XLM-R conventions the predictor relies on."""
    ids = (tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id)
    if ids != (0, 2, 1, 3):
        raise RuntimeError(f"special ids (cls, eos, pad, unk) are {ids}, expected (0, 2, 1, 3)")
    if tok.mask_token_id != len(tok) - 1:
        raise RuntimeError(f"<mask> id {tok.mask_token_id} is not the last id ({len(tok) - 1})")
    enc = tok("query", "a passage " * 20, truncation="only_second", max_length=16)
    ids = enc["input_ids"]
    if len(ids) != 16 or ids[0] != 0 or ids[-1] != 2 or ids.count(2) != 3:
        raise RuntimeError(f"pair template / truncation broken: {ids}")


def train_tokenizer(path, vocab_size: int = 2000, seed: int = 0) -> PreTrainedTokenizerFast:
    """Train an XLM-R-like Unigram tokenizer on a built-in corpus and save it into ``path``.

    Why: bge-m3's real tokenizer (250k SentencePiece pieces) cannot be downloaded here. This
    one has the same special tokens and ids (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3,
    ``<mask>`` last), the same ``<s> A </s></s> B </s>`` pair template and
    ``model_max_length=8192``, so truncation and pair encoding behave like the real thing.
    Training is memoised per (vocab_size, seed) and deterministic.
    """
    from tokenizers import Tokenizer
    from transformers import XLMRobertaTokenizerFast

    backend = Tokenizer.from_str(_train_backend(vocab_size, seed))
    tok = XLMRobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=_MASK,
        model_max_length=MODEL_MAX_LENGTH,
    )
    _check_tokenizer(tok)
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(path))
    return tok
