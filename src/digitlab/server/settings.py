"""The server's settings and their defaults, with the reason for each; light (no FastAPI import).

`Settings` is what the app needs (model, limits, allowed hosts); it travels to the
worker processes of `digitlab serve --workers N` through environment variables,
written by `to_env` and read back by `from_env` (the only place that knows them).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Optional

# The body cap: a phone photo is 2-6 MB, the page's canvas ~10 KB; more is not a digit.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# 5000x5000: a 12-24 MP phone photo passes, a decompression bomb does not.
DEFAULT_MAX_PIXELS = 25_000_000
# Images in one /api/predict/batch request; each is decoded on its own, so this bounds time, not memory.
MAX_BATCH = 64
# The corrections folder's limits (`digitlab.server.corrections`). 10,000 samples: a hundred times what
# fine-tuning wants (10-20 a class), and under a minute to read back for training (1-10 ms an image).
# 256 MiB: what an unattended server may fill; the page's drawings are ~10 kB each, a phone photo (the
# body cap is 10 MB) far more.
DEFAULT_CORRECTIONS_MAX = 10_000
DEFAULT_CORRECTIONS_MAX_BYTES = 256 * 1024 * 1024

# Connections, per worker process. Each open connection is a file descriptor; past this
# many a new one is answered 503 and closed at once, so no flood can exhaust them.
DEFAULT_LIMIT_CONCURRENCY = 100
# uvicorn's default: an idle kept-alive connection is closed after this many seconds.
DEFAULT_TIMEOUT_KEEP_ALIVE = 5.0
# Request headers are a few hundred bytes that every real client sends at once; a client
# still sending them after this long is a slow-loris and is closed (408).
DEFAULT_TIMEOUT_HEADERS = 10.0
# The body may be up to DEFAULT_MAX_BYTES: 60 s is 1.4 Mbit/s for 10 MB, a slow phone uplink.
DEFAULT_TIMEOUT_BODY = 60.0
# Request line + headers; browsers send < 8 KB. Bounds what a client can make us buffer before the body.
MAX_HEADER_BYTES = 64 * 1024
# Longest timeout anyone may set: longer ones only give slow clients more room.
MAX_TIMEOUT = 3600.0

# The names a loopback-bound server answers to: a page from any other origin that
# re-points its own host name at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"

ENV_MODEL = "DIGITLAB_SERVE_MODEL"
ENV_RUNTIME = "DIGITLAB_SERVE_RUNTIME"
ENV_MAX_BYTES = "DIGITLAB_SERVE_MAX_BYTES"
ENV_MAX_PIXELS = "DIGITLAB_SERVE_MAX_PIXELS"
ENV_ALLOWED_HOSTS = "DIGITLAB_SERVE_ALLOWED_HOSTS"
ENV_CORRECTIONS = "DIGITLAB_SERVE_CORRECTIONS"
ENV_CORRECTIONS_MAX = "DIGITLAB_SERVE_CORRECTIONS_MAX"
ENV_CORRECTIONS_MAX_BYTES = "DIGITLAB_SERVE_CORRECTIONS_MAX_BYTES"


@dataclass(frozen=True)
class Settings:
    model: Optional[str] = None  # None: the shipped pretrained model
    runtime: str = "auto"
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    allowed_hosts: Optional[tuple[str, ...]] = LOOPBACK_HOSTS  # None: any Host header
    # Where POST /api/corrections saves labelled samples. None (the default): corrections are off.
    # A server must not keep what people send it unless its operator asked for that (privacy, disk).
    corrections: Optional[str] = None
    corrections_max: int = DEFAULT_CORRECTIONS_MAX  # samples in the folder
    corrections_max_bytes: int = DEFAULT_CORRECTIONS_MAX_BYTES  # bytes in the folder, inputs included

    def to_env(self) -> dict[str, str]:
        return {ENV_MODEL: self.model or "", ENV_RUNTIME: self.runtime, ENV_MAX_BYTES: str(self.max_bytes),
                ENV_MAX_PIXELS: str(self.max_pixels),
                ENV_ALLOWED_HOSTS: ANY_HOST if self.allowed_hosts is None else ",".join(self.allowed_hosts),
                ENV_CORRECTIONS: self.corrections or "", ENV_CORRECTIONS_MAX: str(self.corrections_max),
                ENV_CORRECTIONS_MAX_BYTES: str(self.corrections_max_bytes)}

    @classmethod
    def from_env(cls, env: Optional[dict[str, str]] = None) -> Settings:
        env = os.environ if env is None else env
        hosts = env.get(ENV_ALLOWED_HOSTS)
        return cls(model=env.get(ENV_MODEL) or None, runtime=env.get(ENV_RUNTIME) or "auto",
                   max_bytes=int(env.get(ENV_MAX_BYTES) or DEFAULT_MAX_BYTES),
                   max_pixels=int(env.get(ENV_MAX_PIXELS) or DEFAULT_MAX_PIXELS),
                   allowed_hosts=LOOPBACK_HOSTS if not hosts else host_list(hosts.split(",")),
                   corrections=env.get(ENV_CORRECTIONS) or None,
                   corrections_max=int(env.get(ENV_CORRECTIONS_MAX) or DEFAULT_CORRECTIONS_MAX),
                   corrections_max_bytes=int(env.get(ENV_CORRECTIONS_MAX_BYTES) or DEFAULT_CORRECTIONS_MAX_BYTES))


def host_list(names: list[str] | tuple[str, ...] | None) -> Optional[tuple[str, ...]]:
    """Normalised host names (lower case, no brackets or port); None when any host is allowed ("*")."""
    if names is None:
        return None
    out: list[str] = []
    for name in names:
        name = name.strip().lower()
        if name == ANY_HOST:
            return None
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if name and name not in out:
            out.append(name)
    return tuple(out)


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
