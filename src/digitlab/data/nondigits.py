"""Generated non-digit images: what a "not a digit" decision is calibrated and measured on (issue 9).

`generate(split, n, seed)` draws `n` images, the same ones on every machine (seeded, offline),
of six kinds (`CATEGORIES`): single letters and symbols rendered from fonts, shapes, lines of
text, grids and hatching, and noise. They are rendered the way users send images (`STYLES`): dark
ink on white paper, white on black, RGBA canvas exports with a transparent background, and
JPEG photos of paper with uneven light; 28 px to 320 px a side, several stroke widths and small
rotations.

Two splits, "calibration" and "heldout", so that a score tuned on one is measured honestly on the
other. They differ in everything a score could be tuned on: the random stream (the split is part
of the seed), the font families (`FONTS`: DejaVu for calibration; STIX and Computer Modern, never
seen in calibration, for heldout), the words of the text lines, and the shape and noise
parameter ranges (`_SPLITS`: e.g. "+" crosses vs "x" crosses, 5/6-point vs 4/7/8-point stars,
"/" vs "\\" hatching). The fonts are those bundled with matplotlib (a dependency), not the
system's, so CI draws identical sets.

What is left out, and why: a fair non-digit is one a careful person would not read as a digit.
The candidates were rendered (DejaVu Sans and Serif, STIX, the Computer Modern faces) and looked
at, alone and as the 28x28 model input; those that read as the digit given are never drawn
(`LOOKALIKES`; borderline ones such as "?", "$" or a bold pilcrow are left out too). Letters and
symbols that merely *fool the model* (A -> 4, a -> 2, U -> 0, y -> 4, > -> 7, T -> 7, J -> 1)
stay in: a person reads them as letters, so flagging them is exactly what the decision is for. For the same reason no
shape is a circle, ellipse or ring (0), a lone straight stroke steeper than 45 degrees (1), a
tall rectangle (a seven-segment 0 when outlined, a thick 1 when filled) or a bar with a hook at
one end (7, 1); hatching is never vertical (a row of 1s); blobs are kept clearly irregular (a
filled ellipse is a heavy 0 to some). Text lines use whole words, each at least half made of
letters that are not lookalikes ("lo", "Il", "SOS" would read as 10, 11, 505).
"""

from __future__ import annotations

import io
import math
import os
import string
from dataclasses import dataclass
from typing import Any

import numpy as np

CATEGORIES = ("letters", "symbols", "shapes", "text", "grids", "noise")
STYLES = ("dark-on-white", "white-on-black", "rgba", "photo")
_STYLE_WEIGHTS = (0.35, 0.2, 0.15, 0.3)
MIN_SIDE, MAX_SIDE = 28, 320  # from an MNIST-sized export to a phone crop

# glyph -> the digit a careful reader could take it for
LOOKALIKES: dict[str, str] = {
    "O": "0", "o": "0", "Q": "0", "D": "0", "©": "0 (a ring)", "®": "0 (a ring)", "°": "0 (a ring)",
    "θ": "0 (barred)", "φ": "0 (slashed)", "σ": "0 or 6 (a ring with a tail)",
    "I": "1", "l": "1", "i": "1", "j": "1", "|": "1", "!": "1", "/": "1", "\\": "1", "∫": "1",
    "(": "1", ")": "1", "[": "1", "]": "1", "{": "1", "}": "1",
    "Z": "2", "z": "2", "?": "2 or 7 (once preprocessing drops its dot as a speck)",
    "ε": "3 (mirrored)", "S": "5", "s": "5", "$": "5", "§": "5 or 8",
    "b": "6", "G": "6", "δ": "6", "B": "8", "β": "8", "g": "9", "q": "9",
    "¶": "9 (mirrored: in bold a filled loop on a stem)",
}
LETTERS = "".join(c for c in string.ascii_letters if c not in LOOKALIKES)
SYMBOLS = "#%&*+<=>@^~×÷±€£¥µ∞≈≠≤≥∑∏√Ωπλαγμψω"

FONTS = {
    "calibration": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
                    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
                    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
                    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf"),
    "heldout": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
                "cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmmi10.ttf", "cmss10.ttf", "cmtt10.ttf"),
}

