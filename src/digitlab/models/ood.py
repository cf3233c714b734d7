"""Not a digit: the out-of-distribution score, its threshold, and outlier exposure.

The decision has three parts, each principled rather than a list of cases:

- **No digit**: a model input with less ink than any MNIST training digit
  has (by a wide margin, `MIN_INK`) holds no digit, whatever produced it.
- **Not a digit**: the score is the normalised entropy of the calibrated
  probabilities, H(p) / log(10), from 0 (all mass on one digit) to 1 (the
  uniform distribution). It measures how close the answer is to "none of
  these": KL(p || uniform) = log(10) * (1 - score). The threshold is chosen
  on validation digits only (`not_digit_threshold`: it may flag at most
  `NOT_DIGIT_FPR` of them, both as MNIST arrays and as users' files read
  back through preprocessing: `rendered_digits`), so a non-digit set never
  tunes it and the held-out non-digits of the benchmark measure it honestly.
- **Outlier exposure** (Hendrycks, Mazeika & Dietterich 2019, "Deep Anomaly
  Detection with Outlier Exposure"), a training option: besides the digits'
  cross-entropy, the model is trained towards the uniform distribution on
  generated non-digits (`nondigits`' *calibration* split, made into model
  input by the prediction preprocessing), weighted by
  `Config.outlier_exposure`. A plain classifier has never been told that
  anything but digits exists, and answers a letter A with a confident 4;
  exposed to outliers it learns to spread its answer, which is what the
  score above reads.

Entropy rather than the top probability, so that "not a digit" means
something else than "uncertain": a digit torn between two readings (a 4 or a
9, 50/50) has a low top probability (uncertain) but an entropy of at most
log 2 / log 10 = 0.30, far from the near-uniform answer to a non-digit.
Both are functions of the model's (calibrated) probabilities alone, so every
runtime and every export gives the same decision without extra outputs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The least ink of any of MNIST's 60,000 training digits, as the sum of model-input pixels
# (x / 255) over the 28x28, is 19.95 (a thin "1", training image 21618; 22.0 in the test set;
# the median digit has 100). Half of that is far below any digit the model was taught, and far
# above a blank input with stray pixels: a model input with less ink is "no digit".
MIN_INK = 10.0
# Validation digits that the not-a-digit threshold may flag (its false-positive rate, chosen
# from the budget: at most 1% of real digits flagged in all, uncertain ones included).
NOT_DIGIT_FPR = 0.0025
# The share of validation digits answered (not flagged uncertain): the point of the validation
# risk-coverage curve the default `uncertain` threshold is taken from.
UNCERTAIN_COVERAGE = 0.995
# Validation digits also rendered as users' files for the not-a-digit threshold (`rendered_digits`):
# about 1.7 ms each, so the calibration step stays a few seconds.
RENDERED_DIGITS = 1500
OUTLIER_SEED = 1  # nondigits' calibration split, seed 1: outlier exposure's training images
OUTLIERS_PER_BATCH = 0.5  # outlier images per digit in a batch (64 beside 128 digits)


def ink(inputs: Any, scale: float = 1.0 / 255.0) -> np.ndarray:
    """Total ink of MNIST-format inputs (N, 28, 28) (uint8 pixels * scale, summed per image)."""
    x = np.asarray(inputs)
    return x.reshape(len(x), x[0].size if len(x) else 0).sum(axis=1, dtype=np.float64) * scale


def near_empty(inputs: Any, scale: float = 1.0 / 255.0) -> np.ndarray:
    """Which inputs hold less ink than MIN_INK (see there): no digit."""
    return ink(inputs, scale) < MIN_INK


def not_digit_score(probs: Any) -> np.ndarray:
    """Normalised entropy of each row of probabilities: 0 = one digit, 1 = uniform over all."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape (N, classes), got {p.shape}")
    h = -(p * np.log(np.maximum(p, 1e-30))).sum(axis=1)
    return np.clip(h / math.log(p.shape[1]), 0.0, 1.0)


