"""Colour: any Pillow mode -> grey levels and an ink map (alpha, 16-bit, float, polarity),
at full resolution or at the bounded working resolution of the digit analysis."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops

from .bands import undo_inverted_bands
from .loading import require_finite

WORK_SIDE = 1024  # larger images are reduced (area average) before the analysis ...
MIN_WORK_SIDE = 28  # ... and ones smaller than MNIST's own field enlarged (bicubic), so a digit has pixels to analyse
_STRIP_PIXELS = 1 << 22  # images that need converting are reduced a band of ~4 MP at a time
_DIRECT = ("L", "RGB", "CMYK", "YCbCr", "I", "F")  # modes Pillow reduces as they are


def _grey_plane(img: Image.Image) -> tuple[Image.Image, str]:
    """One band holding the grey level ("L", "I" or "F") and how to scale it: "8bit", "16bit", "int" or "float"."""
    mode = img.mode
    if mode.startswith("I;16"):
        return img.convert("I"), "16bit"
    if mode == "I":
        return img, "int"
    if mode == "F":
        return img, "float"
    if mode in ("L", "1", "RGB"):
        return img.convert("L"), "8bit"
    try:
        return img.convert("RGB").convert("L"), "8bit"
    except Exception:  # noqa: BLE001 - e.g. LAB: use its lightness band
        return img.getchannel(0).convert("L"), "8bit"


def _to_unit(a: np.ndarray, kind: str) -> np.ndarray:
    """A grey plane's values -> float32 in [0, 1] (1 = white)."""
    a = np.asarray(a, dtype=np.float32)
    if kind == "8bit":
        return a / np.float32(255.0)
    if kind == "float":
        require_finite(a, "<image>")  # load_image checks files and arrays; this, images handed in directly
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return a
        if lo >= 0.0 and hi <= 255.0:
            return a / np.float32(255.0)
        return (a - lo) / np.float32(max(hi - lo, 1e-6))
    top = 65535.0 if kind == "16bit" or a.max() > 255 else 255.0
    if a.max() > 65535 or a.min() < 0:
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / np.float32(max(hi - lo, 1e-6))
    return a / np.float32(top)


def _split_alpha(img: Image.Image, check_opaque: bool = True) -> tuple[Image.Image, Image.Image | None]:
    """(grey part, alpha band "L" or None when the image has none, or is opaque when `check_opaque`)."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    elif img.mode in ("RGB", "L") and "transparency" in img.info:
        img = img.convert("RGBA" if img.mode == "RGB" else "LA")
    elif img.mode in ("RGBa", "La"):
        img = img.convert("RGBA" if img.mode == "RGBa" else "LA")
    if img.mode not in ("RGBA", "LA"):
        return img, None
    alpha = img.getchannel("A")
    colour = img.convert("L")  # only the luminance is used: straight from RGBA/LA, no RGB copy
    if check_opaque and alpha.getextrema()[0] == 255:
        return colour, None
    return colour, alpha


def _composite(premul: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Grey levels with transparency made background, from grey x alpha ("premultiplied") and alpha.

    Transparent pixels become the background colour: when the opaque pixels
    cover most of the image they are the paper, so transparency takes their
    (median) grey; when they are a minority they are the ink, and transparency
    becomes the opposite extreme (white behind dark ink, black behind light
    ink). When the colour channels carry no information (canvas exports whose
    RGB is all black and whose ink is only in alpha), alpha itself is the ink.
    Premultiplied values are what an area average of a transparent image keeps.
    """
    if alpha is None:
        return premul
    seen = alpha > 0.5
    if not seen.any():  # fully transparent: nothing to see
        return np.ones_like(premul)
    grey = premul[seen] / alpha[seen]  # the colour itself where it is mostly opaque
    if float(grey.max() - grey.min()) < 0.02:  # uniform colour: the shape is in alpha
        return (1.0 - alpha).astype(np.float32)  # alpha is the ink: dark ink on white paper
    if seen.mean() > 0.5:
        bg = float(np.median(grey))
    else:
        bg = 1.0 if float(np.median(grey)) < 0.5 else 0.0
    return (premul + np.float32(bg) * (1.0 - alpha)).astype(np.float32)


def to_grayscale(img: Image.Image) -> np.ndarray:
    """Grey level in [0, 1] (1 = white) at full resolution, transparency made background
    (see `_composite`)."""
    colour, alpha = _split_alpha(img)
    plane, kind = _grey_plane(colour)
    grey = _to_unit(np.asarray(plane), kind)
    if alpha is None:
        return grey
    a = np.asarray(alpha, dtype=np.float32) / np.float32(255.0)
    return _composite(grey * a, a)


