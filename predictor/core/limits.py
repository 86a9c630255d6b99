"""Request limits, each checked in one place before any work is done (400s naming the limit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from predictor.errors import BadRequestError


def validate_texts(texts: Any, param: str, max_texts: int) -> list[str]:
    """Every text a non-empty string; the list non-empty and not over the limit."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list | tuple) or not texts:
        raise BadRequestError(f"'{param}' must be a non-empty string or list of strings.",
                              param=param)
    if len(texts) > max_texts:
        raise BadRequestError(f"'{param}' has {len(texts)} items; at most {max_texts} are "
                              "allowed per request.", param=param)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequestError(f"{param}[{i}] must be a string.", param=f"{param}[{i}]")
        if not text.strip():
            raise BadRequestError(f"{param}[{i}] is empty.", param=f"{param}[{i}]")
    return list(texts)


def check_document_count(count: int, limit: int, param: str) -> None:
    """Documents to rank against one query: at most ``--max_rerank_documents``."""
    if count > limit:
        raise BadRequestError(f"'{param}' has {count} items; at most {limit} are allowed per "
                              "request.", param=param, code="too_many_documents")


def check_max_length(requested: int | None, limit: int, suffix: str = "") -> int:
    """The request's ``max_length`` (1..the model's limit), or the model's limit."""
    if requested is None:
        return limit
    if not 1 <= requested <= limit:
        raise BadRequestError(f"max_length must be between 1 and {limit}{suffix}.",
                              param="max_length")
    return requested


def check_token_lengths(ids: Sequence[Sequence[int]], max_length: int, param: str) -> None:
    """Without truncation, a text over ``max_length`` tokens is a 400."""
    for i, seq in enumerate(ids):
        if len(seq) > max_length:
            raise BadRequestError(
                f"{param}[{i}] has {len(seq)} tokens, more than the maximum of {max_length}; "
                "shorten it or allow truncation.", param=f"{param}[{i}]",
                code="context_length_exceeded")


def check_colbert_tokens(ids: Sequence[Sequence[int]], limit: int, param: str) -> None:
    """ColBERT output is one vector per token: bound it before the model runs."""
    total = sum(len(seq) for seq in ids)
    if total > limit:
        raise BadRequestError(
            f"'{param}' has {total} tokens; with return_colbert at most {limit} are allowed "
            "per request, one vector each (--max_colbert_tokens, env MAX_COLBERT_TOKENS). Send "
            "fewer or shorter texts, or a lower max_length.", param=param,
            code="request_too_large")


def check_request_tokens(ids: Sequence[Sequence[int]], limit: int, param: str) -> None:
    total = sum(len(seq) for seq in ids)
    if total > limit:
        raise_too_many_tokens(total, limit, param)


def raise_too_many_tokens(total: int, limit: int, param: str, at_least: bool = False
                          ) -> NoReturn:
    """400 ``request_too_large``: the count, the limit and how to raise it."""
    raise BadRequestError(f"'{param}' has {'at least ' if at_least else ''}{total} tokens in "
                          f"all; at most {limit} are allowed per request (--max_request_tokens, "
                          "env MAX_REQUEST_TOKENS).", param=param, code="request_too_large")
