"""Pure ASGI middlewares: a Host check (DNS rebinding) and the request body cap, which
refuse a request before any route runs, and extra response headers for some paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from . import errors


def _header(scope: dict, name: bytes) -> Optional[bytes]:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def host_name(value: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostCheck:
    """400 for a Host header that names none of `allowed` (any port). A request without a
    Host header passes: browsers always send one, and only a browser can be rebound."""

    def __init__(self, app: Any, allowed: tuple[str, ...]):
        self.app, self.allowed = app, frozenset(allowed)
        self.names = tuple(allowed)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = _header(scope, b"host")
            if raw is not None:
                name = host_name(raw.decode("latin-1"))
                if name not in self.allowed:
                    await errors.host_not_allowed(name, self.names)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 when Content-Length says too much, or when the streamed body turns out to be
    (then `receive` raises BodyTooLarge, which the app's handler answers)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False  # the server's HTTP parser has already refused a malformed length
            if too_big:
                await errors.too_large(limit)(scope, receive, send)
                return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise errors.BodyTooLarge(limit)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except errors.BodyTooLarge:
            if not started:  # raised outside a route (e.g. while FastAPI parsed a form)
                await errors.too_large(limit)(scope, receive, send)


class PathHeaders:
    """Adds `headers` to every response for one of `paths` (e.g. a Content-Security-Policy
    for pages whose routes a library defines)."""

    def __init__(self, app: Any, paths: tuple[str, ...], headers: dict[str, str]):
        self.app, self.paths = app, frozenset(paths)
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
