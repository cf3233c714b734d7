"""Figures for exploring MNIST and inspecting a trained model.

Every function takes numpy arrays (or plain dicts), writes one PNG atomically
and returns its path; all of them are drawn with the kit in `plotting`.
matplotlib and seaborn are imported inside the functions so that importing
digitlab (or the report module, which reads the figure tables below) stays
cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .figurekit import (
    CORRECT_COLOR,
    MAX_ANNOTATED_CLASSES,
    MAX_SHOWN_CLASSES,
    NEUTRAL_COLOR,
    TRUE_COLOR,
    WRONG_COLOR,
    FigureInfo,
    as_images,
    as_labels,
    as_probs,
    axis_word,
    class_names,
    grid,
    message_figure,
    new_figure,
    save,
    show_heatmap,
    show_image,
)

EXPLORE_FIGURES: tuple[FigureInfo, ...] = (
    FigureInfo("samples_per_class.png", "One sample per class",
               "The first training image of each digit 0-9."),
    FigureInfo("random_samples.png", "Random training samples",
               "Randomly chosen training images with their labels (fixed seed, so the same run shows the same images)."),
    FigureInfo("class_distribution.png", "Class distribution",
               "Number of images per digit in the training and test sets; MNIST is roughly balanced."),
)

EVAL_FIGURES: tuple[FigureInfo, ...] = (
    FigureInfo("training_curves.png", "Training curves",
               "Accuracy and loss per epoch on the training and validation data. A widening gap between "
               "the two lines is a sign of overfitting."),
    FigureInfo("confusion_matrix.png", "Confusion matrix",
               "Rows are true digits, columns predicted digits. Numbers are image counts; colour is the "
               "share of each true digit (row-normalised), so off-diagonal colour shows systematic confusions."),
    FigureInfo("test_predictions.png", "First test predictions",
               "The first test images with the predicted and true digit; mistakes are in red with a red frame."),
    FigureInfo("random_prediction.png", "A random test image",
               "A randomly chosen test image (fixed seed; its index is in the figure title) and the model's "
               "probability for every digit."),
    FigureInfo("confident_mistakes.png", "Most confident mistakes",
               "Misclassified test images on which the model was most sure of its wrong answer; often "
               "ambiguous or mislabelled digits. Beside each, where the run could explain it: the pixels that "
               "drove the wrong answer and those that speak for the true digit (occlusion; red for the "
               "class, blue against it)."),
)


def random_test_index(n_test: int, seed: int = 0) -> int:
    """The test image `evaluation_figures` shows in random_prediction.png.

    Public so a caller can name the image (e.g. in the report) without
    re-deriving the choice: the same `n_test` and `seed` give the same index.
    """
    if n_test < 1:
        raise ValueError("need at least one test image")
    return int(np.random.default_rng(seed).integers(n_test))


# --------------------------------------------------------------------------
# exploring the data


def plot_samples_per_class(x: Any, y: Any, path: str | os.PathLike, *, classes: Sequence[str] | None = None) -> Path:
    """The first image of each class (digits 0-9 by default) in a grid 5 wide, titled with its name;
    at most MAX_SHOWN_CLASSES classes."""
    labels = as_labels(y)
    names = class_names(classes)
    shown = min(len(names), MAX_SHOWN_CLASSES)
    firsts = {d: int(np.argmax(labels == d)) for d in range(shown) if np.any(labels == d)}
    images = dict(zip(firsts, as_images(x, list(firsts.values())))) if firsts else {}
    rows = math.ceil(shown / 5)
    fig = new_figure(7.5, 1.8 * rows)
    axes, _, _ = grid(fig, shown, 5)
    for digit, ax in enumerate(axes):
        if digit in images:
            show_image(ax, images[digit], f"label {names[digit]}", fontsize=11)
        else:
            # A --limit run can miss a class; say so rather than crash.
            ax.set_axis_off()
            ax.set_title(f"label {names[digit]}", fontsize=11)
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
    more = f" (the first {shown} of {len(names)} classes)" if shown < len(names) else ""
    fig.suptitle("One training sample per class" + more)
    return save(fig, path)


def plot_random_samples(x: Any, y: Any, path: str | os.PathLike, *, n: int = 25, seed: int = 0,
                        classes: Sequence[str] | None = None) -> Path:
    """A square-ish grid of `n` random images (seeded) with their class names."""
    labels = as_labels(y)
    names = class_names(classes, int(labels.max()) + 1 if len(labels) else 0)
    n = min(n, len(labels))
    if n < 1:
        return message_figure(path, "Random training samples", "no images")
    idx = np.random.default_rng(seed).choice(len(labels), size=n, replace=False)
    images = as_images(x, idx)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = new_figure(1.3 * cols, 1.45 * rows + 0.4)
    axes, _, _ = grid(fig, n, cols)
    for ax, image, i in zip(axes, images, idx):
        show_image(ax, image, names[labels[i]], fontsize=10)
    fig.suptitle(f"{n} random training samples (seed {seed})")
    return save(fig, path)


def plot_class_distribution(y_train: Any, y_test: Any, path: str | os.PathLike, *,
                            classes: Sequence[str] | None = None) -> Path:
    """Bar charts of images per class, training and test side by side."""
    names = class_names(classes)
    k = len(names)
    sets = [("Training set", as_labels(y_train), "#0969da")]
    if y_test is not None:
        sets.append(("Test set", as_labels(y_test), "#bf8700"))
    fig = new_figure(5 * len(sets), 3.6)
    axes = fig.subplots(1, len(sets), squeeze=False).ravel()
    for ax, (title, labels, color) in zip(axes, sets):
        counts = np.bincount(labels[(labels >= 0) & (labels < k)], minlength=k)
        bars = ax.bar(np.arange(k), counts, color=color)
        if k <= MAX_ANNOTATED_CLASSES:
            ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=7, padding=2)
        if k <= MAX_SHOWN_CLASSES:
            ax.set_xticks(np.arange(k), names, rotation=0 if max(map(len, names)) <= 2 else 45, ha="center"
                          if max(map(len, names)) <= 2 else "right")
        ax.set_xlabel(axis_word(classes))
        ax.set_ylabel("Images")
        ax.set_title(f"{title} ({len(labels):,} images)")
        # Head room so the count labels above the tallest bar stay inside.
        ax.set_ylim(0, max(1, counts.max()) * 1.15)
        ax.spines[["top", "right"]].set_visible(False)
    return save(fig, path)


def explore_figures(x_train: Any, y_train: Any, y_test: Any, out_dir: str | os.PathLike, *,
                    seed: int = 0, classes: Sequence[str] | None = None) -> dict[str, Path]:
    """Write the three EXPLORE_FIGURES into `out_dir`; keys are the file names."""
    out_dir = Path(out_dir)
    names = [f.name for f in EXPLORE_FIGURES]
    return {
        names[0]: plot_samples_per_class(x_train, y_train, out_dir / names[0], classes=classes),
        names[1]: plot_random_samples(x_train, y_train, out_dir / names[1], seed=seed, classes=classes),
        names[2]: plot_class_distribution(y_train, y_test, out_dir / names[2], classes=classes),
    }


# --------------------------------------------------------------------------
# inspecting a model


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str | os.PathLike) -> Path:
    """Accuracy and loss per epoch (1-based), training and validation."""
    fig = new_figure(10, 3.8)
    axes = fig.subplots(1, 2, squeeze=False).ravel()
    for ax, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        n_epochs = 0
        for key, name, style in ((metric, "training", "-"), (f"val_{metric}", "validation", "--")):
            values = history.get(key) if history else None
            if not values:
                continue
            values = np.asarray(values, dtype=np.float64)
            epochs = np.arange(1, len(values) + 1)
            # Markers make a one-epoch run visible (a line needs two points)
            # and show where the epochs are on short runs.
            ax.plot(epochs, values, style, marker="o", markersize=4 if len(values) <= 30 else 0, label=name)
            n_epochs = max(n_epochs, len(values))
        ax.set_title(label)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if n_epochs:
            ax.legend()
            # Whole epochs only: the automatic ticks would label 1.5 or 0.96.
            if n_epochs <= 20:
                ax.set_xticks(np.arange(1, n_epochs + 1))
                ax.set_xlim(0.5, n_epochs + 0.5)
            else:
                from matplotlib.ticker import MaxNLocator

                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
    return save(fig, path)


def plot_confusion_matrix(cm: Any, path: str | os.PathLike, *, normalize: bool = True,
                          classes: Sequence[str] | None = None) -> Path:
    """Heatmap of a confusion matrix: counts as numbers (up to MAX_ANNOTATED_CLASSES classes),
    colour = row-normalised rate; rows and columns named after the classes."""
    import seaborn as sns

    counts = np.asarray(cm, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {counts.shape}")
    k = counts.shape[0]
    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        # A class absent from the test set has an all-zero row; keep it 0.
        colour = counts / np.maximum(row_sums, 1)
        vmax, cbar_label = 1.0, "share of true class"
    else:
        colour = counts.astype(np.float64)
        vmax, cbar_label = None, "images"
    names = class_names(classes, k) if classes is None or len(classes) == k else [str(i) for i in range(k)]
    annotate = k <= MAX_ANNOTATED_CLASSES
    side = max(7.0, min(20.0, 0.35 * k))
    fig = new_figure(side, side * 0.83)
    ax = fig.add_subplot()
    ticks = names if k <= 2 * MAX_SHOWN_CLASSES else "auto"
    sns.heatmap(colour, ax=ax, annot=counts if annotate else False, fmt="d", cmap="Blues", vmin=0.0, vmax=vmax,
                square=True, linewidths=0.5 if annotate else 0.0, linecolor="white", annot_kws={"fontsize": 8},
                xticklabels=ticks, yticklabels=ticks, cbar_kws={"label": cbar_label})
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(f"Confusion matrix ({int(counts.sum()):,} images, {int(np.trace(counts)):,} correct)")
    return save(fig, path)


def plot_test_predictions(x: Any, y_true: Any, probs: Any, path: str | os.PathLike, *, n: int = 10,
                          classes: Sequence[str] | None = None) -> Path:
    """The first `n` test images titled "pred P (true T)"; mistakes red and framed."""
    labels, p = as_labels(y_true), as_probs(probs)
    names = class_names(classes, p.shape[1])
    n = min(n, len(x), len(labels), len(p))
    if n < 1:
        return message_figure(path, "Test predictions", "no test images")
    images = as_images(x, np.arange(n))
    preds = p.argmax(axis=1)
    fig = new_figure(8, 1.9 * math.ceil(n / 5) + 0.4)
    axes, _, _ = grid(fig, n, 5)
    for i, ax in enumerate(axes):
        ok = preds[i] == labels[i]
        show_image(ax, images[i], f"pred {names[preds[i]]} (true {names[labels[i]]})",
                    color=CORRECT_COLOR if ok else WRONG_COLOR, frame=None if ok else WRONG_COLOR, fontsize=10)
    wrong = int((preds[:n] != labels[:n]).sum())
    fig.suptitle(f"First {n} test images: {n - wrong} correct, {wrong} wrong")
    return save(fig, path)


def plot_random_prediction(image: Any, true_label: int, probs: Any, path: str | os.PathLike, *,
                           index: int | None = None, classes: Sequence[str] | None = None) -> Path:
    """One image with its verdict (left) and all class probabilities (right).

    `index`, if given, is printed in the title so a reader can find the image.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:  # one (28, 28, 1) image, not 28 images
        img = img[..., 0]
    img = as_images(img)[0]
    p = as_probs(probs)[0]
    true_label = int(true_label)
    pred = int(p.argmax())
    ok = pred == true_label
    names = class_names(classes, len(p))
    fig = new_figure(9, 3.8)
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    true_name = names[true_label] if 0 <= true_label < len(names) else str(true_label)
    show_image(ax_img, img, f"True: {true_name} / Predicted: {names[pred]} ({100 * p[pred]:.1f}%)",
                color=CORRECT_COLOR if ok else WRONG_COLOR, frame=None if ok else WRONG_COLOR, fontsize=11)
    positions = np.arange(len(p))
    colors = [NEUTRAL_COLOR] * len(p)
    if 0 <= true_label < len(p) and not ok:
        colors[true_label] = TRUE_COLOR
    colors[pred] = CORRECT_COLOR if ok else WRONG_COLOR
    bars = ax_bar.bar(positions, p, color=colors)
    ax_bar.bar_label(bars, labels=[f"{100 * v:.1f}%" if v >= 0.01 and len(p) <= MAX_ANNOTATED_CLASSES else ""
                                   for v in p], fontsize=7, padding=2)
    if len(p) <= MAX_SHOWN_CLASSES:
        wide = max(map(len, names)) > 2
        ax_bar.set_xticks(positions, names, rotation=45 if wide else 0, ha="right" if wide else "center")
    ax_bar.set_xlabel(axis_word(classes))
    ax_bar.set_ylabel("Probability")
    ax_bar.set_ylim(0, 1.12)
    ax_bar.spines[["top", "right"]].set_visible(False)
    from matplotlib.patches import Patch

    handles = [Patch(color=colors[pred], label="predicted")]
    if not ok and 0 <= true_label < len(p):
        handles.append(Patch(color=TRUE_COLOR, label="true"))
    ax_bar.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
    ax_bar.set_title("Predicted probabilities")
    if index is not None:
        fig.suptitle(f"Test image #{index}")
    return save(fig, path)


