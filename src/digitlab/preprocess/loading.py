"""Loading: bytes, paths, streams, PIL images and arrays -> a checked, decoded PIL image.

Every image from outside (CLI files, stdin, uploads, Python callers) enters
here. Anything that is not a complete, reasonably sized image becomes an
`ImageError("<name>: <what is wrong>")`, never a traceback.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
from PIL import Image, ImageOps

from ..errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], "Image.Image", np.ndarray]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 40_000_000  # a 40 MP photo is fine; a decompression bomb is not
MAX_BYTES = 64 * 1024 * 1024
_ORIENTATION = 0x0112  # the EXIF tag that says how to rotate the stored pixels for viewing


def load_image(source: ImageSource, *, name: str | None = None, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_BYTES) -> Image.Image:
    """Open and fully decode an image from a path, bytes, a binary file object,
    a PIL image or a numpy array ((H, W), (H, W, 1|2|3|4); uint8, uint16, bool or float).

    EXIF orientation is applied; multi-frame files (GIF, TIFF) give their first
    frame. Anything that is not a complete, reasonably sized image raises
    `ImageError("<name>: <what is wrong>")`: missing, empty, truncated,
    non-image, more than `max_bytes` bytes or more than `max_pixels` pixels
    (checked from the header, before any pixel is decoded).
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "<array>")
    if isinstance(source, Image.Image):
        label = name or "<image>"
        _check_size(source.size, label, max_pixels)
        return _decode(source, label, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        label = name or str(source)
        data = _read_file(Path(source), label, max_bytes)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        data = bytes(source)
    elif hasattr(source, "read"):
        label = name or str(getattr(source, "name", "<stream>"))
        data = source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{label}: expected a binary stream")
    else:
        raise ImageError(f"{name or '<input>'}: cannot read an image from a {type(source).__name__}")
    if len(data) == 0:
        raise ImageError(f"{label}: empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"{label}: file too large (more than {max_bytes // (1024 * 1024)} MiB)")
    try:
        with _quiet_pillow():
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise _too_large(label, max_pixels, _bomb_pixels(exc)) from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{label}: not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # noqa: BLE001 - any failure on untrusted bytes is a bad file
        raise ImageError(f"{label}: cannot read image header ({_reason(exc)})") from None
    _check_size(img.size, label, max_pixels)
    return _decode(img, label, max_pixels, owned=True)


def as_image(img: Any) -> Image.Image:
    """A PIL image as it is; anything else through `load_image`."""
    if isinstance(img, Image.Image):
        return img
    return load_image(img)


def _read_file(path: Path, label: str, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ImageError(f"{label}: is a directory")
        if size > max_bytes:
            raise ImageError(f"{label}: file too large ({size / 1024 / 1024:.0f} MiB; limit {max_bytes // (1024 * 1024)} MiB)")
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read file ({exc.strerror or exc})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Pillow's warnings about a file (corrupt EXIF, oversized tags, its own decompression-bomb
    limit, ...) stay inside loading: the pixels either load or give an ImageError.

    Only warnings raised from Pillow's modules (or this one, for Pillow's stacklevel=2
    ones) are ignored, so should two threads interleave `catch_warnings` (it is not
    thread-safe), what could outlive the block is that narrow filter, never a broad one.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        warnings.filterwarnings("ignore", module=re.escape(__name__) + "$")
        yield


def _too_large(label: str, max_pixels: int, pixels: int | None = None, size: tuple[int, int] | None = None) -> ImageError:
    """The one "too large" message: digitlab's pixel limit, never Pillow's."""
    if size is not None:
        what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels; "
    elif pixels is not None:
        what = f"{pixels:,} pixels; "
    else:
        what = ""
    return ImageError(f"{label}: image too large ({what}limit {max_pixels:,})")


def _bomb_pixels(exc: BaseException) -> int | None:
    """The pixel count in Pillow's DecompressionBombError text ("Image size (N pixels) exceeds ...")."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _check_size(size: tuple[int, int], label: str, max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{label}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise _too_large(label, max_pixels, size=size)


def require_finite(values: np.ndarray, label: str) -> None:
    """Float pixels must be numbers: NaN or infinity is a broken image, not a dark or bright one."""
    if not np.isfinite(values).all():
        raise ImageError(f"{label}: image contains NaN or infinite pixel values")


def _check_float_pixels(img: Image.Image, label: str) -> None:
    """`require_finite` for a float ("F") image, a band of rows at a time (bounded extra memory)."""
    if img.mode != "F":
        return
    w, h = img.size
    rows = max(1, (1 << 20) // max(w, 1))
    for y in range(0, h, rows):
        require_finite(np.asarray(img.crop((0, y, w, min(h, y + rows)))), label)


def _decode(img: Image.Image, label: str, max_pixels: int, owned: bool = False) -> Image.Image:
    """Decode fully and apply EXIF orientation; `owned`: the image was opened here, so it may be
    rotated in place. An image that needs no rotation (nearly every one) is never copied."""
    try:
        with _quiet_pillow():
            img.load()  # decode everything now: truncated data fails here, not later
            try:
                if owned:
                    ImageOps.exif_transpose(img, in_place=True)
                elif img.getexif().get(_ORIENTATION, 1) not in (0, 1):
                    img = ImageOps.exif_transpose(img)
            except Exception:  # noqa: BLE001 - a broken EXIF block does not spoil the pixels
                pass
            img.load()
    except Image.DecompressionBombError as exc:
        raise _too_large(label, max_pixels, _bomb_pixels(exc)) from None
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{label}: cannot decode image ({_reason(exc)}); the file may be truncated or corrupt") from None
    _check_float_pixels(img, label)
    return img


def _from_array(arr: np.ndarray, label: str) -> Image.Image:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)) or a.size == 0:
        raise ImageError(f"{label}: expected an array of shape (H, W) or (H, W, 1|2|3|4), got {a.shape}")
    _check_size((a.shape[1], a.shape[0]), label, MAX_PIXELS)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        require_finite(a, label)
        if a.ndim == 2:
            return Image.fromarray(a.astype(np.float32))  # mode F; scaled in to_grayscale_ink
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    elif a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a))  # mode I;16
    elif a.dtype != np.uint8:
        if a.dtype.kind not in "iu":
            raise ImageError(f"{label}: unsupported array dtype {a.dtype}")
        if a.min() < 0 or a.max() > 255:
            raise ImageError(f"{label}: integer pixel values must be 0..255 (got {a.min()}..{a.max()})")
        a = a.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))
