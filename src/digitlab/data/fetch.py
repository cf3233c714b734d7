"""Downloads: bounded HTTP reads, mirrors tried in order, nothing stored before it is verified.

Used by the MNIST loader and the known data sets; the network is touched only
when a user asks for a download.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..errors import DataError

# The largest file digitlab downloads is ~26 MB compressed (Fashion-MNIST's training images;
# MNIST's is ~10 MB); anything far bigger is not one, and capping the read keeps a misbehaving mirror from filling memory.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


def fetch(url: str, timeout: float) -> bytes:
    """The body at `url`, at most MAX_DOWNLOAD_BYTES (a DataError beyond)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"digitlab/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = response.read(MAX_DOWNLOAD_BYTES + 1)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise DataError(f"response larger than {MAX_DOWNLOAD_BYTES} bytes")
    return data


def reason(exc: BaseException) -> str:
    """A network failure in a few words (HTTP status, resolver or socket error)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def fetch_verified(filename: str, mirrors: Sequence[str], check: Callable[[str, bytes], None], *,
                   timeout: float, what: str) -> bytes:
    """`filename` from the first mirror whose copy passes `check(url, raw)` (which raises DataError).

    Every failure is kept: when no mirror works the error lists each URL and why.
    """
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            raw = fetch(url, timeout)
            check(url, raw)
        except DataError as exc:
            failures.append(str(exc) if str(exc).startswith(url) else f"{url}: {exc}")
            continue
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {reason(exc)}")
            continue
        return raw
    tried = "\n  ".join(failures)
    raise DataError(f"could not download {what} from any of {len(mirrors)} mirror(s):\n  {tried}")


def make_dir(directory: Path) -> Path:
    """Create a download directory (with parents: caches live under ~/.cache), or a DataError."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the download directory {directory}: {exc.strerror or exc}") from None
    return directory


def store(path: Path, raw: bytes) -> None:
    """Write a verified download atomically (a half-written file is never left behind)."""
    from ..files.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(path, raw)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