def plot_confident_mistakes(x: Any, y_true: Any, probs: Any, path: str | os.PathLike, *, n: int = 12,
                            classes: Sequence[str] | None = None, explain: Any = None) -> Path:
    """The `n` misclassified images with the highest confidence in the wrong class.

    `explain(indices, labels)` -> heatmaps (len, 28, 28) in [-1, 1] of x[indices] for those
    classes: with it, each mistake shows its heatmap for the predicted and for the true class.
    """
    labels, p = as_labels(y_true), as_probs(probs)
    names = class_names(classes, p.shape[1])
    preds = p.argmax(axis=1)
    conf = p[np.arange(len(p)), preds]
    wrong = np.flatnonzero(preds != labels)
    if wrong.size == 0:
        return message_figure(path, "Most confident mistakes",
                               f"No mistakes: all {len(labels):,} test images were classified correctly.")
    # Stable sort: ties keep test-set order, so the gallery is reproducible.
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:max(n, 1)]
    if explain is not None:
        return _explained_mistakes(x, labels, preds, conf, order, wrong.size, names, explain, path)
    cols = min(6, len(order))
    fig = new_figure(1.65 * cols + 0.3, 1.95 * math.ceil(len(order) / cols) + 0.4)
    axes, _, _ = grid(fig, len(order), cols)
    for ax, image, i in zip(axes, as_images(x, order), order):
        show_image(ax, image, f"true {names[labels[i]]} → pred {names[preds[i]]}, {100 * conf[i]:.1f}%",
                    color=WRONG_COLOR, fontsize=8)
    fig.suptitle(f"{len(order)} most confident of {wrong.size:,} mistakes")
    return save(fig, path)


