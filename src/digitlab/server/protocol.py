"""Connection limits at the HTTP protocol layer, where uvicorn (0.54) has none.

uvicorn closes idle kept-alive connections (`timeout_keep_alive`), but nothing
bounds a connection that never finishes its request: one that sends nothing, or
trickles its headers or body a byte at a time (slow-loris), is kept forever, and
`limit_concurrency` only answers 503 once a request's headers are complete, so
such connections pile up until the process runs out of file descriptors. ASGI
middleware cannot help: it runs only after the headers have been parsed.

`GuardedProtocol` is uvicorn's httptools protocol with, per connection:
- a cap on open connections: past `max_connections` a new one gets 503 and is
  closed at once (its file descriptor is freed immediately);
- a deadline for the request line and headers (`timeout_headers`, from the
  connection's first byte on a kept-alive connection, from its opening otherwise)
  and then for the body (`timeout_body`); on expiry 408 and close;
- a cap on the bytes of the request line and headers (431).
Every refusal is the server's usual JSON error (`errors.raw_response`), and so is
uvicorn's own 400 for malformed HTTP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import errors
from .settings import DEFAULT_LIMIT_CONCURRENCY, DEFAULT_TIMEOUT_BODY, DEFAULT_TIMEOUT_HEADERS, MAX_HEADER_BYTES


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = DEFAULT_LIMIT_CONCURRENCY
    timeout_headers: float = DEFAULT_TIMEOUT_HEADERS
    timeout_body: float = DEFAULT_TIMEOUT_BODY
    max_header_bytes: int = MAX_HEADER_BYTES

    def protocol(self) -> Any:
        """The protocol factory to pass to uvicorn as `http=` (picklable, for `--workers N`)."""
        import functools

        return functools.partial(GuardedProtocol, limits=self)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, request deadlines and a header cap."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._deadline: Optional[asyncio.TimerHandle] = None
        self._phase = "idle"  # "idle" before the first byte, "headers" | "body" while a request arrives, "done" after
        self._header_bytes = 0
        self._refusal: Optional[errors.ApiError] = None  # why the parser was stopped

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(errors.busy(self.limits.max_connections))
            return
        self._arm(self.limits.timeout_headers)  # until its first request has arrived

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error: ours is JSON, and says why when we stopped the parser."""
        self._disarm()
        refusal, self._refusal = self._refusal, None
        self._refuse(refusal or errors.bad_http(msg))

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._header_bytes = "headers", 0
        if self._deadline is None:  # a kept-alive connection: the clock starts with the first byte
            self._arm(self.limits.timeout_headers)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = "body"
        self._arm(self.limits.timeout_body)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = "done"
        self._disarm()
        super().on_message_complete()

    # ------------------------------------------------------------------ helpers

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            self._refusal = errors.headers_too_large(self.limits.max_header_bytes)
            raise ValueError("request headers too large")  # stops the parser: uvicorn calls send_400_response

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == "idle":
            self.transport.close()  # opened and never used (e.g. a browser's spare connection): just close
        elif self._phase == "headers":
            self._refuse(errors.request_timeout("headers", self.limits.timeout_headers))
        elif self._phase == "body" and cycle is not None:
            # The route may be waiting for the body: it sees the client gone and stops.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
            else:
                self._refuse(errors.request_timeout("body", self.limits.timeout_body))

    def _refuse(self, exc: errors.ApiError) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(errors.raw_response(exc))
            self.transport.close()
