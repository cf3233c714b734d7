"""`serve()`: check the options, load the model, and run uvicorn (what `digitlab serve` does).

Light to import: FastAPI and uvicorn are imported when serving starts, so a broken
install is a clean error line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

from ..errors import ConfigError
from .settings import (
    ANY_HOST,
    DEFAULT_CORRECTIONS_MAX,
    DEFAULT_CORRECTIONS_MAX_BYTES,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TIMEOUT_BODY,
    DEFAULT_TIMEOUT_HEADERS,
    DEFAULT_TIMEOUT_KEEP_ALIVE,
    LOOPBACK_HOSTS,
    MAX_TIMEOUT,
    Settings,
    host_list,
    is_loopback,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
MAX_WORKERS = 64  # each worker process loads its own copy of the model
SPARE_FDS = 64  # file descriptors beside the connections: the model, logs, the listening socket, ...
# On Ctrl-C or SIGTERM (what Kubernetes and systemd send), the server stops accepting connections at
# once and requests in flight get this long to finish; then it stops anyway (Kubernetes waits 30 s).
GRACEFUL_SHUTDOWN_S = 10


def serve(model: Optional[str] = None, runtime: str = "auto", *, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 1, log_level: str = "info", access_log: bool = True,
          limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY, timeout_keep_alive: float = DEFAULT_TIMEOUT_KEEP_ALIVE,
          timeout_headers: float = DEFAULT_TIMEOUT_HEADERS, timeout_body: float = DEFAULT_TIMEOUT_BODY,
          allowed_hosts: Sequence[str] = (), max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
          corrections: Optional[str] = None, corrections_max: int = DEFAULT_CORRECTIONS_MAX,
          corrections_max_bytes: int = DEFAULT_CORRECTIONS_MAX_BYTES, say: Callable[[str], None] = print,
          engine: str = "local", replicas: int = 1, address: Optional[str] = None) -> None:
    """Serve the drawing page and the REST API until Ctrl-C.

    `engine` "ray": the same app on Ray Serve (`ray_serve`) with `replicas` replicas, on a local Ray
    or the cluster at `address`; the connection limits and timeouts are then Ray Serve's proxy's.

    `limit_concurrency`: open connections per worker (more get 503 at once);
    `timeout_keep_alive`: an idle kept-alive connection is closed after it;
    `timeout_headers` / `timeout_body`: a request's headers / body must arrive within them (408);
    `allowed_hosts`: names accepted in the Host header beside localhost, 127.0.0.1 and ::1 when
    bound to loopback ("*": any); bound to another address, any name unless some are given.
    `corrections`: a folder where POST /api/corrections (the page's "wrong? it's a _") saves
    labelled samples, at most `corrections_max` of them and `corrections_max_bytes`; None: off.
    Bad values raise ConfigError (ModelError for a bad model) before anything listens.
    """
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import httptools  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"serving needs fastapi, fastapi-offline and uvicorn[standard], which digitlab installs; "
                          f"reinstall it ({exc})") from None
    _check_options(port=port, workers=workers, log_level=log_level, limit_concurrency=limit_concurrency,
                   timeouts={"--timeout-keep-alive": timeout_keep_alive, "--timeout-headers": timeout_headers,
                             "--timeout-body": timeout_body},
                   max_bytes=max_bytes, max_pixels=max_pixels)
    allowed = _allowed_hosts(host, allowed_hosts)
    if corrections_max < 1 or corrections_max_bytes < 1:
        raise ConfigError(f"the corrections limits must be positive (got {corrections_max}, {corrections_max_bytes})")
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be local or ray (got {engine!r})")
    if engine == "local" or address is None:  # on a cluster, Ray Serve's proxy listens there, not here
        _probe_port(host, port)
    if engine == "ray":
        from .ray_serve import serve_on_ray

        settings = _worker_settings(model, runtime, max_bytes, max_pixels, allowed, corrections, corrections_max,
                                    corrections_max_bytes)
        serve_on_ray(settings, replicas=replicas, address=address, host=host, port=port, say=say)
        return

    from .app import create_app
    from .protocol import ConnectionLimits

    limits = ConnectionLimits(max_connections=limit_concurrency, timeout_headers=float(timeout_headers),
                              timeout_body=float(timeout_body))
    options: dict[str, Any] = dict(
        host=host, port=port, log_level=log_level, access_log=access_log, server_header=False,
        http=limits.protocol(), timeout_keep_alive=float(timeout_keep_alive),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    hosts = "any Host" if allowed is None else "Host " + ", ".join(allowed)
    if workers == 1:
        # Load the model here, so a bad --model is a clean error line before anything listens.
        from ..predict.predictor import Predictor

        predictor = Predictor.load(model, runtime=runtime)
        info = predictor.info
        kept = _check_corrections(corrections, predictor.classes, corrections_max, corrections_max_bytes)
        say(f"model {info.get('model_id')} ({info.get('preset')}), runtime {info.get('runtime')}; "
            f"serving on {url} (API docs at /docs; {hosts}){kept}; Ctrl-C stops")
        app = create_app(lambda: predictor, max_bytes=max_bytes, max_pixels=max_pixels, allowed_hosts=allowed,
                         corrections=corrections, corrections_max=corrections_max,
                         corrections_max_bytes=corrections_max_bytes)
        uvicorn.run(app, **options)
    else:
        kept = "" if corrections is None else _check_corrections(corrections, (), corrections_max,
                                                                 corrections_max_bytes)
        settings = _worker_settings(model, runtime, max_bytes, max_pixels, allowed, corrections, corrections_max,
                                    corrections_max_bytes)
        os.environ.update(settings.to_env())  # each worker process builds its app with app_from_env()
        say(f"serving on {url} with {workers} workers (API docs at /docs; {hosts}){kept}; Ctrl-C stops")
        uvicorn.run("digitlab.server:app_from_env", factory=True, workers=workers, **options)


def _worker_settings(model: Optional[str], runtime: str, max_bytes: int, max_pixels: int,
                     allowed: Optional[tuple[str, ...]], corrections: Optional[str], corrections_max: int,
                     corrections_max_bytes: int) -> Settings:
    """The Settings each worker process or Ray Serve replica builds its app from (paths made absolute)."""
    from ..runs.artifacts import resolve_model

    path = str(resolve_model(model)) if model is not None else None  # "latest", a run name or a path
    # Each worker opens the corrections folder with its model's classes; a bad folder fails before that.
    return Settings(model=path, runtime=runtime, max_bytes=max_bytes, max_pixels=max_pixels, allowed_hosts=allowed,
                    corrections=None if corrections is None else os.path.abspath(corrections),
                    corrections_max=corrections_max, corrections_max_bytes=corrections_max_bytes)


def _check_corrections(folder: Optional[str], classes: Sequence[str], max_count: int, max_bytes: int) -> str:
    """Open the corrections folder once (created if missing, must be writable: ModelError otherwise);
    the words for the start-up line."""
    if folder is None:
        return ""
    from .corrections import CorrectionsFolder

    opened = CorrectionsFolder(folder, tuple(classes), max_count=max_count, max_bytes=max_bytes)
    count, _ = opened.usage()
    return f"; corrections saved in {opened.root} ({count:,} of at most {max_count:,})"


def _check_options(*, port: int, workers: int, log_level: str, limit_concurrency: int, timeouts: dict[str, float],
                   max_bytes: int, max_pixels: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535 (got {port})")
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS} (got {workers})")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS[:-1])} (got {log_level!r})")
    fds = _fd_limit()
    most = max(1, fds - SPARE_FDS) if fds else 1_000_000
    if not 1 <= limit_concurrency <= most:
        raise ConfigError(f"--limit-concurrency must be between 1 and {most:,} (got {limit_concurrency}); "
                          f"each connection is a file descriptor" + (f" and this process may open {fds:,}" if fds else ""))
    for name, value in timeouts.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
            raise ConfigError(f"{name} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g} (got {value})")
    if max_bytes < 1 or max_pixels < 1:
        raise ConfigError(f"the byte and pixel limits must be positive (got {max_bytes}, {max_pixels})")


def _fd_limit() -> Optional[int]:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return None if soft == resource.RLIM_INFINITY else int(soft)
    except (ImportError, OSError, ValueError):
        return None


def _allowed_hosts(host: str, names: Sequence[str]) -> Optional[tuple[str, ...]]:
    """The Host names to accept: loopback names (+ the given ones) on a loopback address; on any
    other address any name, unless names are given. None means any."""
    for name in names:
        if name != ANY_HOST and (not name.strip() or any(c in name for c in "/ \t@?#")):
            raise ConfigError(f"--allowed-host {name!r} is not a host name (give a name or address, no scheme or path)")
    extra = host_list(list(names))
    if extra is None or (not extra and not is_loopback(host)):
        return None
    return tuple(dict.fromkeys(LOOPBACK_HOSTS + extra))


def _probe_port(host: str, port: int) -> None:
    """Fail with one clear line, not a uvicorn traceback, when the port is taken or the address is bad."""
    import errno
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not a usable address ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use; "
                              "stop the other server or pick another --port") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"no permission to bind port {port} on {host}; use a port above 1023") from None
        raise ConfigError(f"cannot bind {host}:{port} ({exc.strerror or exc})") from None
