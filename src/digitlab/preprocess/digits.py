"""Digits in an image: find one, or segment a number, each rendered in MNIST format.

    load_image            bytes/path/array/PIL -> PIL image (checked, EXIF-rotated)
    clean_ink             background (uneven light) and noise removed, strokes masked
    find_digit            one digit: ink cropped, fitted, centred -> uint8 (28, 28)
    segment_digits        several digits: connected components, merged, split,
                          ordered left to right -> [(box, uint8 (28, 28)), ...]
    number_groups         the same groups, each cut on demand at candidate cuts through
                          touching digits (the model chooses among them: `predict.reading`)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from .bands import undo_inverted_bands
from .cuts import Stretch, stretches
from .fit import FIELD, fit_to_mnist, is_mnist_like
from .ink import InkMap, clean_ink
from .lines import remove_lines
from .loading import as_image
from .ndimage import dilate3, label_runs
from .segment import MAX_PARTS, Part, frames, group, parts_from_stats, split_wide

#: A box in pixel coordinates of the (EXIF-rotated) input image: (x0, y0, x1, y1), x1/y1 exclusive.
Box = tuple[int, int, int, int]
TOUCH = 0.05  # groups closer than this share of the digits' height may share a digit (see `_clusters`)


@dataclass(frozen=True)
class Candidates:
    """One group of a number (`number_groups`): the whole group as one digit, and the
    candidate digits between its `nodes` cuts (edges included) when it may hold several."""

    box: Box
    digit: np.ndarray  # uint8 (28, 28): the whole group, as `segment_digits` renders it
    nodes: int
    stretches: tuple[Stretch, ...]
    groups: int = 1  # groups of `segment_digits` in it (several when their boxes touch)


def _ink_box(a: np.ndarray) -> Box:
    ys, xs = np.nonzero(a)
    if ys.size == 0:
        return (0, 0, a.shape[1], a.shape[0])
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _original_box(p: Part, m: InkMap) -> Box:
    return _box_in(p, m.scale, m.size)


def _box_in(p: Part, s: float, size: tuple[int, int]) -> Box:
    """`p`'s box (working pixels, `s` a pixel of the original) in the original image's pixels."""
    w, h = size
    return (max(0, int(np.floor(p.x0 / s))), max(0, int(np.floor(p.y0 / s))),
            min(w, int(np.ceil(p.x1 / s))), min(h, int(np.ceil(p.y1 / s))))


def _members(labels: np.ndarray, ids: list[int]) -> np.ndarray:
    """labels in ids (np.isin through a lookup table: several times faster)."""
    lut = np.zeros(max(ids) + 2, bool)
    lut[ids] = True
    return np.take(lut, labels, mode="clip")  # labels beyond the ids land on the last entry, False


def _render(p: Part, labels: np.ndarray, m: InkMap) -> np.ndarray:
    pad = 2
    y0, y1 = max(0, p.y0 - pad), min(labels.shape[0], p.y1 + pad)
    x0, x1 = max(0, p.x0 - pad), min(labels.shape[1], p.x1 + pad)
    sub = labels[y0:y1, x0:x1]
    own = sub == p.ids[0] if len(p.ids) == 1 else _members(sub, p.ids)
    own[: p.y0 - y0] = False
    own[p.y1 - y0:] = False
    own[:, : p.x0 - x0] = False
    own[:, p.x1 - x0:] = False
    region = m.ink[y0:y1, x0:x1] * dilate3(own)
    # crop to the stroke box itself (the soft edges may reach a pixel beyond)
    by0, bx0 = p.y0 - y0, p.x0 - x0
    crop = region[by0:by0 + p.h, bx0:bx0 + p.w]
    return fit_to_mnist(crop, own[by0:by0 + p.h, bx0:bx0 + p.w])


def _edge_cover(labels: np.ndarray, count: int) -> np.ndarray:
    """Share of the image's perimeter each label covers (indexed by label)."""
    ring = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    return np.bincount(ring, minlength=count + 1) / ring.size


