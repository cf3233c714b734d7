"""The web page and REST API (`digitlab serve`): FastAPI on uvicorn.

`create_app()` builds the application; nothing happens at import time. The
Predictor (the very same one the CLI uses: same preprocessing, same runner) is
loaded once in the app's lifespan and kept on `app.state.predictor`. Every
request decodes and predicts in a worker thread, so a slow image never blocks
the event loop; only PNGs of at most 64x64 pixels (by their header: bounded,
~0.2 ms of work) are done inline, where the thread hop would cost more.
Raw-body predictions take a pure-ASGI fast path (`FastPredictMiddleware`).

Limits: a request body cap (413; checked on Content-Length and again while the
body streams in), a pixel cap and the image checks of `preprocess.load_image`
(415 for anything that is not a complete image). Errors are JSON:
`{"error": "<short>", "detail": "<why>"}`. An empty canvas is not an error but
a "no digit" answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import asynccontextmanager
from typing import Any, Callable, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .errors import DigitlabError, ImageError

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 25_000_000  # 5000x5000: plenty for a photo of a digit, no bombs
MAX_BATCH = 64
STATIC_FILES = {  # name -> media type; the only files served under /static
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The page works offline: everything comes from this server (images from blobs/data URLs).
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

# Settings for `digitlab serve --workers N`: each worker process builds its app with app_from_env().
ENV_MODEL = "DIGITLAB_SERVE_MODEL"
ENV_RUNTIME = "DIGITLAB_SERVE_RUNTIME"
ENV_MAX_BYTES = "DIGITLAB_SERVE_MAX_BYTES"
ENV_MAX_PIXELS = "DIGITLAB_SERVE_MAX_PIXELS"


# --------------------------------------------------------------------------- response models


class ErrorResponse(BaseModel):
    error: str = Field(description="What went wrong, in a few words.")
    detail: Any = Field(None, description="Why, in more detail (a string, or a list of validation problems).")


class DigitResult(BaseModel):
    label: Optional[int] = Field(None, description="The predicted digit; null when there is no digit.")
    confidence: float = Field(description="Probability of the predicted digit (0 when there is no digit).")
    probabilities: list[float] = Field(description="Ten probabilities for digits 0-9 (empty when there is no digit).")
    top3: list[tuple[int, float]] = Field(default_factory=list,
                                          description="The three most likely digits as [digit, probability].")
    uncertain: bool = Field(description="True when the confidence is below the model's threshold.")
    no_digit: bool = Field(description="True when the image holds no ink at all (an empty canvas).")
    box: Optional[list[int]] = Field(None, description="Where the digit is in the input image: [x0, y0, x1, y1].")
    model_input: Optional[list[list[int]]] = Field(
        None, description="The 28x28 image the model saw (0-255, white ink on black); only with include_input=true.")
    source: Optional[str] = None


class NumberResult(BaseModel):
    text: str = Field(description="The digits read left to right ('' when there are none).")
    digits: list[DigitResult]
    confidence: float = Field(description="The lowest per-digit confidence.")
    uncertain: bool
    no_digit: bool
    source: Optional[str] = None


class BatchItem(BaseModel):
    index: int
    filename: Optional[str] = None
    ok: bool
    result: Optional[DigitResult] = None
    error: Optional[str] = None
    detail: Optional[str] = None


class BatchResult(BaseModel):
    count: int
    results: list[BatchItem]


class Health(BaseModel):
    status: str
    model_id: Optional[str] = None
    preset: Optional[str] = None
    test_accuracy: Optional[float] = None
    runtime: Optional[str] = None
    version: str
    uptime_s: float


class ModelInfo(BaseModel):
    model: dict[str, Any] = Field(description="The Predictor's info: model path and id, preset, accuracy, runtime, threshold.")
    preprocessing: dict[str, Any] = Field(description="What the server accepts and how it turns it into model input.")
    limits: dict[str, int]
    version: str


# --------------------------------------------------------------------------- errors and limits


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None):
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


class BodyTooLarge(Exception):
    """Raised from `receive` when more than max_bytes have streamed in."""


def _error(status: int, error: str, detail: Any = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class BodyLimitMiddleware:
    """Pure ASGI: 413 when Content-Length says too much, or when the stream turns out to be."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        too_large = _error(413, "request too large", f"the request body is limited to {limit:,} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await too_large(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)