def not_digit_threshold(probs: Any, fpr: float = NOT_DIGIT_FPR) -> float:
    """The score above which an answer is "not a digit": the (1 - fpr) quantile of the score on
    (validation) digits, so at most `fpr` of them are flagged. Neyman-Pearson: no outlier set
    is needed to choose it, only to measure what it catches."""
    scores = not_digit_score(probs)
    if len(scores) == 0:
        raise ValueError("cannot choose a threshold on no data")
    # "higher": a value that occurs in the data, so that at most `fpr` lie strictly above it.
    return float(np.quantile(scores, 1.0 - fpr, method="higher"))


def uncertain_threshold(probs: Any, coverage: float = UNCERTAIN_COVERAGE) -> float:
    """The confidence below which answers are "uncertain": the one that keeps `coverage` of the
    (validation) answers, i.e. the point `coverage` of the risk-coverage curve."""
    conf = np.sort(np.asarray(probs, dtype=np.float64).max(axis=1))[::-1]
    if len(conf) == 0:
        raise ValueError("cannot choose a threshold on no data")
    k = max(1, math.ceil(round(coverage * len(conf), 9)))
    return float(conf[k - 1])


# --------------------------------------------------------------------------- outlier exposure


def outlier_inputs(n: int, seed: int = OUTLIER_SEED) -> np.ndarray:
    """`n` non-digit images of `nondigits`' calibration split as uint8 (k, 28, 28) model input,
    made by the prediction preprocessing (`find_digit`); images it finds no ink in are left out,
    so k <= n. About 10 ms an image (drawing and preprocessing)."""
    from ..data.nondigits import generate
    from ..preprocess import find_digit

    out = []
    for start in range(0, n, 500):  # a chunk at a time: never all the full-size images at once
        for item in generate("calibration", min(500, n - start), seed=seed, start=start):
            found = find_digit(item.image)
            if found is not None:
                out.append(found[1])
    return np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)


def mix_outliers(images: Any, labels: Any, outliers: Any, step: Any, *, seed: int, weight: float,
                 classes: int = 10) -> tuple[Any, Any, Any]:
    """A training batch with outliers appended (TensorFlow ops, in the tf.data stream).

    `images` (B, 28, 28, 1) and one-hot `labels` (B, classes) get m = B * OUTLIERS_PER_BATCH
    images drawn from `outliers` (a tensor), with the uniform distribution as their target.
    Sample weights (B + m) / B for digits and weight * (B + m) / m for outliers make the batch
    loss the mean digit loss plus `weight` times the mean outlier loss: Hendrycks et al.'s
    objective, E_in[CE(y, p)] + lambda E_out[CE(uniform, p)].
    """
    from . import backend

    tf = backend.tensorflow()
    b = tf.shape(images)[0]
    m = tf.maximum(1, tf.cast(tf.round(tf.cast(b, tf.float32) * OUTLIERS_PER_BATCH), tf.int32))
    # Seed (seed, -1 - step): never one of augment's (seed, 8 * step + k), so the draws are independent.
    key = tf.stack([tf.constant(seed, tf.int32), -1 - tf.cast(step, tf.int32)])
    idx = tf.random.stateless_uniform([m], seed=key,
                                      minval=0, maxval=tf.shape(outliers)[0], dtype=tf.int32)
    extra = tf.gather(outliers, idx)
    # Mirrored, a non-digit is still one (and a "/" hatching becomes a "\\" one): flip half of them
    # left-right and, independently, half upside down, for variety the generator does not draw.
    flips = tf.random.stateless_uniform([2, m, 1, 1, 1], seed=key - tf.constant([0, 1 << 24], tf.int32))
    extra = tf.where(flips[0] < 0.5, tf.reverse(extra, axis=[2]), extra)
    extra = tf.where(flips[1] < 0.5, tf.reverse(extra, axis=[1]), extra)
    bf, mf = tf.cast(b, tf.float32), tf.cast(m, tf.float32)
    weights = tf.concat([tf.fill([b], (bf + mf) / bf), tf.fill([m], weight * (bf + mf) / mf)], axis=0)
    targets = tf.concat([tf.cast(labels, tf.float32), tf.fill([m, classes], 1.0 / classes)], axis=0)
    return tf.concat([images, extra], axis=0), targets, weights


