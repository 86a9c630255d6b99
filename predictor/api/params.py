"""Parsing loosely typed request parameters (V2 parameters arrive as bools, ints or strings)."""

from __future__ import annotations

from typing import Any

from predictor.errors import BadRequestError
from predictor.settings import parse_bool


def as_bool(value: Any, name: str) -> bool:
    """A V2 parameter as a bool: the words of ``settings.TRUE_WORDS`` / ``FALSE_WORDS``."""
    parsed = parse_bool(value)
    if parsed is not None:
        return parsed
    raise BadRequestError(f"Parameter '{name}' must be a boolean, got {value!r}.", param=name)


INPUT_TYPES = {"query": "query", "search_query": "query", "passage": "passage",
               "document": "passage", "search_document": "passage"}


def resolve_input_type(input_type: Any, is_query: Any) -> str | None:
    """``query``, ``passage`` or None (the model's default) from ``input_type`` and/or
    ``is_query``; the two must agree."""
    if input_type is not None and input_type not in INPUT_TYPES:
        raise BadRequestError(f"input_type must be one of {', '.join(INPUT_TYPES)}.",
                              param="input_type")
    chosen = INPUT_TYPES[input_type] if input_type else None
    if is_query is not None:
        from_flag = "query" if as_bool(is_query, "is_query") else "passage"
        if chosen is not None and chosen != from_flag:
            raise BadRequestError(f"input_type '{input_type}' contradicts is_query "
                                  f"{str(is_query).lower()}.", param="is_query")
        chosen = from_flag
    return chosen


def as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise BadRequestError(f"Parameter '{name}' must be an integer.", param=name)
    if isinstance(value, int):
        return value
    # Past 18 digits no parameter is in range; int() of thousands of digits raises (and is slow).
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) <= 24:
        return int(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise BadRequestError(f"Parameter '{name}' must be an integer in range, got {shown}.",
                          param=name)
