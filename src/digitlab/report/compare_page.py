"""The page of a comparison (`compare.py`): compare.html (self-contained, like report.html),
compare.json (every number and each disagreement), and the figure of the disagreeing images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..files.atomic import atomic_write_json, atomic_write_text
from ..files.layout import COMPARE_FIGURE, COMPARE_HTML, COMPARE_JSON
from . import html as h
from .figurekit import CORRECT_COLOR, TRUE_COLOR, WRONG_COLOR, FigureInfo, as_images, grid, new_figure, save, show_image

MAX_SHOWN = 60  # disagreeing images in the figure; two good MNIST models disagree on ~20-80
COLS = 10


def disagreement_figure(comparison: Any, path: str | os.PathLike, *, limit: int = MAX_SHOWN) -> Path:
    """The test images where the two runs answer differently: each with both answers (green if right)."""
    c = comparison
    idx = c.disagreements[:limit]
    names = list(c.classes)
    n = max(len(idx), 1)
    cols = min(COLS, n)
    rows = -(-n // cols)
    fig = new_figure(1.25 * cols + 0.4, 1.45 * rows + 0.7)
    fig.suptitle(f"{len(c.disagreements)} test images where {c.a.name} (A) and {c.b.name} (B) disagree"
                 + (f" (first {limit})" if len(c.disagreements) > limit else ""), fontsize=10)
    if not len(idx):
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "none: the two runs give the same answer on every test image", ha="center", va="center")
        return save(fig, path)
    axes, _, _ = grid(fig, len(idx), cols)
    images = as_images(c.x_test, idx)
    for ax, image, i in zip(axes, images, idx):
        truth, pa, pb = int(c.y_true[i]), int(c.a.pred[i]), int(c.b.pred[i])
        # The frame says who is right: green A, blue B, red neither.
        frame = CORRECT_COLOR if pa == truth else TRUE_COLOR if pb == truth else WRONG_COLOR
        show_image(ax, image, f"#{i} true {names[truth]}\nA {names[pa]} · B {names[pb]}", frame=frame, fontsize=7)
    return save(fig, path)


FIGURE = FigureInfo(COMPARE_FIGURE, "Where the two runs disagree",
                    "Each test image on which the runs' answers differ, with the truth and both answers. "
                    "Frame: green, A is right; blue, B is right; red, neither is.")


def write_comparison(comparison: Any, out: str | os.PathLike) -> dict[str, Path]:
    """Write compare.json, the figure and compare.html into `out` (created if missing)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = disagreement_figure(comparison, out / COMPARE_FIGURE)
    files = {"json": atomic_write_json(out / COMPARE_JSON, comparison.to_dict()), "figure": figure}
    files["html"] = atomic_write_text(out / COMPARE_HTML, render(comparison, {COMPARE_FIGURE: figure}))
    return files


def _mb(n: Any) -> str:
    return "—" if n is None else f"{n / 1e6:.2f} MB"


def render(comparison: Any, figures: dict[str, Path]) -> str:
    """compare.html as a string."""
    c = comparison
    a, b = c.a, c.b
    p = c.counts
    rows = [
        ("Test accuracy", h.pct(a.accuracy), h.pct(b.accuracy)),
        ("Errors", h.count(a.errors), h.count(b.errors)),
        ("Macro F1", h.fmt(a.macro_f1), h.fmt(b.macro_f1)),
        ("ECE (15 bins)", h.fmt(a.ece), h.fmt(b.ece)),
        ("Preset", a.preset or "—", b.preset or "—"),
        ("Parameters", h.count(a.params), h.count(b.params)),
        ("Model file", _mb(a.model_bytes), _mb(b.model_bytes)),
        ("Training time", h.seconds(a.train_seconds), h.seconds(b.train_seconds)),
        (f"Prediction, ms per image (here, {a.runtime} / {b.runtime})", f"{a.predict_ms:.3f}", f"{b.predict_ms:.3f}"),
    ]
    paired = h.table(["", f"{b.name} right", f"{b.name} wrong"],
                     [(f"{a.name} right", h.count(p.both_right), h.count(p.only_a)),
                      (f"{a.name} wrong", h.count(p.only_b), h.count(p.both_wrong))])
    f1_rows = [(name, h.fmt(a.f1[name]), h.fmt(b.f1[name]), f"{b.f1[name] - a.f1[name]:+.4f}") for name in c.classes]
    phases = sorted(set(a.timings) | set(b.timings))
    timing_rows = [(k, h.seconds(a.timings.get(k)), h.seconds(b.timings.get(k))) for k in phases]
    body = "\n".join([
        h.section("summary", "Summary", f"<p><strong>{h.esc(c.verdict)}</strong>.</p>"
                  + h.note(f"{len(c.y_true):,} test images ({c.data_source}). The exact McNemar test counts only the "
                           "images where one run is right and the other wrong; two-sided, binomial.")
                  + h.table(["", a.name, b.name], rows)),
        h.section("paired", "Paired answers", paired + h.note(f"They give different answers on "
                                                                f"{p.disagree:,} images.")),
        h.section("f1", "F1 per class", h.table(["Class", a.name, b.name, "B − A"], f1_rows)),
        h.section("disagreements", "Disagreements", h.figure(FIGURE, figures)),
        h.section("timings", "Run timings (timings.json)",
                  h.table(["Phase", a.name, b.name], timing_rows) if timing_rows else h.note("No timings.json.")),
    ])
    title = f"digitlab: {h.esc(a.name)} vs {h.esc(b.name)}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{h.CSS}</style>
</head>
<body>
<main>
<header><h1>{title}</h1><p class="sub">Accuracy {h.esc(h.pct(a.accuracy))} vs {h.esc(h.pct(b.accuracy))} · McNemar
p = {c.p_value:.3g}</p></header>
{body}
<footer>Written by digitlab compare. This file is self-contained: it needs no network.</footer>
</main>
</body>
</html>
"""