_FAST_PATHS = {"/api/predict": "predict", "/api/predict/number": "predict_number"}


class FastPredictMiddleware:
    """Pure ASGI fast path for the common request of the page and of API clients:
    `POST /api/predict` or `/api/predict/number` with the raw image as the body and no
    query string. It gives exactly the routes' answers (same JSON, same errors) without
    FastAPI's routing, dependency solving and exception-middleware layers, which cost
    more CPU than decoding and predicting a small image (measured: ~0.7 ms of ~1.5 ms
    per request). Anything else (multipart, include_input, other paths) goes to the app.
    """

    def __init__(self, app: Any, state: Any):
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        method = _FAST_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if method is None or scope.get("method") != "POST" or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        media = ""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                media = value.decode("latin-1").split(";")[0].strip().lower()
                break
        if not (media.startswith("image/") or media in ("application/octet-stream", "")):
            await self.app(scope, receive, send)  # multipart, or a 415 from the route
            return
        try:
            data = await _receive_body(receive)
            if data is None:  # the client went away
                return
            body = await self._run(method, data)
        except ApiError as exc:
            await _error(exc.status, exc.error, exc.detail)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _run(self, method: str, data: bytes) -> bytes:
        if not data:
            raise ApiError(422, "empty body", "the request body is empty; send image bytes or a multipart 'file'")
        predictor = self.state.predictor
        if predictor is None:
            raise ApiError(503, "model not loaded", "the server is starting or stopping")
        return await _predict_json(getattr(predictor, method), data, "body", self.state.max_pixels, False)


