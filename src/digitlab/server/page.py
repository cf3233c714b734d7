"""The drawing page (`/` and `/static/*`): three files from the package, nothing from elsewhere."""

from __future__ import annotations

import hashlib

from fastapi import FastAPI, Request
from fastapi.responses import Response

from . import errors

STATIC_FILES = {  # name -> media type; the only files served under /static
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The page works offline: everything comes from this server (images from blobs/data URLs).
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
# /docs and /redoc: Swagger UI and ReDoc start from an inline script and style themselves inline;
# the browser refuses anything from elsewhere (ReDoc's footer would fetch a logo from its CDN).
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    from importlib.resources import files

    folder = files("digitlab") / "static"
    out = {}
    for name, media in STATIC_FILES.items():
        data = (folder / name).read_bytes()
        out[name] = (data, media, '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
    return out


def add_page_routes(app: FastAPI) -> None:
    static = _load_static()

    def serve(name: str, request: Request) -> Response:
        data, media, etag = static[name]
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=media, headers=headers)

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        return serve("index.html", request)

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str, request: Request) -> Response:
        if name not in static:
            raise errors.no_static_file(name)
        return serve(name, request)
