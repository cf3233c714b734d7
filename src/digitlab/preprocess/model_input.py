"""The model-input contract: MNIST-format pixels -> the array every model takes.

Training, evaluation, prediction and serving all call `to_model_input`, so the
scale and shape a model was trained with are the ones it is served with.
"""

from __future__ import annotations

import numpy as np

from ..errors import DigitlabError

MNIST_SCALE = 1.0 / 255.0  # uint8 [0, 255] -> float [0, 1], as in the tutorial


def to_model_input(images: np.ndarray, *, scale: float = MNIST_SCALE) -> np.ndarray:
    """MNIST-format images -> float32 (N, 28, 28, 1) in [0, 1].

    Accepts uint8 (N, 28, 28), (28, 28) for one image, or already-shaped
    (N, 28, 28, 1). Values are scaled by `scale` (1/255 for uint8 pixels).
    """
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DigitlabError(f"expected images of shape (N, 28, 28), got {x.shape}")
    # One multiply into a fresh float32 array: no float64 intermediate (half the memory).
    out = np.multiply(x, np.float32(scale), dtype=np.float32)
    return out[..., None]


def to_pixels(inputs: np.ndarray, *, scale: float = MNIST_SCALE) -> np.ndarray:
    """The inverse of `to_model_input`: model input (N, 28, 28, 1) -> uint8 (N, 28, 28) pixels,
    e.g. to draw training digits as image files and read them back through preprocessing."""
    return np.round(np.asarray(inputs)[..., 0] / scale).astype(np.uint8)
