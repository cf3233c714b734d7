"""Fitting one digit's ink into MNIST's format: 20x20 box, 28x28 field, centre of mass.

MNIST digits were made by fitting each digit into a 20x20 box (aspect ratio
kept, anti-aliased) and centring it by centre of mass in a 28x28 field,
white ink on black.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .lines import line_mask
from .ndimage import erode3, maximum_filter, minimum_filter

FIT_BOX = 20  # MNIST: the digit is fitted into 20x20 ...
FIELD = 28  # ... and centred by centre of mass in 28x28
COM_TARGET = 14.0  # measured on the MNIST test set: mean centre of mass is (13.99, 14.01)
THIN_ABOVE = 1.8  # strokes wider than this many times MNIST's are thinned (measured: best on thick markers)


MNIST_STROKE = 2.3  # MNIST's mean stroke width in its 20-px box
FIT_WORK = 4 * FIT_BOX  # strokes are thickened or thinned on a grid at most this many px on its long side


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width: 2 * area / perimeter (exact for long strokes; half the side of a filled
    square). Pixels beyond the crop are background, so it never exceeds the crop's short side."""
    m = np.asarray(mask, dtype=bool)
    area = int(m.sum())
    if area == 0:
        return 0.0
    perimeter = int((m & ~erode3(m, outside=False)).sum())
    return 2.0 * area / max(1, perimeter)


def _odd(x: float) -> int:
    """The odd window size nearest to x (at least 1)."""
    return max(1, 2 * round((x - 1) / 2) + 1)


def _pool(a: np.ndarray, r: int, keep_max: bool) -> np.ndarray:
    """Reduce by r in each direction: block maximum (keep_max: a hairline keeps its full strength) or mean."""
    if r == 1:
        return a
    if not keep_max:
        return np.asarray(Image.fromarray(a).reduce(r), dtype=np.float32)
    h, w = a.shape
    p = np.pad(a, ((0, -h % r), (0, -w % r)))
    return p.reshape(p.shape[0] // r, r, p.shape[1] // r, r).max(axis=(1, 3))


def _thin(a: np.ndarray, k: int) -> np.ndarray:
    """Grey erosion by a k x k window that never erases the shape: the window shrinks
    until some of the strokes' full-strength core survives (a filled square, a bar or a
    line stays a square, a bar or a line)."""
    top = float(a.max())
    while k >= 3:
        thin = minimum_filter(a, k)
        if float(thin.max()) >= 0.5 * top:
            return thin
        k = _odd(k / 2)
    return a


def _restroke(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Bring strokes towards MNIST's width before the fit: hairlines are thickened so they
    survive the reduction, marker strokes are thinned. Done on a grid of at most FIT_WORK px,
    so every window is bounded (under FIT_WORK // 2) whatever the image size."""
    h, w = ink.shape
    side = max(h, w)
    target = MNIST_STROKE * side / FIT_BOX  # MNIST's stroke width at this scale
    width = stroke_width(mask)
    r = -(-side // FIT_WORK)
    if 0 < width < 0.5 * target:
        grid = _pool(ink, r, keep_max=True)
        k = min(_odd((0.7 * target - width) / r), 2 * (max(grid.shape) // 10) + 1)
        return maximum_filter(grid, k) if k >= 3 else grid
    if width > THIN_ABOVE * target:  # marker strokes: thin them towards MNIST's width
        grid = _pool(ink, r, keep_max=False)
        k = min(_odd((width - 1.2 * target) / r), FIT_WORK // 2 - 1)
        return _thin(grid, k) if k >= 3 else grid
    return ink


def fit_to_mnist(ink: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """A cropped float ink map (ink = 1) -> uint8 (28, 28) the MNIST way.

    With the strokes' `mask`, strokes much thinner than MNIST's (~2.3 px in
    20 px, e.g. a 1-px pencil line in a 500-px drawing) are thickened and
    marker strokes thinned first (see `_restroke`); then the ink is fitted
    into 20x20 keeping its aspect ratio (Lanczos, i.e. anti-aliased), its
    contrast stretched to full range, and it is placed in 28x28 with its
    centre of mass at pixel (14, 14). Ink never comes out as an empty field.
    """
    ink = np.asarray(ink, dtype=np.float32)
    h, w = ink.shape
    side = max(h, w)
    if mask is not None and side > 2 * FIT_BOX:
        ink = _restroke(ink, mask)
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


MNIST_EXTENT = 22  # an MNIST digit's ink lies within 20x20; 22 leaves a pixel of anti-aliasing either side
# ... and this share of it must: a thin line or a few faint blotches across an MNIST digit (which
# the model has learnt to ignore) do not make it a digit of another format, while a digit drawn
# too large for the 20x20 box (a 26-px ring) has a quarter of its ink outside any 22x22 window.
IN_EXTENT = 0.9


def _mass_in_window(wts: np.ndarray, k: int) -> float:
    """The most ink any k x k window of the image holds (summed-area table)."""
    s = np.pad(wts, ((1, 0), (1, 0))).cumsum(axis=0).cumsum(axis=1)
    return float((s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]).max())


def is_mnist_like(img: Image.Image | np.ndarray) -> bool:
    """A 28x28 single-channel image that already looks like MNIST: white on
    black, a dark border, (nearly all) the ink within about 20x20 and centred.
    A thin line across the field (see `lines.line_mask`) is left out of these
    checks: the digit is what must fit. Such images are given to the model
    unchanged (line included: the model has learnt to read through lines)."""
    if isinstance(img, np.ndarray):
        a = img
    else:
        if img.mode != "L" or img.size != (FIELD, FIELD):
            return False
        a = np.asarray(img)
    if a.shape != (FIELD, FIELD) or a.dtype != np.uint8:
        return False
    if float(np.median(a)) > 30 or a.max() < 128:
        return False
    line = line_mask(a)
    if line.any():  # the line and its anti-aliased fringe, a pixel above and below
        line[1:] |= line[:-1].copy()
        line[:-1] |= line[1:].copy()
        a = np.where(line, 0, a).astype(np.uint8)
        if a.max() < 128:
            return False
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if float((ring > 127).mean()) > 0.05:
        return False
    wts = a.astype(np.float64)
    total = wts.sum()
    if _mass_in_window(wts, MNIST_EXTENT) < IN_EXTENT * total:
        return False
    cy = (wts.sum(axis=1) * np.arange(FIELD)).sum() / total
    cx = (wts.sum(axis=0) * np.arange(FIELD)).sum() / total
    return abs(cy - COM_TARGET) <= 2.5 and abs(cx - COM_TARGET) <= 2.5
