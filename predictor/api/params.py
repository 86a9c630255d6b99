"""Parsing loosely typed request parameters (V2 parameters arrive as bools, ints or strings)."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequestError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequestError(f"Parameter '{name}' must be a boolean, got {value!r}.", param=name)


def as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise BadRequestError(f"Parameter '{name}' must be an integer.", param=name)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise BadRequestError(f"Parameter '{name}' must be an integer, got {value!r}.", param=name)
