"""Colour: any Pillow mode -> grey levels and an ink map (alpha, 16-bit, float, polarity)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .loading import require_finite


def _luminance(img: Image.Image) -> np.ndarray:
    """Grey level in [0, 1] (1 = white) of an image without alpha."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float32)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        if a.max() > 65535 or a.min() < 0:
            lo, hi = float(a.min()), float(a.max())
            return (a - lo) / max(hi - lo, 1e-6)
        return a / top
    if mode == "F":
        a = np.asarray(img).astype(np.float32)
        require_finite(a, "<image>")  # load_image checks files and arrays; this, images handed in directly
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return a
        if lo >= 0.0 and hi <= 255.0:
            return a / 255.0
        return (a - lo) / max(hi - lo, 1e-6)
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode not in ("RGB",):
        try:
            img = img.convert("RGB")
        except Exception:  # noqa: BLE001 - e.g. LAB: use its lightness band
            img = img.getchannel(0)
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _split_alpha(img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """(colour part, alpha in [0, 1] or None when the image is opaque)."""
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
    alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
    colour = img.convert("RGB" if img.mode == "RGBA" else "L")
    if alpha.min() >= 1.0:
        return colour, None
    return colour, alpha


def to_grayscale(img: Image.Image) -> np.ndarray:
    """Grey level in [0, 1] (1 = white) with transparency made background.

    Transparent pixels become the background colour: when the opaque pixels
    cover most of the image they are the paper, so transparency takes their
    (median) grey; when they are a minority they are the ink, and transparency
    becomes the opposite extreme (white behind dark ink, black behind light
    ink). When the colour channels carry no information (canvas exports whose
    RGB is all black and whose ink is only in alpha), alpha itself is the ink.
    """
    colour, alpha = _split_alpha(img)
    gray = _luminance(colour)
    if alpha is None:
        return gray
    seen = alpha > 0.5
    if not seen.any():  # fully transparent: nothing to see
        return np.ones_like(gray)
    vals = gray[alpha > 0]
    if float(vals.max() - vals.min()) < 0.02:  # uniform colour: the shape is in alpha
        return (1.0 - alpha).astype(np.float32)  # alpha is the ink: dark ink on white paper
    if seen.mean() > 0.5:
        bg = float(np.median(gray[seen]))
    else:
        bg = 1.0 if float(np.median(gray[seen])) < 0.5 else 0.0
    return (gray * alpha + bg * (1.0 - alpha)).astype(np.float32)


def border(a: np.ndarray) -> np.ndarray:
    """The pixels of a frame about 1/20 of the short side wide (at least 1 px)."""
    h, w = a.shape
    k = max(1, min(h, w) // 20)
    return np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()])


def detect_polarity(gray: np.ndarray) -> str:
    """"dark-on-light" (ink on paper) or "light-on-dark" (MNIST, chalk on a board).

    Decided by the background, i.e. the border of the image: a bright border
    means dark ink; for a mid-grey border, the ink is on the side of the grey
    range that lies farther from the background.
    """
    g = np.asarray(gray, dtype=np.float32)
    bg = float(np.median(border(g)))
    if bg >= 0.6:
        return "dark-on-light"
    if bg <= 0.4:
        return "light-on-dark"
    lo, hi = np.percentile(g, [0.5, 99.5])
    return "dark-on-light" if bg - lo > hi - bg else "light-on-dark"


def to_grayscale_ink(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> float32 (H, W) ink map in [0, 1], ink = 1 (white on black).

    Handles every Pillow mode (1, L, LA, P with transparency, RGB, RGBA,
    CMYK, YCbCr, I;16, I, F, ...); transparency is background; the polarity is
    detected from the background and inverted to ink-is-bright when needed.
    """
    gray = to_grayscale(img)
    if detect_polarity(gray) == "dark-on-light":
        return (1.0 - gray).astype(np.float32)
    return gray.astype(np.float32, copy=False)
