"""The application: `create_app()` builds it (nothing happens at import time).

The Predictor (the very same one the CLI uses: same preprocessing, same runner)
is loaded once in the app's lifespan (`app.state.predictor`), with the pixel
budget its work runs under (`work.ImageWork`, on `app.state.work`). Requests pass the Host check
and the body cap (middleware.py) before any route; every error is JSON
(errors.py). /docs and /redoc load Swagger UI and ReDoc from this server
(fastapi-offline ships the files), so they work offline like the page, and their
Content-Security-Policy keeps the browser from loading anything from elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Optional

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from .. import __version__
from . import errors
from .middleware import BodyLimit, HostCheck, PathHeaders
from .page import DOCS_CSP, add_page_routes
from .routes import add_api_routes
from .settings import (
    DEFAULT_CORRECTIONS_MAX,
    DEFAULT_CORRECTIONS_MAX_BYTES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    LOOPBACK_HOSTS,
    Settings,
    host_list,
)
from .work import ImageWork

DOCS_URL, REDOC_URL = "/docs", "/redoc"
DESCRIPTION = ("Handwritten digit recognition (MNIST models trained with digitlab). "
               "Send an image as multipart (`file`) or as the raw request body "
               "(`Content-Type: image/*` or `application/octet-stream`). "
               "Errors are JSON: `{\"error\": ..., \"detail\": ...}`. The drawing page is at `/`.")


def create_app(predictor_factory: Optional[Callable[[], Any]] = None, *, model: Any = None, runtime: str = "auto",
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               allowed_hosts: Optional[Sequence[str]] = LOOPBACK_HOSTS, corrections: Any = None,
               corrections_max: int = DEFAULT_CORRECTIONS_MAX,
               corrections_max_bytes: int = DEFAULT_CORRECTIONS_MAX_BYTES) -> FastAPI:
    """Build the FastAPI app. The model is loaded in the lifespan, once, by
    `predictor_factory()` (default: `Predictor.load(model, runtime=runtime)`; model=None is the
    shipped pretrained model). `allowed_hosts`: the names the Host header may carry (any
    port); None or ["*"] allows any (for a server bound to a public address). `corrections`: a
    folder for POST /api/corrections (None: corrections are off), with its limits."""
    if isinstance(allowed_hosts, str):
        allowed_hosts = [allowed_hosts]
    settings = Settings(model=None if model is None else str(model), runtime=runtime, max_bytes=int(max_bytes),
                        max_pixels=int(max_pixels),
                        allowed_hosts=host_list(None if allowed_hosts is None else list(allowed_hosts)),
                        corrections=None if corrections is None else str(corrections),
                        corrections_max=int(corrections_max), corrections_max_bytes=int(corrections_max_bytes))
    if predictor_factory is None:
        def predictor_factory() -> Any:
            from ..predict.predictor import Predictor

            return Predictor.load(model, runtime=runtime)

    factory = predictor_factory

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        predictor = await run_in_threadpool(factory)
        app.state.predictor = predictor
        app.state.work = ImageWork(predictor, max_pixels=settings.max_pixels)
        app.state.corrections = None
        if settings.corrections is not None:
            from .corrections import CorrectionsFolder

            app.state.corrections = CorrectionsFolder(
                settings.corrections, getattr(predictor, "classes", None) or tuple("0123456789"),
                max_count=settings.corrections_max, max_bytes=settings.corrections_max_bytes)
        app.state.started = time.monotonic()
        try:
            yield
        finally:
            app.state.work = app.state.predictor = app.state.corrections = None

    app = FastAPIOffline(
        title="digitlab", version=__version__, description=DESCRIPTION, lifespan=lifespan,
        docs_url=DOCS_URL, redoc_url=REDOC_URL,
        # Swagger UI would otherwise ask validator.swagger.io about the schema.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.work = app.state.predictor = app.state.corrections = None
    app.add_middleware(BodyLimit, max_bytes=settings.max_bytes)
    app.add_middleware(PathHeaders, paths=(DOCS_URL, REDOC_URL),
                       headers={"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"})
    if settings.allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=settings.allowed_hosts)  # outermost: refuse before anything else
    errors.add_handlers(app)
    add_api_routes(app)
    add_page_routes(app)
    return app


def app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory` / `digitlab serve --workers N`: settings from the environment."""
    return app_from_settings(Settings.from_env())


def app_from_settings(s: Settings) -> FastAPI:
    """The app for `Settings` (what worker processes and Ray Serve replicas build)."""
    return create_app(model=s.model, runtime=s.runtime, max_bytes=s.max_bytes, max_pixels=s.max_pixels,
                      allowed_hosts=s.allowed_hosts, corrections=s.corrections, corrections_max=s.corrections_max,
                      corrections_max_bytes=s.corrections_max_bytes)
