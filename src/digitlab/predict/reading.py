"""Touching digits read by the model: of the candidate cuts `preprocess.number_groups`
proposes, the ones whose digits the model is surest of.

Each group of a number is a chain of cuts (its left and right edges included); a reading is a
path from the first cut to the last, each step one candidate digit. Its score is the sum of the
log-probabilities of the digits' top classes, plus a prior on a digit's shape: wider than it is
high, or much shorter than its neighbours, it is likely two digits or a fragment. Dynamic
programming finds the best path over all cut choices at once (a few dozen candidates a group).
A group that is not wide gets no candidates and reads as one digit, as before; nor does one the
model reads whole with confidence and that is shaped like one digit (`whole`): cutting it could
only over-split it, and its candidates are most of a number's time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WIDE = 1.0  # a digit wider than its height is unusual (a wide 0 or 2); beyond this, a penalty ...
WIDE_COST = 1.0  # ... of this many nats per height of extra width (two touching digits are ~1.2-1.6)
SHORT = 0.75  # a digit under this share of the group's height is likely a fragment ...
SHORT_COST = 2.0  # ... costing this many nats per height share missing
LIGHT = 0.05  # a digit with fewer stroke pixels than this share of the height squared is a sliver ...
LIGHT_COST = 10.0  # ... costing this many nats per share missing
DIGIT_COST = 0.0  # nats a digit: a bias for fewer (> 0) or more (< 0) digits
NARROW = 1.1  # a group narrower than this (width / height) is more likely one wide digit ...
SPLIT_COST = 0.8  # ... than two: each digit of a reading that splits it costs this many nats (0.4 and 0.8
# were even on the development set; 0.8 split fewer spaced digits on a check set of training digits)

KEEP_ASPECT = 1.3  # a group narrower than this (width / height) that the model reads ...
KEEP_TOP = 0.97  # ... with at least this top probability is one digit: it gets no candidate cuts
# (on a check set of training digits, 100 images a kind: 1.05/0.9 left coloured at 95% exact and
# boxes at 95%, as with no first stage; 1.3/0.97 gave 99% and 98%, touching 76% either way; 1.3/0.9
# lost a touching number. Wide 0s, 2s and 6s are most of the over-splits it saves.)

# One group: (number of cuts, ((from cut, to cut, input index, width / height, height share,
# stroke pixels / height squared), ...)); the first step is the whole group.
Lattice = tuple[int, tuple[tuple[int, int, int, float, float, float], ...]]


def _score(top: float, aspect: float, fill: float, mass: float) -> float:
    return (float(np.log(max(top, 1e-9))) - WIDE_COST * max(0.0, aspect - WIDE)
            - SHORT_COST * max(0.0, SHORT - fill) - LIGHT_COST * max(0.0, LIGHT - mass) - DIGIT_COST)


def whole(box: Sequence[int], probs: np.ndarray) -> bool:
    """Whether a group (its box, the model's probabilities for it whole) reads as one digit
    without candidate cuts: shaped like one digit and read with confidence."""
    x0, y0, x1, y1 = box
    return (x1 - x0) < KEEP_ASPECT * max(1, y1 - y0) and float(np.max(probs)) >= KEEP_TOP


def best_reading(lattice: Lattice, probs: np.ndarray) -> list[int]:
    """The input indices (into `probs`' rows) of the best path through one group's cuts, left to right."""
    nodes, steps = lattice
    best = np.full(nodes, -np.inf)
    best[0] = 0.0
    came: list[tuple[int, int] | None] = [None] * nodes
    top = probs.max(axis=1) if len(probs) else np.zeros(0)
    split = SPLIT_COST if steps and steps[0][3] < NARROW else 0.0
    for i, j, k, aspect, fill, mass in sorted(steps, key=lambda s: (s[0], s[1])):  # edges go left to right
        if best[i] == -np.inf:
            continue
        s = best[i] + _score(float(top[k]), aspect, fill, mass) - (split if j - i < nodes - 1 else 0.0)
        if s > best[j]:
            best[j], came[j] = s, (i, k)
    out, node = [], nodes - 1
    while node > 0 and came[node] is not None:
        i, k = came[node]  # type: ignore[misc]
        out.append(k)
        node = i
    return out[::-1]


def chosen(lattices: Sequence[Lattice], probs: np.ndarray) -> list[int]:
    """All groups of one image: the input indices that are its digits, left to right."""
    return [k for lat in lattices for k in best_reading(lat, probs)]
