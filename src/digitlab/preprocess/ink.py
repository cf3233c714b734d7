"""Clean ink: background (uneven light) and noise removed, strokes found by a threshold.

The model of an image: ink map = paper + noise + ink, where the paper is a
smooth surface (uneven light: a lamp on one side, vignetting) and ink only
ever adds to it. Both estimates below lean on that one-sidedness: the paper
is the lower envelope of the image, and the noise shows in the lower tail of
the residual, which no ink reaches. So they hold however much of the image
the ink covers: a digit cropped tightly, a thick marker, a filled shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from .colour import working_ink
from .ndimage import maximum_filter, minimum_filter

PAPER_PERCENTILE = 30  # each block's paper level: strokes are a minority of most blocks
PAPER_TOLERANCE = 0.08  # a block this far above the paper surface holds ink (or a shadow), not paper
BARE_SPREAD = 0.06  # a block whose 5th and 30th percentiles are this close holds no stroke edge
SHADOW_DEPTH = 0.7  # a shadow darkens paper by at most this share of the way to the darkest ink
_BLOCK_SAMPLES = 16  # at most this many samples per block side: the grid costs the same for any image
_DIFF_ROWS = 64  # rows whose neighbour differences measure the noise: enough, and cheap at any size
# Sharp edges: the 99th percentile of the neighbour differences both far above their median (a
# heavy tail: 3.6-4.7x for Gaussian noise of any grain, 7.6x and more for a digit on fog) and well
# above the residual tail's sigma (0.4x at most for smooth noise whose differences are heavy-tailed
# by quantisation alone; 2.5x and more for a digit on fog).
_HEAVY = 6.0
_EDGES = 1.5
_Z_1_10 = 1.0451  # distance between the 1st and 10th percentiles of a normal distribution, in sigmas


@dataclass(frozen=True)
class InkMap:
    """A cleaned ink map and the binary mask of its strokes (working resolution)."""

    ink: np.ndarray  # float32 (h, w) in [0, 1]: background 0, stroke cores 1
    mask: np.ndarray  # bool (h, w): stroke pixels
    scale: float  # working pixels per original pixel
    size: tuple[int, int]  # (width, height) of the original image
    faint: float = 1.0  # ink level of the faint parts of strokes (half the threshold): they link pieces


@dataclass(frozen=True)
class _Blocks:
    """Low percentiles of blocks of ~1/8 of the image's short side."""

    paper: np.ndarray  # (ny, nx) PAPER_PERCENTILE of each block: its paper level unless ink fills it
    low: np.ndarray  # (ny, nx) 5th percentile of each block
    size: int  # block side in pixels
    v: np.ndarray  # (ny, nx) block centres, normalised coordinates (the image's long side spans [-1, 1])
    u: np.ndarray


