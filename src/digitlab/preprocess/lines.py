"""A thin line drawn across an MNIST-format image (a zigzag, a dotted rule, a pen stroke through
the field): found so that the checks of the format look at the digit, not at the line.

In MNIST's format a digit is at most 20 px wide, so a chain of thin ink running through more
columns than that is no stroke of the digit. The chain is followed column by column through
short vertical runs of ink, bridging the few columns where it crosses a stroke of the digit (a
long run there) or a gap of a dotted line.
"""

from __future__ import annotations

import numpy as np

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
