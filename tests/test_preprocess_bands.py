"""Backgrounds and marks that are not ink (issue 19): bands of inverted polarity, fog, a thin line
across the field, grey blotches. Built from MNIST *training* digits (the preprocessing was tuned
on MNIST test digits 0-4999 under benchmarks/mnist_c.py's corruptions) with transforms written
here, of other widths, shapes and positions than MNIST-C's, read by the shipped model.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitlab.predict.predictor import Predictor
from digitlab.preprocess import find_digit, is_mnist_like
from digitlab.preprocess.bands import undo_inverted_bands
from digitlab.preprocess.lines import line_mask

N = 200
FIRST = 20000  # training digits 20000-20199


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(runtime="onnx")


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_train[FIRST:FIRST + N], mnist.y_train[FIRST:FIRST + N]


def _read(predictor, images, labels):
    results = predictor.predict_batch(images)
    got = np.array([-1 if r.label is None else r.label for r in results])
    return float((got == labels).mean()), float((got == -1).mean())


def _raw(predictor, arrays, labels):
    return float((predictor.probabilities(np.stack(arrays)).argmax(axis=1) == labels).mean())


# --------------------------------------------------------------------------- bands


def test_undo_inverted_bands_restores_the_image_and_leaves_a_shadow_alone():
    rng = np.random.default_rng(0)
    g = np.zeros((60, 90), np.float32)
    g[20:40, 30:60] = rng.uniform(0.5, 1.0, (20, 30))  # "ink" in the middle
    banded = g.copy()
    banded[:, :12] = 1 - banded[:, :12]
    banded[:, 80:] = 1 - banded[:, 80:]
    assert np.allclose(undo_inverted_bands(banded), g)
    assert np.allclose(undo_inverted_bands(banded.T), g.T)  # bands of rows
    shadow = 0.9 - g * 0.8
    shadow[:, :30] *= 0.6  # a sharp shadow: darker paper, not the paper's negative
    assert undo_inverted_bands(shadow) is shadow


@pytest.mark.parametrize("where", ["columns", "rows"])
def test_digit_with_inverted_bands_at_its_sides_is_read(predictor, digits, where):
    """Bands 5 and 9 px wide (MNIST-C: 7 and 7 columns) inverted. Measured: 97-100% at 28x28,
    94-98% enlarged to 112x112; before bands.py 16-24% (the light bands taken for paper and the
    dark middle for a slab of ink)."""
    x, y = digits
    images = []
    for d in x:
        a = d.astype(np.int16) if where == "columns" else d.T.astype(np.int16)
        a[:, :5] = 255 - a[:, :5]
        a[:, 19:] = 255 - a[:, 19:]
        images.append(Image.fromarray((a if where == "columns" else a.T).astype(np.uint8)))
    accuracy, _ = _read(predictor, images, y)
    assert accuracy >= 0.95, accuracy
    big = [im.resize((112, 112), Image.Resampling.BICUBIC) for im in images[:50]]  # the full path
    accuracy, _ = _read(predictor, big, y[:50])
    assert accuracy >= 0.9, accuracy


# --------------------------------------------------------------------------- fog


def _fog(d, rng):
    """A patch of fog: fractal noise (octaves of bicubic noise at 4, 7 and 14 cells, each
    1/1.4 of the one before, as a diamond-square fractal's) spanning 0.2-0.45 of the range
    somewhere within its lower 3/4, the digit on top at a quarter of its contrast (as MNIST-C's
    fog leaves it); the border often lighter than the digit's own background."""
    field = sum(np.asarray(Image.fromarray(rng.uniform(-1, 1, (n, n)).astype(np.float32)).resize(
        (28, 28), Image.Resampling.BICUBIC)) / 1.4 ** k for k, n in enumerate((4, 7, 14)))
    span = rng.uniform(0.2, 0.45)
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6) * span + rng.uniform(0, 0.75 - span)
    return Image.fromarray(np.clip(255 * (field + 0.25 * d / 255.0), 0, 255).astype(np.uint8))


def test_fog_does_not_make_the_digit_vanish(predictor, digits):
    """Measured: 87.5% right, 3% 'no digit'; before this change 22% right and 77% 'no digit' (a
    light border taken for paper, the clouds' misfit for noise)."""
    x, y = digits
    rng = np.random.default_rng(1)
    accuracy, no_digit = _read(predictor, [_fog(d, rng) for d in x], y)
    assert no_digit <= 0.06, no_digit
    assert accuracy >= 0.85, accuracy


# --------------------------------------------------------------------------- lines and blotches


def _with_line(d, rng):
    """A wavy 2-px line from column 1 to 26 at a random height, added to the digit."""
    img = Image.fromarray(d)
    r = rng.uniform(2, 25)
    pts = [(c, r + 2.5 * np.sin(c / 1.7) + 0.15 * (c - 13)) for c in np.linspace(1, 26, 40)]
    ImageDraw.Draw(img).line(pts, fill=255, width=2)
    return np.maximum(np.asarray(img), d)


def test_line_mask_finds_the_line_and_nothing_in_a_clean_digit(digits):
    x, _ = digits
    assert not any(line_mask(d).any() for d in x)  # no MNIST digit is wider than its 20-px box
    rng = np.random.default_rng(2)
    found = [line_mask(_with_line(d, rng)).any(axis=0).sum() for d in x]
    assert np.mean([f >= 20 for f in found]) >= 0.85  # measured 0.89


def test_a_line_across_an_mnist_digit_leaves_it_as_it_is(predictor, digits):
    """The model reads MNIST digits through lines (it is trained with them); refitting digit and
    line into 20x20 moved the digit off-centre. Measured: 94% kept as they are, 81.5% right
    against 82% on the raw arrays; before lines.py none kept, 59.5% right."""
    x, y = digits
    rng = np.random.default_rng(3)
    lined = [_with_line(d, rng) for d in x]
    kept = np.mean([is_mnist_like(a) for a in lined])
    assert kept >= 0.8, kept
    accuracy, _ = _read(predictor, [Image.fromarray(a) for a in lined], y)
    assert accuracy >= _raw(predictor, lined, y) - 0.02


def test_grey_blotches_are_not_joined_to_the_digit(predictor, digits):
    """A few blobs of grey 60 (mud): the 28x28 digit stays in MNIST's format, read as it is."""
    x, y = digits
    rng = np.random.default_rng(4)
    spattered = []
    for d in x:
        mud = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(mud)
        for _ in range(3):
            cx, cy, r = rng.uniform(0, 28), rng.uniform(0, 28), rng.uniform(1.5, 3.5)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=60)
        spattered.append(np.maximum(d, np.asarray(mud)))
    kept = np.mean([is_mnist_like(a) for a in spattered])
    assert kept >= 0.8, kept
    found = find_digit(Image.fromarray(spattered[0]))
    assert found is not None and np.array_equal(found[1], spattered[0])
    accuracy, _ = _read(predictor, [Image.fromarray(a) for a in spattered], y)
    assert accuracy >= _raw(predictor, spattered, y) - 0.01
