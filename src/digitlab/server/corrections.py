"""A folder of corrections: images people labelled themselves ("wrong? it's a 7"), ready to train on.

    corrections/
      7/20250101T120000Z-3f9a1c2b.png          the image as it was sent (its own format)
      .inputs/7/20250101T120000Z-3f9a1c2b.png  the 28x28 model input it became (what the model saw)

The layout is an image folder (`datasets.folder`: one sub-folder per class,
dot-folders ignored), so `digitlab train --data corrections/ --init pretrained`
fine-tunes on it as it is; the inputs are kept beside it for inspection.

Saving is safe against what a client sends: the file name is made here (a
UTC time and random hex), never taken from the request; the label must be
one of the model's class names and usable as a folder name; each file is
written atomically (a reader never sees half a file; the input is written
before the original, so every original the loader finds is complete, and
removed again if the original cannot be written); and
the folder is bounded in samples and bytes (`FolderFull` when full). The
counts are read from the disk on every save (a scan of at most `max_count`
entries, a few ms), so several server processes sharing the folder keep to
the limits up to the saves that race each other.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config.classes import folder_name_problem
from ..errors import DigitlabError
from .settings import DEFAULT_CORRECTIONS_MAX, DEFAULT_CORRECTIONS_MAX_BYTES

INPUTS_DIR = ".inputs"  # a dot-folder: the image-folder reader skips it
# The folder's default limits; their reasons are with the server's settings, which set them.
DEFAULT_MAX_COUNT = DEFAULT_CORRECTIONS_MAX
DEFAULT_MAX_BYTES = DEFAULT_CORRECTIONS_MAX_BYTES
# Formats kept as sent, by the extension the image-folder reader knows them by; others become PNG.
_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
               "WEBP": ".webp"}


class CorrectionError(DigitlabError):
    """A correction that cannot be saved (a bad label, no digit): the client's to fix."""


class FolderFull(DigitlabError):
    """The corrections folder holds as many samples or bytes as it may."""


@dataclass(frozen=True)
class Saved:
    """One saved correction: its id, label, and files relative to the folder (no server paths)."""

    id: str
    label: str
    file: str  # "<label>/<id>.<ext>", the image the trainer reads
    input_file: str  # ".inputs/<label>/<id>.png", the 28x28 model input
    count: int  # samples in the folder, this one included
    bytes: int


class CorrectionsFolder:
    """Saves labelled samples under `root` (see the module doc), within `max_count` and `max_bytes`."""

    def __init__(self, root: str | os.PathLike, classes: tuple[str, ...] | list[str], *,
                 max_count: int = DEFAULT_MAX_COUNT, max_bytes: int = DEFAULT_MAX_BYTES):
        from ..files.atomic import check_writable_dir

        if max_count < 1 or max_bytes < 1:
            raise DigitlabError(f"corrections limits must be positive (got {max_count} samples, {max_bytes} bytes)")
        # Created if missing (its parent must exist: a typo must not build a tree), and writable.
        self.root = check_writable_dir(root).resolve()
        self.classes = tuple(classes)
        self.max_count, self.max_bytes = int(max_count), int(max_bytes)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ checks

    def check_label(self, label: str) -> str:
        """`label` if it is one of the classes and can name a folder; else CorrectionError."""
        if label not in self.classes:
            shown = ", ".join(self.classes[:20]) + (" ..." if len(self.classes) > 20 else "")
            raise CorrectionError(f"label {label!r} is not one of the model's classes ({shown})")
        problem = folder_name_problem(label)
        if problem:
            raise CorrectionError(f"cannot keep corrections of this class in a folder: {problem}")
        return label

    def usage(self) -> tuple[int, int]:
        """(samples, bytes) in the folder now: the images the trainer reads, and all bytes (inputs too)."""
        count = size = 0
        for entry in _entries(self.root):
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name == INPUTS_DIR:
                files = [f for d in _entries(Path(entry.path)) if d.is_dir(follow_symlinks=False)
                         for f in _entries(Path(d.path))]
            elif entry.name.startswith("."):
                continue
            else:
                files = _entries(Path(entry.path))
            for f in files:
                if f.is_file(follow_symlinks=False):
                    size += f.stat(follow_symlinks=False).st_size
                    count += entry.name != INPUTS_DIR and not f.name.startswith(".")
        return count, size

    # ------------------------------------------------------------------ saving

    def save(self, data: bytes, model_input: np.ndarray, label: str, image: Any = None) -> Saved:
        """Save one sample: the image `data` as sent (or, in a format the trainer cannot read, `image`,
        its decoded PIL image, as PNG) and its uint8 (28, 28) `model_input`, under `label`."""
        from PIL import Image

        from ..files.atomic import atomic_path

        label = self.check_label(label)
        original, ext = _original(data, image)
        buf = io.BytesIO()
        Image.fromarray(np.asarray(model_input, np.uint8)).save(buf, "PNG")
        small = buf.getvalue()
        sample_id = f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
        target = self.root / label / f"{sample_id}{ext}"
        input_target = self.root / INPUTS_DIR / label / f"{sample_id}.png"
        for path in (target, input_target):  # defence in depth: the label was checked above
            if self.root not in path.parents or any(p.is_symlink() for p in (path.parent, path.parent.parent)):
                raise CorrectionError(f"label {label!r} does not lead to a folder inside the corrections folder")
        with self._lock:
            count, size = self.usage()
            if count >= self.max_count:
                raise FolderFull(f"the corrections folder holds {count:,} samples, its limit; train on them "
                                 f"(digitlab train --data DIR --init pretrained) and move them away, or raise the limit")
            if size + len(original) + len(small) > self.max_bytes:
                raise FolderFull(f"the corrections folder holds {size / 1e6:.1f} MB; this sample would pass its limit "
                                 f"of {self.max_bytes / 1e6:.1f} MB")
            with atomic_path(input_target) as tmp:
                tmp.write_bytes(small)
            try:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(original)
            except BaseException:  # a sample is both files or neither
                input_target.unlink(missing_ok=True)
                raise
        return Saved(sample_id, label, f"{label}/{target.name}", f"{INPUTS_DIR}/{label}/{input_target.name}",
                     count + 1, size + len(original) + len(small))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def _original(data: bytes, image: Any) -> tuple[bytes, str]:
    """The bytes to keep and their extension: as sent when the trainer reads the format, else PNG."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
    except Exception:  # noqa: BLE001 - decoded before (by the caller), so this is only belt and braces
        fmt = None
    if fmt in _EXTENSIONS:
        return data, _EXTENSIONS[fmt]
    if image is None:
        raise CorrectionError(f"cannot keep an image in format {fmt or 'unknown'}; send PNG or JPEG")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue(), ".png"
