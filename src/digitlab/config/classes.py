"""Class names: what each output of a model means.

A model's classes are saved with it (phase B: `Config.classes`), so every
consumer (predict, the page, the report, exports) shows the right names. This
module is the one place that says what a valid list of names is; it imports
nothing heavy, so `config.py` can use it.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ..errors import DataError

DIGITS: tuple[str, ...] = tuple("0123456789")  # MNIST's classes, in label order
MAX_CLASSES = 256  # labels are stored as uint8, like MNIST's
MAX_NAME_CHARS = 64  # a name is a label on a page and in a table, not a paragraph
CLASSES_FILE = "classes.txt"  # beside IDX/npz files: one class name per line, in label order
_MAX_CLASSES_FILE_BYTES = 64 * 1024


def class_names_problem(names: Iterable[object], *, minimum: int = 2) -> str | None:
    """Why `names` cannot be a model's class names, or None when they can.

    Between `minimum` (2 for a model; a folder of corrections may hold 1) and
    MAX_CLASSES names, each a non-empty string of at most MAX_NAME_CHARS
    characters without leading/trailing spaces or control characters
    (newlines would break classes.txt and CSV output), no name twice.
    """
    if isinstance(names, str):
        return "class names must be a list of strings, not one string"
    names = list(names)
    if not minimum <= len(names) <= MAX_CLASSES:
        return f"a model needs between {minimum} and {MAX_CLASSES} classes (got {len(names)})"
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str):
            return f"class {i}: name must be a string (got {name!r})"
        if not name or name != name.strip():
            return f"class {i}: name {name!r} is empty or has leading/trailing spaces"
        if len(name) > MAX_NAME_CHARS:
            return f"class {i}: name is longer than {MAX_NAME_CHARS} characters"
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
            return f"class {i}: name {name!r} contains control characters"
        if name in seen:
            return f"class name {name!r} appears twice"
        seen.add(name)
    return None


def check_class_names(names: Iterable[object], where: str = "class names", *, minimum: int = 2) -> tuple[str, ...]:
    """`names` as a tuple, or DataError("<where>: <problem>")."""
    names = tuple(names)  # type: ignore[arg-type]
    problem = class_names_problem(names, minimum=minimum)
    if problem:
        raise DataError(f"{where}: {problem}")
    return names  # type: ignore[return-value]


def is_digit_classes(names: Iterable[str]) -> bool:
    """Whether every class is one digit 0-9 (MNIST's, or some of them): then a row of the model's
    answers reads as a number, and MNIST can be mixed into fine-tuning (`finetune`)."""
    names = tuple(names)
    return bool(names) and all(len(n) == 1 and n in "0123456789" for n in names)


def folder_name_problem(name: str) -> str | None:
    """Why class `name` cannot name a class folder (for `datasets.folder` to read it back), or None.

    A folder name is one path component that the image-folder reader does not skip (a leading ".")
    or take for its split folders (train/, test/), and that every common file system can hold.
    """
    if any(c in name for c in '/\\:*?"<>|') or any(ord(c) < 32 for c in name):
        return f"class {name!r} contains a character that cannot be in a folder name"
    if name.startswith(".") or name.endswith((" ", ".")):
        return f"class {name!r} cannot be a folder name (a leading dot hides it, a trailing dot or space is dropped)"
    if name.casefold() in SPLIT_NAMES:
        return f"class {name!r} would read as the {name.casefold()}/ split folder of an image folder"
    return None


SPLIT_NAMES = ("train", "test")  # an image folder's split folders (`folder.SPLIT_DIRS`)


def class_sort_key(name: str) -> tuple[int, int, str, str]:
    """Order of class folders: whole numbers numerically (2 before 10), then the rest by name.

    Digit folders 0-9 thus get labels 0-9, the same as MNIST's, which is what
    makes a folder of one's own digits compatible with the shipped model.
    """
    if name.isascii() and name.isdigit():
        return (0, int(name), "", name)
    return (1, 0, name.casefold(), name)


def read_classes_file(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from a classes.txt: one per line in label order (UTF-8; a BOM and a final newline are fine)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > _MAX_CLASSES_FILE_BYTES:
            raise DataError(f"{path}: {size:,} bytes; a class list is at most {_MAX_CLASSES_FILE_BYTES:,}")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            # An empty line in the middle would shift every later label by one.
            raise DataError(f"{path}: line {number} is empty; give one class name per line, in label order")
    return check_class_names((line.strip() for line in lines), str(path))
