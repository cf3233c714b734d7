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
