"""What a user points `digitlab predict` at: files, directories, glob patterns, stdin.

`expand_inputs` turns the command-line arguments into a list of `InputItem`s,
each a path, bytes, or a one-line error, and never blocks or loops: FIFOs,
devices and sockets are refused (reading one could wait forever), a closed or
interactive stdin is an error rather than a hang or a traceback, directory
walks do not follow symlinked directories (no loops), glob matches are
de-duplicated by their real path, and unreadable directories are reported as
such, not as "no image files".
"""

from __future__ import annotations

import glob
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..preprocess import IMAGE_EXTENSIONS, MAX_BYTES

STDIN = "-"
STDIN_LABEL = "<stdin>"


@dataclass(frozen=True)
class InputItem:
    """One input: its label (as the user will see it), a path or bytes, or an error."""

    label: str
    source: str | bytes | None
    error: str | None = None


def expand_inputs(paths: Sequence[str], *, stdin: Any = None) -> list[InputItem]:
    """Files, directories (recursive, image extensions only), glob patterns and "-" (stdin bytes)."""
    items: list[InputItem] = []
    for raw in paths:
        if raw == STDIN:
            items.append(_from_stdin(stdin))
            continue
        path = Path(raw)
        if path.is_dir():
            items.extend(_walk(raw))
        elif path.exists() or path.is_symlink():
            items.append(_file_item(raw, raw))
        elif any(ch in raw for ch in "*?["):
            items.extend(_glob(raw))
        else:
            items.append(InputItem(raw, None, "no such file or directory"))
    return items


def _from_stdin(stream: Any) -> InputItem:
    if stream is None:
        stdin = sys.stdin
        if stdin is None or getattr(stdin, "closed", False):
            return InputItem(STDIN_LABEL, None, "standard input is closed; pipe an image into it (... | digitlab predict -)")
        if _isatty(stdin):
            return InputItem(STDIN_LABEL, None, "standard input is a terminal; pipe an image into it "
                                                "(digitlab predict - < image.png)")
        stream = getattr(stdin, "buffer", stdin)
    try:
        data = stream.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: read from a closed file
        return InputItem(STDIN_LABEL, None, f"cannot read standard input ({exc})")
    if not isinstance(data, (bytes, bytearray)):
        return InputItem(STDIN_LABEL, None, "standard input is not a binary stream")
    return InputItem(STDIN_LABEL, bytes(data))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _file_item(label: str, path: str) -> InputItem:
    """A path that exists: only regular files are read (a FIFO or device could block forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return InputItem(label, None, "no such file (a broken symbolic link?)")
    except OSError as exc:
        return InputItem(label, None, f"cannot read ({exc.strerror or exc})")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        return InputItem(label, None, f"{kind}, not an image file")
    return InputItem(label, path)


def _walk(root: str) -> list[InputItem]:
    """Image files below `root`, sorted; symlinked directories are not followed (no loops)."""
    problems: list[InputItem] = []

    def onerror(exc: OSError) -> None:
        where = exc.filename or root
        problems.append(InputItem(str(where), None, f"cannot read directory ({exc.strerror or exc})"))

    found: list[str] = []
    for folder, dirs, files in os.walk(root, onerror=onerror, followlinks=False):
        dirs.sort()
        found.extend(os.path.join(folder, f) for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
    items = [_file_item(p, p) for p in sorted(found)]
    if not items and not problems:
        return [InputItem(root, None, f"no image files in this directory ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")]
    return problems + items


def _glob(pattern: str) -> list[InputItem]:
    """Files matching `pattern`; each real file once (a `**` through a symlink loop finds one file many times)."""
    seen: set[str] = set()
    items: list[InputItem] = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        if not os.path.isfile(match):
            continue
        real = os.path.realpath(match)
        if real in seen:
            continue
        seen.add(real)
        items.append(_file_item(match, match))
    return items or [InputItem(pattern, None, "no files match this pattern")]
