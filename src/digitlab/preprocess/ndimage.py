"""numpy stand-ins for the few `scipy.ndimage` operations preprocessing needs.

Prediction must not import anything heavier than the inference runtime, so
these are written with numpy alone; each is pinned by a test against the
`scipy.ndimage` function named in its docstring.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Largest rank-filter window. Callers work on bounded grids; this keeps the cost of a filter
#: (k operations per pixel and axis) bounded whatever they pass.
MAX_KERNEL = 63

def label_runs(mask: np.ndarray) -> tuple[np.ndarray, int, tuple[np.ndarray, ...] | None]:
    """8-connected components with each one's box and area.

    Returns (int32 labels, 0 = background; count; (x0, y0, x1, y1, area)), the
    statistics as arrays indexed by label (entry 0 unused; x1, y1 exclusive),
    or None for them when there is no ink. The labels are those of
    `scipy.ndimage.label(mask, structure=np.ones((3, 3)))`.

    Run-length based and fully vectorised: runs of each row are linked to the
    overlapping runs of the next row, then linked runs are joined by repeated
    hooking and pointer jumping; the statistics come from the runs (far fewer
    than pixels).
    """
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
    x0, y0 = np.full(count + 1, w, np.int64), np.full(count + 1, h, np.int64)
    x1, y1 = np.zeros(count + 1, np.int64), np.zeros(count + 1, np.int64)
    np.minimum.at(x0, comp, starts)
    np.maximum.at(x1, comp, ends)
    np.minimum.at(y0, comp, rows)
    np.maximum.at(y1, comp, rows + 1)
    area = np.bincount(comp, weights=lengths, minlength=count + 1).astype(np.int64)
    return labels, count, (x0, y0, x1, y1, area)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (int32 labels, 0 = background; count)."""
    labels, count, _ = label_runs(mask)
    return labels, count


def _spread3(mask: np.ndarray, grow: bool, outside: bool) -> np.ndarray:
    # Separable boolean slices instead of a per-pixel sort (~10x faster than a 3x3 rank filter).
    op = np.logical_or if grow else np.logical_and
    m = np.asarray(mask, dtype=bool)
    if not grow and not outside:  # pixels beyond the edge count as background: they erode the edge
        m = np.pad(m, 1)
    r = m.copy()
    op(r[1:], m[:-1], out=r[1:])
    op(r[:-1], m[1:], out=r[:-1])
    c = r.copy()
    op(c[:, 1:], r[:, :-1], out=c[:, 1:])
    op(c[:, :-1], r[:, 1:], out=c[:, :-1])
    return c if grow or outside else c[1:-1, 1:-1]


def dilate3(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation: `scipy.ndimage.binary_dilation(mask, np.ones((3, 3)))`."""
    return _spread3(mask, True, False)


def erode3(mask: np.ndarray, outside: bool = True) -> np.ndarray:
    """3x3 binary erosion: `scipy.ndimage.binary_erosion(mask, np.ones((3, 3)), border_value=outside)`;
    `outside` says whether the pixels beyond the edge count as set."""
    return _spread3(mask, False, outside)


def _rank(a: np.ndarray, k: int, op, mode: str) -> np.ndarray:
    if not 1 <= k <= MAX_KERNEL or k % 2 == 0:
        raise ValueError(f"rank filter window must be odd and 1..{MAX_KERNEL} (got {k})")
    if mode not in ("constant", "nearest"):
        raise ValueError(f"mode must be 'constant' or 'nearest' (got {mode!r})")
    r = k // 2
    pad = {"mode": "edge"} if mode == "nearest" else {}
    a = np.asarray(a, dtype=np.float32)
    p = np.pad(a, ((0, 0), (r, r)), **pad)
    a = op(sliding_window_view(p, k, axis=1), axis=-1)
    p = np.pad(a, ((r, r), (0, 0)), **pad)
    return op(sliding_window_view(p, k, axis=0), axis=-1)


def maximum_filter(a: np.ndarray, k: int, mode: str = "constant") -> np.ndarray:
    """k x k grey dilation, beyond the edge zeros ("constant") or the edge repeated ("nearest"):
    `scipy.ndimage.maximum_filter(a, size=k, mode=mode, cval=0)` (k odd, at most MAX_KERNEL)."""
    return _rank(a, k, np.max, mode)


def minimum_filter(a: np.ndarray, k: int, mode: str = "constant") -> np.ndarray:
    """k x k grey erosion, beyond the edge zeros ("constant") or the edge repeated ("nearest"):
    `scipy.ndimage.minimum_filter(a, size=k, mode=mode, cval=0)` (k odd, at most MAX_KERNEL)."""
    return _rank(a, k, np.min, mode)
