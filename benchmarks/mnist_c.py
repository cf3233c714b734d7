"""The 15 MNIST-C corruptions (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer
Vision"), at the one severity each that the published dataset uses. Benchmark code only.

Re-implemented with numpy and scipy.ndimage from the reference implementation
(google-research/mnist-c, `corruptions.py`), which used scikit-image, ImageMagick (through Wand)
and OpenCV: each function follows the reference's arithmetic step by step, with the parameters of
its default severity (the reference's `CORRUPTIONS` list and defaults are the published dataset's).
Images are float arrays in [0, 1], white digit on black, 28x28, as in the reference; `corrupt`
takes and returns uint8 MNIST arrays. Checked once against the originals on MNIST test digits:
Canny edges identical to skimage's (1,000 of 1,000 images), the affine warps equal to skimage's
`warp` to 1e-14, the motion blur within one grey level of ImageMagick 6.9's
`-motion-blur 10x3+angle`.

This module lives under benchmarks/, apart from the package: training-time augmentation
(`digitlab.models.augment`) must never use the corruptions that the benchmark measures, and
tests/test_mnist_c.py checks that nothing under src/digitlab imports it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

C = 13.5  # the reference keeps the image centre (13.5, 13.5) fixed in every affine transform

# --------------------------------------------------------------------------- helpers
# Images are float arrays in [0, 1], white digit on black, 28x28, as in the reference.


def _sk_gaussian(x: np.ndarray, sigma) -> np.ndarray:
    """skimage.filters.gaussian's defaults: mode "nearest", truncate 4."""
    return ndi.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)


