"""Small random-weight stand-ins for BAAI/bge-m3 and BAAI/bge-reranker-v2-m3.

Why: the real checkpoints are ~2.2 GB each and need the Hugging Face hub. The offline smoke
test (``python -m predictor --demo``), the test suite and the benchmarks need models that the
*real* loaders (``FlagEmbedding.BGEM3FlagModel``, ``FlagEmbedding.FlagReranker``,
``transformers.AutoTokenizer``) accept unchanged, so every code path of the predictor runs as it
would in production. The directories built here have exactly the files and layout of the
published checkpoints (XLM-RoBERTa config + safetensors, XLM-R style tokenizer, and for M3 the
``colbert_linear.pt`` / ``sparse_linear.pt`` heads); only the sizes and the weights differ.
Their outputs are deterministic but meaningless.

Heavy libraries (torch, transformers, tokenizers) are imported lazily so that importing this
module stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import random
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "DEMO_VERSION",
    "M3_DIRNAME",
    "RERANKER_DIRNAME",
    "ModelShape",
    "build_m3",
    "build_reranker",
    "default_cache_dir",
    "ensure_demo_models",
    "train_tokenizer",
]

#: Bump whenever the build recipe changes, so cached demo models are rebuilt.
DEMO_VERSION = "1"
M3_DIRNAME = "bge-m3"
RERANKER_DIRNAME = "bge-reranker-v2-m3"
MODEL_MAX_LENGTH = 8192
_MARKER = "DEMO_VERSION.json"

# XLM-R ids: <s>=0 <pad>=1 </s>=2 <unk>=3, and <mask> is the very last id.
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_MASK = "<mask>"
_UNK_ID = 3


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


# --------------------------------------------------------------------------- corpus

_FACTS = [
    "BGE M3 supports dense, sparse and multi-vector retrieval.",
    "A cross-encoder reranker scores a query and a passage together.",
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Photosynthesis converts light energy into chemical energy.",
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models learn patterns from data.",
    "Kubernetes schedules containers onto nodes in a cluster.",
    "KServe serves machine learning models over HTTP and gRPC.",
    "Please send the invoice to billing@example.com before Friday.",
    "Visit https://example.org/docs/v2/index.html for more information.",
    "Temperatures will reach 35°C (95°F) this afternoon.",
    "The meeting starts at 09:30 and ends at 11:15.",
    "Version 3.14.1 fixed a memory leak in the tokenizer.",
    "def encode(texts: list[str]) -> np.ndarray: return model(texts)",
    "SELECT id, title FROM documents WHERE score > 0.5 ORDER BY score DESC;",
    "{\"input\": [\"hello world\"], \"model\": \"bge-m3\"}",
    "Shakespeare wrote Hamlet, Macbeth and King Lear.",
    "The speed of light is about 299,792 kilometres per second.",
    "Mount Everest is 8,849 metres high.",
    "hello world",
    "Hello, World! How are you today?",
    "I can't believe it's already December... isn't it?",
    "Cost: $1,299.99 (incl. 19% VAT) — shipping is free!",
    "Open-source software powers most of the internet.",
    "The patient was given 5 mg of the drug twice daily.",
    "Transformers use self-attention to mix information between tokens.",
    "Rust, Go, Python and C++ are popular programming languages.",
    "The sun rises in the east and sets in the west.",
    "A journey of a thousand miles begins with a single step.",
]
_MULTILINGUAL = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Wie spät ist es? Ich möchte einen Kaffee trinken.",
    "Le modèle de recherche renvoie les documents les plus pertinents.",
    "Où se trouve la gare la plus proche, s'il vous plaît ?",
    "El perro corre rápidamente por el parque en la mañana.",
    "¿Cuál es la capital de España? Madrid, por supuesto.",
    "Il gatto dorme sul divano tutto il pomeriggio.",
    "O aprendizado de máquina está mudando o mundo.",
    "De trein vertrekt om acht uur vanaf het centraal station.",
    "Zażółć gęślą jaźń, powiedział nauczyciel.",
    "Bugün hava çok güzel, parka gidelim mi?",
    "Tôi thích học tiếng Việt và đọc sách mỗi ngày.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Москва — столица России, а Киев — столица Украины.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "敏捷的棕色狐狸跳过了懒狗。",
    "北京是中国的首都，上海是最大的城市。",
    "机器学习模型从数据中学习规律。",
    "素早い茶色の狐が怠惰な犬を飛び越える。",
    "東京は日本の首都です。今日はいい天気ですね。",
    "ひらがなとカタカナと漢字を使います。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "서울은 대한민국의 수도입니다.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "Ο καιρός σήμερα είναι ηλιόλουστος.",
    "Emoji test: 😀 🚀 ❤️ 👍 🎉 and symbols © ® ™ € £ ¥ ∑ √ ∞ ≤ ≥ → ←",
    "Accents: àáâãäå çèéêë ìíîï ñòóôõö ùúûü ýÿ ÀÉÎÕÜ ß æ ø å",
]


_NOUNS = """
    account address agreement airport animal answer apple application argument army article
    artist baby bank battery beach bicycle bird birthday board boat body book border bottle
    bridge brother budget building business camera campaign candidate capital car card career
    castle cat ceiling century chair champion chapter chicken child church citizen city class
    climate clock cloud coast coffee collection college company computer concert condition
    contract country course court customer dance daughter decision degree department desert
    design dinner director disease doctor document dog door dream driver economy editor
    election energy engine engineer evening event evidence experience experiment factory family
    farmer feature festival field film finger fire flight floor flower forest friend garden
    government grandmother group guitar hospital hotel house husband idea industry island
    journey judge kitchen knowledge language lawyer leader letter library light machine manager
    market meeting memory message method minute model moment money month morning mountain movie
    museum music nation network newspaper night novel number ocean office officer opinion
    orchestra painting paper parent party passage patient pattern picture planet player poem
    police policy population president price problem product professor program project
    question queue railway reason recipe region report research restaurant result river road
    school science scientist season secret server shop signal singer sister software soldier
    song station story street student summer system table teacher team technology telephone
    theory ticket town train tree university valley vector village voice volume weather window
    winter woman word worker writer year