@functools.cache
def digit_accuracy() -> type:
    """A Keras metric `accuracy` that counts digits only (rows whose target is one-hot), so
    training curves with outlier exposure show the digits' accuracy, as without it."""
    from . import backend

    keras = backend.keras()

    @keras.saving.register_keras_serializable(package="digitlab", name="DigitAccuracy")
    class DigitAccuracy(keras.metrics.Metric):
        def __init__(self, name: str = "accuracy", **kwargs: Any):
            super().__init__(name=name, **kwargs)
            self.right = self.add_variable(shape=(), initializer="zeros", name="right")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            ops = keras.ops
            digit = ops.cast(ops.max(y_true, axis=-1) > 0.5, "float32")
            hit = ops.cast(ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1)), "float32")
            self.right.assign_add(ops.sum(hit * digit))
            self.count.assign_add(ops.sum(digit))

        def result(self) -> Any:
            return keras.ops.divide_no_nan(self.right, self.count)

        def reset_state(self) -> None:
            self.right.assign(0.0)
            self.count.assign(0.0)

    return DigitAccuracy


def rendered_digits(digits: Any, n: int, seed: int = 0, *, with_index: bool = False) -> Any:
    """`n` of `digits` (uint8 MNIST format, a seeded choice) drawn as users send them and read back:
    upscaled to 28-320 px, rendered like the non-digits (`nondigits.render`: dark on white, white
    on black, RGBA canvas, JPEG photo), then `find_digit` -> uint8 (k, 28, 28), k <= n (and, with
    `with_index`, which of `digits` each one is).

    Thresholds chosen on raw MNIST arrays alone would not see what preprocessing does to a
    digit (cropping, thinning, resampling, a photo's blur), which moves the tail of the
    not-a-digit score on real digits; these are the validation digits as Predictor sees them."""
    from PIL import Image

    from ..data.nondigits import MAX_SIDE, MIN_SIDE, render
    from ..preprocess import find_digit

    x = np.asarray(digits, np.uint8)
    rng = np.random.default_rng([seed, 9])
    pick = rng.choice(len(x), size=min(n, len(x)), replace=False)
    out, kept = [], []
    for k, i in enumerate(pick):
        r = np.random.default_rng([seed, 9, k])
        side = int(round(math.exp(r.uniform(math.log(MIN_SIDE), math.log(MAX_SIDE)))))
        ink = np.asarray(Image.fromarray(x[i]).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255.0
        found = find_digit(render(np.clip(ink, 0.0, 1.0), r))
        if found is not None:
            out.append(found[1])
            kept.append(int(i))
    inputs = np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)
    return (inputs, np.asarray(kept, np.int64)) if with_index else inputs


# Touching pairs (`touching_pairs`): the overlap of two neighbouring digits, as a share of the narrower one's
# width. Under 5% they barely touch and preprocessing's candidate cuts part them at the dip anyway; over
# 35% the two merge into one shape a person could read as a single (thick or odd) digit, which must not
# be taught as "not a digit".
PAIR_OVERLAP = (0.05, 0.35)
PIECE_OF = 0.6  # a candidate piece covering at least this share (IoU of columns) of one digit is that digit ...
FRAGMENT = 0.45  # ... and one covering less than this of either is a fragment, no digit (between: neither)


@dataclass(frozen=True)
class TouchingPairs:
    """What `touching_pairs` draws, all uint8 (k, 28, 28) model input as `predict --number` renders it."""

    whole: np.ndarray  # each pair read as one group: two digits, no digit
    fragments: np.ndarray  # a candidate piece of a pair that is less than either digit
    cut: np.ndarray  # the candidate piece that is one digit of its pair (a neighbour's stroke ends in it) ...
    labels: np.ndarray  # ... and that digit's label, (k,)