async def _receive_body(receive: Callable) -> bytes | None:
    """The whole request body; None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


INLINE_PIXELS = 64 * 64  # PNGs this small are predicted on the event loop: ~0.2 ms, less than a thread hop costs


def _tiny_png(data: bytes) -> bool:
    """A PNG whose header says at most INLINE_PIXELS pixels (so its work is bounded and tiny)."""
    if len(data) > 65536 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return False
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return w * h <= INLINE_PIXELS


async def _predict_json(predict: Callable, data: bytes, name: str, max_pixels: int, include_input: bool) -> bytes:
    """Decode and predict in a worker thread (a slow image never blocks the event loop), or inline
    for a tiny PNG (an MNIST-sized digit); the answer as JSON bytes."""

    def work() -> bytes:
        result = predict(_decode(data, name, max_pixels), source=name)
        return _json_bytes(result.to_dict(include_input=include_input))

    try:
        return work() if _tiny_png(data) else await run_in_threadpool(work)
    except ImageError as exc:
        raise _bad_image(exc) from None
    except DigitlabError as exc:
        raise ApiError(422, "cannot predict", str(exc)) from None


# --------------------------------------------------------------------------- app


def create_app(predictor_factory: Callable[[], Any] | None = None, *, model: Any = None, runtime: str = "auto",
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS) -> FastAPI:
    """Build the FastAPI app. The model is loaded in the lifespan, once, by
    `predictor_factory()` (default: `Predictor.load(model, runtime=runtime)`;
    model=None is the shipped pretrained model)."""
    if predictor_factory is None:
        def predictor_factory() -> Any:
            from .predict import Predictor

            return Predictor.load(model, runtime=runtime)

    factory = predictor_factory

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.predictor = await run_in_threadpool(factory)
        app.state.started = time.monotonic()
        try:
            yield
        finally:
            app.state.predictor = None

    app = FastAPI(
        title="digitlab",
        version=__version__,
        description=("Handwritten digit recognition (MNIST models trained with digitlab). "
                     "Send an image as multipart (`file`) or as the raw request body "
                     "(`Content-Type: image/*` or `application/octet-stream`). "
                     "The drawing page is at `/`."),
        lifespan=lifespan,
    )
    app.state.max_bytes = max_bytes
    app.state.max_pixels = max_pixels
    app.state.predictor = None
    app.add_middleware(FastPredictMiddleware, state=app.state)  # inside the body limit
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    _add_error_handlers(app)
    _add_api_routes(app)
    _add_page_routes(app)
    return app


def app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory` / `digitlab serve --workers N`: settings from the environment."""
    return create_app(model=os.environ.get(ENV_MODEL) or None,
                      runtime=os.environ.get(ENV_RUNTIME) or "auto",
                      max_bytes=int(os.environ.get(ENV_MAX_BYTES) or DEFAULT_MAX_BYTES),
                      max_pixels=int(os.environ.get(ENV_MAX_PIXELS) or DEFAULT_MAX_PIXELS))


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _error(413, "request too large", f"the request body is limited to {app.state.max_bytes:,} bytes")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrases = {404: "not found", 405: "method not allowed", 400: "bad request"}
        return _error(exc.status_code, phrases.get(exc.status_code, "error"), exc.detail,
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        return _error(422, "invalid request", detail)


# --------------------------------------------------------------------------- reading images from requests

_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"],
                       "properties": {"file": {"type": "string", "format": "binary",
                                               "description": "An image file (PNG, JPEG, GIF, BMP, TIFF, WebP)."}}},
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}
_BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["files"],
                       "properties": {"files": {"type": "array", "maxItems": MAX_BATCH,
                                                "items": {"type": "string", "format": "binary"}}}},
        },
    },
}
_ERRORS = {
    413: {"model": ErrorResponse, "description": "The request body is larger than the limit."},
    415: {"model": ErrorResponse, "description": "Not an image, a truncated image, or too many pixels."},
    422: {"model": ErrorResponse, "description": "The request is malformed (e.g. no `file` field)."},
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_body(request: Request) -> bytes:
    try:
        return await request.body()
    except BodyTooLarge:
        raise ApiError(413, "request too large",
                       f"the request body is limited to {request.app.state.max_bytes:,} bytes") from None


async def _read_form(request: Request, max_files: int) -> Any:
    try:
        return await request.form(max_files=max_files, max_fields=max_files + 16)
    except BodyTooLarge:
        raise ApiError(413, "request too large",
                       f"the request body is limited to {request.app.state.max_bytes:,} bytes") from None
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart from the client
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise ApiError(422, "invalid multipart body", str(detail)) from None


async def _one_image(request: Request) -> tuple[bytes, str]:
    """The image bytes and a name for messages: multipart field `file`, or the raw body."""
    media = _media_type(request)
    if media == "multipart/form-data":
        form = await _read_form(request, max_files=1)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "missing file", "send the image in the multipart field 'file'")
            return await upload.read(), upload.filename or "file"
        finally:
            await form.close()
    if media.startswith("image/") or media in ("application/octet-stream", ""):
        data = await _read_body(request)
        if not data:
            raise ApiError(422, "empty body", "the request body is empty; send image bytes or a multipart 'file'")
        return data, "body"
    raise ApiError(415, "unsupported media type",
                   f"Content-Type {media!r}: send multipart/form-data with a 'file' field, "
                   "or the raw image with Content-Type image/* or application/octet-stream")


def _predictor(request: Request) -> Any:
    predictor = request.app.state.predictor
    if predictor is None:  # only when the lifespan did not run (e.g. a TestClient without `with`)
        raise ApiError(503, "model not loaded", "the server is starting or stopping")
    return predictor


def _decode(data: bytes, name: str, max_pixels: int) -> Any:
    from .preprocess import load_image

    return load_image(data, name=name, max_pixels=max_pixels, max_bytes=max(len(data), 1))


def _bad_image(exc: ImageError) -> ApiError:
    return ApiError(415, "not a usable image", str(exc))


# --------------------------------------------------------------------------- API routes


