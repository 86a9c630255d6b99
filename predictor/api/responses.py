"""JSON responses that serialise numpy arrays directly (orjson), no ``tolist()`` round trip."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class NumpyJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
