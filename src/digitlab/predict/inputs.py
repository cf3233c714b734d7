"""What a user points `digitlab predict` at: files, directories, glob patterns, stdin,
and (for `--out`) list files and tar / zip archives.

`expand_inputs` turns the command-line arguments into a list of `InputItem`s,
each a path, bytes, or a one-line error; `iter_inputs` does the same lazily
for any number of inputs (see its doc). Neither blocks or loops: FIFOs,
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..preprocess import IMAGE_EXTENSIONS, MAX_BYTES

STDIN = "-"
STDIN_LABEL = "<stdin>"
LIST_PREFIX = "@"  # @FILE: FILE lists inputs, one path a line (like curl's and javac's @argfiles)
MEMBER_SEP = ":"  # an archive member's label: ARCHIVE:MEMBER (e.g. digits.tar:7/001.png)
# Archives are known by their suffix, one clear rule (a .zip is never tried as an image).
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)


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
    items = list(_scan(root, problems.append))
    if not items and not problems:
        return [_no_images(root)]
    return problems + items


def _no_images(root: str) -> InputItem:
    return InputItem(root, None, f"no image files in this directory ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")


def _scan(folder: str, problem: Callable[[InputItem], None]) -> Iterator[InputItem]:
    """Image files below `folder`, lazily, in the order of their sorted paths. Only one
    directory's entries are held at a time (sorted: the order must not depend on the file
    system's, so that runs and their resumes see the same sequence); symlinked directories are
    not followed (no loops). An unreadable directory goes to `problem`."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        problem(InputItem(str(exc.filename or folder), None, f"cannot read directory ({exc.strerror or exc})"))
        return

    def is_dir(entry: os.DirEntry) -> bool:
        try:
            return entry.is_dir(follow_symlinks=False)
        except OSError:
            return False

    # A directory sorts as "name/", so the order is that of whole sorted paths ("b-1.png" < "b/x.png").
    keyed = sorted(((e.name + "/", e) if is_dir(e) else (e.name, e) for e in entries), key=lambda k: k[0])
    del entries
    for key, entry in keyed:
        if key.endswith("/"):
            yield from _scan(entry.path, problem)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            yield _file_item(entry.path, entry.path)


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


# --------------------------------------------------------------------------- streaming, any size


def iter_inputs(paths: Sequence[str], *, skip: Callable[[str], bool] | None = None,
                read: bool = True) -> Iterator[InputItem]:
    """`InputItem`s for any number of inputs, lazily (memory does not grow with their number).

    Each argument is a directory (walked in sorted path order, see `_scan`), a glob pattern
    (the file system's order; `**` matches are de-duplicated by real path), "-" (stdin bytes),
    `@FILE` (FILE lists one input path a line, relative to the current directory; `@-`: the
    list comes on stdin; blank lines are skipped), a tar or zip archive (by suffix, see
    TAR_SUFFIXES: its image members are read one at a time, never extracted, and labelled
    ARCHIVE:MEMBER), or a file. Labels for which `skip(label)` is true are left out before
    anything is read (resuming). `read=False` leaves archive members' bytes unread (counting).
    """
    skip = skip or (lambda label: False)
    for raw in paths:
        if raw == STDIN:
            if not skip(STDIN_LABEL):
                yield _from_stdin(None)
        elif raw.startswith(LIST_PREFIX) and len(raw) > 1:
            yield from _listed(raw[1:], skip)
        elif os.path.isdir(raw):
            problems: list[InputItem] = []
            found = False
            for item in _scan(raw, problems.append):
                found = True
                if not skip(item.label):
                    yield item
            yield from (problems if found or problems else [_no_images(raw)])
        elif archive_kind(raw) and os.path.isfile(raw):
            yield from _members(raw, skip, read)
        elif os.path.exists(raw) or os.path.islink(raw):
            if not skip(raw):
                yield _file_item(raw, raw)
        elif any(ch in raw for ch in "*?["):
            yield from _iglob(raw, skip)
        else:
            yield InputItem(raw, None, "no such file or directory")


