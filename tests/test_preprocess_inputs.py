"""Hard but ordinary inputs through the whole prediction path: tight crops, low resolution, blur,
tiny images, uneven light and shadows. Built from MNIST *test* digits (never tuned on), read by
the shipped model on ONNX Runtime via `Predictor.load()`.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from digitlab.predict.predictor import Predictor

N = 300  # the first 300 test digits for each kind


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(runtime="onnx")


def _crop(d: np.ndarray) -> np.ndarray:
    """The digit cropped to its ink: zero margin, ink touching all four edges."""
    ys, xs = np.nonzero(d)
    return d[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def tight_dark(d):  # black on white, enlarged 4x (bicubic)
    c = Image.fromarray(255 - _crop(d))
    return c.resize((c.width * 4, c.height * 4), Image.Resampling.BICUBIC)


def tight_light(d):  # white on black
    c = Image.fromarray(_crop(d))
    return c.resize((c.width * 4, c.height * 4), Image.Resampling.BICUBIC)


def tight_raw(d):  # at MNIST's own resolution: about 20x20 pixels, all of them digit
    return Image.fromarray(255 - _crop(d))


def tight_blurred(d):
    return tight_dark(d).filter(ImageFilter.GaussianBlur(3))


def low_res(side):
    """A small scan: the 28x28 field at side x side pixels, enlarged again to 112x112 (bicubic)."""
    def make(d):
        return Image.fromarray(255 - d).resize((side, side), Image.Resampling.BOX).resize((112, 112), Image.Resampling.BICUBIC)
    return make


def low_res_tight(side):
    """A tight crop whose long side is `side` pixels of source, enlarged 8x (bicubic)."""
    def make(d):
        c = Image.fromarray(255 - _crop(d))
        s = side / max(c.size)
        small = c.resize((max(1, round(c.width * s)), max(1, round(c.height * s))), Image.Resampling.BOX)
        return small.resize((small.width * 8, small.height * 8), Image.Resampling.BICUBIC)
    return make


def tiny(side):
    """The raw small image itself, side x side pixels."""
    return lambda d: Image.fromarray(255 - d).resize((side, side), Image.Resampling.BOX)


def blurred(radius):
    return lambda d: Image.fromarray(255 - d).resize((112, 112), Image.Resampling.BICUBIC).filter(
        ImageFilter.GaussianBlur(radius))


# Measured on the first 300 test digits with the shipped model (ONNX), then (in brackets)
# the first 1,000 where a bar needed it: accuracy / share answered "no digit".
#   tight dark 100 / 0, tight light 100 / 0, tight raw 100 / 0 (99.8 / 0.1), tight + blur 3
#   97.3 / 2.7 (97.4 / 1.9), 8 px 93.3 / 0 (92.4 / 0), 12 px 99.7 / 0, 16 px 100 / 0,
#   tight 8 px 96.3 / 1.3 (94.2 / 1.6), tight 12 px 99.0 / 0.7, tight 16 px 99.7 / 0.3,
#   tiny 8 93.0 / 0 (91.6 / 0), tiny 12 99.7 / 0, tiny 16 100 / 0, blur 2/4/6 100 / 99.7 / 97.0.
# On main before this change: tight crops 54% (46% "no digit"), tight 12 px 24% (76%),
# tight 16 px 47%, tiny 8 67%, blur 6 84% (14%).
# Every "no digit" left is a "1" whose crop is 2-4 source pixels wide: the stroke is the whole
# image, with no paper beside it to tell ink from background. An 8 px source keeps too little
# of the shape for more (the same digits enlarged straight back to 28x28: 44-57%).
KINDS = {  # kind: (make, accuracy bar, no-digit bar)
    "tight-dark": (tight_dark, 0.98, 0.005),
    "tight-light": (tight_light, 0.98, 0.005),
    "tight-raw": (tight_raw, 0.98, 0.005),
    "tight-blurred": (tight_blurred, 0.95, 0.04),
    "low-res-8": (low_res(8), 0.90, 0.005),
    "low-res-12": (low_res(12), 0.98, 0.005),
    "low-res-16": (low_res(16), 0.98, 0.005),
    "low-res-tight-8": (low_res_tight(8), 0.92, 0.03),
    "low-res-tight-12": (low_res_tight(12), 0.97, 0.02),
    "low-res-tight-16": (low_res_tight(16), 0.98, 0.01),
    "tiny-8": (tiny(8), 0.89, 0.005),
    "tiny-12": (tiny(12), 0.98, 0.005),
    "tiny-16": (tiny(16), 0.98, 0.005),
    "blurred-2": (blurred(2), 0.98, 0.005),
    "blurred-4": (blurred(4), 0.98, 0.005),
    "blurred-6": (blurred(6), 0.95, 0.005),
}


def _read(predictor, images, labels):
    results = predictor.predict_batch(images)
    got = np.array([-1 if r.label is None else r.label for r in results])
    return float((got == labels).mean()), float((got == -1).mean())


@pytest.mark.parametrize("kind", list(KINDS))
def test_hard_inputs_are_read(predictor, mnist, kind):
    make, bar, no_digit_bar = KINDS[kind]
    accuracy, no_digit = _read(predictor, [make(d) for d in mnist.x_test[:N]], mnist.y_test[:N])
    print(f"{kind}: accuracy {accuracy:.3f}, no digit {no_digit:.3f}")
    assert no_digit <= no_digit_bar, f"{kind}: {no_digit:.1%} answered 'no digit'"
    assert accuracy >= bar, f"{kind}: accuracy {accuracy:.3f} < {bar}"


# --------------------------------------------------------------------------- light, shadows, the desk


def _photo(d, light=None, desk=None, size=240):
    """Ink on paper (reflectance 0.92, ink 15% of it) under a light field, with sensor noise."""
    big = np.asarray(Image.fromarray(d).resize((80, 80), Image.Resampling.BICUBIC), np.float32) / 255
    ink = np.zeros((size, size), np.float32)
    ink[80:160, 80:160] = big
    refl = 0.92 * (1 - 0.85 * ink)
    if desk is not None:
        refl[desk] = 0.15
    yy, xx = np.mgrid[:size, :size] / size
    g = refl * (1.0 if light is None else light(yy, xx)) + np.random.default_rng(0).normal(0, 0.01, refl.shape)
    return Image.fromarray(np.clip(g * 255, 0, 255).astype(np.uint8))


def _sigmoid(t):
    return 1 / (1 + np.exp(-t))


# Measured (first 100 digits): all 100% except the desk edge 94%. On main: vignetting 0%
# (every one "no digit"), a desk edge 14%; sharp shadows 99-100%.
SCENES = {
    "vignetting": (lambda d: _photo(d, light=lambda y, x: 1 - 1.2 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)), 0.97),
    "lamp-on-one-side": (lambda d: _photo(d, light=lambda y, x: 0.35 + 0.65 * x), 0.97),
    "sharp-shadow-beside": (lambda d: _photo(d, light=lambda y, x: 1 - 0.4 * _sigmoid((0.3 - x) * 40)), 0.97),
    "sharp-shadow-across": (lambda d: _photo(d, light=lambda y, x: 1 - 0.4 * _sigmoid((0.5 - x) * 40)), 0.97),
    "desk-edge": (lambda d: _photo(d, desk=(slice(None), slice(0, 40))), 0.90),
}


@pytest.mark.parametrize("scene", list(SCENES))
def test_photos_with_uneven_light_shadows_and_desk(predictor, mnist, scene):
    make, bar = SCENES[scene]
    accuracy, _ = _read(predictor, [make(d) for d in mnist.x_test[:100]], mnist.y_test[:100])
    print(f"{scene}: accuracy {accuracy:.3f}")
    assert accuracy >= bar, f"{scene}: accuracy {accuracy:.3f} < {bar}"
