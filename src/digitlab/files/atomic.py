"""Crash-safe file writing and reading (run directories themselves live in `runs.directories`).

Every file digitlab writes goes through `atomic_path` (write to a temp file in
the same directory, fsync, then `os.replace`), so an interrupted run leaves the
old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ModelError, StorageError

_MISSING = object()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it into place.

    The temp file keeps `path`'s suffix (or `suffix`) because some writers,
    like Keras' `model.save`, choose the format from the file extension.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix if suffix is not None else ".tmp" + path.suffix, dir=path.parent
        )
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in _STORAGE_ERRNOS:
            raise _storage_error(path, tmp_path, exc) from None
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


# Write failures that are about the storage, not the program: one clear line instead of a traceback.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


def _storage_error(path: Path, tmp: Path | None, exc: OSError) -> StorageError:
    """'cannot write <path>: <why> (<free> free, about <need> needed); the previous file is kept'."""
    reason = exc.strerror or str(exc)
    extra = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        sizes = [p.stat().st_size for p in (path, tmp) if p is not None and p.is_file()]
        need = max(sizes, default=0)
        extra = " (" + ", ".join(x for x in (
            f"{_size(free)} free on its disk" if free is not None else "",
            f"about {_size(need)} needed" if need else "") if x) + ")"
    kept = "; the previous version is kept" if path.exists() else ""
    return StorageError(f"cannot write {path}: {reason}{extra if extra != ' ()' else ''}{kept}")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as pretty JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics; turn them into plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (model files identify themselves by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | os.PathLike, *, missing: Any = _MISSING) -> Any:
    """A JSON file of a run (metrics, history, timings...): the value, or `missing` when the file
    does not exist; a damaged file is a ModelError naming it (never a traceback, never NaN)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing is _MISSING:
            raise ModelError(f"{path}: file not found") from None
        return missing
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise ModelError(f"{path}: damaged JSON ({exc}); delete or restore it") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create the directory `path` if needed (its parent must exist) and make sure we can write into it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelError(f"output directory {path} is a file")
    if not path.exists() and not path.parent.is_dir():
        raise ModelError(f"cannot create {path}: {_no_folder(path.parent)}")
    try:
        path.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ModelError(f"output directory {path} is not writable: {exc.strerror or exc}") from None
    return path


def _no_folder(folder: Path) -> str:
    # Output folders are not created with their parents: a typo must not build a tree under /.
    if folder.exists():
        return f"{folder} is not a directory"
    return f"the directory {folder} does not exist (create it first)"


def check_output_path(path: str | os.PathLike) -> Path:
    """Make sure a file (or directory) can be written at `path` before any work is spent on it:
    its parent directory exists (none is created) and accepts new files."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ModelError(f"cannot write {path}: {_no_folder(parent)}")
    if path.is_dir() and path.suffix:  # model.onnx/ as a directory: writing would fail late
        raise ModelError(f"cannot write {path}: it is a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ModelError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
