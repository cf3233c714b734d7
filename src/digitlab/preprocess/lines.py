"""Lines that are no strokes of a digit, in two settings:

    remove_lines   form lines (ruled, squared, boxes, comb fields) taken out of an ink map before
                   a number is segmented
    line_mask      a thin line across an MNIST-format 28x28 image (a zigzag, a dotted rule), found
                   so that the format's checks (`fit.is_mnist_like`) look at the digit

Form lines. A form line is a straight horizontal or vertical stroke much longer than a digit: a ruled line
or a box's top and bottom run across the whole field, a grid line over the whole image, a box's
side from its top line to its bottom line. Digits have no such strokes, but they cross the lines,
so a line pixel with digit ink on both sides of the line (above and below it, or left and right)
is a digit's stroke crossing and stays. What is left of a comb field (the short ticks standing
on its baseline) goes with the baseline.

Lines are found on the faint ink (`InkMap.faint`), not only on the mask: a pale line under the
threshold would still link all the digits it passes (`digits._linked`).

A thin line in MNIST's format (a zigzag, a dotted rule, a pen stroke through the field). In it
a digit is at most 20 px wide, so a chain of thin ink running through more columns than that is
no stroke of the digit. The chain is followed column by column through
short vertical runs of ink, bridging the few columns where it crosses a stroke of the digit (a
long run there) or a gap of a dotted line.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .ink import InkMap
from .ndimage import label_runs

LINE_SHARE = 0.4  # a horizontal line runs across at least this share of the image's width ...
LINE_DIGITS = 1.3  # ... and at least this many digit heights: a 7's bar or two touching 2s are shorter
FULL_HEIGHT = 0.85  # a vertical line of squared paper runs over (almost) the whole image's height
TICK_HEIGHT = 0.6  # a comb's tick is shorter than a digit (~1/3 of the cell), and thin: a quarter of it wide at most
GAP = 2  # pixels missing from a line in a row (JPEG, noise) that still leave it one line
MAX_THICK = 0.2  # a line is at most this share of a digit's height thick (a digit's stroke crossing is thinner)


def _long_runs(a: np.ndarray, length: float) -> np.ndarray:
    """Pixels of `a` on horizontal lines at least `length` long: runs of `a` with gaps of up to
    GAP pixels bridged, as a thin pale line photographed is no unbroken row of pixels (JPEG and
    noise break it). (Taking a row and the next together as well, for lines that slope a row,
    merged 7s' bars with the ruling on a check set: the bars went with the lines.)"""
    return _runs(_bridge(a), length) & a


def _bridge(a: np.ndarray) -> np.ndarray:
    """`a` with horizontal gaps of up to GAP pixels between two inked pixels filled."""
    out = a.copy()
    for k in range(2, GAP + 2):
        both = a[:, :-k] & a[:, k:]
        for j in range(1, k):
            out[:, j:j + both.shape[1]] |= both
    return out


def _runs(a: np.ndarray, length: float) -> np.ndarray:
    """Pixels of `a` in horizontal runs at least `length` long."""
    h, w = a.shape
    p = np.zeros((h, w + 2), np.int8)
    p[:, 1:-1] = a
    d = np.diff(p, axis=1)
    ys, xs = np.nonzero(d == 1)
    _, xe = np.nonzero(d == -1)  # row-major order: each run's end follows its start
    keep = (xe - xs) >= length
    acc = np.zeros((h, w + 1), np.int32)
    np.add.at(acc, (ys[keep], xs[keep]), 1)
    np.add.at(acc, (ys[keep], xe[keep]), -1)
    return np.cumsum(acc, axis=1)[:, :w] > 0


def _crossings(ink: np.ndarray, line: np.ndarray, thick: int, lines: np.ndarray) -> np.ndarray:
    """Line pixels (horizontal lines) that a stroke crosses: ink that is no line (of `lines`,
    all of them: a box's side is not a stroke crossing its top) just above and just below the
    line, within `thick` pixels of line, in the same column or the next."""
    other = ink & ~lines
    wide = other.copy()
    wide[:, 1:] |= other[:, :-1]
    wide[:, :-1] |= other[:, 1:]
    down = np.zeros_like(line)
    up = np.zeros_like(line)
    cur_d, cur_u = wide, wide
    for _ in range(thick):
        cur_d = np.pad(cur_d[:-1], ((1, 0), (0, 0))) & line
        cur_u = np.pad(cur_u[1:], ((0, 1), (0, 0))) & line
        down |= cur_d
        up |= cur_u
        if not (cur_d.any() or cur_u.any()):
            break
    # a pixel reached from above is also reached along the rest of its column of line pixels
    for _ in range(thick):
        down |= np.pad(down[:-1], ((1, 0), (0, 0))) & line
        up |= np.pad(up[1:], ((0, 1), (0, 0))) & line
    return down & up


def _digit_height(keep: np.ndarray) -> float:
    """The height of the ink left (its pieces together, specks aside; 0 when none): the digits'
    height once the lines are gone. Together, not the tallest piece: a lone 3 whose bars were
    taken for lines leaves short arcs, but they still span the digit's height."""
    _, count, stats = label_runs(keep)
    if count == 0 or stats is None:
        return 0.0
    area = stats[4][1:]
    big = area >= 0.05 * area.max()
    return float(stats[3][1:][big].max() - stats[1][1:][big].min())


def _bands(rows: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a 1-D array: [(start, stop), ...]."""
    d = np.diff(np.concatenate([[0], rows.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def find_lines(faint: np.ndarray) -> np.ndarray:
    """The form lines' pixels in a (faint) ink mask: bool, same shape; crossing strokes excluded."""
    h, w = faint.shape
    horiz = _long_runs(faint, LINE_SHARE * w)
    vert = _long_runs(faint.T, FULL_HEIGHT * h).T
    if not (horiz.any() or vert.any()):
        return horiz
    # A first guess of the digits' height, with every candidate gone; nothing left means the
    # candidates were the digits (a tight crop of a 7 or a 1, or 11), and nothing is a line,
    # unless they are three or more parallel lines (a blank ruled page: no digit has those).
    rough = faint & ~(horiz | vert)
    height = _digit_height(rough)
    if height == 0:
        ruling = max(len(_bands(horiz.any(axis=1))), len(_bands(vert.any(axis=0)))) >= 3
        return horiz | vert if ruling else np.zeros_like(faint)
    thick = max(2, int(MAX_THICK * height))
    horiz = _long_runs(faint, max(LINE_SHARE * w, LINE_DIGITS * height))
    vert = _long_runs(faint.T, max(FULL_HEIGHT * h, LINE_DIGITS * height)).T
    rows = _bands(horiz.sum(axis=1) >= 0.3 * w)
    if 2 <= len(rows) <= 3 and not vert.any():
        vert |= _box_sides(faint & ~horiz, rows, height)
    line = horiz | vert
    if not line.any():
        return line
    crossed = _crossings(faint, horiz, thick, line) | _crossings(faint.T, vert.T, thick, line.T).T
    line &= ~crossed
    if len(rows) <= 3:
        line |= _ticks(faint & ~line, horiz & ~crossed, height)
    return line


def _box_sides(ink: np.ndarray, rows: list[tuple[int, int]], height: float) -> np.ndarray:
    """Vertical runs from one horizontal line to the next (a box's sides), in a field of two or
    three lines (boxes; a squared page has many, and its verticals are full-height)."""
    out = np.zeros_like(ink)
    for (a0, a1), (b0, b1) in zip(rows, rows[1:]):
        span = b0 - a1
        if span < 0.8 * height:
            continue  # lines closer than a digit are ruling, not a box
        # inked all the way from one line to the next (a pixel or two missing: JPEG, a faint line)
        cols = np.flatnonzero(ink[a1:b0].sum(axis=0) >= span - 2)
        out[a0:b1, cols] = True
    return out & ink


def _ticks(rest: np.ndarray, horiz: np.ndarray, height: float) -> np.ndarray:
    """A comb's ticks: short thin pieces standing on (or hanging from) a removed line, on one side
    of it: a stroke that reaches across the line (a thin 8 or a 1 on squared paper whose faint
    verticals were not found, which makes `height` the page's) is a digit's."""
    labels, count, stats = label_runs(rest)
    out = np.zeros_like(rest)
    if count == 0 or stats is None or not horiz.any():
        return out
    near = horiz.copy()
    near[1:] |= horiz[:-1]
    near[:-1] |= horiz[1:]
    touching = np.unique(labels[near & rest])
    x0, y0, x1, y1 = stats[0], stats[1], stats[2], stats[3]
    for i in touching[touching > 0].tolist():
        ph, pw = y1[i] - y0[i], x1[i] - x0[i]
        if ph < TICK_HEIGHT * height and pw <= 0.25 * height:
            # the line's rows where the piece meets it (its columns, a row beyond its ends)
            a, b = max(0, y0[i] - 1), y1[i] + 1
            rows = a + np.flatnonzero(horiz[a:b, x0[i]:x1[i]].any(axis=1))
            if rows.size and not (y1[i] <= rows.min() + 1 or y0[i] >= rows.max()):
                continue  # it has ink on both sides of the line
            out |= labels == i
    return out


def remove_lines(m: InkMap) -> InkMap:
    """`m` without its form lines (see the module's doc): the same map when there are none."""
    faint = m.ink > m.faint
    line = find_lines(faint)
    if not line.any():
        return m
    # the soft edge of a line (a pixel beyond its faint core) goes with it
    edge = line.copy()
    edge[1:] |= line[:-1]
    edge[:-1] |= line[1:]
    edge[:, 1:] |= line[:, :-1]
    edge[:, :-1] |= line[:, 1:]
    edge &= ~(faint & ~line)
    ink = np.where(edge, np.float32(0), m.ink)
    return replace(m, ink=ink, mask=m.mask & ~edge)


# --------------------------------------------------------------------------- a thin line in a 28x28 image

INK = 64  # grey level above which a pixel is ink (a quarter of the range: anti-aliased edges are not)
THIN = 7  # a line's run in one column is at most this long (2-3 px thick; a zigzag's tooth, a slope add 2-4)
BRIDGE = 6  # columns a chain may jump: a stroke of the digit it crosses (2-6 px, slanted), a dotted line's gap (2 px)
NEAR = 2  # rows a chain may move from one of its runs to the next (a zigzag's teeth, a slope)
LONGER_THAN = 21  # a chain through more columns than MNIST's 20-px box and a pixel is a line (measured: chains
# in 3,000 clean MNIST training digits span at most 20 columns, MNIST-C's zigzags 22-25)


def _thin_runs(col: np.ndarray) -> list[tuple[int, int]]:
    """(start, end exclusive) of each vertical run of ink at most THIN long in one column."""
    d = np.diff(np.concatenate([[0], col.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d > 0), np.flatnonzero(d < 0)
    return [(int(s), int(e)) for s, e in zip(starts, ends) if e - s <= THIN]


def line_mask(a: np.ndarray) -> np.ndarray:
    """Pixels (bool, the image's shape) of the thin chains of ink that run through more than
    LONGER_THAN columns of a small white-on-black image; all False when there is none."""
    ink = np.asarray(a) > INK
    h, w = ink.shape
    cols = np.flatnonzero(ink.any(axis=0))
    if cols.size == 0 or cols[-1] - cols[0] + 1 <= LONGER_THAN:  # too narrow to hold a line (most digits)
        return np.zeros((h, w), bool)
    runs = [_thin_runs(ink[:, x]) for x in range(w)]
    # chain[x][i]: (first column of the longest chain ending in run i of column x, previous link)
    chain: list[list[tuple[int, tuple[int, int] | None]]] = []
    best: tuple[int, int, int] | None = None  # (span, column, run) of the longest chain
    for x in range(w):
        here = []
        for s, e in runs[x]:
            start, prev = x, None
            for px in range(x - 1, max(-1, x - BRIDGE - 2), -1):  # nearest first: a chain jumps only when it must
                for j, (ps, pe) in enumerate(runs[px]):
                    if ps - NEAR < e and s < pe + NEAR and chain[px][j][0] < start:
                        start, prev = chain[px][j][0], (px, j)
            here.append((start, prev))
            span = x - start + 1
            if best is None or span > best[0]:
                best = (span, x, len(here) - 1)
        chain.append(here)
    out = np.zeros((h, w), bool)
    if best is None or best[0] <= LONGER_THAN:
        return out
    link: tuple[int, int] | None = (best[1], best[2])
    while link is not None:
        x, i = link
        s, e = runs[x][i]
        out[s:e, x] = True  # only the chain's own runs: the thin runs beside it may be the digit's
        link = chain[x][i][1]
    return out
