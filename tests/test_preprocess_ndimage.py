"""The numpy stand-ins in `digitlab.preprocess.ndimage` give exactly what `scipy.ndimage` gives.

scipy is installed with scikit-learn; production code must not import it, so
each stand-in is pinned here against the scipy function it replaces.
"""

from __future__ import annotations

import numpy as np
import pytest

ndi = pytest.importorskip("scipy.ndimage")

from digitlab.preprocess import ndimage as nd  # noqa: E402
from digitlab.preprocess.ink import otsu  # noqa: E402
from digitlab.preprocess.segment import Part, parts_from_stats  # noqa: E402

EIGHT = np.ones((3, 3), bool)
SHAPES = [(1, 1), (1, 9), (9, 1), (2, 3), (7, 5), (31, 44), (64, 64), (97, 33)]


def masks(seed: int = 0):
    """Random masks of many shapes and densities, plus a few structured ones."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        for density in (0.05, 0.3, 0.5, 0.7, 0.95):
            yield rng.random(shape) < density
    yield np.zeros((5, 6), bool)
    yield np.ones((5, 6), bool)
    checker = (np.add.outer(np.arange(20), np.arange(30)) % 2).astype(bool)  # all diagonal neighbours
    yield checker
    spiral = np.zeros((41, 41), bool)  # one long path: many rounds of hooking
    y, x, d, step = 20, 20, 0, 1
    moves = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    while 0 <= y < 41 and 0 <= x < 41:
        for _ in range(2):
            for _ in range(step):
                if 0 <= y < 41 and 0 <= x < 41:
                    spiral[y, x] = True
                y, x = y + moves[d][0], x + moves[d][1]
            d = (d + 1) % 4
        step += 2
    yield spiral


def test_label_runs_equals_scipy_label_8_connected():
    for m in masks():
        labels, count, stats = nd.label_runs(m)
        ref, ref_count = ndi.label(m, structure=EIGHT)
        assert count == ref_count
        assert np.array_equal(labels, ref)  # the same numbers too: both label in raster order
        if count == 0:
            assert stats is None
            continue
        x0, y0, x1, y1, area = stats
        for i, sl in enumerate(ndi.find_objects(ref), start=1):
            assert (y0[i], y1[i], x0[i], x1[i]) == (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)
        assert np.array_equal(area[1:], np.bincount(ref.ravel(), minlength=count + 1)[1:])
        assert nd.label_components(m)[1] == count


def test_binary_dilation_and_erosion_equal_scipy():
    for m in masks(1):
        assert np.array_equal(nd.dilate3(m), ndi.binary_dilation(m, EIGHT))
        for outside in (True, False):
            assert np.array_equal(nd.erode3(m, outside=outside), ndi.binary_erosion(m, EIGHT, border_value=int(outside)))


@pytest.mark.parametrize("k", [1, 3, 5, 9, 21])
def test_rank_filters_equal_scipy(k):
    rng = np.random.default_rng(k)
    for shape in SHAPES:
        a = rng.random(shape, dtype=np.float32)
        a[rng.random(shape) < 0.4] = 0.0
        for mode in ("constant", "nearest"):
            assert np.array_equal(nd.maximum_filter(a, k, mode), ndi.maximum_filter(a, size=k, mode=mode, cval=0.0))
            assert np.array_equal(nd.minimum_filter(a, k, mode), ndi.minimum_filter(a, size=k, mode=mode, cval=0.0))
        assert np.array_equal(nd.maximum_filter(a, k), nd.maximum_filter(a, k, "constant"))  # the default


def test_rank_filter_windows_are_bounded():
    a = np.zeros((10, 10), np.float32)
    for bad in (0, 2, nd.MAX_KERNEL + 2):
        with pytest.raises(ValueError):
            nd.minimum_filter(a, bad)


def test_parts_from_stats_equal_a_reference_built_from_scipy():
    for m in masks(2):
        labels, count, stats = nd.label_runs(m)
        ref, ref_count = ndi.label(m, structure=EIGHT)
        expected = []
        if ref_count:
            area = np.bincount(ref.ravel(), minlength=ref_count + 1)
            keep = max(2.0, 0.05 * float(area[1:].max()))
            for i, sl in enumerate(ndi.find_objects(ref), start=1):
                if area[i] >= keep:
                    expected.append(Part([i], sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, int(area[i])))
        assert parts_from_stats(count, stats) == expected


def test_otsu_minimises_the_within_class_variance():
    rng = np.random.default_rng(3)
    for n_ink in (10, 200, 2000):
        values = np.concatenate([rng.normal(0.1, 0.05, 3000), rng.normal(0.8, 0.1, n_ink)])
        values = np.clip(values, 0, 1).astype(np.float32)
        t = otsu(values)
        assert otsu(values.astype(np.float64)) == t
        # exhaustive search over the same 256 bins: weighted within-class variance of the bin centres
        hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
        centres = (edges[:-1] + edges[1:]) / 2
        best, best_t = np.inf, None
        for i in range(1, 256):
            lo, hi = hist[:i], hist[i:]
            if lo.sum() == 0 or hi.sum() == 0:
                continue
            var = 0.0
            for h, c in ((lo, centres[:i]), (hi, centres[i:])):
                mean = (h * c).sum() / h.sum()
                var += (h * (c - mean) ** 2).sum()
            if var < best - 1e-12:
                best, best_t = var, edges[i]
        assert t == pytest.approx(best_t, abs=1 / 256)
