"""Form-style number images made from MNIST digits: the test data of issue 19, part 3.

    from forms import KINDS, generate
    items = generate("boxes", n=200, indices=range(5000, 10000), seed=1)   # [(PIL RGB image, "3407"), ...]

Four kinds, each a 2-6 digit string written at photo-like size (digits 40-80 px high) on light
paper, with slight blur, noise and JPEG compression:

    touching  neighbouring digits placed with negative gaps (0-30% of a digit's width overlap)
    boxes     one digit per printed box: full boxes or a comb field (a baseline with short ticks),
              lines of varied thickness and greyness, digits sometimes touching the lines
    ruled     ruled (horizontal) or squared (grid) paper, lines crossing the digits
    coloured  coloured ink on coloured paper, some of it low contrast

Benchmark data, not part of the package: numpy and Pillow only, everything drawn from one
seeded generator, so (kind, n, indices, seed) always gives the same images. Development used
MNIST test indices 0-4999 with seed 0; BENCHMARKS.md reports indices 5000-9999 with seed 1.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("touching", "boxes", "ruled", "coloured")
DEV = (range(0, 5000), 0)  # (MNIST test indices, seed) tuned on
REPORT = (range(5000, 10000), 1)  # (MNIST test indices, seed) reported, never tuned on

_PAPERS = [(250, 250, 245), (245, 240, 225), (235, 235, 235), (252, 248, 235)]
_INKS = [(20, 20, 25), (25, 35, 110), (40, 40, 60), (10, 20, 70)]
# coloured kind: (paper, ink) pairs; the last ones are low contrast
_COLOURED = [((250, 235, 120), (30, 50, 170)),  # blue on yellow
             ((170, 225, 170), (190, 30, 30)),  # red on green
             ((250, 200, 210), (20, 90, 40)),  # green on pink
             ((180, 215, 245), (120, 20, 110)),  # purple on light blue
             ((255, 215, 150), (90, 40, 10)),  # brown on orange
             ((200, 200, 200), (95, 95, 95)),  # grey on grey, low contrast
             ((240, 230, 140), (150, 120, 60))]  # ochre on yellow, low contrast


def _mnist(pool: str = "test"):
    from _common import ROOT  # noqa: F401 - puts the checkout's src on sys.path

    from digitlab.data.mnist import load_mnist_data

    d = load_mnist_data()
    return (d.x_test, d.y_test) if pool == "test" else (d.x_train, d.y_train)


def _digit_alpha(a: np.ndarray, height: int, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit (white on black) cropped to its ink and scaled to `height` px: alpha in [0, 1]."""
    ys, xs = np.nonzero(a > 30)
    crop = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    width = max(2, round(w * height / h * rng.uniform(0.9, 1.1)))  # writers' widths vary a little
    img = Image.fromarray(crop).resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img, np.float32) / 255.0, 0, 1)


