"""Benchmark robustness: the 15 MNIST-C corruptions, read back through the full `Predictor` path.

    python benchmarks/bench_corruptions.py [--limit N] [--seed 0] [--write] [--montage docs/corruptions.png]
                                           [--model PATH --label TEXT --key SECTION]

MNIST-C (Mu & Gilmer 2019, google-research/mnist-c `corruptions.py`) corrupts the MNIST test
set 15 ways. This script re-implements those 15 with numpy, scipy.ndimage and Pillow (the
reference used skimage, ImageMagick and OpenCV), at the severities the reference's functions
default to (those of the published dataset, as far as the released code shows). Checked once
against the originals on MNIST test digits: Canny edges identical to skimage's (1,000 of 1,000
images), the affine warps equal to skimage's `warp` to 1e-14, the motion blur within one grey
level of ImageMagick 6.9's `-motion-blur 10x3+angle`. Each corrupted test image is saved
as a PNG file, read back by `Predictor.predict_many` (decode, preprocess, model: file in,
label out) with the shipped model, and scored. A second column feeds the same corrupted 28x28
arrays straight to the model (`Predictor.probabilities`), separating the model's own
robustness from what preprocessing does to the picture.
With --write, replaces the bench_corruptions section of BENCHMARKS.md; --montage saves one
example of each (and what the model was given) as a figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import ROOT, add_model_options, load_average, machine, model_arguments, model_name, write_model_section
from scipy import ndimage as ndi

HEADING = "## Robustness: MNIST-C corruptions through `Predictor`"
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
# Severities: the defaults of the reference's functions (severity index in the comments).


def shot_noise(x, rng):  # severity 5
    return np.clip(rng.poisson(x * 3) / 3.0, 0, 1)


def impulse_noise(x, rng):  # severity 4: salt and pepper on 17% of pixels
    flip = rng.random(x.shape) < 0.17
    salt = rng.random(x.shape) < 0.5
    return np.where(flip, salt.astype(float), x)


def glass_blur(x, rng):  # severity 1: sigma 0.7, max shift 1, 2 rounds
    # The reference calls skimage's gaussian(..., multichannel=True) on a 2-D image, which takes
    # the last axis for colour channels: it blurs along columns (vertically) only. Kept as is.
    y = (_sk_gaussian(x, (0.7, 0)) * 255).astype(np.uint8)
    for _ in range(2):
        coin = rng.random((28, 28)) < 0.5
        shifts = rng.integers(-1, 1, size=(28, 28, 2))  # np.random.randint(-1, 1): -1 or 0
        for h in range(27, 1, -1):
            for w in range(27, 1, -1):
                if coin[h, w]:
                    dx, dy = shifts[h, w]
                    y[h, w], y[h + dy, w + dx] = y[h + dy, w + dx], y[h, w]
    return np.clip(_sk_gaussian(y / 255.0, (0.7, 0)), 0, 1)


def motion_blur(x, rng):  # severity 1: ImageMagick -motion-blur radius 10, sigma 3, angle U(-45, 45)
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


def shear(x, rng):  # severity 2: 0.4 either way
    s = 0.4 * rng.choice([-1, 1])
    return _warp(x, np.array([[1.0, -np.sin(s)], [0.0, np.cos(s)]]))  # skimage (2019) AffineTransform(shear=s)


def scale(x, rng):  # severity 3: the digit shrunk to 0.7
    return _warp(x, np.eye(2) / 0.7)


def rotate(x, rng):  # severity 2: 0.4 rad (23 degrees) either way
    a = 0.4 * rng.choice([-1, 1])
    return _warp(x, np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]))


def brightness(x, rng):  # severity 5: V + 0.5 in HSV; for grey pixels that is the grey level itself
    return np.clip(x + 0.5, 0, 1)


def translate(x, rng):  # severity 3: 3 px along both axes, each either way
    dx, dy = 3 * rng.choice([-1, 1], 2)
    out = np.zeros_like(x)
    out[max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)] = \
        x[max(0, dy):28 - max(0, -dy), max(0, dx):28 - max(0, -dx)]
    return out


def stripe(x, rng):  # the 7 columns at each side inverted
    y = x.copy()
    y[:, :7] = 1 - y[:, :7]
    y[:, 21:] = 1 - y[:, 21:]
    return y


def fog(x, rng):  # severity 5: 3 x plasma (decay 1.4), then rescaled: contrast drops to a quarter
    top = x.max()
    y = x + 3.0 * _plasma(rng, decay=1.4)[:28, :28]
    return np.clip(y * top / (top + 3.0), 0, 1)


def spatter(x, rng):  # severity 4: mud blobs of grey 63
    liquid = _sk_gaussian(rng.normal(0.65, 0.3, x.shape), 1)
    liquid[liquid < 0.65] = 0
    m = _sk_gaussian((liquid > 0.65).astype(float), 1.5)
    m[m < 0.8] = 0
    return np.clip(x * (1 - m) + 63 / 255 * m, 0, 1)


def dotted_line(x, rng):  # a line from the left to the right edge, every other 2-px run removed
    r0, r1 = rng.integers(0, 27, size=2)
    line = _line(0, r0, 27, r1)
    for start in range(0, 28, 4):
        line[:, start:start + 2] = 0
    return np.clip(x + line, 0, 1)


def zigzag(x, rng):  # a zigzag line (teeth 2 px long, 2 px high) across the image
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
    return _canny(x).astype(float)


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    f.__name__: f for f in (shot_noise, impulse_noise, glass_blur, motion_blur, shear, scale, rotate,
                            brightness, translate, stripe, fog, spatter, dotted_line, zigzag, canny_edges)}


# What each does to the picture (facts about the images, whatever the model), for the notes.
EFFECT = {
    "shot_noise": "grainy strokes and speckles", "impulse_noise": "17% of pixels set to black or white",
    "glass_blur": "strokes broken into speckle: blurred vertically, neighbours swapped",
    "motion_blur": "strokes smeared a few pixels one way", "shear": "slanted", "scale": "shrunk to 0.7",
    "rotate": "turned 23 degrees", "brightness": "background grey (128)", "translate": "moved 3 px",
    "stripe": "the 7 columns at each side inverted: two white slabs beside the digit",
    "fog": "grey clouds over everything; the digit keeps a quarter of its contrast",
    "spatter": "grey blobs", "dotted_line": "a dotted line across", "zigzag": "a zigzag line drawn across the digit",
    "canny_edges": "only the outlines of the strokes: hollow strokes"}


def corrupt(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 (N, 28, 28) MNIST digits -> the same, corrupted; image i's randomness depends only
    on (seed, corruption, i)."""
    if name == "identity":
        return images.copy()
    fn, key = CORRUPTIONS[name], list(CORRUPTIONS).index(name)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        y = fn(img.astype(np.float64) / 255.0, np.random.default_rng([seed, key, i]))
        out[i] = np.round(np.clip(y, 0, 1) * 255)
    return out


