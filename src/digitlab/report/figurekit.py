"""The figure kit every digitlab figure is drawn with: one look, one way to save.

Figures are `matplotlib.figure.Figure` objects, never `pyplot`: pyplot keeps
global state (open figures, the current backend) that leaks memory in long
runs and fails on headless machines. Every figure is written as one PNG,
atomically (`save`). matplotlib is imported inside the functions so that
importing digitlab stays cheap. The figures themselves are in `plots`
(data and evaluation) and `calibration_plots`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..files.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100  # small files: the report embeds every PNG as base64
N_CLASSES = 10  # MNIST's; figures take the model's class names (`classes=`), digits 0-9 by default
MAX_SHOWN_CLASSES = 30  # sample grids show at most this many classes (a data set may have 256)
MAX_ANNOTATED_CLASSES = 20  # larger confusion matrices are colour only: the numbers would not fit
MAX_TICK_CHARS = 12  # long class names are cut on axes
CORRECT_COLOR = "#1a7f37"  # green
WRONG_COLOR = "#cf222e"  # red
TRUE_COLOR = "#0969da"  # blue, for the true class when the prediction is wrong
NEUTRAL_COLOR = "#8c959f"


class FigureInfo(NamedTuple):
    """A figure the report knows about: its file name, heading and caption."""

    name: str
    title: str
    caption: str



def new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    # Figure() without pyplot gets a plain canvas; savefig picks Agg for PNG.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    # Figures not created by pyplot are garbage-collected normally; clearing
    # releases the artists right away in long runs.
    fig.clear()
    return path


def as_images(x: Any, idx: Any = None) -> np.ndarray:
    """Images `x[idx]` as (n, H, W) floats in [0, 1].

    Accepts uint8 or float pixels, with or without a channel axis. Only the
    selected images are converted: a float copy of all 60,000 training images
    would cost ~190 MB for a figure that shows 25 of them.
    """
    arr = np.asarray(x)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, 1), got {arr.shape}")
    # uint8 pixels, or 0-255 values stored as floats, are scaled down.
    scale = arr.dtype.kind in "ui" or (arr.size > 0 and float(np.nanmax(arr)) > 1.0)
    if idx is not None:
        arr = arr[np.asarray(idx, dtype=np.int64)]
    out = arr.astype(np.float32)
    return out / 255.0 if scale else out


def as_labels(y: Any) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int64)


def as_probs(probs: Any) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"expected probabilities of shape (N, classes), got {arr.shape}")
    return arr


def show_image(ax: Axes, image: np.ndarray, title: str | None = None, color: str = "black",
                frame: str | None = None, fontsize: float = 9) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if frame is None:
        for spine in ax.spines.values():
            spine.set_visible(False)
    else:
        for spine in ax.spines.values():
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)
    if title is not None:
        ax.set_title(title, color=color, fontsize=fontsize)


def show_heatmap(ax: Axes, image: np.ndarray, heat: np.ndarray, title: str | None = None, fontsize: float = 8) -> None:
    """`image` dimmed in grey with a heatmap in [-1, 1] over it: red for the class, blue against it."""
    show_image(ax, np.asarray(image) * 0.6, title, fontsize=fontsize)
    h = np.clip(np.asarray(heat, dtype=np.float32), -1.0, 1.0)
    rgba = np.zeros((*h.shape, 4), np.float32)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = h > 0, 0.28 * (h > 0), h < 0
    rgba[..., 3] = np.abs(h) * 0.85
    ax.imshow(rgba, interpolation="nearest")


def grid(fig: Figure, n: int, cols: int) -> tuple[list[Axes], int, int]:
    """`n` axes in a grid `cols` wide; spare cells are hidden."""
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_axis_off()
    return axes[:n], rows, cols


def message_figure(path: str | os.PathLike, title: str, message: str) -> Path:
    fig = new_figure(6, 2.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, wrap=True, transform=ax.transAxes)
    return save(fig, path)


def class_names(classes: Sequence[str] | None, n: int | None = None) -> list[str]:
    """Names to write on a figure: the class names (cut to MAX_TICK_CHARS), or their numbers when
    the figure's font cannot draw them all (DejaVu Sans has no kana: KMNIST's names would be boxes)."""
    if classes is None:
        return [str(i) for i in range(N_CLASSES if n is None else n)]
    names = [c if len(c) <= MAX_TICK_CHARS else c[:MAX_TICK_CHARS - 1] + "…" for c in classes]
    glyphs = _font_glyphs()
    if glyphs is not None and any(ord(ch) not in glyphs for name in names for ch in name):
        return [str(i) for i in range(len(names))]
    return names


@functools.cache
def _font_glyphs() -> frozenset[int] | None:
    """Code points the default figure font can draw (None if that cannot be found out)."""
    try:
        from matplotlib import font_manager, ft2font

        return frozenset(ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap())
    except Exception:  # noqa: BLE001 - any font trouble: keep the names and let matplotlib cope
        return None


def axis_word(classes: Sequence[str] | None) -> str:
    from ..config.classes import is_digit_classes

    return "Digit" if classes is None or is_digit_classes(classes) else "Class"
