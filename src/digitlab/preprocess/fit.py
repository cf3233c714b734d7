"""Fitting one digit's ink into MNIST's format: 20x20 box, 28x28 field, centre of mass.

MNIST digits were made by fitting each digit into a 20x20 box (aspect ratio
kept, anti-aliased) and centring it by centre of mass in a 28x28 field,
white ink on black.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .ndimage import erode3, maximum_filter, minimum_filter

FIT_BOX = 20  # MNIST: the digit is fitted into 20x20 ...
FIELD = 28  # ... and centred by centre of mass in 28x28
COM_TARGET = 14.0  # measured on the MNIST test set: mean centre of mass is (13.99, 14.01)
THIN_ABOVE = 1.8  # strokes wider than this many times MNIST's are thinned (measured: best on thick markers)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width: 2 * area / perimeter (exact for long strokes)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    inner = erode3(np.asarray(mask, dtype=bool))
    perimeter = max(1, int((mask & ~inner).sum()))
    return 2.0 * area / perimeter


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
        width = stroke_width(mask)
        if 0 < width < 0.5 * target:
            k = int(min(2 * round((0.7 * target - width) / 2) + 1, 2 * (side // 10) + 1))
            if k >= 3:
                ink = maximum_filter(ink, k)
        elif width > THIN_ABOVE * target:  # marker strokes: thin them towards MNIST's width
            k = int(2 * round((width - 1.2 * target) / 2) + 1)
            if k >= 3:
                ink = minimum_filter(ink, k)
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
    if float((ring > 127).mean()) > 0.05 or float(np.median(a)) > 30 or a.max() < 128:
        return False
    ys, xs = np.nonzero(a > 30)
    if ys.size == 0 or ys.max() - ys.min() + 1 > 22 or xs.max() - xs.min() + 1 > 22:
        return False
    wts = a.astype(np.float64)
    total = wts.sum()
    cy = (wts.sum(axis=1) * np.arange(FIELD)).sum() / total
    cx = (wts.sum(axis=0) * np.arange(FIELD)).sum() / total
    return abs(cy - COM_TARGET) <= 2.5 and abs(cx - COM_TARGET) <= 2.5
