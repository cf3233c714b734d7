"""Serving on Ray Serve: `digitlab serve --engine ray --replicas N [--address ray://host:10001]`.

The very app `digitlab serve` runs (`app.create_app`: the same routes, limits, Host check and
error answers) becomes a Ray Serve deployment through `serve.ingress`. The app is built on
each replica (a builder function, so no FastAPI object travels), and Ray Serve runs its
lifespan there: the model loads once per replica through the same code path as uvicorn's
workers (`Predictor.load` in the lifespan). Ray Serve's proxy answers HTTP on --host/--port and
spreads requests over the replicas; it asks every replica `check_health` periodically and
replaces one that fails. Ray is the optional `ray` extra, imported only inside functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Optional

from ..errors import ConfigError
from .settings import Settings

APP_NAME = "digitlab"
# A replica holds one model and answers on its own threads; one CPU each lets Ray place as many
# replicas as the cluster has CPUs (the model is small: 1-2 ms an image on one core).
REPLICA_CPUS = 1
# Ray Serve asks each replica `check_health` this often (its default is 10 s); a replica whose
# model is gone is replaced.
HEALTH_CHECK_PERIOD_S = 10.0
MAX_REPLICAS = 64  # like --workers: each replica loads its own copy of the model


def deployment(settings: Settings, replicas: int = 1) -> Any:
    """The Ray Serve application (bound deployment) serving `create_app` for `settings`."""
    from ray import serve

    def build() -> Any:
        from .app import app_from_settings

        return app_from_settings(settings)

    @serve.deployment(name=APP_NAME, num_replicas=replicas, ray_actor_options={"num_cpus": REPLICA_CPUS},
                      health_check_period_s=HEALTH_CHECK_PERIOD_S)
    @serve.ingress(build)
    class Digitlab:
        def check_health(self) -> None:
            """Ray Serve's health check: the lifespan loaded the model and has not unloaded it."""
            if getattr(self.app.state, "work", None) is None:
                raise RuntimeError("model not loaded")

    return Digitlab.bind()


def serve_on_ray(settings: Settings, *, replicas: int = 1, address: Optional[str] = None, host: str = "127.0.0.1",
                 port: int = 8000, say: Callable[[str], None] = print, wait: bool = True) -> None:
    """Run the app on Ray Serve with `replicas` replicas until Ctrl-C (`wait`), or return once it is up.

    `address`: a Ray cluster (None: a local Ray started here). The proxy listens on host:port."""
    from ..predict.ray_engine import INSTALL_HINT, ray_available, start_ray

    if not ray_available():
        raise ConfigError(INSTALL_HINT)
    try:
        from ray import serve
    except ImportError:
        raise ConfigError("Ray Serve is missing: pip install 'digitlab[ray]'") from None
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ConfigError(f"--replicas must be between 1 and {MAX_REPLICAS} (got {replicas})")
    started = start_ray(address)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment(settings, replicas), name=APP_NAME, route_prefix="/")
        say(f"serving on Ray Serve at http://{host}:{port}/ with {replicas} replica{'s' if replicas > 1 else ''} "
            f"(API docs at /docs){'; Ctrl-C stops' if wait else ''}")
        if not wait:
            return
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        serve.shutdown()
    finally:
        if started and wait:
            import ray

            ray.shutdown()