def _linked(parts: list[Part], labels: np.ndarray, m: InkMap) -> list[Part]:
    """Join the pieces that faint ink connects (hysteresis): a thin or blurred stroke that the
    threshold broke into pieces (a hairline in a huge image, reduced) is one stroke again. Only
    the grouping changes; each piece keeps its own pixels and box."""
    weak, _, _ = label_runs(m.ink > m.faint)
    joined: dict[int, Part] = {}
    for p in parts:
        # every pixel of a piece lies in one faint component: look one up in the piece's top row
        x = p.x0 + int(np.argmax(labels[p.y0, p.x0:p.x1] == p.ids[0]))
        key = int(weak[p.y0, x])
        joined[key] = joined[key].join(p) if key in joined else p
    return list(joined.values())


def _analyse(img: Any, lines: bool = False) -> tuple[InkMap, np.ndarray, list[Part]] | None:
    m = clean_ink(img)
    if m is None:
        return None
    if lines:  # a number on a form: its ruling and boxes are not digits
        m = remove_lines(m)
    labels, count, stats = label_runs(m.mask)
    parts = parts_from_stats(count, stats, limit=MAX_PARTS)
    if not parts:
        return None
    if 1 < len(parts) and count <= MAX_PARTS:  # thousands of pieces are clutter (text, texture), not a broken stroke
        parts = _linked(parts, labels, m)
    h, w = m.mask.shape
    dust = max(4, 0.01 * max(h, w))
    scene = frames(parts, lambda: _edge_cover(labels, count),
                   lambda: np.bincount(labels.ravel(), m.ink.ravel(), count + 1) / np.maximum(stats[4], 1), (w, h), dust)
    parts = [p for p in parts if p not in scene]
    big = max(parts, key=lambda p: p.area)
    if max(big.w, big.h) < dust:
        return None  # dust, not a digit
    return m, labels, parts


def _mnist_format(img: Any) -> np.ndarray | None:
    """The image itself (uint8 (28, 28)) when it is already in MNIST's format (`is_mnist_like`),
    also once bands of inverted polarity are flipped back (see `bands`); else None."""
    if img.mode != "L" or img.size != (FIELD, FIELD):
        return None
    a = np.array(img, dtype=np.uint8)
    if is_mnist_like(a):
        return a
    grey = a.astype(np.float32) / np.float32(255.0)
    unbanded = undo_inverted_bands(grey)
    if unbanded is grey:  # no bands to flip
        return None
    b = np.round(unbanded * 255.0).astype(np.uint8)
    return b if is_mnist_like(b) else None


def find_digit(img: Any) -> tuple[Box, np.ndarray] | None:
    """One digit: (box of the ink in the image's pixels, uint8 (28, 28)); None when there is no ink.

    All ink (after dropping specks) is taken as one digit. MNIST-like images
    pass through unchanged.
    """
    img = as_image(img)
    a = _mnist_format(img)
    if a is not None:
        return _ink_box(a), a
    found = _analyse(img)
    if found is None:
        return None
    m, labels, parts = found
    whole = _joined(tuple(parts))
    return _original_box(whole, m), _render(whole, labels, m)


def normalize_digit(img: Any) -> np.ndarray | None:
    """Any image (see `load_image`) -> uint8 (28, 28) MNIST-format digit, or None if blank."""
    found = find_digit(img)
    return None if found is None else found[1]


def segment_digits(img: Any) -> list[tuple[Box, np.ndarray]]:
    """Several digits in a row -> [(box, uint8 (28, 28)), ...] from left to right.

    Connected components of the ink; specks tiny next to the largest piece
    are dropped; pieces of one broken digit (stacked in the same columns, or
    inside another's box) are merged; touching digits are split at a clear
    valley of the column profile. An empty list means no ink.
    """
    img = as_image(img)
    a = _mnist_format(img)
    if a is not None:
        return [(_ink_box(a), a)]
    found = _groups(img)
    if found is None:
        return []
    m, labels, groups = found
    return [(_original_box(g, m), _render(g, labels, m)) for g in groups]


