"""Shapes that are not digits, and images built to be expensive: preprocessing never erases the
only ink (the 28x28 shows the shape, so the model can judge it) and does bounded work."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitlab.preprocess import MAX_PIXELS, WORK_SIDE, colour, find_digit, fit, ink, ndimage, segment, segment_digits


def shape_image(kind: str, n: int, dark_on_light: bool = True) -> Image.Image:
    """One shape, drawn on an n x n canvas with a 15% margin."""
    paper, pen = (255, 0) if dark_on_light else (0, 255)
    img = Image.new("L", (n, n), paper)
    d = ImageDraw.Draw(img)
    lo, hi, mid = round(0.15 * n), round(0.85 * n), n // 2
    bar = max(2, round(0.1 * n))
    if kind == "square":
        d.rectangle([lo, lo, hi, hi], fill=pen)
    elif kind == "disc":
        d.ellipse([lo, lo, hi, hi], fill=pen)
    elif kind == "ring":
        d.ellipse([lo, lo, hi, hi], outline=pen, width=max(2, n // 12))
    elif kind == "hbar":
        d.rectangle([lo, mid - bar // 2, hi, mid + bar // 2], fill=pen)
    elif kind == "vbar":
        d.rectangle([mid - bar // 2, lo, mid + bar // 2, hi], fill=pen)
    elif kind == "line3":
        d.line([(lo, mid), (hi, mid)], fill=pen, width=3)
    elif kind == "line1-diagonal":
        d.line([(lo, lo), (hi, hi)], fill=pen, width=1)
    else:
        raise ValueError(kind)
    return img


def ink_box(a: np.ndarray, level: int = 128) -> tuple[int, int, np.ndarray]:
    ys, xs = np.nonzero(a > level)
    box = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return box.shape[0], box.shape[1], box


def resembles(kind: str, out: np.ndarray) -> bool:
    """Does the 28x28 show the shape? Its box and how much of the box the ink fills."""
    h, w, box = ink_box(out)
    fill = float((box > 128).mean())
    if kind == "square":
        return abs(h - w) <= 2 and min(h, w) >= 8 and fill >= 0.8
    if kind == "disc":
        corners = [box[0, 0], box[0, -1], box[-1, 0], box[-1, -1]]
        return abs(h - w) <= 2 and min(h, w) >= 8 and 0.55 <= fill <= 0.92 and max(corners) < 128
    if kind == "ring":
        return abs(h - w) <= 2 and min(h, w) >= 12 and box[h // 2, w // 2] < 64 and fill < 0.7
    if kind in ("hbar", "line3"):
        return w >= 18 and h <= max(3, w // 4)
    if kind == "vbar":
        return h >= 18 and w <= max(3, h // 4)
    if kind == "line1-diagonal":
        return h >= 16 and w >= 16 and fill < 0.4 and box[h // 2, w // 2] > 64
    raise ValueError(kind)


KINDS = ["square", "disc", "ring", "hbar", "vbar", "line3", "line1-diagonal"]


@pytest.mark.parametrize("n", [40, 120, 500])
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_are_shown_not_erased(kind, n):
    """A filled square, a bar, a line came out as an all-zero 28x28 (and the model then said "1")."""
    for dark_on_light in (True, False):
        found = find_digit(shape_image(kind, n, dark_on_light))
        assert found is not None, (kind, n)
        out = found[1]
        assert out.max() == 255 and (out > 128).sum() >= 12, (kind, n, int(out.max()))
        assert resembles(kind, out), (kind, n, dark_on_light, ink_box(out)[:2])
        segs = segment_digits(shape_image(kind, n, dark_on_light))
        assert segs and all(a.max() == 255 for _, a in segs)


def test_filled_square_from_the_issue_is_cheap_and_visible():
    """500x500 PNG with a filled 400x400 square: 35 s and 1 GB before (an unbounded thinning window)."""
    img = Image.new("L", (500, 500), 255)
    ImageDraw.Draw(img).rectangle([50, 50, 449, 449], fill=0)
    tracemalloc.start()
    box, out = find_digit(img)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, peak / 2**20
    assert box == (50, 50, 450, 450) and resembles("square", out)


# --------------------------------------------------------------------------- bounded work


def adversarial(kind: str, w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "filled-square":
        a = np.full((h, w), 255, np.uint8)
        a[h // 10:-h // 10, w // 10:-w // 10] = 0
        return a
    if kind == "noise":
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    if kind == "checkerboard":
        yy, xx = np.ogrid[:h, :w]
        return (((yy // 12 + xx // 12) % 2) * 255).astype(np.uint8)
    if kind == "stripes":  # hundreds of separate strokes
        a = np.full((h, w), 255, np.uint8)
        for x in range(0, w, 24):
            a[rng.integers(0, h // 2):, x:x + 6] = 0
        return a
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["filled-square", "noise", "checkerboard", "stripes"])
def test_large_adversarial_images_do_bounded_work(kind, monkeypatch):
    """Every window and grid stays bounded whatever the image; what comes out is never an empty 28x28."""
    windows: list[tuple[int, tuple[int, ...]]] = []
    groups: list[int] = []

    def spy(fn):
        def wrapped(a, k, *args, **kwargs):
            windows.append((k, np.shape(a)))
            return fn(a, k, *args, **kwargs)
        return wrapped

    for module in (fit, ink):
        monkeypatch.setattr(module, "minimum_filter", spy(ndimage.minimum_filter))
        monkeypatch.setattr(module, "maximum_filter", spy(ndimage.maximum_filter))
    real_group = segment.group
    monkeypatch.setattr("digitlab.preprocess.digits.group", lambda parts: groups.append(len(parts)) or real_group(parts))
    img = Image.fromarray(adversarial(kind, 6000, 4000))  # 24 MP
    work, scale = colour.working_ink(img)
    assert max(work.shape) == WORK_SIDE and scale == pytest.approx(WORK_SIDE / 6000)
    tracemalloc.start()
    found = find_digit(img)
    segs = segment_digits(img)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB traced"  # a float copy of the image would be 96 MB
    for k, shape in windows:
        assert k < fit.FIT_WORK // 2 and max(shape) <= max(fit.FIT_WORK, WORK_SIDE // 8), (k, shape)
    assert all(n <= segment.MAX_PARTS for n in groups)
    if kind == "noise":
        assert found is None and segs == []  # noise is not ink
    else:
        assert found is not None and found[1].max() == 255
        assert segs and all(a.max() == 255 for _, a in segs)


def test_image_at_the_pixel_cap_is_reduced_before_float_conversion():
    img = Image.fromarray(adversarial("filled-square", 8000, MAX_PIXELS // 8000))
    tracemalloc.start()
    work, _ = colour.working_ink(img)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert max(work.shape) == WORK_SIDE
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MB traced"  # the float image itself would be 160 MB


@pytest.mark.parametrize("grain", [1, 3, 8, 20])
def test_smooth_noise_is_not_ink(grain):
    """Noise of any grain (sensor noise, paper texture, an out-of-focus blur of it) is not a digit:
    the noise level is measured where no ink can be, the lower tail of the residual."""
    rng = np.random.default_rng(grain)
    for sigma in (5, 15, 30):
        small = rng.normal(0, 1, (240 // grain, 240 // grain)).astype(np.float32)
        field = np.asarray(Image.fromarray(small).resize((240, 240), Image.Resampling.BICUBIC))
        img = np.clip(200 + field / field.std() * sigma, 0, 255).astype(np.uint8)
        assert find_digit(img) is None, (grain, sigma)


def test_hairline_digit_in_a_huge_image_stays_one_digit():
    """A 1-px "7" at 40 MP is faint after the reduction; the threshold cuts it into pieces, which
    the faint ink between them joins again (number mode read it as an 11-digit number)."""
    img = Image.new("L", (8000, 5000), 255)
    ImageDraw.Draw(img).line([(2750, 830), (5250, 830), (3500, 4170)], fill=0, width=1)
    segs = segment_digits(img)
    assert len(segs) == 1 and segs[0][1].max() == 255
    x0, y0, x1, y1 = segs[0][0]
    assert x0 <= 2760 and x1 >= 5240 and y0 <= 840 and y1 >= 4160


def test_every_pillow_mode_is_reduced_alike(mnist):
    """Large images are reduced before their pixels become floats, by Pillow directly or band by
    band after converting; every mode must still give the digit the grey version gives."""
    digit = Image.fromarray(255 - mnist.x_test[7]).resize((900, 900), Image.Resampling.BICUBIC)
    grey = Image.new("L", (2300, 2100), 255)
    grey.paste(digit, (700, 500))
    ref = find_digit(grey)[1]
    rgb = grey.convert("RGB")
    p_transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    p_transparent.info["transparency"] = p_transparent.getpixel((0, 0))
    alpha_ink = Image.merge("RGBA", [Image.new("L", grey.size, 0)] * 3 + [Image.eval(grey, lambda v: 255 - v)])
    garbage = np.asarray(alpha_ink).copy()
    garbage[garbage[..., 3] == 0, :3] = (255, 0, 255)  # colour under fully transparent pixels must not matter
    variants = {
        "RGB": rgb, "RGBA": rgb.convert("RGBA"), "LA": grey.convert("LA"), "CMYK": rgb.convert("CMYK"),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32), "P+transparency": p_transparent,
        "1": grey.convert("1", dither=Image.Dither.NONE), "I;16": Image.fromarray(np.asarray(grey).astype(np.uint16) * 257),
        "I": grey.convert("I"), "F": Image.fromarray(np.asarray(grey, np.float32) / 255), "YCbCr": rgb.convert("YCbCr"),
        "alpha-only": alpha_ink, "alpha-only-garbage-colour": Image.fromarray(garbage),
    }
    for name, img in variants.items():
        work, _ = colour.working_ink(img)
        assert max(work.shape) == WORK_SIDE, name
        out = find_digit(img)[1]
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.95, name