def _explained_mistakes(x: Any, labels: np.ndarray, preds: np.ndarray, conf: np.ndarray, order: np.ndarray,
                        n_wrong: int, names: Sequence[str], explain: Any, path: str | os.PathLike) -> Path:
    """The gallery with heatmaps: per mistake, the image, why the predicted class, why the true one."""
    heat = np.asarray(explain(np.concatenate([order, order]), np.concatenate([preds[order], labels[order]])))
    per_row = min(2, len(order))  # two mistakes (six panels) a row
    fig = new_figure(1.65 * 3 * per_row + 0.3, 1.95 * math.ceil(len(order) / per_row) + 0.4)
    axes, _, _ = grid(fig, 3 * len(order), 3 * per_row)
    for k, (image, i) in enumerate(zip(as_images(x, order), order)):
        show_image(axes[3 * k], image, f"true {names[labels[i]]} → {names[preds[i]]}, {100 * conf[i]:.1f}%",
                   color=WRONG_COLOR, fontsize=8)
        show_heatmap(axes[3 * k + 1], image, heat[k], f"why {names[preds[i]]}")
        show_heatmap(axes[3 * k + 2], image, heat[len(order) + k], f"why {names[labels[i]]}")
    fig.suptitle(f"{len(order)} most confident of {n_wrong:,} mistakes, and why")
    return save(fig, path)


