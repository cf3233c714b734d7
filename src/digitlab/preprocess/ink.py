"""Clean ink: background (uneven light) and noise removed, strokes found by a threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .colour import border, to_grayscale_ink

WORK_SIDE = 1024  # larger images are reduced (area average) before the analysis


@dataclass(frozen=True)
class InkMap:
    """A cleaned ink map and the binary mask of its strokes (working resolution)."""

    ink: np.ndarray  # float32 (h, w) in [0, 1]: background 0, stroke cores 1
    mask: np.ndarray  # bool (h, w): stroke pixels
    scale: float  # working pixels per original pixel (<= 1)
    size: tuple[int, int]  # (width, height) of the original image


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


def _background(ink: np.ndarray) -> np.ndarray:
    """The ink map of the bare paper, float32 (h, w): constant for small images, a
    smooth surface for larger ones (uneven light and shadows in phone photos).

    Blocks of ~1/8 of the short side give a low percentile each (strokes are a
    minority); a 3x3 grey opening of the block grid (minimum, then maximum)
    removes blocks that a thick stroke fills while keeping a light gradient
    exactly; a bilinear resize makes the surface smooth.
    """
    h, w = ink.shape
    if min(h, w) < 64:
        return np.full(ink.shape, np.median(border(ink)), np.float32)
    # A smooth light field has its extremes on the border (vignetting, a lamp
    # on one side), so the paper inside lies within the border's range. This
    # stops digits that fill most of the picture from being taken for paper.
    lo, hi = np.percentile(border(ink), (2, 98))
    if lo == hi:  # a uniform border (clean scans, canvas drawings): the clip below makes the surface flat
        return np.full(ink.shape, lo, np.float32)
    bs = max(8, min(h, w) // 8)
    ny, nx = -(-h // bs), -(-w // bs)
    pad = np.pad(ink, ((0, ny * bs - h), (0, nx * bs - w)), mode="edge")
    blocks = pad.reshape(ny, bs, nx, bs).transpose(0, 2, 1, 3).reshape(ny, nx, bs * bs)
    grid = np.percentile(blocks, 30, axis=2).astype(np.float32)
    grid = _box_max(_box_min(grid))
    return np.clip(_interpolate(grid, bs, h, w), np.float32(lo), np.float32(hi))


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


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256 bins): the level that best splits them in two classes."""
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


def clean_ink(img: Image.Image) -> InkMap | None:
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
    resid = ink - bg
    paper = np.maximum(1.0 - bg, 0.05)
    clean = np.clip(resid / paper, 0.0, 1.0).astype(np.float32)
    if float(clean.max()) < 0.12:
        return None
    med = float(np.median(resid))
    sigma = 1.4826 * float(np.median(np.abs(resid - med))) / float(np.median(paper))
    thr = max(otsu(clean), 5.0 * sigma, 0.1)
    mask = clean > thr
    if not mask.any():
        return None
    fg, back = clean[mask], clean[~mask]
    if back.size and float(fg.mean() - back.mean()) < max(0.1, 6.0 * sigma):
        return None
    floor = min(3.0 * sigma, 0.5 * thr)
    top = float(np.percentile(fg, 90))
    soft = np.clip((clean - floor) / max(top - floor, 1e-3), 0.0, 1.0).astype(np.float32)
    return InkMap(ink=soft, mask=mask, scale=scale, size=(w0, h0))