# Everything a non-digit score could be tuned on differs between the splits.
_SPLITS: dict[str, dict[str, Any]] = {
    "calibration": dict(
        key=1, rotate=10.0, rect_aspect=(1.0, 1.5), star_points=(5, 6), triangle="up", cross="+",
        bar_aspect=(3.0, 7.0), blob_harmonics=(2, 3), grid_lines=(2, 4), hatch=("/",),
        sp_density=(0.01, 0.06), blotches=(3, 6), smooth=(0.03, 0.06),
        words=("the", "cat", "read", "paper", "window", "market", "yellow", "hand", "never", "water",
               "drawn", "answer", "every", "tree", "which", "mark", "river", "fact", "carry", "hat",
               "when", "parent", "dream", "chart", "north", "kept", "wavy", "tax", "amber", "fern"),
    ),
    "heldout": dict(
        key=2, rotate=15.0, rect_aspect=(1.5, 2.5), star_points=(4, 7, 8), triangle="down", cross="x",
        bar_aspect=(7.0, 14.0), blob_harmonics=(3, 5), grid_lines=(5, 8), hatch=("\\", "x", "="),
        sp_density=(0.06, 0.2), blotches=(7, 14), smooth=(0.06, 0.12),
        words=("where", "under", "feather", "mountain", "apron", "winter", "key", "hunter", "vault",
               "crane", "after", "thumb", "empty", "quiet", "few", "peach", "ranch", "wharf", "fancy",
               "mercy", "jump", "taken", "heart", "fever", "nephew", "rhyme", "turn", "crypt", "navy", "pencil"),
    ),
}
SPLITS = tuple(_SPLITS)


@dataclass(frozen=True)
class NonDigit:
    """One generated image that is not a digit."""

    image: Any  # PIL.Image.Image (mode L, RGB or RGBA)
    kind: str  # one of CATEGORIES
    detail: str  # what was drawn: the glyph, the text, the shape or the noise
    style: str  # one of STYLES
    font: str | None = None  # font file name (letters, symbols, text)


def font_dir() -> str:
    """Where matplotlib keeps its bundled TrueType fonts (`matplotlib.get_data_path()`, without
    importing matplotlib: that alone costs half a second)."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("matplotlib (a digitlab dependency) is not installed: its fonts are needed")
    return os.path.join(list(spec.submodule_search_locations)[0], "mpl-data", "fonts", "ttf")


def generate(split: str, n: int, seed: int = 0, start: int = 0) -> list[NonDigit]:
    """`n` non-digit images of `split` ("calibration" or "heldout"), the same for the same seed.

    Categories take turns (image i is `CATEGORIES[i % 6]`) and image i depends only on
    (seed, split, i), so a smaller n gives a prefix of a larger one, and `start` gives images
    start, ..., start + n - 1 of the same sequence (a large set drawn a chunk at a time).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0 (got {n}, {start})")
    gen = _Generator(split)
    return [gen.item(np.random.default_rng([seed, _SPLITS[split]["key"], i]), CATEGORIES[i % len(CATEGORIES)])
            for i in range(start, start + n)]