def _finish(rgb: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Camera-ish: a slight blur, sensor noise, JPEG."""
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    r = rng.uniform(0.0, 1.0)
    if r > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(r))
    a = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(1, 6), (img.size[1], img.size[0], 1))
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(60, 95)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _compose(paper: np.ndarray, layers: Sequence[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    """Paper (h, w, 3) with each (alpha (h, w), colour) painted over it in order."""
    out = paper.astype(np.float32)
    for alpha, colour in layers:
        out = out * (1 - alpha[..., None]) + np.asarray(colour, np.float32) * alpha[..., None]
    return out


def _paste(canvas: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Ink adds up where strokes overlap (max, as one pen would draw)."""
    h, w = alpha.shape
    region = canvas[y:y + h, x:x + w]
    np.maximum(region, alpha[:region.shape[0], :region.shape[1]], out=region)


def _picks(rng, x, y, pool: np.ndarray, k: int) -> tuple[list[np.ndarray], str]:
    idx = rng.choice(pool, size=k, replace=False)
    return [x[i] for i in idx], "".join(str(int(y[i])) for i in idx)


def _row(digits, height, rng, overlap: tuple[float, float] | None):
    """Alphas of a written row and their x offsets (relative), baselines jittered."""
    alphas = [_digit_alpha(d, int(height * rng.uniform(0.92, 1.05)), rng) for d in digits]
    xs, pos = [], 0
    for i, a in enumerate(alphas):
        xs.append(pos)
        w = a.shape[1]
        if overlap is None:
            gap = round(height * rng.uniform(0.12, 0.4))
        else:  # negative gap: a share of the narrower neighbour's width
            nxt = alphas[i + 1].shape[1] if i + 1 < len(alphas) else w
            gap = -round(rng.uniform(*overlap) * min(w, nxt))
        pos += w + gap
    return alphas, xs


def _lines_layer(shape, rng, ys=(), xs=(), thick=(1, 3)) -> np.ndarray:
    a = np.zeros(shape, np.float32)
    for y in ys:
        t = int(rng.integers(thick[0], thick[1] + 1))
        a[max(0, y):max(0, y + t)] = 1.0
    for x in xs:
        t = int(rng.integers(thick[0], thick[1] + 1))
        a[:, max(0, x):max(0, x + t)] = 1.0
    return a


def _written(kind: str, digits, rng) -> np.ndarray:
    height = int(rng.integers(40, 81))
    margin = int(height * rng.uniform(0.3, 0.7))
    paper_c = np.asarray(_PAPERS[rng.integers(len(_PAPERS))], np.float32)
    ink_c = _INKS[rng.integers(len(_INKS))]
    if kind == "coloured":
        p, ink_c = _COLOURED[rng.integers(len(_COLOURED))]
        paper_c = np.asarray(p, np.float32)
    alphas, xs = _row(digits, height, rng, (0.0, 0.3) if kind == "touching" else None)
    if kind == "boxes":
        return _boxes(alphas, height, paper_c, ink_c, rng)
    width = xs[-1] + alphas[-1].shape[1] + 2 * margin
    h = max(a.shape[0] for a in alphas) + 2 * margin
    ink = np.zeros((h, width), np.float32)
    for a, x in zip(alphas, xs):
        _paste(ink, a, margin + x, margin + int(rng.integers(-height // 12, height // 12 + 1)))
    paper = np.broadcast_to(paper_c, (h, width, 3)).copy()
    layers = []
    if kind == "ruled":
        colour = [(120, 150, 220), (150, 150, 160), (90, 120, 200), (200, 120, 120)][rng.integers(4)]
        if rng.random() < 0.5:  # ruled: lines about a digit's height apart, crossing the digits
            step = int(height * rng.uniform(0.5, 1.1))
            start = margin + int(rng.integers(0, step))
            grid = _lines_layer((h, width), rng, ys=range(start % step, h, step))
        else:  # squared paper
            step = int(height * rng.uniform(0.35, 0.7))
            grid = _lines_layer((h, width), rng, ys=range(int(rng.integers(0, step)), h, step),
                                xs=range(int(rng.integers(0, step)), width, step), thick=(1, 2))
        layers.append((grid * rng.uniform(0.5, 1.0), colour))
    layers.append((ink, ink_c))
    return _compose(paper, layers)


def _boxes(alphas, height, paper_c, ink_c, rng) -> np.ndarray:
    cell = int(height * rng.uniform(1.1, 1.45))
    cw = int(cell * rng.uniform(0.8, 1.1))
    margin = int(cell * rng.uniform(0.2, 0.5))
    n = len(alphas) + int(rng.integers(0, 2))  # sometimes an empty box at the end
    h, width = cell + 2 * margin, n * cw + 2 * margin
    ink = np.zeros((h, width), np.float32)
    for i, a in enumerate(alphas):
        # digits mostly inside their box, some touching or crossing its lines
        scale = rng.uniform(0.7, 1.0) * min(cell / a.shape[0], cw / a.shape[1])
        a = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize(
            (max(2, int(a.shape[1] * scale)), max(2, int(a.shape[0] * scale))), Image.Resampling.BICUBIC),
            np.float32) / 255
        x = margin + i * cw + (cw - a.shape[1]) // 2 + int(rng.integers(-cw // 10, cw // 10 + 1))
        y = margin + (cell - a.shape[0]) // 2 + int(rng.integers(-cell // 8, cell // 8 + 1))
        _paste(ink, a, max(0, x), max(0, y))
    thick = int(rng.integers(1, 5))
    lines = np.zeros((h, width), np.float32)
    x0, x1, y0, y1 = margin, margin + n * cw, margin, margin + cell
    if rng.random() < 0.5:  # full boxes
        lines[y0:y0 + thick, x0:x1 + thick] = 1
        lines[y1:y1 + thick, x0:x1 + thick] = 1
        for i in range(n + 1):
            lines[y0:y1 + thick, x0 + i * cw:x0 + i * cw + thick] = 1
    else:  # comb: a baseline with short ticks between the cells
        tick = int(cell * rng.uniform(0.2, 0.4))
        lines[y1:y1 + thick, x0:x1 + thick] = 1
        for i in range(n + 1):
            lines[y1 - tick:y1, x0 + i * cw:x0 + i * cw + thick] = 1
    grey = rng.uniform(0.35, 1.0)
    colour = [(0, 0, 0), (60, 60, 60), (40, 70, 160), (160, 60, 60)][rng.integers(4)]
    paper = np.broadcast_to(paper_c, (h, width, 3)).copy()
    return _compose(paper, [(lines * grey, colour), (ink, ink_c)])


def generate(kind: str, n: int, indices: Sequence[int] | range = DEV[0], seed: int = DEV[1],
             pool: str = "test", *, with_digits: bool = False) -> list[tuple]:
    """`n` images of `kind` and the strings written in them, from MNIST digits at `indices` of
    the test set (`pool` "train": of the training set, a third set for checking a choice).
    `with_digits`: each item also carries the digits' own 28x28 MNIST arrays, (k, 28, 28)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    x, y = _mnist(pool)
    pool = np.asarray(list(indices))
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    out = []
    for _ in range(n):
        digits, text = _picks(rng, x, y, pool, int(rng.integers(2, 7)))
        image = _finish(_written(kind, digits, rng), rng)
        out.append((image, text, np.stack(digits)) if with_digits else (image, text))
    return out


def montage(path: str, n: int = 4, indices=DEV[0], seed: int = DEV[1]) -> None:
    """A sheet of the first `n` images of each kind (rows), for a look."""
    rows = [[im for im, _ in generate(k, n, indices, seed)] for k in KINDS]
    scale = 0.5
    ims = [[im.resize((int(im.width * scale), int(im.height * scale))) for im in r] for r in rows]
    w = max(sum(im.width for im in r) + 10 * len(r) for r in ims)
    h = sum(max(im.height for im in r) + 10 for r in ims)
    sheet = Image.new("RGB", (w, h), (255, 255, 255))
    y = 0
    for r in ims:
        x = 0
        for im in r:
            sheet.paste(im, (x, y))
            x += im.width + 10
        y += max(im.height for im in r) + 10
    sheet.save(path)
