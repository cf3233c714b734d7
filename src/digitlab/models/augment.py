"""Training-time augmentation as TensorFlow ops on whole batches in the tf.data stream.

Augmentation lives in the input pipeline, not in the model, so what gets saved,
exported and served is exactly the inference network. Shift, rotation and zoom
are combined into ONE affine transform per image and applied with one
`ImageProjectiveTransformV3` call per batch: three separate Keras random layers
would resample every image three times. Random numbers are stateless and keyed
by (seed, batch number), so a run with the same seed sees the same images.
"""

from __future__ import annotations

import math
from typing import Any

from . import backend


def is_active(shift: float, rotation: float, zoom: float) -> bool:
    """Whether any augmentation is switched on."""
    return shift > 0 or rotation > 0 or zoom > 0


def affine_batch(images: Any, step: Any, *, seed: int, shift: float, rotation: float, zoom: float) -> Any:
    """Randomly shift (pixels), rotate (degrees) and zoom (fraction) a (B, H, W, C) float batch.

    Each image gets its own uniform draws: shift in [-shift, shift] px per axis,
    angle in [-rotation, rotation] degrees, scale in [1 - zoom, 1 + zoom]. Pixels
    that come from outside the image are 0 (MNIST's black background).
    """
    tf = backend.tensorflow()
    n = tf.shape(images)[0]
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    step = tf.cast(step, tf.int32)

    def draw(k: int, half_width: float) -> Any:
        # Stateless: the same (seed, batch, k) gives the same numbers.
        u = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int32), step * 8 + k]),
                                        minval=-1.0, maxval=1.0)
        return u * half_width

    angle = draw(0, rotation * math.pi / 180.0)
    scale = 1.0 + draw(1, zoom)
    tx, ty = draw(2, shift), draw(3, shift)
    # The transform maps OUTPUT pixel (x, y) to the INPUT pixel it samples:
    # input = A (p - c) + c + t, with A = R(angle) / scale around the centre c.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = cx - (a0 * cx + a1 * cy) + tx
    b2 = cy - (b0 * cx + b1 * cy) + ty
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )


# --------------------------------------------------------------------------- corruptions (robustness)

CORRUPTIONS = ("blur", "motion", "noise", "speckle", "line", "zigzag", "outline", "jitter")


