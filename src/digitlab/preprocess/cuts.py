"""Touching digits: candidate cuts through a group of ink, for the model to choose among.

Connected components cannot part digits whose strokes touch or overlap, and a straight cut at
the column profile's lowest point (`segment.split_wide`) only parts those that barely touch.
Here a wide group gets several candidate cuts: at each dip of its column profile, the path
from top to bottom that crosses the least ink (it may bend around an overlapping stroke, one
pixel a row at most). Every stretch between two cuts that could be one digit (its width and
height as a digit's) is rendered as a candidate digit; `predict.reading` lets the model's
probabilities choose the cuts (the reading of the whole string that the model is surest of).
Preprocessing only proposes: it knows nothing of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fit import fit_to_mnist
from .ndimage import dilate3, label_runs

SPLIT_FROM = 0.75  # a group at least this wide for its height may hold several digits (a 0 is ~0.8)
MIN_WIDTH = 0.15  # a stretch narrower than this share of the height is a sliver, no digit (a thin 1 is ~0.2)
MAX_WIDTH = 1.3  # ... and one wider than this is two (the whole group is a candidate anyway)
MIN_HEIGHT = 0.4  # a stretch whose ink is under this share of the group's height is a fragment
DIP_SPACING = 0.12  # candidate cuts at least this share of the height apart
BEND = 0.06  # a cut path strays at most this share of the height from its dip's column
PIECE = 0.15  # a piece of a stretch under this share of its largest is a neighbour's stroke end
GRID = 0.08  # ... and cuts this share of the height apart where there is no dip
MAX_CUTS = 40  # bounds the candidates (and the model's work) for a very long group


@dataclass(frozen=True)
class Stretch:
    """One candidate digit: the ink between cuts `i` and `j` (0 = the group's left edge)."""

    i: int
    j: int
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the group's pixels
    digit: np.ndarray  # uint8 (28, 28)
    aspect: float  # its ink's width / the group's height
    fill: float  # its ink's height / the group's height
    mass: float  # its stroke pixels / the group's height squared (a digit's are ~0.15-0.4)


def _dips(own: np.ndarray) -> list[int]:
    """Columns where the column profile dips (a local minimum, lowest first, spaced apart)."""
    h, w = own.shape
    prof = own.sum(axis=0).astype(np.float32)
    prof = np.convolve(prof, np.ones(3, np.float32) / 3, mode="same")
    r = max(2, int(0.1 * h))
    lo, hi = max(1, int(MIN_WIDTH * h)), w - max(1, int(MIN_WIDTH * h))
    pad = np.pad(prof, r, mode="edge")
    window = np.lib.stride_tricks.sliding_window_view(pad, 2 * r + 1)
    minimum = prof <= window.min(axis=1) + 1e-6
    xs = [x for x in np.argsort(prof, kind="stable").tolist() if lo <= x < hi and minimum[x]]
    keep: list[int] = []
    for x in xs:
        if all(abs(x - k) >= DIP_SPACING * h for k in keep):
            keep.append(x)
        if len(keep) >= MAX_CUTS:
            break
    # Overlapping digits need not leave a dip: cuts on a regular grid between the dips too
    step = max(2, int(GRID * h))
    for x in range(lo, hi, step):
        if len(keep) < MAX_CUTS and all(abs(x - k) >= 0.5 * step for k in keep):
            keep.append(x)
    return sorted(keep)


def _path(cost: np.ndarray, x: int, bend: int) -> np.ndarray:
    """The top-to-bottom path through `cost` near column `x` (one column a row at most) of least
    total cost, preferring to stay straight: its column in each row."""
    h, w = cost.shape
    a, b = max(0, x - bend), min(w, x + bend + 1)
    c = cost[:, a:b] + 0.01 * np.abs(np.arange(a, b) - x)[None, :]  # ties go straight
    n = b - a
    total = c[0].copy()
    back = np.zeros((h, n), np.int8)
    for y in range(1, h):
        left = np.concatenate([[np.inf], total[:-1]])
        right = np.concatenate([total[1:], [np.inf]])
        stack = np.stack([left, total, right])
        step = np.argmin(stack, axis=0)
        total = stack[step, np.arange(n)] + c[y]
        back[y] = step - 1
    out = np.zeros(h, np.int64)
    k = int(np.argmin(total))
    for y in range(h - 1, -1, -1):
        out[y] = k + a
        k += int(back[y, k]) if y else 0
    return out


def _main_pieces(mask: np.ndarray) -> np.ndarray:
    """The mask without pieces small next to its largest: the ends of a neighbour's strokes that
    reach across the cut."""
    labels, count, stats = label_runs(mask)
    if count <= 1 or stats is None:
        return mask
    area = stats[4]
    keep = area >= PIECE * area[1:].max()
    keep[0] = False
    return keep[labels]


def stretches(ink: np.ndarray, own: np.ndarray, forced: list[int] | None = None) -> tuple[int, list[Stretch]]:
    """Candidate digits of a wide group: (number of cuts + 2 edges, stretches). `ink`: the group's
    soft ink, `own`: its stroke mask, both cropped to the group's box. A group not wide enough for
    two digits gives no stretches (it is one digit). `forced`: columns that are cuts whatever the
    profile (where components part the digits)."""
    h, w = own.shape
    forced = forced or []
    if (w < SPLIT_FROM * h or h < 8) and not forced:
        return 2, []
    cost = own.astype(np.float32) + ink
    bend = max(1, int(BEND * h))
    xs = sorted(set(forced) | {x for x in _dips(own) if all(abs(x - f) >= GRID * h / 2 for f in forced)})
    cuts = [np.zeros(h, np.int64)] + [_path(cost, x, bend) for x in xs] + [np.full(h, w, np.int64)]
    cols = np.arange(w)[None, :]
    out = []
    for i in range(len(cuts) - 1):
        for j in range(i + 1, len(cuts)):
            if (j, i) == (len(cuts) - 1, 0):
                continue  # the whole group: the caller renders it as any other group
            part = (cols >= cuts[i][:, None]) & (cols < cuts[j][:, None])
            mask = _main_pieces(own & part)
            ys, xs = np.nonzero(mask)
            if ys.size == 0:
                continue
            x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
            if (x1 - x0) > MAX_WIDTH * h:
                break  # wider still for larger j
            if (x1 - x0) < MIN_WIDTH * h or (y1 - y0) < MIN_HEIGHT * h:
                continue
            soft = ink * (dilate3(mask) & part)
            digit = fit_to_mnist(soft[y0:y1, x0:x1], mask[y0:y1, x0:x1])
            out.append(Stretch(i, j, (x0, y0, x1, y1), digit, (x1 - x0) / h, (y1 - y0) / h,
                               float(ys.size) / (h * h)))
    return len(cuts), out