# --------------------------------------------------------------------------- the benchmark


def _score(predictor, files: list[Path], chunk: int = 1000) -> list:
    """`Predictor.predict_many` on the files (file in, label out), a chunk at a time; an unreadable
    file gives its ImageError in its place."""
    results = []
    for s in range(0, len(files), chunk):
        results += predictor.predict_many([str(f) for f in files[s:s + chunk]])
    return results


def _answer(r, truth: int) -> str:
    if getattr(r, "label", None) is None:
        return "no digit"
    return f"-> {r.label} {r.confidence * 100:.0f}% {'ok' if r.label == truth else 'wrong'}"


def _why(acc: float, empty: float, raw: float, wrong: Counter) -> str:
    """Where the errors come from, read off the two columns: preprocessing or the model."""
    total = sum(wrong.values())
    top = ", ".join(f"{k} ({v / total * 100:.0f}%)" for k, v in wrong.most_common(2)) if total else "none"
    if empty >= 0.2:
        where = (f"preprocessing finds no digit in {empty * 100:.0f}% of them (the model on the raw array "
                 f"scores {raw * 100:.1f}%)")
    elif acc < raw - 0.03:
        where = f"preprocessing makes it worse (the raw array scores {raw * 100:.1f}%)"
    elif raw < 0.85:
        where = f"the model itself: the raw array scores {raw * 100:.1f}% too"
    else:
        where = f"the raw array scores {raw * 100:.1f}%"
    return f"{where}; wrong answers mostly {top}"


