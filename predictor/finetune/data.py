"""Training pairs: ``query<TAB>passage`` lines from a file, a directory, a URL, ``-`` (stdin) or
``env:NAME`` (an environment variable: how a Job created by the training routes gets its data).

As seed 002: a line that is not two non-empty fields separated by one tab is skipped and
counted (blank lines are ignored without being counted). The pairs' SHA-256 (over the pairs as
used, one ``query\\tpassage\\n`` each, so line endings and skipped lines do not change it) goes
into ``training.json`` and ties a checkpoint to its data.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: In-batch negatives need at least two pairs in a batch.
MIN_PAIRS = 2
#: Suffixes read from a data directory (others are listed in the error when none match).
DATA_SUFFIXES = (".tsv", ".txt", ".tab")


class DataError(ValueError):
    """The training data cannot be used (missing, unreadable, not UTF-8, too few pairs)."""


@dataclass
class Pairs:
    queries: list[str] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    skipped: int = 0
    sources: list[str] = field(default_factory=list)
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.queries)

    def summary(self) -> dict:
        return {"sources": self.sources, "pairs": len(self), "skipped_lines": self.skipped,
                "sha256": self.sha256}


def parse_lines(lines: Iterable[str], pairs: Pairs) -> None:
    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            pairs.skipped += 1
            continue
        pairs.queries.append(parts[0].strip())
        pairs.passages.append(parts[1].strip())


def _text_lines(raw: io.BufferedIOBase, name: str) -> Iterator[str]:
    try:
        yield from io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not found:
            raise DataError(f"data directory {path} has no {'/'.join(DATA_SUFFIXES)} files")
        return found
    raise DataError(f"data file {path} does not exist")


def read_pairs(source: str, *, stdin: io.BufferedIOBase | None = None,
               timeout: float = 60) -> Pairs:
    """All pairs of ``source`` (a file, a directory of .tsv/.txt files, an http(s) URL, ``-``
    or ``env:NAME``)."""
    pairs = Pairs()
    if source.startswith("env:"):
        name = source[4:]
        if name not in os.environ:
            raise DataError(f"environment variable {name} is not set")
        parse_lines(os.environ[name].splitlines(), pairs)
        pairs.sources.append(source)
    elif source == "-":
        raw = stdin if stdin is not None else sys.stdin.buffer
        parse_lines(_text_lines(raw, "standard input"), pairs)
        pairs.sources.append("-")
    elif source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310
                parse_lines(_text_lines(response, source), pairs)
        except OSError as exc:
            raise DataError(f"cannot download {source}: {exc}") from exc
        pairs.sources.append(source)
    else:
        for path in _files(Path(source)):
            try:
                with open(path, "rb") as raw:
                    parse_lines(_text_lines(raw, str(path)), pairs)
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror}") from exc
            pairs.sources.append(str(path))
    if len(pairs) < MIN_PAIRS:
        raise DataError(
            f"{source}: {len(pairs)} usable 'query<TAB>passage' line(s), {pairs.skipped} skipped; "
            f"at least {MIN_PAIRS} are needed (the other pairs of a batch are the negatives)")
    digest = hashlib.sha256()
    for query, passage in zip(pairs.queries, pairs.passages, strict=True):
        digest.update(f"{query}\t{passage}\n".encode())
    pairs.sha256 = digest.hexdigest()
    return pairs