def _blocks(ink: np.ndarray) -> _Blocks:
    h, w = ink.shape
    bs = max(8, min(h, w) // 8)
    step = max(1, bs // _BLOCK_SAMPLES)
    bs -= bs % step
    ny, nx = -(-h // bs), -(-w // bs)
    pad = np.pad(ink, ((0, ny * bs - h), (0, nx * bs - w)), mode="edge")[::step, ::step]
    n = bs // step
    values = pad.reshape(ny, n, nx, n).transpose(0, 2, 1, 3).reshape(ny, nx, n * n)
    k = values.shape[2] - 1
    ranks = (round(0.05 * k), round(PAPER_PERCENTILE / 100 * k))  # nearest-rank percentiles: one partition
    part = np.partition(values, ranks, axis=2)
    low, paper = part[..., ranks[0]], part[..., ranks[1]]
    half = max(h, w) / 2
    v, u = np.meshgrid(((np.arange(ny) + 0.5) * bs - h / 2) / half, ((np.arange(nx) + 0.5) * bs - w / 2) / half,
                       indexing="ij")
    return _Blocks(paper, low, bs, v, u)


def _terms(v: np.ndarray, u: np.ndarray, degree: int) -> list[np.ndarray]:
    """The monomials of a surface of `degree` (0, 1 or 2) in normalised coordinates."""
    t = [np.ones_like(u)]
    if degree >= 1:
        t += [u, v]
    if degree >= 2:
        t += [u * u, u * v, v * v]
    return t


def _paper_surface(b: _Blocks) -> tuple[np.ndarray, int, float, float]:
    """The smooth paper surface through the blocks: (coefficients, degree, lowest and highest
    paper level seen).

    Fitted from the lower envelope up: it starts from the palest quarter of
    the blocks and takes in every block within PAPER_TOLERANCE above it,
    refitting until nothing changes. Blocks that ink fills stay far above and
    out, wherever they are (a digit touching the edge, a filled square), so
    ink is never taken for paper, while light that varies smoothly (a lamp on
    one side, vignetting) is followed. A slope needs blocks in 3 rows and
    columns, a curvature 4 (fewer would let the surface bend up into the ink).
    """
    g, v, u = b.paper.ravel(), b.v.ravel(), b.u.ravel()
    kept = g <= _quantiles(g, 25)[0] + PAPER_TOLERANCE
    paper = g[kept]
    if 2 * np.count_nonzero(paper == paper.min()) > paper.size:  # most of the paper exactly even: digital
        return np.array([float(paper.min())]), 0, float(paper.min()), float(paper.min())  # (a canvas, a scan)
    for _ in range(20):
        rows, cols = np.unique(v[kept]).size, np.unique(u[kept]).size
        degree = 2 if min(rows, cols) >= 4 and kept.sum() >= 16 else 1 if min(rows, cols) >= 3 else 0
        a = np.stack(_terms(v, u, degree), axis=1)
        coef = np.linalg.lstsq(a[kept], g[kept], rcond=None)[0]
        now = g <= a @ coef + PAPER_TOLERANCE
        if np.array_equal(now, kept):
            break
        kept = now
    return coef, degree, float(g[kept].min()), float(g[kept].max())


def _shadows(b: _Blocks, fit: np.ndarray, darkest: float) -> np.ndarray:
    """Blocks in a shadow (sharp-edged, which no smooth surface follows): bool (ny, nx).

    A shadow looks like ink that fills blocks: paper above the surface. Three
    things tell them apart: a shadowed block is bare (its 5th and 30th
    percentiles agree: no stroke edge inside), it is paler than the ink
    (darkened by at most SHADOW_DEPTH of the way to the darkest ink), and it
    is one of several such blocks. Blocks a stroke crosses inside a shadow
    join it when 3 of their neighbours are bare shadow. Nothing is a shadow
    in a grid under 4x4 blocks (too few to tell a shadow from thick ink).
    """
    local = _local_paper(b)
    raised = (local > fit + PAPER_TOLERANCE) & (local - fit < SHADOW_DEPTH * (darkest - fit))
    core = raised & (b.paper - b.low < BARE_SPREAD)
    if min(core.shape) < 4 or core.sum() < 3:
        return np.zeros(core.shape, bool)
    near = sliding_window_view(np.pad(core, 1).astype(np.int8), (3, 3)).sum(axis=(-2, -1))
    return core | (raised & (near >= 3))


def _local_paper(b: _Blocks) -> np.ndarray:
    """Each block's paper level from its neighbourhood: a 3x3 grey opening (minimum, then
    maximum; edges repeated) removes strokes narrower than 3 blocks and keeps broad shadows."""
    return maximum_filter(minimum_filter(b.paper, 3, mode="nearest"), 3, mode="nearest")


def _background(ink: np.ndarray) -> np.ndarray:
    """The ink map of the bare paper: float32 (h, w).

    A smooth surface (at most quadratic, see `_paper_surface`) that never
    rises into the ink, raised where there are shadows (see `_shadows`).
    """
    h, w = ink.shape
    b = _blocks(ink)
    coef, degree, lo, hi = _paper_surface(b)
    half = max(h, w) / 2
    ys = ((np.arange(h) + 0.5 - h / 2) / half).astype(np.float32)
    xs = ((np.arange(w) + 0.5 - w / 2) / half).astype(np.float32)
    c = np.zeros(6, np.float32)
    c[: coef.size] = coef
    if degree == 0:
        surface = np.full((h, w), np.clip(c[0], lo, hi), np.float32)
    else:
        surface = (c[0] + c[1] * xs)[None, :] + (c[2] * ys)[:, None]
        if degree == 2:
            surface += (c[3] * xs * xs)[None, :] + (c[5] * ys * ys)[:, None] + c[4] * np.outer(ys, xs)
        surface = np.clip(surface, lo, hi)  # never beyond the paper actually seen
    fit = np.clip(sum(ci * t for ci, t in zip(coef, _terms(b.v, b.u, degree))), lo, hi)
    # A shadow needs 3 bare blocks above the surface, paler than the ink (the opening in
    # `_shadows` only lowers blocks, and the darkest pixel is at least the 99.9th percentile),
    # which most images do not have: they skip the rest.
    candidates = (b.paper > fit + PAPER_TOLERANCE) & (b.paper - b.low < BARE_SPREAD)
    if np.count_nonzero(candidates & (b.paper - fit < SHADOW_DEPTH * (float(ink.max()) - fit))) < 3:
        return surface
    shadow = _shadows(b, fit, _quantiles(_sample(ink), 99.9)[0])
    if shadow.any():
        lift = np.where(shadow, np.maximum(_local_paper(b) - fit, 0.0), 0.0).astype(np.float32)
        surface = np.clip(surface + _interpolate(lift, b.size, h, w), 0.0, 1.0)
    return surface.astype(np.float32, copy=False)


def _axis_weights(n: int, bs: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(size, dtype=np.float32) - (bs - 1) / 2) / bs  # position in block-centre units
    i0 = np.clip(np.floor(t).astype(np.int64), 0, max(n - 2, 0))
    f = np.clip(t - i0, 0, 1).astype(np.float32) if n > 1 else np.zeros(size, np.float32)
    return i0, f


def _interpolate(grid: np.ndarray, bs: int, h: int, w: int) -> np.ndarray:
    """Bilinear surface (h, w) through the block centres of a block grid (flat beyond the outer centres)."""
    ny, nx = grid.shape
    iy, fy = _axis_weights(ny, bs, h)
    ix, fx = _axis_weights(nx, bs, w)
    jy, jx = np.minimum(iy + 1, ny - 1), np.minimum(ix + 1, nx - 1)
    rows = grid[iy] * (1 - fy)[:, None] + grid[jy] * fy[:, None]  # (h, nx)
    return (rows[:, ix] * (1 - fx)[None, :] + rows[:, jx] * fx[None, :]).astype(np.float32)


def _noise(resid: np.ndarray) -> float:
    """Standard deviation of the paper's noise.

    From the lower tail of the residual (1st to 10th percentile), where no ink
    reaches: right while paper is at least ~30% of the image (a 1.3x
    overestimate at 70% ink), unlike a median-based estimate, which a digit
    filling half the image inflates many times. The differences of
    neighbouring pixels (which strokes change only at their edges) bound it
    where the lower tail is not noise: where little of the image is paper (a
    stroke that fills its crop) the tail is ink too, and where sharp edges
    stand far above the tail's spread (a digit on fog's clouds, which no
    smooth surface follows) it holds the surface's misfit. A texture without
    such edges (smooth noise of any grain) keeps the tail's estimate: its
    blobs are not ink.
    """
    sample = _sample(resid)
    q1, q10 = _quantiles(sample, 1, 10)
    sigma = float(q10 - q1) / _Z_1_10
    if resid.shape[1] > 1:
        k = max(1, resid.shape[0] // _DIFF_ROWS)
        diffs = _sample(np.abs(np.diff(resid[::k], axis=1)))
        med, sharp = _quantiles(diffs, 50, 99)
        edges = sharp >= _HEAVY * med and sharp >= _EDGES * sigma
        if float(np.mean(sample <= PAPER_TOLERANCE)) < 0.3 or edges:
            sigma = min(sigma, 1.4826 * med / np.sqrt(2.0))
    return sigma


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
    Works at the bounded working resolution (see `colour.working_ink`).
    """
    ink, scale = working_ink(img)
    bg = _background(ink)
    resid = ink - bg
    paper = np.maximum(1.0 - bg, np.float32(0.05))
    clean = np.clip(resid / paper, 0.0, 1.0, out=resid / paper)
    strongest = float(clean.max())
    if strongest < 0.12:
        return None
    # Floors on the threshold and the contrast keep faint structure (a gradient, compression
    # ripples) from counting as ink. They stay under half the strongest ink: a hairline that the
    # reduction of a huge image has made faint (1 px at 40 MP: 0.14 at most) shows at half that
    # strength wherever it falls between two pixel rows, and is still all ink.
    floor = min(0.1, 0.4 * strongest)
    # Statistics of the whole image come from a regular sample of at most ~64k pixels: the
    # same answers (to well under a grey level), a bounded cost.
    sample = _sample(clean)
    sigma = _noise(resid) / _quantiles(_sample(paper, 1 << 12), 50)[0]
    thr = max(otsu(sample), 5.0 * sigma, floor)
    mask = clean > thr
    n_fg = int(np.count_nonzero(mask))
    if n_fg == 0:
        return None
    fg_sum = float(np.sum(clean, where=mask))
    if n_fg < mask.size:
        contrast = fg_sum / n_fg - (float(clean.sum()) - fg_sum) / (mask.size - n_fg)
        if contrast < max(floor, 6.0 * sigma):
            return None
    zero = min(3.0 * sigma, 0.5 * thr)
    fg = sample[sample > thr]
    top = _quantiles(fg, 90)[0] if fg.size else 1.0
    span = max(top - zero, 1e-3)
    soft = np.clip((clean - zero) / span, 0.0, 1.0, out=clean)
    return InkMap(ink=soft, mask=mask, scale=scale, size=img.size, faint=(0.5 * thr - zero) / span)


def _quantiles(a: np.ndarray, *qs: float) -> list[float]:
    """Nearest-rank percentiles (one partition; for statistics of thousands of pixels the same
    as np.percentile's interpolated ones to well under a grey level, at a fraction of the cost)."""
    flat = np.asarray(a).ravel()
    ranks = [round(q / 100 * (flat.size - 1)) for q in qs]
    part = np.partition(flat, ranks)
    return [float(part[r]) for r in ranks]


def _sample(a: np.ndarray, most: int = 1 << 16) -> np.ndarray:
    """Every k-th pixel in both directions, k chosen so that at most about `most` are left."""
    k = max(1, int(np.ceil(np.sqrt(a.size / most))))
    return a[::k, ::k]