def _warp(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """skimage `warp(x, inverse_map=AffineTransform(m))` with the centre kept fixed: the output
    pixel at (col, row) samples the input at m @ (col, row) + t, bilinearly, zeros outside."""
    t = C * (1 - m.sum(axis=1))  # (a3, b3) of the reference
    # ndimage works in (row, col): swap both axes of the matrix and the offset.
    return ndi.affine_transform(x, m[::-1, ::-1], offset=t[::-1], order=1, mode="grid-constant", cval=0.0)


def _line(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """The reference's anti-aliased line (a log fall-off over 2.3 px, measured vertically)."""
    if c1 == c0:
        return np.zeros((28, 28))
    cc, rr = np.meshgrid(np.linspace(0, 27, 28), np.linspace(0, 27, 28), sparse=True)
    dist = np.clip(np.abs(rr - ((r1 - r0) / (c1 - c0) * (cc - c0) + r0)), 0, 2.3 - 1e-10)
    out = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    out[:, :int(np.floor(c0))] = 0
    out[:, int(np.ceil(c1)):] = 0
    return out


def _plasma(rng: np.random.Generator, size: int = 256, decay: float = 3.0) -> np.ndarray:
    """Diamond-square height map in [0, 1] (the reference's plasma_fractal, which perturbs each
    mean by wibble * U(-wibble, wibble), wibble shrinking by `decay` per octave)."""
    a = np.zeros((size, size))
    step, wibble = size, 100.0

    def perturbed(s):
        return s / 4 + wibble * rng.uniform(-wibble, wibble, s.shape)

    while step >= 2:
        h = step // 2
        corners = a[0:size:step, 0:size:step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        a[h:size:step, h:size:step] = perturbed(sq)
        centres, corners = a[h:size:step, h:size:step], a[0:size:step, 0:size:step]
        a[0:size:step, h:size:step] = perturbed(centres + np.roll(centres, 1, axis=0)
                                                + corners + np.roll(corners, -1, axis=1))
        a[h:size:step, 0:size:step] = perturbed(centres + np.roll(centres, 1, axis=1)
                                                + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= decay
    a -= a.min()
    return a / a.max()


def _canny(x: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """skimage.feature.canny at its defaults for a float image: Gaussian smoothing normalised at
    the border, Sobel gradients, non-maximum suppression interpolated between the two
    neighbours in the gradient direction, hysteresis (8-connected) between `low` and `high`."""
    smooth = ndi.gaussian_filter(x, sigma, mode="constant")
    smooth = smooth / (ndi.gaussian_filter(np.ones_like(x), sigma, mode="constant") + np.finfo(float).eps)
    gi, gj = ndi.sobel(smooth, axis=0), ndi.sobel(smooth, axis=1)  # along rows, along columns
    ai, aj = np.abs(gi), np.abs(gj)
    mag = np.hypot(gi, gj)
    h, w = x.shape
    inner = np.zeros_like(mag, bool)
    inner[1:-1, 1:-1] = True
    inner &= mag > 0
    pad = np.pad(mag, 1)

    def at(dr: int, dc: int) -> np.ndarray:  # mag[r + dr, c + dc] for every (r, c)
        return pad[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    same = (gi >= 0) & (gj >= 0) | (gi <= 0) & (gj <= 0)
    opposite = (gi <= 0) & (gj >= 0) | (gi >= 0) & (gj <= 0)
    steep = ai >= aj
    with np.errstate(divide="ignore", invalid="ignore"):
        w_steep, w_flat = aj / ai, ai / aj
    maxima = np.zeros_like(mag, bool)
    np_err = np.seterr(all="ignore")  # weights are inf/nan off their own sector, where they go unused
    # (sector, weight, the two neighbours on one side, the two on the other), in skimage's order
    for pts, wt, (p1, p2), (m1, m2) in (
            (same & steep, w_steep, ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
            (same & (ai <= aj), w_flat, ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
            (opposite & (ai <= aj), w_flat, ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
            (opposite & steep, w_steep, ((-1, 0), (-1, 1)), ((1, 0), (1, -1)))):
        pts = pts & inner
        plus = at(*p2) * wt + at(*p1) * (1 - wt) <= mag
        minus = at(*m2) * wt + at(*m1) * (1 - wt) <= mag
        maxima[pts] = (plus & minus)[pts]
    np.seterr(**np_err)
    weak = maxima & (mag >= low)
    labels, count = ndi.label(weak, structure=np.ones((3, 3)))
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[maxima & (mag >= high)])] = True
    keep[0] = False
    return keep[labels]


# --------------------------------------------------------------------------- the 15 corruptions
# Each takes a float image in [0, 1] and a numpy Generator; the parameters are the reference's at
# the severity named (its function defaults: the published dataset's), listed again in SEVERITY.


def shot_noise(x, rng):
    """Poisson noise: each pixel becomes Poisson(3 x) / 3 (severity 5, c = 3)."""
    return np.clip(rng.poisson(x * 3) / 3.0, 0, 1)


def impulse_noise(x, rng):
    """Salt and pepper (skimage `random_noise(mode="s&p", amount=0.17)`, severity 4): 17% of the
    pixels are set to 0 or 1, half each."""
    flip = rng.random(x.shape) < 0.17
    salt = rng.random(x.shape) < 0.5
    return np.where(flip, salt.astype(float), x)


def glass_blur(x, rng):
    """Blur, locally shuffle, blur (severity 1: sigma 0.7, shifts of at most 1 px, 2 rounds)."""
    # The reference calls skimage's gaussian(..., multichannel=True) on a 2-D image, which takes
    # the last axis for colour channels: it blurs along columns (vertically) only. Kept as is.
    y = (_sk_gaussian(x, (0.7, 0)) * 255).astype(np.uint8).tolist()  # lists: the swaps are sequential
    for _ in range(2):
        coin = (rng.random((28, 28)) < 0.5).tolist()
        shifts = rng.integers(-1, 1, size=(28, 28, 2)).tolist()  # np.random.randint(-1, 1): -1 or 0
        for h in range(27, 1, -1):
            for w in range(27, 1, -1):
                if coin[h][w]:
                    dx, dy = shifts[h][w]
                    y[h][w], y[h + dy][w + dx] = y[h + dy][w + dx], y[h][w]
    return np.clip(_sk_gaussian(np.array(y) / 255.0, (0.7, 0)), 0, 1)


def motion_blur(x, rng):
    """ImageMagick's `-motion-blur 10x3+angle`, angle U(-45, 45) degrees (severity 1)."""
    # ImageMagick's kernel: 2 * radius + 1 taps along one side of the pixel (a one-sided blur),
    # Gaussian weights exp(-i^2 / 2 sigma^2), offsets rounded to whole pixels, edge pixels repeated.
    angle = np.pi * rng.uniform(-45, 45) / 180
    i = np.arange(21)
    k = np.exp(-(i ** 2) / (2 * 3.0 ** 2))
    k /= k.sum()
    px, py = 21 * np.sin(angle), 21 * np.cos(angle)  # computed as ImageMagick does, to round alike
    dx = np.ceil(i * py / np.hypot(px, py) - 0.5).astype(int)
    dy = np.ceil(i * px / np.hypot(px, py) - 0.5).astype(int)
    p = np.pad(x, 21, mode="edge")
    return sum(wt * p[21 + a:49 + a, 21 + b:49 + b] for wt, a, b in zip(k, dy, dx))


def shear(x, rng):
    """Horizontal shear of 0.4 either way about the centre (severity 2)."""
    s = 0.4 * rng.choice([-1, 1])
    return _warp(x, np.array([[1.0, -np.sin(s)], [0.0, np.cos(s)]]))  # skimage (2019) AffineTransform(shear=s)


def scale(x, rng):
    """The digit shrunk to 0.7 about the centre (severity 3: inverse map scale 1 / 0.7)."""
    return _warp(x, np.eye(2) / 0.7)


def rotate(x, rng):
    """Rotation by 0.4 rad (23 degrees) either way about the centre (severity 2)."""
    a = 0.4 * rng.choice([-1, 1])
    return _warp(x, np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]))


def brightness(x, rng):
    """V + 0.5 in HSV (severity 5); for grey pixels V is the grey level itself."""
    return np.clip(x + 0.5, 0, 1)


def translate(x, rng):
    """A shift of 3 px along both axes, each either way (severity 3); what leaves the image is lost."""
    dx, dy = 3 * rng.choice([-1, 1], 2)
    out = np.zeros_like(x)
    out[max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)] = \
        x[max(0, dy):28 - max(0, -dy), max(0, dx):28 - max(0, -dx)]
    return out


def stripe(x, rng):
    """The 7 columns at each side inverted (1 - x); no randomness, no severity."""
    y = x.copy()
    y[:, :7] = 1 - y[:, :7]
    y[:, 21:] = 1 - y[:, 21:]
    return y


def fog(x, rng):
    """x + 3 x plasma fractal (decay 1.4), rescaled by max / (max + 3) (severity 5): grey clouds,
    and the digit keeps a quarter of its contrast."""
    top = x.max()
    y = x + 3.0 * _plasma(rng, decay=1.4)[:28, :28]
    return np.clip(y * top / (top + 3.0), 0, 1)


def spatter(x, rng):
    """Mud blobs of grey 63 (severity 4): thresholded blurred noise, blurred again."""
    liquid = _sk_gaussian(rng.normal(0.65, 0.3, x.shape), 1)
    liquid[liquid < 0.65] = 0
    m = _sk_gaussian((liquid > 0.65).astype(float), 1.5)
    m[m < 0.8] = 0
    return np.clip(x * (1 - m) + 63 / 255 * m, 0, 1)


def dotted_line(x, rng):
    """A line from the left to the right edge (random rows), every other 2-px run removed."""
    r0, r1 = rng.integers(0, 27, size=2)
    line = _line(0, r0, 27, r1)
    for start in range(0, 28, 4):
        line[:, start:start + 2] = 0
    return np.clip(x + line, 0, 1)


def zigzag(x, rng):
    """A zigzag line (teeth 2 px long, 2 px high) from column 2 to 25, added to the image."""
    a = b = 2.0
    c0, c1 = 2, 25
    r0 = rng.integers(0, 27)
    r1 = r0 + rng.integers(-5, 5)
    theta = np.arctan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / np.cos(theta)
    pts = [(0.0, 0.0)]
    for i in range(int((d - a) // (2 * a)) + 1):
        pts.append(((2 * i + 1) * a, (-1) ** i * b))
    last_r = pts[-1][1]
    full = (2 * a) * (d // (2 * a))
    if d != full:
        pts.append((d, last_r / (2 * (d - full))))  # the reference's closing point, kept as is
    cs, rs = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.array(pts).T
    cs, rs = cs + c0, rs + r0
    y = x.copy()
    for i in range(1, len(cs)):
        y = np.clip(y + _line(cs[i - 1], rs[i - 1], cs[i], rs[i]), 0, 1)
    return y


def canny_edges(x, rng):
    """skimage's `feature.canny(x)` at its defaults: the edges, 1 on 0."""
    return _canny(x).astype(float)


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    f.__name__: f for f in (shot_noise, impulse_noise, glass_blur, motion_blur, shear, scale, rotate,
                            brightness, translate, stripe, fog, spatter, dotted_line, zigzag, canny_edges)}

# The reference's parameters for each: its default severity (of five) and what that sets, for tables.
SEVERITY = {
    "shot_noise": "5: Poisson(3x) / 3", "impulse_noise": "4: 17% salt and pepper",
    "glass_blur": "1: sigma 0.7, 1 px, 2 rounds", "motion_blur": "1: radius 10, sigma 3, angle +-45 deg",
    "shear": "2: 0.4", "scale": "3: 0.7", "rotate": "2: 0.4 rad", "brightness": "5: V + 0.5",
    "translate": "3: 3 px", "stripe": "one setting: 2 x 7 columns", "fog": "5: 3 x plasma, decay 1.4",
    "spatter": "4: mud, sigma 1 and 1.5", "dotted_line": "one setting", "zigzag": "one setting",
    "canny_edges": "one setting: sigma 1, thresholds 0.1 / 0.2"}

def corrupt(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 (N, 28, 28) MNIST digits -> the same, corrupted ("identity": a copy); image i's
    randomness depends only on (seed, corruption, i). The reference returns float32 in [0, 255];
    it is rounded to uint8 here (how the published files were quantised is not in its code)."""
    if name == "identity":
        return images.copy()
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; MNIST-C has: {', '.join(CORRUPTIONS)}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    fn, key = CORRUPTIONS[name], list(CORRUPTIONS).index(name)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        y = fn(img.astype(np.float64) / 255.0, np.random.default_rng([seed, key, i]))
        out[i] = np.round(np.clip(y, 0, 1) * 255)
    return out