def evaluation_figures(history: Mapping[str, Sequence[float]] | None, cm: Any, x_test: Any, y_test: Any,
                       probs: Any, out_dir: str | os.PathLike, *, seed: int = 0,
                       classes: Sequence[str] | None = None, explain: Any = None) -> dict[str, Path]:
    """Write the EVAL_FIGURES into `out_dir`; keys are the file names.

    training_curves.png is skipped when `history` is empty (an evaluate-only
    run). The random image is `random_test_index(len(x_test), seed)`; its
    index is printed in that figure's title. `explain`: see `plot_confident_mistakes`.
    """
    out_dir = Path(out_dir)
    labels, p = as_labels(y_test), as_probs(probs)
    names = [f.name for f in EVAL_FIGURES]
    paths: dict[str, Path] = {}
    if history:
        paths[names[0]] = plot_training_curves(history, out_dir / names[0])
    paths[names[1]] = plot_confusion_matrix(cm, out_dir / names[1], classes=classes)
    paths[names[2]] = plot_test_predictions(x_test, labels, p, out_dir / names[2], classes=classes)
    i = random_test_index(len(labels), seed)
    paths[names[3]] = plot_random_prediction(np.asarray(x_test)[i], labels[i], p[i], out_dir / names[3], index=i,
                                             classes=classes)
    paths[names[4]] = plot_confident_mistakes(x_test, labels, p, out_dir / names[4], classes=classes,
                                              explain=explain)
    return paths
