"""The web page and REST API (`digitlab serve`): FastAPI on uvicorn. The top layer beside `cli`:
it may import `predict` and everything below it.

    from digitlab.server import create_app, serve
    app = create_app()                  # an ASGI app (the model loads in its lifespan)
    serve(host="127.0.0.1", port=8000)  # or run it, as `digitlab serve` does

One concern per module:
  settings.py    defaults and their reasons; the settings passed to worker processes
  app.py         create_app / app_from_env: the app, its lifespan, the offline /docs
  routes.py      the REST API
  page.py        the drawing page (/ and /static/*)
  work.py        image bytes -> answers: worker threads, one image at a time, a pixel budget
  middleware.py  Host check (DNS rebinding) and the request body cap
  errors.py      every error answer (one JSON shape) and its text
  protocol.py    per-connection limits uvicorn lacks: connection cap, header/body timeouts
  run.py         serve(): option checks, port probe, uvicorn
  corrections.py the corrections folder (`serve --corrections DIR`): labelled drawings, bounded

Importing this package imports neither FastAPI nor uvicorn; `create_app` and
`app_from_env` load them on first use.
"""

from __future__ import annotations

from typing import Any

from .run import serve

__all__ = ["create_app", "app_from_env", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "app_from_env"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