"""
_ADJECTIVES = """
    ancient angry beautiful bright broken busy careful cheap clean clever cold comfortable
    complex curious dangerous dark deep dense different difficult dirty distant early easy
    electric empty enormous expensive famous fast foreign fresh friendly funny gentle global
    golden green happy heavy hidden honest huge important interesting large late lazy little
    local long loud lucky modern multilingual narrow natural nervous new noisy normal obvious
    old orange patient perfect polite popular powerful private public purple quick quiet rapid
    rare real red rich sad safe scientific secret serious sharp short silent simple slow small
    smart soft sparse special strange strong sudden sweet tall terrible thin tiny tired
    traditional typical ugly unusual useful vast warm wet white wild wise wonderful young
"""
_VERBS = """
    accept admire allow answer arrive ask avoid bake believe borrow build buy calculate call
    carry catch celebrate change choose clean climb close collect compare compress connect
    consider cook count cover create cross deliver describe design destroy discover discuss
    download draw drink drive eat encode enjoy evaluate examine explain explore fetch find
    finish fix follow forget gather generate help hold ignore imagine improve include index
    install invite join jump keep kick know learn leave lift listen load measure mention move
    notice observe open order organize paint pay perform plan play predict prepare present
    print protect publish pull push rank read receive recommend remember repair replace report
    request rescue retrieve return save search sell send share show sing sleep solve sort
    speak store study suggest summarize support teach test think tokenize train translate
    travel trust understand update upload use visit wait walk want wash watch win wonder work
    write
"""
_ADVERBS = """
    quickly slowly carefully quietly loudly happily sadly easily rarely often always never
    sometimes usually suddenly finally recently gently badly completely nearly almost eagerly
    honestly simply openly silently smoothly
"""
_PLACES = """
    Amsterdam Athens Bangkok Barcelona Beijing Berlin Boston Brussels Cairo Chicago Delhi
    Dublin Istanbul Jakarta Lagos Lisbon London Madrid Melbourne Mexico Milan Montreal Moscow
    Mumbai Nairobi Oslo Paris Prague Rome Seoul Singapore Stockholm Sydney Tokyo Toronto
    Vienna Warsaw Zurich
"""
_NAMES = """
    Alice Bob Carlos Dmitri Elena Fatima George Hiro Ines James Kofi Lena Maria Nadia Omar
    Priya Quentin Rosa Sven Tariq Ursula Viktor Wei Xavier Yuki Zara
