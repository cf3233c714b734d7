"""The MNIST-C corruptions of benchmarks/mnist_c.py: the geometry and the arithmetic that the
benchmarks' numbers rest on (cross-checked once against skimage/ImageMagick, see the module)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mnist_c as mc


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_test[:8]


def _com(a: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[:28, :28]
    return np.array([(a * yy).sum(), (a * xx).sum()]) / a.sum()


def test_all_fifteen_deterministic_and_each_changes_the_image(digits):
    assert len(mc.CORRUPTIONS) == 15
    for name in mc.CORRUPTIONS:
        out = mc.corrupt(name, digits, seed=0)
        assert out.shape == digits.shape and out.dtype == np.uint8
        assert np.array_equal(out, mc.corrupt(name, digits, seed=0)), name
        assert (out != digits).any(axis=(1, 2)).all(), name  # every image is corrupted
    assert np.array_equal(mc.corrupt("identity", digits), digits)
    noisy = [mc.corrupt(n, digits, seed=s) for n in ("shot_noise", "fog") for s in (0, 1)]
    assert not np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[2], noisy[3])


def test_affine_warps_keep_the_centre_and_the_axes():
    rng = np.random.default_rng(0)
    a = rng.random((28, 28))
    assert np.allclose(mc._warp(a, np.eye(2)), a)
    # a quarter turn about (13.5, 13.5) is exactly rot90: pins the (col, row) <-> (row, col) swap
    assert np.allclose(mc._warp(a, np.array([[0.0, -1.0], [1.0, 0.0]])), np.rot90(a))


def test_translate_moves_by_three_pixels_each_way():
    x = np.zeros((28, 28))
    x[9:18, 11:16] = np.linspace(0.2, 1.0, 5)  # away from the edges: nothing is cut off
    for seed in range(4):
        y = mc.translate(x, np.random.default_rng(seed))
        assert np.allclose(np.abs(_com(y) - _com(x)), 3.0, atol=1e-9)


def test_scale_rotate_shear_keep_the_digit_centred_and_resize_it(digits):
    x = digits[1] / 255.0
    small = mc.scale(x, np.random.default_rng(0))
    assert 0.4 < small.sum() / x.sum() < 0.6  # area scales by 0.7^2 = 0.49
    for fn in (mc.rotate, mc.shear):
        y = fn(x, np.random.default_rng(0))
        assert np.linalg.norm(_com(y) - _com(x)) < 3 and abs(y.sum() / x.sum() - 1) < 0.1


def test_pixel_arithmetic(digits):
    x = digits[2] / 255.0
    assert np.allclose(mc.brightness(x, None), np.minimum(x + 0.5, 1))
    s = mc.stripe(x, None)
    assert np.allclose(s[:, :7], 1 - x[:, :7]) and np.allclose(s[:, 21:], 1 - x[:, 21:])
    assert np.allclose(s[:, 7:21], x[:, 7:21])
    f = mc.fog(x, np.random.default_rng(0))
    assert f.max() - f.min() < 0.6 and f.min() > 0  # fog: everything grey, contrast down
    imp = mc.impulse_noise(x, np.random.default_rng(0))
    changed = imp != x
    assert 0.06 < changed.mean() < 0.17 and set(np.unique(imp[changed])) <= {0.0, 1.0}
    for fn in (mc.dotted_line, mc.zigzag):  # lines are added, never subtracted
        y = fn(x, np.random.default_rng(3))
        assert (y >= x - 1e-12).all() and (y > x).sum() > 10
    d = mc.dotted_line(np.zeros((28, 28)), np.random.default_rng(0))
    assert not d[:, 0:2].any() and not d[:, 4:6].any() and d[:, 2:4].any()


def test_motion_blur_smears_one_way_and_keeps_the_ink():
    x = np.zeros((28, 28))
    x[14, 24] = 1.0
    rng = type("Fixed", (), {"uniform": lambda self, lo, hi: 0.0})()  # angle 0
    y = mc.motion_blur(x, rng)  # each pixel averages the 21 to its right: a dot smears to the left
    assert np.isclose(y.sum(), 1.0)
    assert y[14, 25:].sum() == 0 and y[14, 4:25].sum() == pytest.approx(1.0)  # one-sided, ImageMagick's
    assert y[14, 24] > y[14, 22] > y[14, 18] > 0


def test_canny_outlines_a_square():
    x = np.zeros((28, 28))
    x[8:20, 8:20] = 1.0
    e = mc._canny(x)
    ys, xs = np.nonzero(e)
    assert e.dtype == bool and 30 < e.sum() < 60  # one thin closed outline (perimeter 44 px)
    assert ys.min() >= 6 and ys.max() <= 21 and xs.min() >= 6 and xs.max() <= 21
    assert not e[11:17, 11:17].any() and not e[:5].any()
    assert not mc._canny(np.zeros((28, 28))).any()
