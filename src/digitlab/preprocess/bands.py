"""Bands of inverted polarity: an image whose background is cut into light and dark bands
running across it (dark side columns beside a light middle, a white slab beside a black one),
each band's colours the negative of its neighbours'. One polarity for the whole image would take
one kind of band for ink; flipping the minority bands back gives one background and one ink.

The bands are read from the image's border, where the background shows (the digit seldom
reaches it): columns from the top and bottom rows, rows from the left and right columns. Only a
clean two-level structure is undone: every band spans the image (its top and bottom agree), the
levels of each kind are even, and the two kinds are each other's negatives, so that an ordinary
photo (a shadow, a dark desk beside the paper: not the negative of the paper) is left alone.
"""

from __future__ import annotations

import numpy as np

STEP = 0.5  # light and dark bands differ by at least this much: a polarity, not a shade of light
EVEN = 0.15  # the levels of one kind of band (and a band's two ends) agree to this: a flat background
NEGATIVE = 0.15  # light level + dark level is within this of 1: the bands are each other's negatives
_MIN_BAND = 2  # a band at least this many pixels wide (a 1-px run is a stroke crossing the border)


def _band_levels(g: np.ndarray) -> np.ndarray | None:
    """The background level of each column from the top and bottom rows, or None where the two
    ends of some column disagree (no band runs across the image there)."""
    k = max(1, g.shape[0] // 20)  # as colour.border: about 1/20 of the side
    top, bottom = np.median(g[:k], axis=0), np.median(g[-k:], axis=0)
    if float(np.abs(top - bottom).max()) > EVEN:
        return None
    return (top + bottom) / 2


def _flip_columns(g: np.ndarray) -> np.ndarray | None:
    """Columns to flip (bool (w,)): the minority kind of band, when the columns form clean
    light and dark bands that are each other's negatives; None otherwise."""
    if min(g.shape) < 2 * _MIN_BAND:
        return None
    lv = _band_levels(g)
    if lv is None:
        return None
    light = lv >= 0.5
    n_light = int(light.sum())
    if n_light in (0, lv.size):
        return None
    hi, lo = lv[light], lv[~light]
    if float(hi.max() - hi.min()) > EVEN or float(lo.max() - lo.min()) > EVEN:
        return None
    hi_level, lo_level = float(np.median(hi)), float(np.median(lo))
    if hi_level - lo_level < STEP or abs(hi_level + lo_level - 1.0) > NEGATIVE:
        return None
    flip = light if 2 * n_light <= lv.size else ~light
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flip.astype(np.int8), [0]])))
    if int((edges[1::2] - edges[::2]).min()) < _MIN_BAND:
        return None
    return flip


def undo_inverted_bands(grey: np.ndarray) -> np.ndarray:
    """Grey levels (float, 1 = white) with bands of inverted polarity flipped back (see the
    module's docstring); the array itself when there are none."""
    g = np.asarray(grey)
    cols = _flip_columns(g)
    if cols is not None:
        g = g.copy()
        g[:, cols] = 1.0 - g[:, cols]
        return g
    rows = _flip_columns(g.T)
    if rows is not None:
        g = g.copy()
        g[rows] = 1.0 - g[rows]
    return g
