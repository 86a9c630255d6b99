"""Workloads and the generated texts every contender sees.

Texts are random English-like sentences cut to a target token count with the model's own
tokenizer, so "short" and "long" mean the same number of tokens for every contender. Requests
are a deterministic sequence over the pools: request ``i`` always carries the same texts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DENSE, SPARSE, COLBERT = "dense", "sparse", "colbert"

_WORDS = """
    account address agreement airport animal answer apple application argument army article
    artist battery beach bicycle bird board boat body book border bottle bridge budget building
    business camera campaign capital car card career castle cat century chair chapter child
    church city class climate clock cloud coast coffee college company computer concert contract
    country course court customer dance decision degree department desert design dinner director
    doctor document door dream driver economy editor election energy engine engineer evening
    event evidence experience factory family farmer feature festival field film fire flight
    floor flower forest friend garden government group guitar hospital hotel house idea industry
    island journey judge kitchen knowledge language lawyer leader letter library light machine
    manager market meeting memory message method minute model moment money month morning
    mountain movie museum music nation network newspaper night novel number ocean office opinion
    painting paper parent party passage patient pattern picture planet player poem police policy
    population price problem product professor program project question railway reason recipe
    region report research restaurant result river road school science season secret server
    shop signal singer software soldier song station story street student summer system table
    teacher team technology theory ticket town train tree university valley vector village voice
    weather window winter word worker writer year ancient bright broken busy careful cheap clean
    clever cold complex curious dark deep dense different distant early easy electric empty
    famous fast foreign fresh friendly gentle global golden green happy heavy hidden huge
    important large late little local long loud modern narrow natural new normal old perfect
    popular powerful private public quick quiet rapid rare rich safe secret serious sharp short
    silent simple slow small smart soft sparse special strange strong sweet tiny useful vast
    warm wild wise young accept allow arrive build calculate carry change choose collect compare
    compress connect consider create deliver describe discover discuss download encode evaluate
    explain explore fetch finish follow generate improve include index install learn measure
    observe organize predict prepare publish rank receive recommend retrieve search share solve
    sort store study summarize support translate travel understand update upload visit
    quickly slowly carefully quietly often always never sometimes usually suddenly finally
    the a of and in to with for on at from by about into over after
"""


@dataclass(frozen=True)
class Workload:
    """What one request asks for: an embedding task with some outputs, or a rerank."""

    name: str
    task: str  # "embed" or "rerank"
    outputs: frozenset[str]
    length: str  # "short" or "long"


def _workloads() -> dict[str, Workload]:
    kinds = {
        "dense": ("embed", frozenset({DENSE})),
        "hybrid": ("embed", frozenset({DENSE, SPARSE})),
        "colbert": ("embed", frozenset({DENSE, SPARSE, COLBERT})),
        "rerank": ("rerank", frozenset()),
    }
    return {f"{kind}-{length}": Workload(f"{kind}-{length}", task, outputs, length)
            for kind, (task, outputs) in kinds.items() for length in ("short", "long")}


WORKLOADS = _workloads()


@dataclass
class TextPool:
    """Generated texts and their token counts (with the special tokens, as the model sees)."""

    texts: list[str]
    tokens: list[int]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Corpus:
    """All pools a run uses: short and long passages, and short queries for reranking."""

    passages: dict[str, TextPool]  # "short" / "long"
    queries: TextPool
    texts_per_request: dict[str, int] = field(default_factory=dict)

    def request(self, workload: Workload, i: int) -> Request:
        """Request ``i`` of a workload: consecutive passages from the pool (wrapping)."""
        pool = self.passages[workload.length]
        k = self.texts_per_request[workload.length]
        idx = [(i * k + j) % len(pool) for j in range(k)]
        texts = [pool.texts[j] for j in idx]
        tokens = [pool.tokens[j] for j in idx]
        if workload.task == "rerank":
            q = i % len(self.queries)
            # <s> q </s></s> d </s>: a pair has exactly the tokens of both texts alone.
            tokens = [t + self.queries.tokens[q] for t in tokens]
            return Request(texts, sum(tokens), query=self.queries.texts[q])
        return Request(texts, sum(tokens))


@dataclass(frozen=True)
class Request:
    texts: list[str]
    tokens: int
    query: str | None = None


def make_pool(tokenizer, n: int, lo: int, hi: int, seed: int) -> TextPool:
    """``n`` texts of ``lo..hi`` tokens each (uniform), cut at word boundaries."""
    rng = random.Random(seed)
    words = _WORDS.split()
    texts, counts = [], []

    def render(ws: list[str]) -> str:
        return " ".join(ws) + "."

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    for _ in range(n):
        target = rng.randint(lo, hi)
        ws = [rng.choice(words) for _ in range(target)]  # a word is at least one token
        ws[0] = ws[0].capitalize()
        lo_w, hi_w = 1, len(ws)  # largest prefix of ws with count <= target
        while lo_w < hi_w:
            mid = (lo_w + hi_w + 1) // 2
            if count(render(ws[:mid])) <= target:
                lo_w = mid
            else:
                hi_w = mid - 1
        text = render(ws[:lo_w])
        texts.append(text)
        counts.append(count(text))
    return TextPool(texts, counts)


def make_corpus(tokenizer, *, short_texts: int, long_texts: int, long_tokens: tuple[int, int],
                texts_per_request: dict[str, int], seed: int = 0) -> Corpus:
    passages = {
        "short": make_pool(tokenizer, short_texts, 12, 20, seed),
        "long": make_pool(tokenizer, long_texts, *long_tokens, seed + 1),
    }
    queries = make_pool(tokenizer, 64, 8, 16, seed + 2)
    return Corpus(passages, queries, texts_per_request)