def _ink_crop(a: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(a > 30)
    return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _columns_iou(a0: int, a1: int, b0: int, b1: int) -> float:
    inter = max(0, min(a1, b1) - max(a0, b0))
    return inter / max(1, max(a1, b1) - min(a0, b0))


def _written_pair(pair: list[np.ndarray], r: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Two ink crops written side by side, touching: the float ink map and each digit's columns."""
    from PIL import Image

    height = int(r.integers(32, 97))  # from a small scan to a phone photo's digit
    inks = []
    for crop in pair:
        h = max(8, round(height * r.uniform(0.9, 1.05)))
        w = max(2, round(crop.shape[1] * h / crop.shape[0] * r.uniform(0.9, 1.1)))
        inks.append(np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255)
    a, b = inks
    overlap = round(r.uniform(*PAIR_OVERLAP) * min(a.shape[1], b.shape[1]))
    margin = height // 3
    dy = int(r.integers(-height // 12, height // 12 + 1))
    canvas = np.zeros((max(a.shape[0], b.shape[0] + abs(dy)) + 2 * margin,
                       a.shape[1] + b.shape[1] - overlap + 2 * margin), np.float32)
    yb, xb = margin + max(0, dy), margin + a.shape[1] - overlap
    canvas[margin:margin + a.shape[0], margin:margin + a.shape[1]] = a
    region = canvas[yb:yb + b.shape[0], xb:xb + b.shape[1]]
    np.maximum(region, b[:region.shape[0], :region.shape[1]], out=region)  # one pen: ink does not add up
    return np.clip(canvas, 0.0, 1.0), [(margin, margin + a.shape[1]), (xb, xb + b.shape[1])]


def touching_pairs(digits: Any, labels: Any, n: int, seed: int = 0, *, workers: int = 1) -> TouchingPairs:
    """`n` pairs of `digits` (uint8 MNIST format, with their `labels`) written touching, rendered
    like `rendered_digits` and read back the way `predict --number` reads them: one group of ink,
    then its candidate cuts (`number_groups`, `NumberGroups.cut`).

    A model that has only seen single digits reads "13" whole as a confident 3, the left third of
    a 0 as a 1, and a digit with a stroke end of its neighbour in it as something else; the
    reading (`predict.reading`) can only pick among what the model says. So the recognizer is
    trained on the candidates themselves, as in LeCun et al. 1998's segmentation graphs: each
    pair whole and one fragment of it as no digit (outlier exposure), and the piece that is one
    of its digits as that digit. Per pair at most one of each; k <= n of each (a pair whose
    digits do not touch once rendered gives none). About 100 ms a pair (the candidates are most
    of it): `workers` processes share them, with the same result for any number of workers."""
    x, y = np.asarray(digits, np.uint8), np.asarray(labels)
    if workers <= 1 or n < 2 * workers:
        return _pairs(x, y, range(n), seed)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bounds = np.linspace(0, n, workers + 1).astype(int)
    # spawn, not fork: the parent may hold TensorFlow's threads, which a forked child inherits broken
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_pairs, [x] * workers, [y] * workers,
                              [range(a, b) for a, b in zip(bounds, bounds[1:])], [seed] * workers))
    return TouchingPairs(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("whole", "fragments", "cut", "labels")))


def _pairs(x: np.ndarray, y: np.ndarray, ks: range, seed: int) -> TouchingPairs:
    """`touching_pairs` for pairs number `ks` (each seeded by its number alone)."""
    from ..data.nondigits import render
    from ..preprocess import number_groups

    whole, fragments, cut, cut_labels = [], [], [], []
    for k in ks:
        r = np.random.default_rng([seed, 10, k])
        pick = r.choice(len(x), size=2, replace=False)
        ink, spans = _written_pair([_ink_crop(x[i]) for i in pick], r)
        found = number_groups(render(ink, r))
        if len(found.groups) != 1:
            continue  # not one group: the components part them, nothing to learn here
        whole.append(found.groups[0].digit)
        pieces = found.cut(0).stretches
        if not pieces:
            continue
        ious = np.asarray([[_columns_iou(st.box[0], st.box[2], a0, a1) for a0, a1 in spans] for st in pieces])
        small = np.flatnonzero(ious.max(axis=1) < FRAGMENT)
        if small.size:
            fragments.append(pieces[int(r.choice(small))].digit)
        side = int(r.integers(2))  # one of the two digits, its best-matching piece
        best = int(np.argmax(ious[:, side]))
        if ious[best, side] >= PIECE_OF and ious[best, 1 - side] < FRAGMENT:
            cut.append(pieces[best].digit)
            cut_labels.append(int(y[pick[side]]))

    def stack(a: list[np.ndarray]) -> np.ndarray:
        return np.stack(a) if a else np.zeros((0, 28, 28), np.uint8)

    return TouchingPairs(stack(whole), stack(fragments), stack(cut), np.asarray(cut_labels, np.int64))
