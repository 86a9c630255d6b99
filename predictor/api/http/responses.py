"""JSON responses that serialise numpy arrays directly (orjson), no ``tolist()`` round trip, and
render big bodies on a worker thread so the event loop (health probes, other requests) never
waits for them.

``NumpyJSONResponse``: our JSON routes' bodies; a small body renders at once, a big one when it
is sent, off the loop (``api/rendering.py``). KServe's V2 REST bodies are rendered by
``api/kserve/rest.py``.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from predictor.api.rendering import INLINE_RENDER_NUMBERS, count_numbers, dumps, render_in_pieces


class NumpyJSONResponse(JSONResponse):
    def __init__(self, content: Any, *args: Any, **kwargs: Any):
        self._deferred = count_numbers(content) > INLINE_RENDER_NUMBERS
        self._content = content if self._deferred else None
        super().__init__(content, *args, **kwargs)

    def render(self, content: Any) -> bytes:
        return b"" if self._deferred else dumps(content)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._deferred:
            self.body = await anyio.to_thread.run_sync(render_in_pieces, self._content)
            self._content, self._deferred = None, False
            self.headers["content-length"] = str(len(self.body))
        await super().__call__(scope, receive, send)