def count_inputs(paths: Sequence[str]) -> int | None:
    """How many items `iter_inputs(paths)` gives, or None where that would mean reading the
    inputs twice (stdin, a list on stdin, a tar archive: a stream read to the end)."""
    if any(p in (STDIN, LIST_PREFIX + STDIN) or archive_kind(p) == "tar" for p in paths):
        return None
    return sum(1 for _ in iter_inputs(paths, read=False))


def archive_kind(path: str) -> str | None:
    """"tar" or "zip" for an archive's name (by its suffix), else None."""
    name = path.lower()
    return "tar" if name.endswith(TAR_SUFFIXES) else "zip" if name.endswith(ZIP_SUFFIXES) else None


def _listed(list_file: str, skip: Callable[[str], bool]) -> Iterator[InputItem]:
    """The files named in `list_file` (one a line), read line by line."""
    if list_file == STDIN:
        stream = sys.stdin
        if stream is None or _isatty(stream):
            yield InputItem(LIST_PREFIX + STDIN, None, "a list on standard input must be piped in (find ... | digitlab predict @-)")
            return
        yield from _list_lines(stream, skip)
        return
    try:
        with open(list_file, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            yield from _list_lines(fh, skip)
    except OSError as exc:
        yield InputItem(LIST_PREFIX + list_file, None, f"cannot read this list of inputs ({exc.strerror or exc})")


def _list_lines(lines: Any, skip: Callable[[str], bool]) -> Iterator[InputItem]:
    for line in lines:
        path = line.rstrip("\r\n")
        if path and not skip(path):
            yield _file_item(path, path) if os.path.lexists(path) else InputItem(path, None, "no such file")


def _members(archive: str, skip: Callable[[str], bool], read: bool) -> Iterator[InputItem]:
    """The image members of a tar or zip archive, in archive order, one in memory at a time."""
    import tarfile
    import zipfile

    def wanted(name: str) -> bool:
        return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS

    def too_big(label: str, size: int) -> InputItem | None:
        if size > MAX_BYTES:
            return InputItem(label, None, f"file too large (more than {MAX_BYTES // (1024 * 1024)} MiB)")
        return None

    try:
        if archive_kind(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    label = f"{archive}{MEMBER_SEP}{info.filename}"
                    if info.is_dir() or not wanted(info.filename) or skip(label):
                        continue
                    with zf.open(info) as member:  # the size is checked on the bytes, not the header
                        yield too_big(label, info.file_size) or InputItem(
                            label, _bounded_read(member) if read else None)
            return
        with tarfile.open(archive, mode="r|*") as tf:  # a stream: no index of members is built
            for info in tf:
                label = f"{archive}{MEMBER_SEP}{info.name}"
                if not wanted(info.name) or skip(label):
                    continue
                if not info.isfile():
                    yield InputItem(label, None, "a link or special member in the archive, not an image file")
                    continue
                member = tf.extractfile(info) if read and not too_big(label, info.size) else None
                yield too_big(label, info.size) or InputItem(label, None if member is None else _bounded_read(member))
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        yield InputItem(archive, None, f"cannot read this archive ({exc})")


def _bounded_read(member: Any) -> bytes:
    return member.read(MAX_BYTES + 1)  # load_image refuses what is more than MAX_BYTES


def _iglob(pattern: str, skip: Callable[[str], bool]) -> Iterator[InputItem]:
    """Files matching `pattern`, lazily; with `**` (which can walk a symlink loop) each real file once."""
    seen: set[str] | None = set() if "**" in pattern else None
    found = False
    for match in glob.iglob(pattern, recursive=True):
        if not os.path.isfile(match):
            continue
        if seen is not None:
            real = os.path.realpath(match)
            if real in seen:
                continue
            seen.add(real)
        found = True
        if not skip(match):
            yield _file_item(match, match)
    if not found:
        yield InputItem(pattern, None, "no files match this pattern")
