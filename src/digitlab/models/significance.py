"""Is one model better than another on the same test images? The exact McNemar test.

Two models answer the same N test images. Only the images where exactly one of them is right
say anything about which is better: b (A right, B wrong) and c (A wrong, B right). Under "both
are equally good" each such image is a fair coin, so b ~ Binomial(b + c, 1/2); the two-sided
p-value is twice the smaller tail, capped at 1. Exact (no chi-square approximation), which
matters here: two good MNIST models differ on a few dozen images, where the approximation is poor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedCounts:
    """How two models' answers on the same images agree with the truth."""

    both_right: int
    only_a: int  # b: A right, B wrong
    only_b: int  # c: A wrong, B right
    both_wrong: int
    disagree: int  # images where the two predictions differ (both wrong but different counts too)

    @property
    def n(self) -> int:
        return self.both_right + self.only_a + self.only_b + self.both_wrong


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), at most 1.

    b = c = 0 (the models are never right on different images) gives 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0 (got b={b}, c={c})")
    n = b + c
    if n == 0:
        return 1.0
    # Integers all the way (math.comb), so large n loses no precision until the one division.
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_counts(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> PairedCounts:
    """The 2x2 table of right/wrong for A and B on the same images, plus how often they differ."""
    y, a, b = (np.asarray(v).reshape(-1) for v in (y_true, pred_a, pred_b))
    if not len(y) == len(a) == len(b):
        raise ValueError(f"paired predictions need equal lengths (got {len(y)}, {len(a)}, {len(b)})")
    ra, rb = a == y, b == y
    return PairedCounts(both_right=int((ra & rb).sum()), only_a=int((ra & ~rb).sum()),
                        only_b=int((~ra & rb).sum()), both_wrong=int((~ra & ~rb).sum()),
                        disagree=int((a != b).sum()))
