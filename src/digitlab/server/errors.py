"""Every error the server answers, in one shape and in one place.

Each answer is JSON `{"error": "<short>", "detail": "<why>"}` with its status code:
from a route, from the ASGI middlewares, from the exception handlers (500 included),
and from the HTTP protocol layer (`raw_response`: 400 for malformed HTTP, 408, 431,
503 busy). The functions below are the only place where the texts are written.
"""

from __future__ import annotations

import http
import json
from typing import Any, Optional

from ..errors import DigitlabError, ImageError


class ApiError(Exception):
    """An answer with an error status; raise it anywhere in a request, or build its response."""

    def __init__(self, status: int, error: str, detail: Any = None, headers: Optional[dict[str, str]] = None):
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers

    def body(self) -> bytes:
        return json.dumps({"error": self.error, "detail": self.detail}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")

    def response(self) -> Any:
        from starlette.responses import Response

        return Response(self.body(), status_code=self.status, media_type="application/json", headers=self.headers)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Send it as a pure ASGI answer (for the middlewares)."""
        await self.response()(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised while the body streams in, as soon as it passes `limit` bytes."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


def raw_response(exc: ApiError) -> bytes:
    """`exc` as a complete HTTP/1.1 response that closes the connection: for the protocol
    layer, which answers before (or instead of) any ASGI request."""
    body = exc.body()
    phrase = http.HTTPStatus(exc.status).phrase
    return (f"HTTP/1.1 {exc.status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------- the errors


def too_large(limit: int) -> ApiError:
    return ApiError(413, "request too large", f"the request body is limited to {limit:,} bytes")


def empty_body() -> ApiError:
    return ApiError(422, "empty body", "the request body is empty; send image bytes or a multipart 'file'")


def unsupported_media(media: str, batch: bool = False) -> ApiError:
    if batch:
        return ApiError(415, "unsupported media type",
                        f"Content-Type {media!r}: send multipart/form-data with one or more 'files' fields")
    return ApiError(415, "unsupported media type",
                    f"Content-Type {media!r}: send multipart/form-data with a 'file' field, "
                    "or the raw image with Content-Type image/* or application/octet-stream")


def missing_file(batch: bool = False) -> ApiError:
    if batch:
        return ApiError(422, "missing files", "send the images in multipart fields named 'files'")
    return ApiError(422, "missing file", "send the image in the multipart field 'file'")


def invalid_multipart(detail: str) -> ApiError:
    return ApiError(422, "invalid multipart body", detail)


def invalid_request(problems: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, "invalid request", problems)


def bad_image(exc: ImageError) -> ApiError:
    return ApiError(415, "not a usable image", str(exc))


def cannot_predict(exc: DigitlabError) -> ApiError:
    return ApiError(422, "cannot predict", str(exc))


def corrections_off() -> ApiError:
    return ApiError(403, "corrections are off",
                    "this server keeps no corrections; start it with --corrections DIR to save them")


def bad_correction(detail: str) -> ApiError:
    return ApiError(422, "cannot save the correction", detail)


def corrections_full(detail: str) -> ApiError:
    return ApiError(409, "corrections folder full", detail)


def storage_failed() -> ApiError:
    return ApiError(507, "cannot store", "the server could not write the correction (its disk); the log says why")


def no_neighbours() -> ApiError:
    # No path in the text: the client learns what to ask for, not the server's folders.
    return ApiError(409, "no neighbour index", "this model has no current neighbour index; on the server, run "
                    "`digitlab neighbours MODEL` (once per model) and restart it")


def not_loaded() -> ApiError:
    return ApiError(503, "model not loaded", "the server is starting or stopping")


def no_static_file(name: str) -> ApiError:
    return ApiError(404, "not found", f"no static file {name!r}")


def host_not_allowed(host: str, allowed: tuple[str, ...]) -> ApiError:
    return ApiError(400, "host not allowed",
                    f"this server answers to {', '.join(allowed)} (any port), not {host!r}; "
                    "start it with --allowed-host NAME to add a name")


def busy(limit: int) -> ApiError:
    return ApiError(503, "server busy", f"{limit} connections are open, the most this server keeps; try again shortly")


def request_timeout(part: str, seconds: float) -> ApiError:
    return ApiError(408, "request timeout", f"the request {part} did not arrive within {seconds:g} s")


def headers_too_large(limit: int) -> ApiError:
    return ApiError(431, "request headers too large", f"the request line and headers are limited to {limit:,} bytes")


def bad_http(detail: str) -> ApiError:
    return ApiError(400, "bad request", detail)


def internal() -> ApiError:
    return ApiError(500, "internal server error", "an unexpected error; the server log has the details")


def http_error(status: int, detail: Any, headers: Optional[dict[str, str]] = None) -> ApiError:
    """Starlette's own HTTP errors (404 unknown path, 405 wrong method, ...)."""
    try:
        phrase = http.HTTPStatus(status).phrase.lower()
    except ValueError:
        phrase = "error"
    return ApiError(status, phrase, detail, headers=headers)


def for_exception(exc: BaseException) -> ApiError:
    """The answer for an exception raised while reading or predicting an image."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageError):
        return bad_image(exc)
    if isinstance(exc, DigitlabError):
        return cannot_predict(exc)
    return internal()


# --------------------------------------------------------------------------- handlers


def add_handlers(app: Any) -> None:
    """JSON answers for every exception a request can raise, 500 included."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import Response

    @app.exception_handler(ApiError)
    async def _api_error(request: Any, exc: ApiError) -> Any:
        return exc.response()

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Any, exc: BodyTooLarge) -> Any:
        return too_large(exc.limit).response()

    @app.exception_handler(HTTPException)
    async def _http_error(request: Any, exc: HTTPException) -> Any:
        return http_error(exc.status_code, exc.detail, getattr(exc, "headers", None)).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Any, exc: RequestValidationError) -> Any:
        problems = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        return invalid_request(problems).response()

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Any, exc: ClientDisconnect) -> Any:
        return Response(status_code=400)  # nobody is left to read it; handled, so no traceback in the log

    @app.exception_handler(Exception)
    async def _unexpected(request: Any, exc: Exception) -> Any:
        # Starlette re-raises after sending this, so the traceback still reaches the server log.
        return internal().response()
