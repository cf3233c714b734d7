"""The only path from pixels to model input.

Training, evaluation, prediction and serving all call `to_model_input`, so the
scale and shape a model was trained with are the ones it is served with.
"""

from __future__ import annotations

import numpy as np

from .errors import DigitlabError

MNIST_SCALE = 1.0 / 255.0  # uint8 [0, 255] -> float [0, 1], as in the tutorial


def to_model_input(images: np.ndarray, *, scale: float = MNIST_SCALE) -> np.ndarray:
    """MNIST-format images -> float32 (N, 28, 28, 1) in [0, 1].

    Accepts uint8 (N, 28, 28), (28, 28) for one image, or already-shaped
    (N, 28, 28, 1). Values are scaled by `scale` (1/255 for uint8 pixels).
    """
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DigitlabError(f"expected images of shape (N, 28, 28), got {x.shape}")
    # One multiply into a fresh float32 array: no float64 intermediate (half the memory).
    out = np.multiply(x, np.float32(scale), dtype=np.float32)
    return out[..., None]


# ===========================================================================
# People's own images -> MNIST format (issue 4)
#
# MNIST digits were made by fitting each digit into a 20x20 box (aspect ratio
# kept, anti-aliased) and centring it by centre of mass in a 28x28 field,
# white ink on black. A model only works on real images that are brought into
# the same format, so every image goes through the steps below:
#
#   load_image            bytes/path/array/PIL -> PIL image (checked, EXIF-rotated)
#   to_grayscale_ink      any Pillow mode -> float ink map in [0, 1], ink = 1
#   clean_ink             background (uneven light) and noise removed
#   find_digit            one digit: ink cropped, fitted, centred -> uint8 (28, 28)
#   segment_digits        several digits: connected components, merged, split,
#                         ordered left to right -> [(box, uint8 (28, 28)), ...]
#
# Only numpy and Pillow are used, so prediction never has to import anything
# heavier than the inference runtime.
# ===========================================================================

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

from .errors import ImageError

#: A box in pixel coordinates of the (EXIF-rotated) input image: (x0, y0, x1, y1), x1/y1 exclusive.
Box = tuple[int, int, int, int]
ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], "Image.Image", np.ndarray]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 40_000_000  # a 40 MP photo is fine; a decompression bomb is not
MAX_BYTES = 64 * 1024 * 1024
FIT_BOX = 20  # MNIST: the digit is fitted into 20x20 ...
FIELD = 28  # ... and centred by centre of mass in 28x28
COM_TARGET = 14.0  # measured on the MNIST test set: mean centre of mass is (13.99, 14.01)
THIN_ABOVE = 1.8  # strokes wider than this many times MNIST's are thinned (measured: best on thick markers)
WORK_SIDE = 1024  # larger images are reduced (area average) before the analysis

try:  # Pillow is a dependency, but keep `to_model_input` importable without it.
    from PIL import Image, ImageFilter, ImageOps
except ImportError:  # pragma: no cover
    Image = ImageFilter = ImageOps = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- loading


def load_image(source: ImageSource, *, name: str | None = None, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_BYTES) -> "Image.Image":
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
    if Image is not None and isinstance(source, Image.Image):
        label = name or "<image>"
        _check_size(source.size, label, max_pixels)
        return _decode(source, label)
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
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: image too large ({exc})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{label}: not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # noqa: BLE001 - any failure on untrusted bytes is a bad file
        raise ImageError(f"{label}: cannot read image header ({_reason(exc)})") from None
    _check_size(img.size, label, max_pixels)
    return _decode(img, label, owned=True)


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


