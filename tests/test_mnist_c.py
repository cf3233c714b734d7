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


# --------------------------------------------------------------------------- each definition, on MNIST digits


def _orientation(a: np.ndarray) -> float:
    """The angle of the image's principal axis (from its second moments), in radians."""
    yy, xx = np.mgrid[:28, :28]
    w = a / a.sum()
    cy, cx = (w * yy).sum(), (w * xx).sum()
    mu20, mu02, mu11 = (w * (xx - cx) ** 2).sum(), (w * (yy - cy) ** 2).sum(), (w * (xx - cx) * (yy - cy)).sum()
    return 0.5 * np.arctan2(2 * mu11, mu20 - mu02)


def test_stripe_inverts_the_two_bands_exactly(digits):
    s = mc.corrupt("stripe", digits).astype(int)
    x = digits.astype(int)
    assert np.array_equal(s[:, :, :7], 255 - x[:, :, :7]) and np.array_equal(s[:, :, 21:], 255 - x[:, :, 21:])
    assert np.array_equal(s[:, :, 7:21], x[:, :, 7:21])


def test_translate_moves_mnist_digits_three_pixels_each_way(digits):
    t = mc.corrupt("translate", digits)
    for a, b in zip(digits.astype(float), t.astype(float)):
        if np.isclose(b.sum(), a.sum()):  # nothing cut off at the border: the centre of mass moves exactly
            assert np.allclose(np.abs(_com(b) - _com(a)), 3.0, atol=1e-9)
    assert sum(np.isclose(b.sum(), a.sum()) for a, b in zip(digits.astype(float), t.astype(float))) >= 6


def test_rotate_keeps_the_ink_and_turns_the_axis_by_0_4_rad(digits):
    r = mc.corrupt("rotate", digits)
    for a, b in zip(digits.astype(float), r.astype(float)):
        assert abs(b.sum() / a.sum() - 1) < 0.02
        turn = (_orientation(b) - _orientation(a) + np.pi / 2) % np.pi - np.pi / 2  # axes: modulo pi
        assert abs(abs(turn) - 0.4) < 0.06


def test_canny_leaves_thin_binary_edges_on_the_strokes_boundary(digits):
    from scipy import ndimage as ndi

    e = mc.corrupt("canny_edges", digits)
    assert set(np.unique(e)) <= {0, 255}
    for a, b in zip(digits, e):
        ink = a > 127
        boundary = ink ^ ndi.binary_erosion(ink)
        on = b > 0
        assert 0 < on.sum() < (a > 0).sum()
        assert not (on & ~ndi.binary_dilation(boundary, iterations=2)).any()


def test_shot_and_impulse_noise_change_the_histogram_as_defined(digits):
    s = mc.corrupt("shot_noise", digits)
    assert set(np.unique(s)) <= {0, 85, 170, 255}  # Poisson counts / 3: four levels after clipping
    assert not s[digits == 0].any()  # Poisson(0) = 0: no noise on the black background
    # the mean: E[min(N, 3)] / 3 for N ~ Poisson(3 x), per pixel (unbiased but for the clipping at 1)
    from scipy.stats import poisson

    lam = 3 * (digits / 255.0)
    expected = sum(k * poisson.pmf(k, lam) for k in range(3)) + 3 * poisson.sf(2, lam)
    assert abs(s.mean() / 255 - expected.mean() / 3) < 0.01 * digits.mean() / 255
    imp = mc.corrupt("impulse_noise", digits)
    changed = imp != digits
    assert set(np.unique(imp[changed])) <= {0, 255}
    salt = (imp == 255) & (digits != 255)
    pepper = (imp == 0) & (digits != 0)
    # 17% of pixels are flipped, half to white: ~8.5% of the not-white pixels turn white
    assert 0.07 < salt.sum() / (digits != 255).sum() < 0.10
    assert 0.06 < pepper.sum() / (digits != 0).sum() < 0.11


def test_brightness_raises_every_pixel_by_half(digits):
    b = mc.corrupt("brightness", digits).astype(int)
    assert (np.abs(b - np.minimum(digits + 127.5, 255)) <= 0.5).all()
    assert b.min() >= 127 and b.mean() > digits.mean() + 100


def test_corrupt_rejects_what_is_not_mnist():
    with pytest.raises(ValueError, match="unknown corruption 'snow'"):
        mc.corrupt("snow", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="uint8 images of shape"):
        mc.corrupt("fog", np.zeros((1, 32, 32), np.uint8))


def test_no_module_of_the_package_imports_the_benchmark_corruptions():
    """Training-time augmentation must never train on what the benchmark measures."""
    import ast
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "digitlab"
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert "mnist_c" not in name and not name.startswith("benchmarks"), f"{path} imports {name}"
        assert not re.search(r"\bmnist_c\b", path.read_text(encoding="utf-8")), f"{path} names mnist_c (importlib?)"
