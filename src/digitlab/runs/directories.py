"""Run directories: a fresh one per run, the `latest` pointer, and finding a run by name."""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

from ..errors import ModelError
from ..files.atomic import atomic_write_text, check_writable_dir
from ..files.layout import LATEST, default_runs_dir


def new_run_dir(out: str | os.PathLike, name: str | None, preset: str) -> Path:
    """Create and return a fresh run directory under `out`.

    Names default to `<preset>-<timestamp>`; an existing name gets a numeric
    suffix rather than being overwritten, so no earlier run is ever lost.
    """
    out = check_writable_dir(out)
    if name is not None and (name == LATEST or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)):
        raise ModelError(f"invalid run name {name!r}: use letters, digits, '.', '_' and '-' (and not 'latest')")
    base = name or f"{preset}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 1000):
        candidate = out / (base if i == 1 else f"{base}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ModelError(f"could not create a run directory for {base!r} in {out}")


def set_latest(run_dir: str | os.PathLike) -> None:
    """Point `<out>/latest` at `run_dir` (a relative symlink, replaced atomically)."""
    run_dir = Path(run_dir)
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_dir.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        # Filesystems without symlinks (some Windows setups): a text pointer.
        if tmp.is_symlink():
            tmp.unlink()
        atomic_write_text(link.with_suffix(".txt"), run_dir.name + "\n")


def resolve_run(run: str | os.PathLike | None, out: str | os.PathLike | None = None) -> Path:
    """Find a run directory: an explicit path, a name under `out` ($DIGITLAB_RUNS or ./runs), or the latest."""
    out = Path(out if out is not None else default_runs_dir())
    if run is None or str(run) == LATEST:
        link = out / LATEST
        if link.is_dir():
            return link.resolve()
        txt = out / f"{LATEST}.txt"
        if txt.is_file():
            return (out / txt.read_text().strip()).resolve()
        raise ModelError(f"no runs found in {out}/ (train one first with `digitlab run` or `digitlab train`)")
    candidates = [Path(run)] if Path(run).is_absolute() else [Path(run), out / str(run)]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    looked = " and ".join(str(c) for c in candidates)
    raise ModelError(f"run {str(run)!r} not found (looked for a directory {looked})")
