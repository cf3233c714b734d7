"""What a training recipe adds to the data of a run: digits drawn as users' files
(`Config.rendered_digits`), touching pairs and their candidate cuts (`Config.touching_pairs`),
and outlier exposure's non-digits (`Config.outlier_exposure`), all made by `ood` and read back
through the prediction preprocessing. `splits` is a `training.Splits` (not imported: training
imports this module)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config.settings import Config
from ..preprocess import to_model_input, to_pixels
from . import backend


def training_digits(config: Config, splits: Any, log: Callable[[str], None] | None
                    ) -> tuple[np.ndarray, np.ndarray, Any]:
    """The training digits with what the recipe adds (rendered digits, the cut pieces of touching
    pairs that are one digit) -> (x, y, the touching pairs or None: their no-digit pieces are
    outliers for `outlier_exposure`)."""
    if config.rendered_digits <= 0 and config.touching_pairs <= 0:
        return splits.x_train, splits.y_train, None
    pixels = to_pixels(splits.x_train, scale=config.scale)  # both draw the digits as images
    x, y = _with_rendered_digits(config, splits, pixels, log)
    pairs = _touching_pairs(config, splits, pixels, log)
    if pairs is not None:  # the pieces that are one digit of a pair are that digit
        x = np.concatenate([x, to_model_input(pairs.cut, scale=config.scale)])
        y = np.concatenate([y, pairs.labels.astype(y.dtype)])
    return x, y, pairs


def _with_rendered_digits(config: Config, splits: Any, pixels: np.ndarray, log: Callable[[str], None] | None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The training set, plus `config.rendered_digits` of its digits (`pixels`: them as uint8) as
    preprocessing reads them back from users' files (`ood.rendered_digits`), when asked for."""
    if config.rendered_digits <= 0:
        return splits.x_train, splits.y_train
    from .ood import rendered_digits

    if log is not None:  # (at most one per training image: a fine-tuning run has few)
        n = min(config.rendered_digits, len(splits.x_train))
        log(f"drawing {n:,} training digits as image files and reading them back")
    extra, index = rendered_digits(pixels, config.rendered_digits, seed=config.seed, with_index=True)
    return (np.concatenate([splits.x_train, to_model_input(extra, scale=config.scale)]),
            np.concatenate([splits.y_train, splits.y_train[index]]))


def _touching_pairs(config: Config, splits: Any, pixels: np.ndarray, log: Callable[[str], None] | None) -> Any:
    """`config.touching_pairs` pairs of training digits (`pixels`) written touching
    (`ood.touching_pairs`), when asked for (Config makes sure outlier exposure, which takes their
    no-digit pieces, is on); else None."""
    if config.touching_pairs <= 0:
        return None
    from .ood import touching_pairs

    if log is not None:
        log(f"drawing {config.touching_pairs:,} pairs of touching training digits and their candidate cuts")
    return touching_pairs(pixels, splits.y_train, config.touching_pairs, seed=config.seed,
                          workers=min(8, os.cpu_count() or 1))


def outlier_exposure(config: Config, model: Any, log: Callable[[str], None] | None, pairs: Any = None
                      ) -> np.ndarray | None:
    """With outlier exposure on: the non-digit model inputs to mix in (with the no-digit pieces of
    `pairs`, `ood.TouchingPairs`), and `model` recompiled for them (categorical CE on soft targets,
    accuracy counted on digits only). Else None."""
    if config.outlier_exposure <= 0:
        return None
    from .ood import digit_accuracy, outlier_inputs

    if log is not None:
        log(f"drawing {config.outlier_images:,} non-digit images for outlier exposure")
    images = outlier_inputs(config.outlier_images)
    if pairs is not None:
        images = np.concatenate([images, pairs.whole, pairs.fragments])
    outliers = to_model_input(images, scale=config.scale)
    keras = backend.keras()
    model.compile(optimizer=model.optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=[digit_accuracy()()])
    return outliers