def _check_size(size: tuple[int, int], label: str, max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{label}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{label}: image too large ({w}x{h} = {w * h:,} pixels; limit {max_pixels:,})")


def _decode(img: "Image.Image", label: str, owned: bool = False) -> "Image.Image":
    """Decode fully and apply EXIF orientation; `owned`: the image was opened here, so it may be
    rotated in place (no copy of an image that needs no rotation, i.e. nearly every one)."""
    try:
        img.load()  # decode everything now: truncated data fails here, not later
        try:
            if owned:
                ImageOps.exif_transpose(img, in_place=True)
            else:
                img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a broken EXIF block does not spoil the pixels
            pass
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: image too large ({exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{label}: cannot decode image ({_reason(exc)}); the file may be truncated or corrupt") from None
    return img


def _from_array(arr: np.ndarray, label: str) -> "Image.Image":
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)) or a.size == 0:
        raise ImageError(f"{label}: expected an array of shape (H, W) or (H, W, 1|2|3|4), got {a.shape}")
    _check_size((a.shape[1], a.shape[0]), label, MAX_PIXELS)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError(f"{label}: array contains NaN or infinity")
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


# --------------------------------------------------------------------------- grey levels


def _luminance(img: "Image.Image") -> np.ndarray:
    """Grey level in [0, 1] (1 = white) of an image without alpha."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float32)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        if a.max() > 65535 or a.min() < 0:
            lo, hi = float(a.min()), float(a.max())
            return (a - lo) / max(hi - lo, 1e-6)
        return a / top
    if mode == "F":
        a = np.asarray(img).astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return a
        if lo >= 0.0 and hi <= 255.0:
            return a / 255.0
        return (a - lo) / max(hi - lo, 1e-6)
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode not in ("RGB",):
        try:
            img = img.convert("RGB")
        except Exception:  # noqa: BLE001 - e.g. LAB: use its lightness band
            img = img.getchannel(0)
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _split_alpha(img: "Image.Image") -> tuple["Image.Image", np.ndarray | None]:
    """(colour part, alpha in [0, 1] or None when the image is opaque)."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    elif img.mode in ("RGB", "L") and "transparency" in img.info:
        img = img.convert("RGBA" if img.mode == "RGB" else "LA")
    elif img.mode in ("RGBa", "La"):
        img = img.convert("RGBA" if img.mode == "RGBa" else "LA")
    if img.mode not in ("RGBA", "LA"):
        return img, None
    alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
    colour = img.convert("RGB" if img.mode == "RGBA" else "L")
    if alpha.min() >= 1.0:
        return colour, None
    return colour, alpha


def to_grayscale(img: "Image.Image") -> np.ndarray:
    """Grey level in [0, 1] (1 = white) with transparency made background.

    Transparent pixels become the background colour: when the opaque pixels
    cover most of the image they are the paper, so transparency takes their
    (median) grey; when they are a minority they are the ink, and transparency
    becomes the opposite extreme (white behind dark ink, black behind light
    ink). When the colour channels carry no information (canvas exports whose
    RGB is all black and whose ink is only in alpha), alpha itself is the ink.
    """
    colour, alpha = _split_alpha(img)
    gray = _luminance(colour)
    if alpha is None:
        return gray
    seen = alpha > 0.5
    if not seen.any():  # fully transparent: nothing to see
        return np.ones_like(gray)
    vals = gray[alpha > 0]
    if float(vals.max() - vals.min()) < 0.02:  # uniform colour: the shape is in alpha
        return (1.0 - alpha).astype(np.float32)  # alpha is the ink: dark ink on white paper
    if seen.mean() > 0.5:
        bg = float(np.median(gray[seen]))
    else:
        bg = 1.0 if float(np.median(gray[seen])) < 0.5 else 0.0
    return (gray * alpha + bg * (1.0 - alpha)).astype(np.float32)


def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    k = max(1, min(h, w) // 20)
    return np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()])


def _median(a: np.ndarray, wide: bool = False) -> float:
    """float(np.median(a)) for a non-empty array without NaN, with less overhead (same value).
    `wide`: as np.median of the array in float64 (the mean of the middle pair in float64)."""
    flat = np.asarray(a).ravel()
    n = flat.size
    k = n // 2
    if n % 2:
        return float(np.partition(flat, k)[k])
    part = np.partition(flat, (k - 1, k))[k - 1:k + 1]
    return float(np.mean(part.astype(np.float64) if wide else part))