"""
_FOREIGN = """
    Haus Stadt Wasser Zeit Arbeit Freund Schule Sprache Straße Bahnhof Frühstück Mädchen
    Entwicklung Geschwindigkeit Wissenschaft maison ville eau temps travail ami école langue
    rue gare petit-déjeuner fille développement vitesse science casa ciudad agua tiempo
    trabajo amigo escuela idioma calle estación desayuno niña desarrollo velocidad ciencia
    città acqua tempo lavoro amico scuola lingua strada stazione água trabalho escola cidade
    дом город вода время работа друг школа язык улица вокзал наука скорость
    家 城市 水 时间 工作 朋友 学校 语言 街道 车站 科学 速度 東京 時間 仕事 友達 学校 言葉
    집 도시 물 시간 일 친구 학교 언어 거리 역 과학 속도 घर शहर पानी समय काम दोस्त
    σπίτι πόλη νερό χρόνος δουλειά φίλος σχολείο بيت مدينة ماء وقت عمل صديق مدرسة
"""


def _corpus(seed: int) -> list[str]:
    """Deterministic mixed corpus: templated English plus multilingual/unicode lines.

    Why: a locally trained tokenizer needs text; templates over a few hundred words give
    enough distinct subwords for the default 2000-piece vocab, and the non-English words and
    lines put their scripts into the alphabet so that multilingual input tokenises into real
    pieces instead of ``<unk>``.
    """
    rng = random.Random(seed)
    nouns, adjs, verbs = _NOUNS.split(), _ADJECTIVES.split(), _VERBS.split()
    advs, places, names, foreign = (
        _ADVERBS.split(), _PLACES.split(), _NAMES.split(), _FOREIGN.split()
    )

    def inflect(verb: str) -> str:
        form = rng.choice(("", "s", "ed", "ing", "s"))
        if form in ("ed", "ing") and verb.endswith("e"):
            verb = verb[:-1]
        return verb + form

    lines = list(_FACTS) + list(_MULTILINGUAL) * 2
    for _ in range(1500):
        n1, n2, n3 = rng.choice(nouns), rng.choice(nouns), rng.choice(nouns)
        a1, a2, v, adv = rng.choice(adjs), rng.choice(adjs), rng.choice(verbs), rng.choice(advs)
        who, where = rng.choice(names), rng.choice(places)
        form = rng.randrange(7)
        if form == 0:
            lines.append(f"The {a1} {n1} {inflect(v)} the {a2} {n2} in {where} {adv}.")
        elif form == 1:
            lines.append(f"{who} {inflect(v)} {rng.randrange(2, 500)} {n1}s near the {n2}.")
        elif form == 2:
            lines.append(f"Why does the {n1} {v} a {a1} {n2}?")
        elif form == 3:
            lines.append(f"{adv.capitalize()}, {who} and the {a1} {n3} {inflect(v)} {n2}s.")
        elif form == 4:
            n, m, d = rng.randrange(1, 100000), rng.randrange(1, 13), rng.randrange(1, 29)
            lines.append(f"Ticket #{n}: {n1} {inflect(v)} on 2024-{m:02d}-{d:02d} ({a1}).")
        elif form == 5:
            lines.append(" ".join(rng.sample(foreign, 6)) + rng.choice((".", "?", "!", "")))
        else:
            lines.append(f"{rng.choice(_FACTS)} {who} {inflect(v)} it {adv}.")
    rng.shuffle(lines)
    return lines


# --------------------------------------------------------------------------- tokenizer

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
        tok.train_from_iterator(_corpus(seed), trainer=trainer)

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

    final = Tokenizer(Unigram(vocab, unk_id=_UNK_ID, byte_fallback=False))
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


# --------------------------------------------------------------------------- models


def _config(shape: ModelShape, vocab_size: int, **extra):
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
    texts = _corpus(seed)[:16]
    batch = tok(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        keep = batch["attention_mask"].bool() & (batch["input_ids"] > _UNK_ID)
        logits = hidden[keep] @ sparse.weight[0]
        bias = -float(torch.quantile(logits, 0.2))
        sparse.bias.fill_(round(bias, 3))


@contextlib.contextmanager
def _quiet_progress():
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


def _fix_permissions(path: pathlib.Path) -> None:
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
    config = _config(shape, len(tok), architectures=["XLMRobertaModel"])
    with _seeded(shape.seed):
        model = XLMRobertaModel(config)
        colbert = torch.nn.Linear(shape.hidden, shape.hidden)
        sparse = torch.nn.Linear(shape.hidden, 1)
    model.eval()
    _calibrate_sparse_bias(model, tok, sparse, shape.seed)
    with _quiet_progress():
        model.save_pretrained(str(path))
    torch.save(colbert.state_dict(), path / "colbert_linear.pt")
    torch.save(sparse.state_dict(), path / "sparse_linear.pt")
    _readme(path, "BAAI/bge-m3", shape)
    _fix_permissions(path)
    return path


def build_reranker(path, shape: ModelShape = ModelShape()) -> pathlib.Path:
    """Write a random XLM-R cross-encoder (one logit) in bge-reranker-v2-m3's layout.

    Why: ``FlagReranker`` loads ``AutoModelForSequenceClassification`` and uses logit 0 as the
    relevance score, so ``num_labels=1`` is all it needs.
    """
    from transformers import XLMRobertaForSequenceClassification

    path = pathlib.Path(path)
    tok = train_tokenizer(path, shape.vocab_size, shape.seed)
    config = _config(
        shape, len(tok), num_labels=1, architectures=["XLMRobertaForSequenceClassification"]
    )
    with _seeded(shape.seed + 1):  # different weights from the embedder's encoder
        model = XLMRobertaForSequenceClassification(config)
    model.eval()
    with _quiet_progress():
        model.save_pretrained(str(path))
    _readme(path, "BAAI/bge-reranker-v2-m3", shape)
    _fix_permissions(path)
    return path


# --------------------------------------------------------------------------- cache

DEMO_SHAPE = ModelShape()
_ENSURE_LOCK = threading.Lock()


def default_cache_dir() -> pathlib.Path:
    """``$BGE_PREDICTOR_CACHE`` if set, else ``~/.cache/bge-predictor/demo``."""
    env = os.environ.get("BGE_PREDICTOR_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "bge-predictor" / "demo"


def _marker_payload() -> dict:
    """What the marker records; any change to it invalidates existing caches."""
    return {"version": DEMO_VERSION, "shape": dataclasses.asdict(DEMO_SHAPE)}


def _is_complete(bundle: pathlib.Path) -> bool:
    """Trust a bundle only if its marker (written last) matches this recipe and shape."""
    try:
        marker = json.loads((bundle / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        marker == _marker_payload()
        and (bundle / M3_DIRNAME / "config.json").is_file()
        and (bundle / RERANKER_DIRNAME / "config.json").is_file()
    )


def _replace_stale(bundle: pathlib.Path, fresh: pathlib.Path) -> None:
    """Swap an invalid bundle (old marker, foreign files) for ``fresh``, then delete it."""
    stale = pathlib.Path(tempfile.mkdtemp(prefix=f".{bundle.name}.stale-", dir=bundle.parent))
    try:
        with contextlib.suppress(FileNotFoundError):  # a concurrent builder moved it already
            os.rename(bundle, stale / "old")
        try:
            os.rename(fresh, bundle)
        except OSError:
            if not _is_complete(bundle):
                raise
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def ensure_demo_models(cache_dir=None) -> tuple[pathlib.Path, pathlib.Path]:
    """Build once (cached) the demo embedder and reranker dirs; returns (m3_dir, reranker_dir).

    Why the dance: both models are built in a temporary sibling dir and published with one
    atomic ``rename``, and the marker (version + shape) is written last, so an interrupted
    build never leaves a half model that a later run would trust. Concurrent builders are
    safe: the loser of the rename discards its copy and uses the winner's.
    """
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = root.absolute()  # returned paths must stay valid if the caller changes cwd
    bundle = root / f"demo-v{DEMO_VERSION}"
    m3_dir, rr_dir = bundle / M3_DIRNAME, bundle / RERANKER_DIRNAME
    if _is_complete(bundle):
        return m3_dir, rr_dir
    with _ENSURE_LOCK:
        if _is_complete(bundle):
            return m3_dir, rr_dir
        root.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{bundle.name}.tmp-", dir=root))
        try:
            build_m3(tmp / M3_DIRNAME, DEMO_SHAPE)
            build_reranker(tmp / RERANKER_DIRNAME, DEMO_SHAPE)
            (tmp / _MARKER).write_text(json.dumps(_marker_payload()), encoding="utf-8")
            _fix_permissions(tmp)
            try:
                os.rename(tmp, bundle)
            except OSError:
                if not _is_complete(bundle):  # else another process published first: use it
                    _replace_stale(bundle, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return m3_dir, rr_dir
