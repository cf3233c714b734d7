"""Make the example images in this folder from MNIST *test* digits (never used for training).

    python examples/make_examples.py

Each image imitates something people send: a phone photo of ink on paper, a
number written on a form, a canvas drawing with a transparent background,
chalk on a board, and a tiny digit in a large scan; and two things that are
not digits: a letter A drawn with three pen strokes and an empty page.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digitlab.data.mnist import load_mnist_data

HERE = Path(__file__).resolve().parent


def first(data, digit: int, skip: int = 0) -> np.ndarray:
    """The first test image of `digit` (after `skip` others)."""
    return data.x_test[np.nonzero(data.y_test == digit)[0][skip]]


def photo(d: np.ndarray, rng: np.random.Generator) -> bytes:
    """Dark ink on paper under uneven light with sensor noise and a colour cast, as JPEG."""
    big = np.asarray(Image.fromarray(d).resize((150, 150), Image.Resampling.BICUBIC), np.float32) / 255
    canvas = np.zeros((240, 240), np.float32)
    canvas[45:195, 50:200] = big
    yy, xx = np.mgrid[:240, :240] / 240
    paper = 0.93 * (0.6 + 0.38 * (0.7 * xx + 0.3 * yy))
    g = paper * (1 - 0.85 * canvas) + rng.normal(0, 0.025, canvas.shape)
    rgb = np.clip(np.stack([g, g * 0.96, g * 0.88], -1) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def number(data, text: str) -> Image.Image:
    """Digits written in a row, dark on white."""
    used: dict[int, int] = {}
    canvas = np.zeros((44, 12 + 30 * len(text)), np.uint8)
    for i, ch in enumerate(text):
        k = int(ch)
        canvas[8:36, 8 + 30 * i:36 + 30 * i] = np.maximum(canvas[8:36, 8 + 30 * i:36 + 30 * i],
                                                          first(data, k, used.get(k, 0)))
        used[k] = used.get(k, 0) + 1
    img = Image.fromarray(255 - canvas)
    return img.resize((img.width * 4, img.height * 4), Image.Resampling.BICUBIC)


def canvas_drawing(d: np.ndarray) -> Image.Image:
    """A drawing app's export: dark strokes, everything else transparent."""
    alpha = Image.fromarray(d).resize((280, 280), Image.Resampling.BICUBIC)
    rgba = Image.new("RGBA", (280, 280), (20, 20, 20, 0))
    rgba.putalpha(alpha)
    return rgba


def chalk(d: np.ndarray) -> Image.Image:
    """Light strokes on a dark green board."""
    ink = np.asarray(Image.fromarray(d).resize((120, 120), Image.Resampling.BICUBIC), np.float32) / 255
    board = np.array([30, 60, 40], np.float32)
    rgb = board * (1 - ink[..., None]) + np.array([235, 235, 225], np.float32) * ink[..., None]
    return Image.fromarray(rgb.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def tiny_in_scan(d: np.ndarray) -> Image.Image:
    """A 20-pixel digit somewhere in a large white scan."""
    page = Image.new("L", (400, 300), 250)
    page.paste(Image.fromarray(255 - d).resize((20, 20), Image.Resampling.BOX), (290, 70))
    return page


def letter_a() -> Image.Image:
    """A capital A in three strokes of a dark pen on white (drawn, not from a font)."""
    img = Image.new("L", (200, 200), 250)
    pen = ImageDraw.Draw(img)
    for stroke in (((40, 175), (100, 25)), ((100, 25), (162, 175)), ((63, 118), (138, 118))):
        pen.line(stroke, fill=30, width=11)
    return img


def blank_page() -> Image.Image:
    """An empty sheet of slightly uneven paper."""
    yy, xx = np.mgrid[:160, :160] / 160
    return Image.fromarray((235 + 12 * xx - 6 * yy).astype(np.uint8))


def main() -> None:
    data = load_mnist_data()
    rng = np.random.default_rng(7)
    (HERE / "seven.jpg").write_bytes(photo(first(data, 7, 3), rng))
    number(data, "2024").save(HERE / "year.png", optimize=True)
    canvas_drawing(first(data, 3, 5)).save(HERE / "canvas-3.png", optimize=True)
    chalk(first(data, 5, 2)).save(HERE / "chalk-5.png", optimize=True)
    tiny_in_scan(first(data, 4, 1)).save(HERE / "tiny-4.png", optimize=True)
    letter_a().save(HERE / "letter-A.png", optimize=True)
    blank_page().save(HERE / "blank.png", optimize=True)


if __name__ == "__main__":
    main()