class _Generator:
    def __init__(self, split: str):
        from fontTools.ttLib import TTFont  # a matplotlib dependency
        from PIL import ImageFont

        self.p = _SPLITS[split]
        self._fonts: dict[tuple[str, int], Any] = {}
        self._truetype = ImageFont.truetype
        self.dir = font_dir()
        self.fonts = FONTS[split]
        # The Computer Modern fonts keep TeX's own layout outside the letters (their "<" is an
        # inverted "!", "±" a ligature, "¥" a Xi): symbols come only from the Unicode fonts.
        self.symbol_fonts = tuple(f for f in self.fonts if not f.startswith("cm"))
        self.cmap = {f: set(TTFont(os.path.join(self.dir, f), lazy=True).getBestCmap()) for f in self.fonts}

    def font(self, name: str, size: int) -> Any:
        key = (name, max(4, int(size)))
        if key not in self._fonts:
            self._fonts[key] = self._truetype(os.path.join(self.dir, name), key[1])
        return self._fonts[key]

    def item(self, rng: np.random.Generator, kind: str) -> NonDigit:
        style = str(rng.choice(STYLES, p=_STYLE_WEIGHTS))
        side = int(round(math.exp(rng.uniform(math.log(MIN_SIDE), math.log(MAX_SIDE)))))
        font = None
        if kind in ("letters", "symbols"):
            pool = LETTERS if kind == "letters" else SYMBOLS
            font = str(rng.choice(self.fonts if kind == "letters" else self.symbol_fonts))
            detail = str(rng.choice([c for c in pool if ord(c) in self.cmap[font]]))
            ink = self.glyphs(rng, detail, font, side)
        elif kind == "text":
            font = str(rng.choice(self.fonts))
            words = [str(w) for w in rng.choice(self.p["words"], size=int(rng.integers(2, 5)))]
            if rng.random() < 0.3:
                words = [w.capitalize() if rng.random() < 0.5 else w.upper() for w in words]
            words = [w for w in words if _fair_word(w)]
            detail = " ".join(words)
            ink = self.text(rng, words, font)
        elif kind == "shapes":
            detail, ink = self.shape(rng, side)
        elif kind == "grids":
            detail, ink = self.grid(rng, side)
        else:
            detail, ink = _noise(rng, side, self.p)
        return NonDigit(_style(rng, ink, style), kind, detail, style, font)

    # ----------------------------------------------------------------- drawing (white ink on black, k x size)

    def _canvas(self, w: int, h: int) -> tuple[Any, Any, int]:
        from PIL import Image, ImageDraw

        side = max(w, h)
        k = 4 if side <= 64 else 3 if side <= 128 else 2  # supersampled, then reduced: anti-aliased
        img = Image.new("L", (w * k, h * k), 0)
        return img, ImageDraw.Draw(img), k

    def _finish(self, rng: np.random.Generator, img: Any, w: int, h: int, max_angle: float | None = None
                ) -> np.ndarray:
        from PIL import Image

        limit = self.p["rotate"] if max_angle is None else max_angle
        angle = rng.uniform(-limit, limit)
        img = img.rotate(angle, resample=Image.Resampling.NEAREST, fillcolor=0)  # BOX-reduced next: smooth
        return np.asarray(img.resize((w, h), Image.Resampling.BOX), np.float32) / 255.0

    def glyphs(self, rng: np.random.Generator, text: str, font: str, side: int) -> np.ndarray:
        img, draw, k = self._canvas(side, side)
        extent = rng.uniform(0.45, 0.8) * side * k  # the glyph's larger side
        f = self.font(font, 100)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=f)
        f = self.font(font, 100 * extent / max(x1 - x0, y1 - y0, 1))
        bold = "Bol" in font or font.startswith("cmb")
        stroke = 0 if bold else int(rng.choice([0, 0, 1, 1.5]) * f.size / 50)  # a bolder pen now and then
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=f, stroke_width=stroke)
        room = np.maximum(side * k - np.array([x1 - x0, y1 - y0]), 0)
        ox, oy = rng.uniform(0.25, 0.75, 2) * room
        draw.text((ox - x0, oy - y0), text, font=f, fill=255, stroke_width=stroke, stroke_fill=255)
        return self._finish(rng, img, side, side)

    def text(self, rng: np.random.Generator, words: list[str], font: str) -> np.ndarray:
        size = int(rng.integers(9, 41))  # letter height in pixels
        for _ in range(2):  # at most 440 px wide: smaller letters for a long line
            boxes = [self.font(font, size).getbbox(w) for w in words]
            gap = 0.35 * size  # word by word: the Computer Modern fonts have no space glyph (TeX uses glue)
            width = sum(x1 - x0 for x0, _, x1, _ in boxes) + gap * (len(words) - 1)
            size = min(size, int(size * 440 / width))
        height = max(y1 for *_, y1 in boxes) - min(y0 for _, y0, *_ in boxes)
        w = int(width * rng.uniform(1.1, 1.4)) + 4
        h = int(height * rng.uniform(1.3, 3.0)) + 4
        img, draw, k = self._canvas(w, h)
        f = self.font(font, size * k)
        x = rng.uniform(0.2, 0.8) * max(w - width, 0) * k
        y = (0.5 * (h - height) - min(y0 for _, y0, *_ in boxes)) * k
        for word, (x0, _, x1, _) in zip(words, boxes):
            draw.text((x - x0 * k, y), word, font=f, fill=255)
            x += (x1 - x0 + gap) * k
        # a line of text is photographed about level: at most 3 degrees, and never turned out of the image
        tilt = math.degrees(math.asin(min(1.0, 0.5 * (h - height) / (0.5 * w))))
        return self._finish(rng, img, w, h, max_angle=min(3.0, tilt))

    def shape(self, rng: np.random.Generator, side: int) -> tuple[str, np.ndarray]:
        p = self.p
        img, draw, k = self._canvas(side, side)
        s = side * k
        r = rng.uniform(0.25, 0.42) * s  # half the shape's larger side
        cx, cy = s / 2 + rng.uniform(-1, 1, 2) * (s / 2 - r) * 0.8
        width = max(k, int(rng.uniform(0.04, 0.14) * 2 * r))
        filled = bool(rng.random() < 0.5)
        name = str(rng.choice(["rectangle", "triangle", "star", "bar", "cross", "blob"]))
        if name == "rectangle":
            hw = r
            hh = r / rng.uniform(*p["rect_aspect"])  # never taller than wide
            pts = [(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)]
        elif name == "triangle":
            sign = -1 if p["triangle"] == "up" else 1
            pts = [(cx + r * math.sin(a) * rng.uniform(0.85, 1.0), cy + sign * r * math.cos(a))
                   for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
        elif name == "star":
            m = int(rng.choice(p["star_points"]))
            inner = rng.uniform(0.35, 0.5)
            pts = [(cx + r * (1 if j % 2 == 0 else inner) * math.sin(math.pi * j / m),
                    cy - r * (1 if j % 2 == 0 else inner) * math.cos(math.pi * j / m)) for j in range(2 * m)]
            name = f"star{m}"
        elif name == "bar":  # a horizontal bar, thin (a rule) to thick (a filled strip)
            hh = max(k / 2, r / rng.uniform(*p["bar_aspect"]))
            pts = [(cx - r, cy - hh), (cx + r, cy - hh), (cx + r, cy + hh), (cx - r, cy + hh)]
            filled = True
        elif name == "cross":
            a = 0.0 if p["cross"] == "+" else math.pi / 4
            for t in (a, a + math.pi / 2):
                dx, dy = r * math.cos(t), r * math.sin(t)
                draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=width)
            return f"cross {p['cross']}", self._finish(rng, img, side, side)
        else:  # an irregular blob: a radius with random low harmonics, well away from a circle
            t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
            rad = np.ones_like(t)
            for h in range(p["blob_harmonics"][0], p["blob_harmonics"][1] + 1):
                rad += rng.uniform(0.12, 0.25) * np.cos(h * t + rng.uniform(0, 2 * np.pi))
            rad *= r / rad.max()
            pts = list(zip(cx + rad * np.cos(t), cy + rad * np.sin(t)))
            filled = True
        if filled:
            draw.polygon(pts, fill=255)
        else:
            draw.line(pts + pts[:2], fill=255, width=width, joint="curve")
        return f"{name} {'filled' if filled else 'outline'}", self._finish(rng, img, side, side)

    def grid(self, rng: np.random.Generator, side: int) -> tuple[str, np.ndarray]:
        img, draw, k = self._canvas(side, side)
        s = side * k
        x0, y0 = rng.uniform(0.02, 0.2, 2) * s
        x1, y1 = s - rng.uniform(0.02, 0.2, 2) * s
        lines = int(rng.integers(self.p["grid_lines"][0], self.p["grid_lines"][1] + 1))
        width = max(k, int(rng.uniform(0.01, 0.04) * s))
        kind = str(rng.choice(["grid", *self.p["hatch"]]))
        segs = []
        if kind == "grid":  # a table / tic-tac-toe board: lines across both ways
            segs += [((x0, y), (x1, y)) for y in np.linspace(y0, y1, lines)]
            segs += [((x, y0), (x, y1)) for x in np.linspace(x0, x1, lines)]
        if kind == "=":  # ruled paper
            segs += [((x0, y), (x1, y)) for y in np.linspace(y0, y1, lines + 2)]
        for direction in {"/": (1,), "\\": (-1,), "x": (1, -1)}.get(kind, ()):
            # parallel diagonals clipped to the box: x - direction * y = c
            span = (x1 - x0) + (y1 - y0)
            for c in np.linspace(0, span, lines + 4)[1:-1]:  # 4 lines at least: hatching, not "///"
                pts = []
                for t in np.linspace(0, 1, 200):
                    x = x0 + t * (x1 - x0)
                    y = y0 + (c - (x - x0)) if direction == 1 else y1 - (c - (x - x0))
                    if y0 <= y <= y1:
                        pts.append((x, y))
                if len(pts) >= 2:
                    segs.append((pts[0], pts[-1]))
        for a, b in segs:
            draw.line([a, b], fill=255, width=width)
        return {"x": "crosshatch", "=": "ruled", "/": "hatch /",
                "\\": "hatch \\"}.get(kind, f"grid {lines}x{lines}"), self._finish(rng, img, side, side)


