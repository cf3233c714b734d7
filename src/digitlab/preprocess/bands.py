"""Bands of inverted polarity: an image whose background is cut into light and dark bands
running across it (dark side columns beside a light middle, a white slab beside a black one),
each band's colours the negative of its neighbours'. One polarity for the whole image would take
one kind of band for ink; flipping the minority bands back gives one background and one ink.

The bands are read from the image's border, where the background shows (the digit seldom
reaches it): columns from the top and bottom rows, rows from the left and right columns. Only a
clean two-level structure is undone: every band spans the image (its top and bottom agree), the
levels of each kind are even, and the two kinds are each other's negatives, so that a shadow
(darker paper, not its negative) or uneven light is left alone. A black desk running the full
height beside white paper does pass, and is flipped into something like more paper: harmless,
it was background either way.
"""

from __future__ import annotations

import numpy as np

STEP = 0.5  # light and dark bands differ by at least this much: a polarity, not a shade of light
EVEN = 0.15  # the levels of one kind of band (and a band's two ends) agree to this: a flat background
NEGATIVE = 0.15  # light level + dark level is within this of 1: the bands are each other's negatives
_MIN_BAND = 2  # a band at least this many pixels wide (a 1-px run is a stroke crossing the border)
_BORDER_ROWS = 8  # rows of each border strip whose median gives a column's level
_EDGE_SHARE = 40  # a soft edge between bands is at most 1/40 of the side wide (an image enlarged 4x: 2-3 px)


def _band_levels(g: np.ndarray) -> np.ndarray | None:
    """The background level of each column from the top and bottom rows, or None where the two
    ends of some column disagree (no band runs across the image there)."""
    k = max(1, g.shape[0] // 20)  # as colour.border: about 1/20 of the side ...
    step = max(1, k // _BORDER_ROWS)  # ... sampled: the same levels at a bounded cost
    top, bottom = np.median(g[:k:step], axis=0), np.median(g[-k::step], axis=0)
    if float(np.abs(top - bottom).max()) > EVEN:
        return None
    return (top + bottom) / 2


def _column_map(g: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """How to undo the bands of columns: (gain (w,), offset (w,)) with g' = offset + gain * g, or
    None when the columns do not form clean light and dark bands that are each other's negatives.

    The majority kind of band stays as it is; the minority is flipped onto the majority's level;
    the few columns of a soft edge between two bands (a resized image blends them) are flipped
    or not by the kind they are nearer, their own level taken to the majority's."""
    if min(g.shape) < 2 * _MIN_BAND:
        return None
    lv = _band_levels(g)
    if lv is None or bool((lv >= 0.5).all()) or bool((lv < 0.5).all()):
        return None
    hi_level, lo_level = float(np.median(lv[lv >= 0.5])), float(np.median(lv[lv < 0.5]))
    if hi_level - lo_level < STEP or abs(hi_level + lo_level - 1.0) > NEGATIVE:
        return None
    light, dark = lv >= hi_level - EVEN, lv <= lo_level + EVEN
    if _longest_run(~(light | dark)) > max(_MIN_BAND, g.shape[1] // _EDGE_SHARE):
        return None  # a gradual change of light, not an edge between bands
    minority_light = int(light.sum()) <= int(dark.sum())
    keep_level = lo_level if minority_light else hi_level
    flip = lv >= (hi_level + lo_level) / 2 if minority_light else lv < (hi_level + lo_level) / 2
    if _shortest_run(flip) < _MIN_BAND:
        return None
    gain = np.where(flip, -1.0, 1.0).astype(np.float32)
    # offset: the band's own level goes to keep_level (exact for the bands themselves, where
    # their level is the kind's: the majority untouched, the minority flipped to 1 - g)
    own = np.where(light | dark, np.where(light, hi_level, lo_level), lv)
    offset = (keep_level - gain * own).astype(np.float32)
    offset[~flip & (light | dark)] = 0.0
    return gain, offset


def _runs(m: np.ndarray) -> np.ndarray:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], m.astype(np.int8), [0]])))
    return edges[1::2] - edges[::2]


def _longest_run(m: np.ndarray) -> int:
    r = _runs(m)
    return int(r.max()) if r.size else 0


def _shortest_run(m: np.ndarray) -> int:
    r = _runs(m)
    return int(r.min()) if r.size else 0


def undo_inverted_bands(grey: np.ndarray) -> np.ndarray:
    """Grey levels (float, 1 = white) with bands of inverted polarity flipped back (see the
    module's docstring); the array itself when there are none."""
    g = np.asarray(grey)
    cols = _column_map(g)
    if cols is not None:
        gain, offset = cols
        return np.clip(offset[None, :] + gain[None, :] * g, 0.0, 1.0).astype(g.dtype, copy=False)
    rows = _column_map(g.T)
    if rows is not None:
        gain, offset = rows
        return np.clip(offset[:, None] + gain[:, None] * g, 0.0, 1.0).astype(g.dtype, copy=False)
    return g