def corrupt_batch(images: Any, step: Any, *, seed: int, share: float) -> Any:
    """Degrade a share of a (B, H, W, 1) float batch in [0, 1] the ways real inputs are degraded.

    Each image is picked with probability `share`, and a picked one gets one of
    CORRUPTIONS at a random strength: Gaussian blur, a one-sided motion smear,
    Gaussian noise, salt-and-pepper speckle, a straight or a zigzag line drawn
    across, only the outlines of the strokes (hollow strokes), pixels jittered
    by one place (a frosted-glass look). Generic degradations, drawn fresh for
    each batch, so a model learns the digit under them rather than any one
    benchmark's exact transform. Every variant is computed for the whole batch
    and one is selected per image: on 28x28 images that costs little next to
    the network.
    """
    tf = backend.tensorflow()
    n = tf.shape(images)[0]
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    step = tf.cast(step, tf.int32)

    def draw(k: int, shape: Any = None, lo: float = 0.0, hi: float = 1.0) -> Any:
        # (seed, -(1 << 25) - 16 * step - k): never the affine draws' (seed, 8 * step + k) nor outlier exposure's.
        key = tf.stack([tf.constant(seed, tf.int32), -(1 << 25) - step * 16 - k])
        return tf.random.stateless_uniform([n] if shape is None else shape, seed=key, minval=lo, maxval=hi)

    yy, xx = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
    per_image = (n, 1, 1, 1)

    def gaussian(sigma: float) -> Any:
        r = int(math.ceil(2.5 * sigma))
        k = tf.exp(-tf.range(-r, r + 1, dtype=tf.float32) ** 2 / (2 * sigma * sigma))
        k /= tf.reduce_sum(k)
        out = tf.nn.conv2d(images, tf.reshape(k, [1, -1, 1, 1]), 1, "SAME")
        return tf.nn.conv2d(out, tf.reshape(k, [-1, 1, 1, 1]), 1, "SAME")

    blur = tf.where(tf.reshape(draw(1), per_image) < 0.5, gaussian(0.8), gaussian(1.4))
    # motion: the mean of 6 copies shifted 0..L px along one random direction (a one-sided smear)
    angle, length = draw(2, lo=0.0, hi=math.pi), draw(3, lo=2.0, hi=6.0)
    zeros = tf.zeros([n])
    copies = []
    for i in range(6):
        t = length * (i / 5.0)
        transform = tf.stack([tf.ones([n]), zeros, t * tf.cos(angle), zeros, tf.ones([n]), t * tf.sin(angle),
                              zeros, zeros], axis=1)
        copies.append(tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transform, output_shape=tf.shape(images)[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT"))
    motion = tf.add_n(copies) / 6.0
    noise = images + tf.random.stateless_normal(tf.shape(images), seed=tf.stack([tf.constant(seed, tf.int32),
                                                                                  -(1 << 26) - step])) \
        * tf.reshape(draw(4, lo=0.1, hi=0.35), per_image)
    flip = draw(5, tf.shape(images)) < tf.reshape(draw(6, lo=0.03, hi=0.15), per_image)
    speckle = tf.where(flip, tf.cast(draw(7, tf.shape(images)) < 0.5, tf.float32), images)
    # a line across: pixels within half a width of a random line through the image
    theta = draw(8, lo=-0.6, hi=0.6)  # mostly across, as lines through a form or a crossed-out digit
    offset = draw(9, lo=0.2, hi=0.8) * tf.cast(h, tf.float32)
    width = draw(10, lo=0.6, hi=1.6)
    cx = tf.cast(w, tf.float32) / 2.0
    row = tf.reshape(offset, (-1, 1, 1)) + tf.reshape(tf.tan(theta), (-1, 1, 1)) * (xx - cx)
    dist = tf.abs(yy - row)
    line = tf.maximum(images, tf.expand_dims(tf.clip_by_value(tf.reshape(width, (-1, 1, 1)) - dist + 0.5, 0, 1), -1))
    tooth = 2.0 * tf.abs(tf.math.floormod(xx / 4.0, 2.0) - 1.0) - 1.0  # a triangle wave, 8 px a period, +-1
    zig = tf.abs(yy - row - tf.reshape(draw(11, lo=1.0, hi=2.0), (-1, 1, 1)) * tooth)
    zigzag = tf.maximum(images, tf.expand_dims(tf.clip_by_value(1.2 - zig, 0, 1), -1))
    # outline: the 1-px contour just outside the strokes, the strokes themselves left empty (hollow)
    ink = tf.cast(images > 0.4, tf.float32)
    outline = tf.nn.max_pool2d(ink, 3, 1, "SAME") - ink
    # jitter: every pixel takes a neighbour's value (0 or -1 place in each direction), then a light blur
    dy = tf.cast(draw(12, tf.shape(images)) < 0.5, tf.int32)
    dx = tf.cast(draw(13, tf.shape(images)) < 0.5, tf.int32)
    iy = tf.clip_by_value(tf.cast(yy, tf.int32)[None, :, :, None] - dy, 0, h - 1)
    ix = tf.clip_by_value(tf.cast(xx, tf.int32)[None, :, :, None] - dx, 0, w - 1)
    flat = tf.reshape(images, [n, -1])
    jitter = tf.reshape(tf.gather(flat, tf.reshape(iy * w + ix, [n, -1]), batch_dims=1), tf.shape(images))
    variants = tf.stack([blur, motion, noise, speckle, line, zigzag, outline, jitter], axis=0)
    which = tf.cast(draw(14, lo=0.0, hi=float(len(CORRUPTIONS))), tf.int32)
    which = tf.minimum(which, len(CORRUPTIONS) - 1)
    picked = tf.gather(tf.transpose(variants, [1, 0, 2, 3, 4]), which, batch_dims=1)
    keep = tf.reshape(draw(15) >= share, per_image)
    return tf.clip_by_value(tf.where(keep, images, picked), 0.0, 1.0)
