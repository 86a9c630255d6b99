"""JSON rendering of bodies holding numpy arrays (orjson), shared by the HTTP routes
(``api/http/responses.py``) and KServe's V2 REST responses (``api/kserve/rest.py``).

Big bodies render in pieces so the GIL is let go every few milliseconds, on a worker thread, so
the event loop (health probes, other requests) never waits for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# Up to about this many numbers, rendering inline (well under a millisecond with orjson) is
# cheaper than the hop to a thread and back; bigger bodies render on a thread.
INLINE_RENDER_NUMBERS = 65536


def count_numbers(content: Any, limit: int = INLINE_RENDER_NUMBERS) -> int:
    """About how many numbers ``content`` holds, counted up to just past ``limit``."""
    if isinstance(content, np.ndarray):
        return content.size
    if isinstance(content, dict):
        content = content.values()
    elif not isinstance(content, list | tuple):
        return 1
    total = 0
    for value in content:
        total += count_numbers(value, limit - total)
        if total > limit:
            break
    return total


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, option=_OPTIONS)


# Numbers per orjson call when rendering in pieces: a few milliseconds each. orjson holds the
# GIL for a whole call, so one call over a big array would stall the loop even from a thread.
PIECE_NUMBERS = 16384


def _pieces(content: Any, out: list[bytes]) -> None:
    """Append the JSON of ``content`` to ``out``, big arrays and lists a few rows at a time
    (the same text as ``orjson.dumps`` with our options)."""
    if isinstance(content, np.ndarray) and content.size > PIECE_NUMBERS and content.ndim:
        rows = max(1, PIECE_NUMBERS // max(1, content.size // len(content)))
        out.append(b"[")
        for start in range(0, len(content), rows):
            if start:
                out.append(b",")
            out.append(dumps(np.ascontiguousarray(content[start:start + rows]))[1:-1])
        out.append(b"]")
    elif isinstance(content, dict):
        out.append(b"{")
        for i, (key, value) in enumerate(content.items()):
            out.append(b"," if i else b"")
            out.append(dumps(key if isinstance(key, str) else str(key)))
            out.append(b":")
            _pieces(value, out)
        out.append(b"}")
    elif isinstance(content, list | tuple) and count_numbers(content) > PIECE_NUMBERS:
        out.append(b"[")
        for i, value in enumerate(content):
            out.append(b"," if i else b"")
            _pieces(value, out)
        out.append(b"]")
    else:
        out.append(dumps(content))


def render_in_pieces(content: Any) -> bytes:
    """``content`` as JSON, rendered so that the GIL is let go every few milliseconds."""
    out: list[bytes] = []
    _pieces(content, out)
    return b"".join(out)