def _groups(img: Image.Image) -> tuple[InkMap, np.ndarray, list[Part]] | None:
    found = _analyse(img, lines=True)
    if found is None:
        return None
    m, labels, parts = found
    groups = []
    for g in group(parts):
        groups.extend(split_wide(g, _members(labels[g.y0:g.y1, g.x0:g.x1], g.ids), (g.y0, g.x0))
                      if g.w >= 1.4 * g.h else [g])
    groups.sort(key=lambda g: (g.x0 + g.x1) / 2)
    return m, labels, groups


@dataclass(frozen=True)
class NumberGroups:
    """A number's groups (`number_groups`), each as one digit with no candidate cuts yet; `cut(k)`
    gives group k with its candidate cuts, so a caller can cut only the groups that need it
    (the cuts are most of a number's preprocessing time)."""

    groups: tuple[Candidates, ...]
    # what `cut` needs, per group: its own ink and stroke mask (crops, not the image's whole ink map
    # and labels: a prepared image waits for the model with only these) and the forced cuts; empty
    # for an MNIST-format input (nothing to cut)
    crops: tuple[tuple[Part, np.ndarray, np.ndarray, tuple[int, ...]], ...] = ()
    scale: float = 1.0  # the ink map's working pixels per original pixel (`InkMap.scale`)
    size: tuple[int, int] = (0, 0)  # the original image's (width, height)

    def cut(self, k: int) -> Candidates:
        """Group `k` with the candidate digits between its candidate cuts (`cuts.stretches`,
        boxes in the image's pixels); a group too narrow for two digits gets none."""
        if not self.crops:
            return self.groups[k]
        g, ink, own, forced = self.crops[k]
        nodes, found_here = stretches(ink, own, list(forced))
        boxed = tuple(replace(st, box=_box_in(Part(g.ids, g.x0 + st.box[0], g.y0 + st.box[1],
                                                  g.x0 + st.box[2], g.y0 + st.box[3], 0), self.scale, self.size))
                      for st in found_here)
        return replace(self.groups[k], nodes=nodes, stretches=boxed)


def _joined(cluster: tuple[Part, ...]) -> Part:
    g = cluster[0]
    for other in cluster[1:]:
        g = g.join(other)
    return g


def number_groups(img: Any) -> NumberGroups:
    """The groups of `segment_digits` (rendered the same; groups whose boxes touch joined, see
    `_clusters`), candidate cuts to be made on demand (`NumberGroups.cut`)."""
    img = as_image(img)
    a = _mnist_format(img)
    if a is not None:
        return NumberGroups((Candidates(_ink_box(a), a, 2, (), 1),))
    found = _groups(img)
    if found is None:
        return NumberGroups(())
    m, labels, groups = found
    clusters = _clusters(groups)
    whole, crops = [], []
    for c in clusters:
        g = _joined(tuple(c))
        whole.append(Candidates(_original_box(g, m), _render(g, labels, m), 2, (), len(c)))
        own = _members(labels[g.y0:g.y1, g.x0:g.x1], g.ids)
        # where components part the cluster's digits, a cut is forced (the components' reading)
        forced = tuple((a.x1 + b.x0) // 2 - g.x0 for a, b in zip(c, c[1:]))
        crops.append((g, m.ink[g.y0:g.y1, g.x0:g.x1] * dilate3(own), own, forced))
    return NumberGroups(tuple(whole), tuple(crops), m.scale, m.size)


def _clusters(groups: list[Part]) -> list[list[Part]]:
    """Neighbouring groups whose boxes touch or overlap (left to right): one digit may have been
    cut in two by the components (a 4's open arm beside its stem joined to the next digit)."""
    if not groups:
        return []
    height = max(g.h for g in groups)
    out = [[groups[0]]]
    for g in groups[1:]:
        if g.x0 <= max(p.x1 for p in out[-1]) + TOUCH * height:
            out[-1].append(g)
        else:
            out.append([g])
    return out
