"""Looking without training: the data-exploration figures (`digitlab explore`) and one test
image with a saved model's answer (`digitlab show`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..runs.directories import resolve_run
from ..runs.rundata import load_data, spec_of


def explore(out: str | os.PathLike, *, data_dir: str | None = None, download: bool = False,
            seed: int = 0, data: str | None = None) -> tuple[dict[str, list[int]], dict[str, Path], str]:
    """The data-exploration figures in `out`: (class counts per split, figure paths, data source).

    `data` is a `--data` spec (default: MNIST; `data_dir`: MNIST's files); the counts' keys
    "train" and "test" follow, and "classes" names them."""
    from ..data import load_dataset
    from ..files.atomic import check_writable_dir
    from . import figures as plots

    out_dir = check_writable_dir(out)
    dataset = load_dataset(spec_of(data, data_dir), download=download)
    counts = {"train": dataset.class_counts("train"), "test": dataset.class_counts("test"),
              "classes": list(dataset.classes)}
    figures = plots.explore_figures(dataset.x_train, dataset.y_train, dataset.y_test, out_dir, seed=seed,
                                    classes=dataset.classes)
    return counts, figures, dataset.source


@dataclass(frozen=True)
class ShownImage:
    """One test image and the model's answer for it (`digitlab show`)."""

    index: int
    true: int
    predicted: int
    confidence: float
    top3: tuple[tuple[int, float], ...]
    figure: Path | None = None
    classes: tuple[str, ...] = ()  # the model's class names (labels are indices into them)


def show_test_image(run: str | os.PathLike | None = None, *, out: str | None = None, index: int | None = None,
                    seed: int | None = None, save: str | os.PathLike | None = None) -> ShownImage:
    """Predict one test image of a run's data (MNIST unless it was trained on other data) with its
    model (random unless `index`); optionally save the figure."""
    import numpy as np

    from ..files.atomic import check_output_path
    from ..models.architectures import load_model
    from ..models.evaluate import predict_proba

    if save is not None:
        check_output_path(save)  # before loading anything
    run_dir = resolve_run(run, out)
    model, config = load_model(run_dir)
    data = load_data(config)
    n = len(data.x_test)
    if index is None:
        index = int(np.random.default_rng(seed).integers(n))
    elif not 0 <= index < n:
        raise ConfigError(f"--index must be between 0 and {n - 1} (got {index})")
    probs = predict_proba(model, data.x_test[index:index + 1], scale=config.scale)[0]
    pred, true = int(probs.argmax()), int(data.y_test[index])
    top = tuple((int(c), float(probs[c])) for c in np.argsort(probs)[::-1][:3])
    figure = None
    if save is not None:
        from .figures import plot_random_prediction

        figure = plot_random_prediction(data.x_test[index], true, probs, Path(save), classes=config.classes)
    return ShownImage(index, true, pred, float(probs[pred]), top, figure, tuple(config.classes))