def montage(path: Path, corrupted: dict[str, np.ndarray], seen: dict, answers: dict) -> None:
    """One example per corruption: the file sent (top) and the model input (below), with the answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from digitlab.files.atomic import atomic_path

    names = list(corrupted)
    cols = 8
    rows = 2 * ((len(names) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.45, rows * 1.6))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_color("0.75")
    for k, name in enumerate(names):
        r, c = 2 * (k // cols), k % cols
        axes[r, c].imshow(corrupted[name], cmap="gray", vmin=0, vmax=255)
        axes[r, c].set_title(name.replace("_", " "), fontsize=8)
        inp = seen[name]
        axes[r + 1, c].imshow(np.zeros((28, 28)) if inp is None else inp, cmap="gray", vmin=0, vmax=255)
        axes[r + 1, c].set_title(answers[name], fontsize=7, color="tab:red" if "wrong" in answers[name] else "black")
    fig.suptitle("MNIST-C corruptions: the PNG file sent (odd rows) and what the model was given (even rows)",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=10000, help="MNIST test images per corruption (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--example", type=int, default=0, help="test image shown in the montage")
    ap.add_argument("--montage", type=Path, default=None, help="save the example figure here (docs/corruptions.png)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    add_model_options(ap, "bench_corruptions")
    args = ap.parse_args()

    from PIL import Image

    from digitlab.data.mnist import load_mnist_data
    from digitlab.predict.predictor import Predictor

    data = load_mnist_data()
    x, y = data.x_test[:args.limit], data.y_test[:args.limit]
    predictor = Predictor.load(args.model)
    rows, seen, answers, examples, wrong = [], {}, {}, {}, {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["identity", *CORRUPTIONS]:
            t = time.perf_counter()
            xc = corrupt(name, x, args.seed)
            files = []
            for i, img in enumerate(xc):
                files.append(Path(tmp) / f"{name}_{i:05d}.png")
                Image.fromarray(img, "L").save(files[-1])
            results = _score(predictor, files)
            correct = np.array([getattr(r, "label", None) == t for r, t in zip(results, y)])
            empty = np.array([bool(getattr(r, "no_digit", True)) for r in results])  # ImageError counts
            unsure = np.array([bool(getattr(r, "uncertain", True)) for r in results])
            raw = predictor.probabilities(xc).argmax(axis=1) == y
            for f in files:
                f.unlink()
            rows.append((name, correct.mean(), empty.mean(), unsure.mean(), raw.mean()))
            wrong[name] = Counter(r.label for r, t in zip(results, y) if getattr(r, "label", None) not in (None, t))
            e = args.example
            examples[name], seen[name] = xc[e], getattr(results[e], "model_input", None)
            answers[name] = _answer(results[e], int(y[e]))
            print(f"{name:14s} file {correct.mean() * 100:6.2f}%  no digit {empty.mean() * 100:5.2f}%  "
                  f"uncertain {unsure.mean() * 100:5.2f}%  raw 28x28 {raw.mean() * 100:6.2f}%  "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    elapsed = time.perf_counter() - t0
    if args.montage:
        montage(args.montage if args.montage.is_absolute() else ROOT / args.montage, examples, seen, answers)

    body = [r for r in rows if r[0] != "identity"]
    mean_file = np.mean([r[1] for r in body])
    mean_raw = np.mean([r[4] for r in body])
    below = [r[0] for r in body if r[1] < 0.85]
    cmd = "python benchmarks/bench_corruptions.py" + (f" --limit {args.limit}" if args.limit != 10000 else "") + \
        (f" --seed {args.seed}" if args.seed else "") + \
        model_arguments(args, "bench_corruptions") + \
        (" --montage docs/corruptions.png" if args.montage else "") + " --write"
    who = model_name(args)
    lines = [
        f"Command: `{cmd}` · machine: {machine()}; load average {load_average()} at the end; "
        f"{elapsed:.0f} s in all · model: {who} (`{predictor.info.get('preset')}`, {predictor.info.get('model_id')}), "
        f"runtime `{predictor.info['runtime']}`, uncertain below {predictor.threshold:.3f}"
        + (f", not a digit above {predictor.not_digit_above:.3f}" if predictor.not_digit_above is not None else "")
        + f" · {len(x):,} MNIST test "
        f"images per corruption, each saved as a 28x28 PNG and read back with `Predictor.predict_many` "
        "(decode + preprocess + model). The 15 corruptions and their severities follow the reference "
        "implementation (google-research/mnist-c `corruptions.py`), re-implemented with numpy/scipy/Pillow "
        "in `benchmarks/bench_corruptions.py`; examples: [docs/corruptions.png](docs/corruptions.png).",
        "",
        "| corruption | accuracy (file in, label out) | no digit | flagged (uncertain, no digit or not a digit) | "
        "accuracy, raw 28x28 array to the model |",
        "|---|---|---|---|---|",
    ]
    for name, acc, empty, unsure, raw in rows:
        label = "none (clean test set)" if name == "identity" else name.replace("_", " ")
        flag = " **(< 85%)**" if name != "identity" and acc < 0.85 else ""
        lines.append(f"| {label} | {acc * 100:.2f}%{flag} | {empty * 100:.2f}% | {unsure * 100:.2f}% | {raw * 100:.2f}% |")
    notes = [f"- **{name.replace('_', ' ')}** ({EFFECT[name]}): "
             f"{_why(acc, empty, raw, wrong[name])}" for name, acc, empty, unsure, raw in body if acc < 0.85]
    lines += [
        f"| **mean of the 15** | **{mean_file * 100:.2f}%** | | | **{mean_raw * 100:.2f}%** |",
        "",
        f"Goal (issue 9): mean >= 95%, none below 85%. Measured: mean {mean_file * 100:.1f}%"
        f" ({'met' if mean_file >= 0.95 else 'not met'}); below 85%: {', '.join(below) if below else 'none'}. "
        "Published reference (Mu & Gilmer 2019): a standard MNIST CNN averages 75.9% over these 15 "
        "(fog 14%, translate 47%).",
    ] + (["", "Where the ones below 85% fail (the montage shows the file sent and the model input):", ""]
         + notes if notes else [])
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_model_section(args, "bench_corruptions", HEADING, table)


if __name__ == "__main__":
    main()