def _reduced_grayscale(img: Image.Image, f: int, size: tuple[int, int]) -> np.ndarray:
    """`to_grayscale` of the image reduced to `size` (area average), f times by Pillow's
    `reduce` first, without ever holding a converted full-size copy: opaque images in a
    plain mode are reduced as they are; any other is converted and reduced a band of rows
    at a time."""
    if img.mode in _DIRECT and "transparency" not in img.info:
        plane, kind = _grey_plane(img.reduce(f) if f > 1 else img)
        return _to_unit(np.asarray(plane.resize(size, Image.Resampling.BOX)), kind)
    w, h = img.size
    rows = f * max(1, _STRIP_PIXELS // (w * f))
    planes, alphas, kind = [], [], "8bit"
    for y in range(0, h, rows):
        colour, alpha = _split_alpha(img.crop((0, y, w, min(h, y + rows))), check_opaque=False)
        plane, kind = _grey_plane(colour)
        if alpha is None:
            alphas.append(None)
        else:  # only 8-bit planes come with alpha: premultiply, then average
            plane = ImageChops.multiply(plane, alpha)
            alphas.append(np.asarray(alpha.reduce(f), dtype=np.float32) / np.float32(255.0))
        planes.append(np.asarray(plane.reduce(f), dtype=np.float32))

    def finish(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BOX), dtype=np.float32)

    grey = _to_unit(finish(np.concatenate(planes)), kind)
    if all(a is None for a in alphas):
        return grey
    alpha = finish(np.concatenate([np.ones(p.shape, np.float32) if a is None else a for p, a in zip(planes, alphas)]))
    return grey if float(alpha.min()) >= 1.0 else _composite(grey, alpha)


def border(a: np.ndarray) -> np.ndarray:
    """The pixels of a frame about 1/20 of the short side wide (at least 1 px)."""
    h, w = a.shape
    k = max(1, min(h, w) // 20)
    return np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()])


CLEAR_BORDER = (0.25, 0.75)  # a border outside this range is paper (light) or a board (dark) whatever is on it
BEYOND = 0.1  # ink reaches at least this far beyond the border's range on its side (and twice as far
# as on the other) to decide a grey border: fog's or a gradient's own variation shows in the border


def detect_polarity(gray: np.ndarray) -> str:
    """"dark-on-light" (ink on paper) or "light-on-dark" (MNIST, chalk on a board).

    Decided by the background, i.e. the border of the image: a bright border
    means dark ink, a dark one light ink. For a grey border (dim paper, fog,
    a brightened scan), first by the side where the image reaches clearly
    farther beyond the range of the border's own levels (clouds and uneven
    light show in the border too, the ink seldom does); failing that, a border
    over 0.6 means dark ink, under 0.4 light ink, and in between the ink is on
    the side of the grey range that lies farther from the background.
    """
    g = np.asarray(gray, dtype=np.float32)
    b = border(g)
    bg = float(np.median(b))
    if bg >= CLEAR_BORDER[1]:
        return "dark-on-light"
    if bg <= CLEAR_BORDER[0]:
        return "light-on-dark"
    # The image's extremes at 0.1% (a thin digit in a photo is a few percent of the pixels), from
    # every k-th pixel both ways: at most ~64k of them, the same percentiles at a bounded cost.
    k = max(1, int(np.ceil(np.sqrt(g.size / (1 << 16)))))
    lo, lo5, hi5, hi = np.percentile(g[::k, ::k], [0.1, 0.5, 99.5, 99.9])
    lo_b, hi_b = np.percentile(b, [5, 95])
    darker, lighter = float(lo_b - lo), float(hi - hi_b)
    # Measured: fog's digits reach 4x farther beyond the border on their side than the fog does
    # on the other; a vignetted page (paper brighter in the middle) gets at most 1.4x either way.
    if max(darker, lighter) >= BEYOND and max(darker, lighter) >= 2 * min(darker, lighter):
        return "dark-on-light" if darker > lighter else "light-on-dark"
    if bg >= 0.6:
        return "dark-on-light"
    if bg <= 0.4:
        return "light-on-dark"
    return "dark-on-light" if bg - lo5 > hi5 - bg else "light-on-dark"


def _ink_from_grey(grey: np.ndarray) -> np.ndarray:
    grey = undo_inverted_bands(grey)
    if detect_polarity(grey) == "dark-on-light":
        return (1.0 - grey).astype(np.float32)
    return grey.astype(np.float32, copy=False)


def to_grayscale_ink(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> float32 (H, W) ink map in [0, 1], ink = 1 (white on black).

    Handles every Pillow mode (1, L, LA, P with transparency, RGB, RGBA,
    CMYK, YCbCr, I;16, I, F, ...); transparency is background; the polarity is
    detected from the background and inverted to ink-is-bright when needed.
    """
    return _ink_from_grey(to_grayscale(img))


def working_ink(img: Image.Image) -> tuple[np.ndarray, float]:
    """`to_grayscale_ink` at the working resolution, and its scale (working px per image px).

    Images larger than WORK_SIDE are reduced to it (area average; by Pillow's
    integer `reduce` first, before any float conversion, so a 40 MP image costs
    a few MB); images smaller than MIN_WORK_SIDE are enlarged by an integer
    factor with bicubic interpolation, so the analysis sees smooth strokes with
    sub-pixel edges rather than a few blocky pixels.
    """
    w, h = img.size
    side = max(w, h)
    if side > WORK_SIDE:
        scale = WORK_SIDE / side
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return _ink_from_grey(_reduced_grayscale(img, side // WORK_SIDE, size)), scale
    ink = to_grayscale_ink(img)
    u = -(-MIN_WORK_SIDE // side)
    if u > 1:
        big = Image.fromarray(ink).resize((w * u, h * u), Image.Resampling.BICUBIC)
        return np.clip(np.asarray(big, dtype=np.float32), 0.0, 1.0), float(u)
    return ink, 1.0
