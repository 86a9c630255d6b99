"""Uvicorn's httptools protocol with the limits it lacks, answering in the error shape.

- Request headers (request line included) over ``--max_header_bytes``: 431, connection closed,
  before the rest is read (uvicorn's httptools parser has no limit: a 64 MB header was read
  whole before auth).
- Stalled connections: a connection must send a complete request head within
  ``--read_timeout`` seconds of opening it (or of starting the request), and a body may not
  pause longer than that; else 408 (or a plain close while idle). Idle keep-alive connections
  are closed by uvicorn after KServe's ``--timeout_keep_alive``.
- Requests the parser rejects (malformed request lines, bad chunked encoding...): 400 in
  ``{"error": {...}}`` instead of uvicorn's plain text.

KServe builds ``uvicorn.Config`` itself (``http="auto"``), so ``install`` points uvicorn's
``"auto"`` protocol at this class.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from predictor.errors import error_body

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    read_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._read_timer: Any = None
        self._in_body = False

    # -- timers ----------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        receiving = self.cycle is None or not self.cycle.response_started
        if self._in_body or (self.cycle is None and self._header_bytes):
            if receiving:
                self._send_error(408, f"The request was not received within "
                                      f"{self.read_timeout:g}s.", "request_timeout")
                return
        self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a new connection must send its request head in time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_body:
            self._arm()  # the body may not pause longer than read_timeout
        super().data_received(data)

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._in_body = False
        if self._read_timer is None:  # next request on a kept-alive connection
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_body = True
        self._arm()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._refusal = (431, f"The request headers are larger than {self.max_header_bytes} "
                                  "bytes.", "headers_too_large")
            raise ValueError("request headers too large")  # stops the parser: 431 below

    # -- error responses -------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        status, message, code = self._refusal or (400, f"{msg} (malformed HTTP)", "bad_http")
        self._send_error(status, message, code)

    def _send_error(self, status: int, message: str, code: str) -> None:
        self._disarm()
        body = json.dumps(error_body(message, error_type="invalid_request_error",
                                     code=code)).encode()
        content = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n",
                         b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                         b"connection: close\r\n", b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()


def install(max_header_bytes: int, read_timeout: float) -> None:
    """Make uvicorn's ``http="auto"`` use ``GuardedHttpToolsProtocol`` with these limits."""
    from uvicorn import config

    GuardedHttpToolsProtocol.max_header_bytes = max_header_bytes
    GuardedHttpToolsProtocol.read_timeout = read_timeout
    config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHttpToolsProtocol"