def _add_api_routes(app: FastAPI) -> None:
    include_q = Query(False, description="Also return the 28x28 image the model saw (`model_input`).")

    async def predict_one(request: Request, include_input: bool, method: str) -> Response:
        """The body of /api/predict and /api/predict/number: read, decode and predict in a worker thread,
        answer with JSON serialised once (a ready Response skips FastAPI's re-validation; the schema in
        `response_model` still documents it)."""
        data, name = await _one_image(request)
        predict = getattr(_predictor(request), method)
        body = await _predict_json(predict, data, name, request.app.state.max_pixels, include_input)
        return Response(body, media_type="application/json")

    @app.post("/api/predict", response_model=DigitResult, responses=_ERRORS, openapi_extra={"requestBody": _IMAGE_BODY},
              summary="Predict one digit", tags=["predict"])
    async def predict(request: Request, include_input: bool = include_q) -> Any:
        """One digit from an image (multipart `file` or the raw body). An empty image gives `no_digit: true`."""
        return await predict_one(request, include_input, "predict")

    @app.post("/api/predict/number", response_model=NumberResult, responses=_ERRORS,
              openapi_extra={"requestBody": _IMAGE_BODY}, summary="Read a whole number", tags=["predict"])
    async def predict_number(request: Request, include_input: bool = include_q) -> Any:
        """Several digits in one image, read left to right."""
        return await predict_one(request, include_input, "predict_number")

    @app.post("/api/predict/batch", response_model=BatchResult, responses=_ERRORS,
              openapi_extra={"requestBody": _BATCH_BODY}, summary="Predict a batch of images", tags=["predict"])
    async def predict_batch(request: Request, include_input: bool = include_q) -> Any:
        """Several images (multipart field `files`, up to 64): one result or one error per image."""
        if _media_type(request) != "multipart/form-data":
            raise ApiError(415, "unsupported media type", "send multipart/form-data with one or more 'files' fields")
        form = await _read_form(request, max_files=MAX_BATCH)
        try:
            uploads = [u for u in form.getlist("files") if not isinstance(u, str)]
            if not uploads:
                raise ApiError(422, "missing files", "send the images in multipart fields named 'files'")
            items = [(await u.read(), u.filename or f"files[{i}]") for i, u in enumerate(uploads)]
        finally:
            await form.close()
        predictor, max_pixels = _predictor(request), request.app.state.max_pixels

        def work() -> list[dict]:
            results: list[dict] = [{"index": i, "filename": name, "ok": False} for i, (_, name) in enumerate(items)]
            images, where = [], []
            for i, (data, name) in enumerate(items):
                try:
                    images.append(_decode(data, name, max_pixels))
                    where.append(i)
                except DigitlabError as exc:
                    results[i].update(error="not a usable image", detail=str(exc))
            if images:
                names = [items[i][1] for i in where]
                for i, pred in zip(where, predictor.predict_batch(images, sources=names)):
                    results[i].update(ok=True, result=_clean(pred.to_dict(include_input=include_input)))
            return results

        results = await run_in_threadpool(work)
        return {"count": len(results), "results": results}

    @app.get("/api/health", response_model=Health, summary="Is the server up, and with which model?", tags=["info"])
    async def health(request: Request) -> Any:
        info = _predictor(request).info
        return {"status": "ok", "model_id": info.get("model_id"), "preset": info.get("preset"),
                "test_accuracy": info.get("test_accuracy"), "runtime": info.get("runtime"),
                "version": __version__, "uptime_s": round(time.monotonic() - request.app.state.started, 3)}

    @app.get("/api/model", response_model=ModelInfo, summary="The model and its preprocessing contract", tags=["info"])
    async def model_info(request: Request) -> Any:
        info = _clean(dict(_predictor(request).info))
        return {
            "model": info,
            "preprocessing": {
                "accepts": ["image/png", "image/jpeg", "image/gif", "image/bmp", "image/tiff", "image/webp"],
                "polarity": "either: dark ink on light paper or light ink on dark; detected from the border",
                "alpha": "transparent pixels are background",
                "steps": ["decode (EXIF-rotated)", "grayscale ink map", "background and noise removed",
                          "digit cropped and fitted into 20x20 (aspect kept)",
                          "centred by centre of mass in 28x28", "scaled to [0, 1] (x/255)"],
                "model_input": "float32 (N, 28, 28, 1), white ink on black, as MNIST",
                "uncertain_below": info.get("threshold"),
            },
            "limits": {"max_bytes": request.app.state.max_bytes, "max_pixels": request.app.state.max_pixels,
                       "max_batch": MAX_BATCH},
            "version": __version__,
        }


def _json_bytes(obj: Any) -> bytes:
    """Compact JSON, as JSONResponse writes it (plain Python types from `to_dict`; anything else via _clean)."""
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def _clean(obj: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


# --------------------------------------------------------------------------- the page


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    from importlib.resources import files

    folder = files("digitlab") / "static"
    out = {}
    for name, media in STATIC_FILES.items():
        data = (folder / name).read_bytes()
        out[name] = (data, media, '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
    return out


def _add_page_routes(app: FastAPI) -> None:
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
            raise ApiError(404, "not found", f"no static file {name!r}")
        return serve(name, request)