def _percentiles(a: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """np.percentile(a, qs) (linear method) of a flat, finite, non-empty array; same values, less overhead."""
    flat = np.asarray(a).ravel()
    n = flat.size
    pos = [q / 100.0 * (n - 1) for q in qs]
    idx = sorted({min(int(np.floor(v)) + d, n - 1) for v in pos for d in (0, 1)})
    part = np.partition(flat, idx).astype(np.float64, copy=False)
    out = []
    for v in pos:
        i = int(np.floor(v))
        j = min(i + 1, n - 1)
        t = v - i
        lo, hi = float(part[i]), float(part[j])
        diff = hi - lo
        out.append(hi - diff * (1.0 - t) if t >= 0.5 else lo + diff * t)
    return out


def detect_polarity(gray: np.ndarray) -> str:
    """"dark-on-light" (ink on paper) or "light-on-dark" (MNIST, chalk on a board).

    Decided by the background, i.e. the border of the image: a bright border
    means dark ink; for a mid-grey border, the ink is on the side of the grey
    range that lies farther from the background.
    """
    g = np.asarray(gray, dtype=np.float32)
    bg = _median(_border(g))
    if bg >= 0.6:
        return "dark-on-light"
    if bg <= 0.4:
        return "light-on-dark"
    lo, hi = np.percentile(g, [0.5, 99.5])
    return "dark-on-light" if bg - lo > hi - bg else "light-on-dark"


def to_grayscale_ink(img: "Image.Image") -> np.ndarray:
    """Any Pillow image -> float32 (H, W) ink map in [0, 1], ink = 1 (white on black).

    Handles every Pillow mode (1, L, LA, P with transparency, RGB, RGBA,
    CMYK, YCbCr, I;16, I, F, ...); transparency is background; the polarity is
    detected from the background and inverted to ink-is-bright when needed.
    """
    gray = to_grayscale(img)
    if detect_polarity(gray) == "dark-on-light":
        return (1.0 - gray).astype(np.float32)
    return gray.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- background and noise


def _pad_linear(a: np.ndarray) -> np.ndarray:
    """Pad by one cell, continuing a linear trend (so an opening keeps ramps)."""
    if min(a.shape) < 2:
        return np.pad(a, 1, mode="edge")
    return np.pad(a, 1, mode="reflect", reflect_type="odd")


def _box_min(a: np.ndarray) -> np.ndarray:
    p = _pad_linear(a)
    h, w = a.shape
    return np.min([p[i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def _box_max(a: np.ndarray) -> np.ndarray:
    p = _pad_linear(a)
    h, w = a.shape
    return np.max([p[i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def _background(ink: np.ndarray) -> np.ndarray | float | tuple[float]:
    """The ink map of the bare paper: a constant for small images, a smooth
    surface for larger ones (uneven light and shadows in phone photos).

    Blocks of ~1/8 of the short side give a low percentile each (strokes are a
    minority); a 3x3 grey opening of the block grid (minimum, then maximum)
    removes blocks that a thick stroke fills while keeping a light gradient
    exactly; a bilinear resize makes the surface smooth. A flat surface (a
    uniform border clips it to one value) comes back as a 1-tuple (value,)
    instead of a full array, so clean scans skip the full-size work.
    """
    h, w = ink.shape
    if min(h, w) < 64:
        return _median(_border(ink))
    # A smooth light field has its extremes on the border (vignetting, a lamp
    # on one side), so the paper inside lies within the border's range. This
    # stops digits that fill most of the picture from being taken for paper.
    lo, hi = _percentiles(_border(ink), (2, 98))
    if lo == hi:  # a uniform border (clean scans, canvas drawings): the clip below makes the surface flat
        return (lo,)
    bs = max(8, min(h, w) // 8)
    ny, nx = -(-h // bs), -(-w // bs)
    pad = np.pad(ink, ((0, ny * bs - h), (0, nx * bs - w)), mode="edge")
    blocks = pad.reshape(ny, bs, nx, bs).transpose(0, 2, 1, 3).reshape(ny, nx, bs * bs)
    grid = np.percentile(blocks, 30, axis=2).astype(np.float32)
    grid = _box_max(_box_min(grid))
    return np.clip(_interpolate(grid, bs, h, w), np.float64(lo), np.float64(hi))


def _axis_weights(n: int, bs: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(size, dtype=np.float32) - (bs - 1) / 2) / bs  # position in block-centre units
    i0 = np.clip(np.floor(t).astype(np.int64), 0, max(n - 2, 0))
    f = (t - i0).astype(np.float32) if n > 1 else np.zeros(size, np.float32)
    return i0, f


def _interpolate(grid: np.ndarray, bs: int, h: int, w: int) -> np.ndarray:
    """Bilinear surface through the block centres, extrapolated linearly to the
    image edges (a flat edge would leave half a block of light gradient)."""
    ny, nx = grid.shape
    iy, fy = _axis_weights(ny, bs, h)
    ix, fx = _axis_weights(nx, bs, w)
    jy, jx = np.minimum(iy + 1, ny - 1), np.minimum(ix + 1, nx - 1)
    rows = grid[iy] * (1 - fy)[:, None] + grid[jy] * fy[:, None]  # (h, nx)
    return (rows[:, ix] * (1 - fx)[None, :] + rows[:, jx] * fx[None, :]).astype(np.float32)


def _otsu(values: np.ndarray) -> float:
    # == np.histogram(values, bins=256, range=(0, 1)) for values in [0, 1]: v * 256 is exact
    # (a power of two), so flooring it gives numpy's bin, the last bin closed.
    idx = np.minimum((values.ravel() * np.float32(256)).astype(np.intp), 255)
    hist = np.bincount(idx, minlength=256).astype(np.float64)
    edges = np.linspace(0.0, 1.0, 257)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centers)
    m0 = s0 / np.maximum(w0, 1e-12)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


@dataclass(frozen=True)
class InkMap:
    """A cleaned ink map and the binary mask of its strokes (working resolution)."""

    ink: np.ndarray  # float32 (h, w) in [0, 1]: background 0, stroke cores 1
    mask: np.ndarray  # bool (h, w): stroke pixels
    scale: float  # working pixels per original pixel (<= 1)
    size: tuple[int, int]  # (width, height) of the original image


def clean_ink(img: "Image.Image") -> InkMap | None:
    """Background, uneven light and noise removed; None when there is no ink.

    "No ink" means: a uniform image, or one whose only structure is noise (the
    strokes must stand out from the background by many times the noise level).
    """
    ink = to_grayscale_ink(img)
    h0, w0 = ink.shape
    scale = 1.0
    if max(h0, w0) > WORK_SIDE:
        scale = WORK_SIDE / max(h0, w0)
        size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        ink = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BOX), dtype=np.float32)
    bg = _background(ink)
    if isinstance(bg, tuple) and bg[0] == 0.0:
        # Flat, perfectly clean paper (canvas drawings, clean scans): the general
        # steps below reduce to this, computed in float32 without the full-size
        # background (same values: subtracting 0 and dividing by 1 are exact).
        clean = np.clip(ink, 0.0, 1.0)
        if float(clean.max()) < 0.12:
            return None
        # More than half the pixels exactly 0 (paper): the median is 0 without sorting anything.
        med = 0.0 if 2 * (np.count_nonzero(ink) + 1) < ink.size else _median(ink, wide=True)
        if med == 0.0 and float(ink.min()) >= 0.0:
            sigma = 0.0  # most pixels are exactly 0, so is the median of |ink - 0|
        else:
            resid = ink.astype(np.float64)
            sigma = 1.4826 * _median(np.abs(resid - med))
    else:
        if isinstance(bg, tuple):
            bg = np.full(ink.shape, bg[0], np.float64)
        resid = ink - bg
        paper = np.maximum(1.0 - bg, 0.05)
        clean = np.clip(resid / paper, 0.0, 1.0).astype(np.float32)
        if float(clean.max()) < 0.12:
            return None
        med = _median(resid)
        paper_med = float(paper) if np.ndim(paper) == 0 else _median(paper)
        sigma = 1.4826 * _median(np.abs(resid - med)) / paper_med
    thr = max(_otsu(clean), 5.0 * sigma, 0.1)
    mask = clean > thr
    if not mask.any():
        return None
    fg, back = clean[mask], clean[~mask]
    if back.size and float(fg.mean() - back.mean()) < max(0.1, 6.0 * sigma):
        return None
    floor = min(3.0 * sigma, 0.5 * thr)
    top = _percentiles(fg, (90,))[0]
    soft = np.clip((clean - floor) / max(top - floor, 1e-3), 0.0, 1.0).astype(np.float32)
    return InkMap(ink=soft, mask=mask, scale=scale, size=(w0, h0))


# --------------------------------------------------------------------------- connected components


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (int32 labels, 0 = background; count).

    Run-length based and fully vectorised (numpy only): runs of each row are
    linked to the overlapping runs of the next row, then linked runs are
    joined by repeated hooking and pointer jumping.
    """
    labels, count, _ = _label_runs(mask)
    return labels, count


def _label_runs(mask: np.ndarray) -> tuple[np.ndarray, int, tuple[np.ndarray, ...] | None]:
    """`label_components` plus each component's box and area, gathered from the
    runs (far fewer than pixels): (labels, count, (x0, y0, x1, y1, area)), arrays
    indexed by label (entry 0 unused); None for the stats when there is no ink."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    # One pass over the edges: +1 opens a run, -1 closes it (exclusive); row-major order.
    at = np.flatnonzero(d)
    opening = d.ravel()[at] > 0
    rows, starts = np.divmod(at[opening], w + 1)
    ends = at[~opening] % (w + 1)
    n = rows.size
    if n == 0:
        return labels, 0, None
    k = w + 2
    start_key = rows.astype(np.int64) * k + starts
    end_key = rows.astype(np.int64) * k + ends
    nxt = (rows.astype(np.int64) + 1) * k
    lo = np.searchsorted(end_key, nxt + starts, side="left")  # runs below with end >= start
    hi = np.searchsorted(start_key, nxt + ends, side="right")  # ... and start <= end (8-connected)
    counts = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), counts)
    b = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    parent = np.arange(n)
    while a.size:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            break
        ra, rb = ra[differ], rb[differ]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    _, comp = np.unique(parent, return_inverse=True)
    comp = comp.astype(np.int32) + 1
    lengths = ends - starts
    flat = np.repeat(rows.astype(np.int64) * w + starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    labels.ravel()[flat] = np.repeat(comp, lengths)
    count = int(comp.max())
    # starts/ends are pixel columns already: d[:, j] compares padded columns j and j + 1 (pixels j - 1, j)
    x0 = np.full(count + 1, w, np.int64); np.minimum.at(x0, comp, starts)
    x1 = np.zeros(count + 1, np.int64); np.maximum.at(x1, comp, ends)
    y0 = np.full(count + 1, h, np.int64); np.minimum.at(y0, comp, rows)
    y1 = np.zeros(count + 1, np.int64); np.maximum.at(y1, comp, rows + 1)
    area = np.bincount(comp, weights=lengths, minlength=count + 1).astype(np.int64)
    return labels, count, (x0, y0, x1, y1, area)


@dataclass
class _Part:
    ids: list[int]
    x0: int
    y0: int
    x1: int
    y1: int
    area: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    def join(self, other: "_Part") -> "_Part":
        return _Part(self.ids + other.ids, min(self.x0, other.x0), min(self.y0, other.y0),
                     max(self.x1, other.x1), max(self.y1, other.y1), self.area + other.area)


def _parts_from_stats(count: int, stats: tuple[np.ndarray, ...] | None, min_fraction: float = 0.05) -> list[_Part]:
    """`_parts` from `_label_runs`' statistics."""
    if count == 0 or stats is None:
        return []
    x0, y0, x1, y1, area = (v.tolist() for v in stats)
    keep = max(2.0, min_fraction * float(max(area[1:])))
    return [_Part([i], x0[i], y0[i], x1[i], y1[i], area[i]) for i in range(1, count + 1) if area[i] >= keep]


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def _should_merge(p: _Part, q: _Part) -> bool:
    """Pieces of one broken digit: stacked in the same columns (a 5's separate
    top bar, the two loops of an 8), or one lying inside the other's box."""
    cols = _overlap(p.x0, p.x1, q.x0, q.x1)
    rows = _overlap(p.y0, p.y1, q.y0, q.y1)
    small, large = (p, q) if p.w * p.h <= q.w * q.h else (q, p)
    if cols * rows >= 0.8 * small.w * small.h:  # inside the other's box
        return True
    return cols >= 0.5 * min(p.w, q.w) and rows <= 0.5 * min(p.h, q.h)


def _group(parts: list[_Part]) -> list[_Part]:
    groups = sorted(parts, key=lambda p: p.x0)
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _should_merge(groups[i], groups[j]):
                    groups[i] = groups[i].join(groups.pop(j))
                    merged = True
                    break
            if merged:
                break
    # Every digit of a written number spans most of the line's height, so a
    # piece under half the tallest group's height (a 5's detached top bar set
    # off to the side, a stray end of a stroke) is part of its nearest
    # neighbour, not a digit of its own. Measured: 5 of 1,000 clean MNIST
    # digits were read as two digits without this.
    while len(groups) > 1:
        tallest = max(g.h for g in groups)
        short = [g for g in groups if g.h < 0.5 * tallest]
        if not short:
            break
        piece = min(short, key=lambda g: g.h)
        others = [g for g in groups if g is not piece]
        nearest = min(others, key=lambda g: (_gap(piece, g), abs((g.x0 + g.x1) - (piece.x0 + piece.x1))))
        groups = [g for g in others if g is not nearest] + [nearest.join(piece)]
    return sorted(groups, key=lambda g: (g.x0 + g.x1) / 2)


def _gap(p: _Part, q: _Part) -> int:
    """Horizontal distance between two boxes (0 when their columns overlap)."""
    return max(0, max(p.x0, q.x0) - min(p.x1, q.x1))


def _split_wide(group: _Part, mask: np.ndarray) -> list[_Part]:
    """Split touching digits at a clear valley of the column profile (a group
    much wider than tall whose ink thins out to a thread somewhere inside)."""
    if group.w < 1.4 * group.h or group.h < 4:
        return [group]
    sub = mask[group.y0:group.y1, group.x0:group.x1]
    prof = sub.sum(axis=0).astype(np.float32)
    lo, hi = int(0.25 * group.h), group.w - int(0.25 * group.h)  # each side at least 1/4 of the height wide
    if hi - lo < 1:
        return [group]
    cut = lo + int(np.argmin(prof[lo:hi]))
    if prof[cut] > 0.12 * prof.max() or prof[cut] > 0.2 * group.h:
        return [group]
    left = _tight(_Part(group.ids, group.x0, group.y0, group.x0 + cut, group.y1, 0), mask)
    right = _tight(_Part(group.ids, group.x0 + cut + 1, group.y0, group.x1, group.y1, 0), mask)
    if left is None or right is None:
        return [group]
    return _split_wide(left, mask) + _split_wide(right, mask)


def _tight(p: _Part, mask: np.ndarray) -> _Part | None:
    sub = mask[p.y0:p.y1, p.x0:p.x1]
    ys, xs = np.nonzero(sub)
    if ys.size == 0:
        return None
    return _Part(p.ids, p.x0 + int(xs.min()), p.y0 + int(ys.min()), p.x0 + int(xs.max()) + 1,
                 p.y0 + int(ys.max()) + 1, int(ys.size))


# --------------------------------------------------------------------------- fitting into 28x28


def _spread3(mask: np.ndarray, grow: bool) -> np.ndarray:
    """3x3 binary dilation (grow) or erosion of a bool mask, the window clipped at the
    edges: the same as Pillow's Max/MinFilter(3) (which replicates the edge), but
    separable boolean slices instead of a per-pixel sort (~10x faster)."""
    op = np.logical_or if grow else np.logical_and
    r = mask.copy()
    op(r[1:], mask[:-1], out=r[1:])
    op(r[:-1], mask[1:], out=r[:-1])
    c = r.copy()
    op(c[:, 1:], r[:, :-1], out=c[:, 1:])
    op(c[:, :-1], r[:, 1:], out=c[:, :-1])
    return c


def _dilate(mask: np.ndarray, size: int = 3) -> np.ndarray:
    if size == 3:
        return _spread3(np.asarray(mask, dtype=bool), True)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.filter(ImageFilter.MaxFilter(size))) > 0


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width: 2 * area / perimeter (exact for long strokes)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    inner = _spread3(np.asarray(mask, dtype=bool), False)
    perimeter = max(1, int((mask & ~inner).sum()))
    return 2.0 * area / perimeter


def _rank(a: np.ndarray, k: int, op: Any) -> np.ndarray:
    """k x k maximum or minimum filter (separable; edges padded with zeros)."""
    from numpy.lib.stride_tricks import sliding_window_view

    r = k // 2
    p = np.pad(a, ((0, 0), (r, r)))
    a = op(sliding_window_view(p, k, axis=1), axis=-1)
    p = np.pad(a, ((r, r), (0, 0)))
    return op(sliding_window_view(p, k, axis=0), axis=-1).astype(np.float32)


def fit_to_mnist(ink: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """A cropped float ink map (ink = 1) -> uint8 (28, 28) the MNIST way.

    Strokes much thinner than MNIST's (~2.3 px in 20 px, e.g. a 1-px pencil
    line in a 500-px drawing) are thickened first so they survive the
    reduction; then the ink is fitted into 20x20 keeping its aspect ratio
    (Lanczos, i.e. anti-aliased), its contrast stretched to full range, and
    it is placed in 28x28 with its centre of mass at pixel (14, 14).
    """
    ink = np.asarray(ink, dtype=np.float32)
    h, w = ink.shape
    side = max(h, w)
    if mask is not None and side > 2 * FIT_BOX:
        target = 2.3 * side / FIT_BOX  # MNIST's stroke width at this scale
        width = _stroke_width(mask)
        if 0 < width < 0.5 * target:
            k = int(min(2 * round((0.7 * target - width) / 2) + 1, 2 * (side // 10) + 1))
            if k >= 3:
                ink = _rank(ink, k, np.max)
        elif width > THIN_ABOVE * target:  # marker strokes: thin them towards MNIST's width
            k = int(2 * round((width - 1.2 * target) / 2) + 1)
            if k >= 3:
                ink = _rank(ink, k, np.min)
    scale = FIT_BOX / side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    small = np.clip(small, 0.0, None)
    top = float(small.max())
    if top <= 0:
        small = np.zeros_like(small)
    else:
        small = np.clip(small / top, 0.0, 1.0)
    sh, sw = small.shape
    total = float(small.sum())
    cy = float((small.sum(axis=1) * np.arange(sh)).sum() / total) if total else (sh - 1) / 2
    cx = float((small.sum(axis=0) * np.arange(sw)).sum() / total) if total else (sw - 1) / 2
    y = int(np.clip(round(COM_TARGET - cy), 0, FIELD - sh))
    x = int(np.clip(round(COM_TARGET - cx), 0, FIELD - sw))
    out = np.zeros((FIELD, FIELD), np.float32)
    out[y:y + sh, x:x + sw] = small
    return np.round(out * 255.0).astype(np.uint8)


def is_mnist_like(img: "Image.Image | np.ndarray") -> bool:
    """A 28x28 single-channel image that already looks like MNIST: white on
    black, a dark border, the ink within about 20x20 and centred. Such images
    are given to the model unchanged."""
    if isinstance(img, np.ndarray):
        a = img
    else:
        if img.mode != "L" or img.size != (FIELD, FIELD):
            return False
        a = np.asarray(img)
    if a.shape != (FIELD, FIELD) or a.dtype != np.uint8:
        return False
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if float((ring > 127).mean()) > 0.05 or _median(a) > 30 or a.max() < 128:
        return False
    ys, xs = np.nonzero(a > 30)
    if ys.size == 0 or ys.max() - ys.min() + 1 > 22 or xs.max() - xs.min() + 1 > 22:
        return False
    wts = a.astype(np.float64)
    total = wts.sum()
    cy = (wts.sum(axis=1) * np.arange(FIELD)).sum() / total
    cx = (wts.sum(axis=0) * np.arange(FIELD)).sum() / total
    return abs(cy - COM_TARGET) <= 2.5 and abs(cx - COM_TARGET) <= 2.5


def _ink_box(a: np.ndarray) -> Box:
    ys, xs = np.nonzero(a)
    if ys.size == 0:
        return (0, 0, a.shape[1], a.shape[0])
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _original_box(p: _Part, m: InkMap) -> Box:
    w, h = m.size
    s = m.scale
    return (max(0, int(np.floor(p.x0 / s))), max(0, int(np.floor(p.y0 / s))),
            min(w, int(np.ceil(p.x1 / s))), min(h, int(np.ceil(p.y1 / s))))


def _render(p: _Part, labels: np.ndarray, m: InkMap) -> np.ndarray:
    pad = 2
    y0, y1 = max(0, p.y0 - pad), min(labels.shape[0], p.y1 + pad)
    x0, x1 = max(0, p.x0 - pad), min(labels.shape[1], p.x1 + pad)
    sub = labels[y0:y1, x0:x1]
    own = sub == p.ids[0] if len(p.ids) == 1 else np.isin(sub, p.ids)
    own[: p.y0 - y0] = False
    own[p.y1 - y0:] = False
    own[:, : p.x0 - x0] = False
    own[:, p.x1 - x0:] = False
    region = m.ink[y0:y1, x0:x1] * _dilate(own, 3)
    # crop to the stroke box itself (the soft edges may reach a pixel beyond)
    by0, bx0 = p.y0 - y0, p.x0 - x0
    crop = region[by0:by0 + p.h, bx0:bx0 + p.w]
    return fit_to_mnist(crop, own[by0:by0 + p.h, bx0:bx0 + p.w])


def _analyse(img: "Image.Image") -> tuple[InkMap, np.ndarray, list[_Part]] | None:
    m = clean_ink(img)
    if m is None:
        return None
    labels, count, stats = _label_runs(m.mask)
    parts = _parts_from_stats(count, stats)
    if not parts:
        return None
    big = max(parts, key=lambda p: p.area)
    h, w = m.mask.shape
    if max(big.w, big.h) < max(4, 0.01 * max(h, w)):
        return None  # dust, not a digit
    return m, labels, parts


def _as_image(img: Any) -> "Image.Image":
    if Image is not None and isinstance(img, Image.Image):
        return img
    return load_image(img)


def find_digit(img: Any) -> tuple[Box, np.ndarray] | None:
    """One digit: (box of the ink in the image's pixels, uint8 (28, 28)); None when there is no ink.

    All ink (after dropping specks) is taken as one digit. MNIST-like images
    pass through unchanged.
    """
    img = _as_image(img)
    if is_mnist_like(img):
        a = np.array(img, dtype=np.uint8)
        return _ink_box(a), a
    found = _analyse(img)
    if found is None:
        return None
    m, labels, parts = found
    whole = parts[0]
    for p in parts[1:]:
        whole = whole.join(p)
    return _original_box(whole, m), _render(whole, labels, m)


def normalize_digit(img: Any) -> np.ndarray | None:
    """Any image (see `load_image`) -> uint8 (28, 28) MNIST-format digit, or None if blank."""
    found = find_digit(img)
    return None if found is None else found[1]


def segment_digits(img: Any) -> list[tuple[Box, np.ndarray]]:
    """Several digits in a row -> [(box, uint8 (28, 28)), ...] from left to right.

    Connected components of the ink; specks tiny next to the largest piece
    are dropped; pieces of one broken digit (stacked in the same columns, or
    inside another's box) are merged; touching digits are split at a clear
    valley of the column profile. An empty list means no ink.
    """
    img = _as_image(img)
    if is_mnist_like(img):
        a = np.array(img, dtype=np.uint8)
        return [(_ink_box(a), a)]
    found = _analyse(img)
    if found is None:
        return []
    m, labels, parts = found
    groups = []
    for g in _group(parts):
        groups.extend(_split_wide(g, m.mask & np.isin(labels, g.ids)) if g.w >= 1.4 * g.h else [g])
    groups.sort(key=lambda g: (g.x0 + g.x1) / 2)
    return [(_original_box(g, m), _render(g, labels, m)) for g in groups]
