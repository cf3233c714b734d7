"""One writer's handwriting, generated: digits in a consistent style the shipped model finds hard.

Issue 13 measures fine-tuning on "digits of one distinct writing style that
the shipped model gets wrong". This module is that writer: a continental
European hand with a slashed 0, a 1 with a long flag and no foot, a looped
2, a flat-topped 3, an open 4, a 5 with a detached flag, a 6 whose loop stays
open, a crossed 7 with a hooked top, an 8 of two triangles and a 9 with a
hooked tail. Each digit is a few stroke templates (unit box, y down); every sample
jitters them (key points, size, slant, rotation, stroke width) and draws them
as dark ink on light paper, like a scan of one person's writing. The 28x28
version goes through `preprocess` like every image the model sees.

Two pools, "train" (to fine-tune on) and "test" (held out), come from
separate random streams: the same seed gives the same images, and no image
is in both pools.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

STYLE = "continental"
POOLS = {"train": 1, "test": 2}  # separate seed streams
CANVAS = 112  # pixels a side of a user-style image
Point = tuple[float, float]


def _line(*points: Point, n: int = 10) -> list[Point]:
    """A polyline through `points`, sampled densely so jitter bends it smoothly."""
    out: list[Point] = []
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        out += [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t) for t in np.linspace(0, 1, n, endpoint=False)]
    return out + [points[-1]]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[Point]:
    """An elliptic arc from angle a0 to a1 in degrees (0 = right, 90 = down)."""
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip((cx + rx * np.cos(t)).tolist(), (cy + ry * np.sin(t)).tolist(), strict=True))


# The writer's digits: strokes in a unit box (x right, y down), in writing order. Which of
# them the shipped model misreads is measured by benchmarks/bench_style.py.
TEMPLATES: dict[int, list[list[Point]]] = {
    0: [_arc(0.5, 0.5, 0.28, 0.45, -90, 270, 40), _line((0.95, -0.05), (0.05, 1.05))],  # slashed, long slash
    1: [_line((0.15, 0.45), (0.62, 0.02), (0.6, 0.98))],  # long flag, no foot
    2: [_arc(0.5, 0.3, 0.3, 0.25, 190, 370) + _line((0.79, 0.36), (0.3, 0.78))
        + _arc(0.34, 0.84, 0.12, 0.09, 200, 520, 24)[::-1] + _line((0.3, 0.9), (0.9, 0.9))],  # looped
    3: [_line((0.18, 0.06), (0.82, 0.06), (0.42, 0.42)) + _arc(0.48, 0.66, 0.32, 0.26, -80, 160)],  # flat top
    4: [_line((0.42, 0.02), (0.12, 0.62), (0.92, 0.62)), _line((0.7, 0.3), (0.7, 1.0))],  # open top
    5: [_line((0.3, 0.06), (0.26, 0.46)) + _arc(0.5, 0.68, 0.3, 0.26, -150, 150),
        _line((0.36, 0.05), (0.92, 0.02))],  # detached flag
    6: [_arc(0.55, 0.55, 0.35, 0.5, -60, -180, 12) + _arc(0.5, 0.72, 0.3, 0.24, 180, 420)],  # loop left open
    7: [_line((0.1, 0.24), (0.12, 0.06), (0.88, 0.06), (0.4, 0.98)), _line((0.3, 0.52), (0.9, 0.5))],  # crossed
    8: [_line((0.2, 0.04), (0.82, 0.04), (0.18, 0.96), (0.84, 0.96), (0.2, 0.04))],  # two triangles
    9: [_arc(0.46, 0.28, 0.28, 0.24, 0, 360, 36) + _line((0.74, 0.3), (0.72, 0.78))
        + _arc(0.52, 0.78, 0.2, 0.16, 0, 180, 16)],  # hooked tail (curled further, it reads as 8 to people too)
}


def _jittered(digit: int, rng: np.random.Generator) -> tuple[list[np.ndarray], float]:
    """The digit's strokes with this sample's variation, and its stroke width (unit box)."""
    slant = 0.22 + rng.normal(0, 0.04)  # the writer leans forward, always
    angle = np.radians(rng.normal(0, 3))
    sx, sy = rng.uniform(0.85, 1.1), rng.uniform(0.9, 1.1)
    # A smooth random displacement field: the same stroke never comes out twice the same.
    waves = rng.normal(0, 0.018, (2, 2)), rng.uniform(1.0, 2.5, (2, 2)), rng.uniform(0, 2 * np.pi, (2, 2))
    strokes = []
    for stroke in TEMPLATES[digit]:
        p = np.asarray(stroke, dtype=np.float64) - 0.5
        p = p + rng.normal(0, 0.012, 2)  # each stroke lands a little off
        for axis in range(2):
            amp, freq, phase = waves[0][axis], waves[1][axis], waves[2][axis]
            p[:, axis] += (amp[:, None] * np.sin(2 * np.pi * freq[:, None] * p[:, ::-1].T + phase[:, None])).sum(0)
        p[:, 0] *= sx
        p[:, 1] *= sy
        p[:, 0] -= slant * p[:, 1]
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        strokes.append(p @ rot.T + 0.5)
    return strokes, float(rng.uniform(0.07, 0.11))


def render(digit: int, rng: np.random.Generator, *, size: int = CANVAS):
    """One sample as a person would scan it: dark ink on light paper, PIL "L" image of `size` pixels."""
    from PIL import Image, ImageDraw, ImageFilter

    if digit not in TEMPLATES:
        raise ValueError(f"digit must be 0-9 (got {digit!r})")
    strokes, width = _jittered(digit, rng)
    paper, ink = int(rng.integers(225, 250)), int(rng.integers(15, 60))
    scale = 4  # draw large, then reduce: smooth, anti-aliased strokes
    big = size * scale
    img = Image.new("L", (big, big), paper)
    draw = ImageDraw.Draw(img)
    w = max(1, round(width * 0.7 * big))
    box = 0.7 * big  # the digit fills ~70% of the paper, as a cropped scan would
    for stroke in strokes:
        xy = [(0.15 * big + x * box, 0.15 * big + y * box) for x, y in stroke]
        draw.line(xy, fill=ink, width=w, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round pen tips
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=ink)
    small = img.resize((size, size), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.5))
    noise = rng.normal(0, 3, (size, size))
    return Image.fromarray(np.clip(np.asarray(small, np.float64) + noise, 0, 255).astype(np.uint8), "L")


def _rng(seed: int, pool: str, digit: int) -> np.random.Generator:
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)} (got {pool!r})")
    return np.random.default_rng(np.random.SeedSequence([seed, POOLS[pool], digit]))


def images(n_per_class: int, *, pool: str = "train", seed: int = 0, digits=range(10)):
    """[(digit, PIL image), ...]: `n_per_class` user-style images of each digit, digit by digit."""
    out = []
    for d in digits:
        rng = _rng(seed, pool, d)
        out += [(d, render(d, rng)) for _ in range(n_per_class)]
    return out


def generate(n_per_class: int, *, pool: str = "train", seed: int = 0, digits=range(10)) -> tuple[np.ndarray, np.ndarray]:
    """`(x, y)`: uint8 (N, 28, 28) MNIST-format digits (through `preprocess`, as `predict` does) and labels."""
    from ..preprocess import normalize_digit

    pairs = images(n_per_class, pool=pool, seed=seed, digits=digits)
    x = np.stack([normalize_digit(img) for _, img in pairs]) if pairs else np.zeros((0, 28, 28), np.uint8)
    return x, np.array([d for d, _ in pairs], dtype=np.uint8)


def write_folder(root: str | os.PathLike, n_per_class: int, *, pool: str = "train", seed: int = 0,
                 digits=range(10)) -> Path:
    """User-style PNGs in `root/<digit>/<pool>-<i>.png`: an image folder for `--data`."""
    from ..files.atomic import atomic_path

    root = Path(root)
    for i, (d, img) in enumerate(images(n_per_class, pool=pool, seed=seed, digits=digits)):
        with atomic_path(root / str(d) / f"{pool}-{i:05d}.png") as tmp:
            img.save(tmp, "PNG")
    return root