def render(ink: np.ndarray, rng: np.random.Generator, style: str | None = None) -> Any:
    """A float ink map (1 = ink) as the image a user would send, in `style` (default: one drawn
    with the non-digits' weights), e.g. to render *digits* exactly as the non-digits are."""
    if style is None:
        style = str(rng.choice(STYLES, p=_STYLE_WEIGHTS))
    elif style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)} (got {style!r})")
    return _style(rng, np.asarray(ink, np.float32), style)


def _fair_word(word: str) -> bool:
    """At least half the letters are not digit lookalikes (so the word reads as a word)."""
    return 2 * sum(c in LOOKALIKES for c in word) <= len(word)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    img = Image.fromarray(np.clip(a * 255, 0, 255).astype(np.uint8))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255.0


def _noise(rng: np.random.Generator, side: int, p: dict[str, Any]) -> tuple[str, np.ndarray]:
    kind = str(rng.choice(["uniform", "salt-and-pepper", "blotches", "smooth"]))
    shape = (side, side)
    if kind == "uniform":
        ink = rng.uniform(0, rng.uniform(0.3, 1.0), shape)
    elif kind == "salt-and-pepper":
        ink = (rng.random(shape) < rng.uniform(*p["sp_density"])).astype(np.float32)
    elif kind == "blotches":
        yy, xx = np.mgrid[:side, :side]
        ink = np.zeros(shape)
        for _ in range(int(rng.integers(p["blotches"][0], p["blotches"][1] + 1))):
            cy, cx = rng.uniform(0, side, 2)
            ry, rx = rng.uniform(0.03, 0.12, 2) * side + 1
            ink = np.maximum(ink, ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
        ink = _blur(ink, side / 150)
    else:  # smooth noise: clouds, thresholded softly
        v = _blur(rng.random(shape), rng.uniform(*p["smooth"]) * side)
        v = (v - v.min()) / max(float(v.max() - v.min()), 1e-6)
        ink = np.clip((v - 0.5) * 4, 0, 1)
    return kind, np.asarray(ink, np.float32)


def _style(rng: np.random.Generator, ink: np.ndarray, style: str) -> Any:
    """A float ink map (1 = ink) -> the image a user would send."""
    from PIL import Image

    h, w = ink.shape
    if style == "white-on-black":
        bg, pen = rng.uniform(0, 40), rng.uniform(190, 255)
        return Image.fromarray(np.round(bg + (pen - bg) * ink).astype(np.uint8), "L")
    pen = np.array([[0, 0, 0], [20, 40, 140], [60, 60, 60], [10, 20, 70]][int(rng.integers(4))], np.float32)
    if style == "rgba":  # a canvas export: pen colour everywhere, the ink in alpha
        rgba = np.empty((h, w, 4), np.uint8)
        rgba[..., :3] = pen
        rgba[..., 3] = np.round(255 * ink / max(float(ink.max()), 1e-6) * rng.uniform(0.85, 1.0))  # strokes opaque
        return Image.fromarray(rgba, "RGBA")
    if style == "dark-on-white":
        paper = rng.uniform(215, 255)
        if rng.random() < 0.6:
            return Image.fromarray(np.round(paper + (rng.uniform(0, 90) - paper) * ink).astype(np.uint8), "L")
        rgb = paper + (pen - paper) * ink[..., None]
        return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    # a photo of paper: uneven light, a little blur and sensor noise, JPEG
    side = max(h, w)
    yy = (np.arange(h, dtype=np.float32) / side)[:, None]
    xx = (np.arange(w, dtype=np.float32) / side)[None, :]
    t = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(t) * xx + np.sin(t) * yy  # light falling off across the page ...
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    vignette = (xx - xx.mean()) ** 2 + (yy - yy.mean()) ** 2  # ... and towards the corners
    light = 1.0 - np.float32(rng.uniform(0.1, 0.4)) * ramp - np.float32(rng.uniform(0.0, 0.8)) * vignette
    paper = np.array([rng.uniform(205, 245), rng.uniform(200, 240), rng.uniform(185, 230)], np.float32)
    ink = _blur(ink, rng.uniform(0.3, 1.0) * max(1.0, side / 100))
    rgb = (paper + (pen + np.float32(rng.uniform(10, 50)) - paper) * ink[..., None]) * light[..., None]
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(rng.uniform(2, 8))
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB").save(
        buf, "JPEG", quality=int(rng.integers(40, 86)))
    img = Image.open(buf)
    img.load()
    return img
