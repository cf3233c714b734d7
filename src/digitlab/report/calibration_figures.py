"""Figures for calibrated confidence: the reliability diagram and the risk-coverage curve.

Same rules as `plots.py` (whose helpers these use): numpy in, one PNG written
atomically, no pyplot, matplotlib imported only when drawing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..models import calibration as cal
from .figurekit import CORRECT_COLOR, NEUTRAL_COLOR, WRONG_COLOR, FigureInfo, new_figure, save

CALIBRATION_FIGURES: tuple[FigureInfo, ...] = (
    FigureInfo("reliability.png", "Reliability diagram",
               "Test answers grouped by their confidence (15 equal-width bins): in each bin, the share that was "
               "right against the mean confidence. On the diagonal, a confidence of 90% means right 9 times in "
               "10. ECE is the gap, weighted by how many answers fall in each bin; the lower panel counts them "
               "(log scale: most answers are near 100%)."),
    FigureInfo("risk_coverage.png", "Risk-coverage curve",
               "Keep only the most confident answers: the error rate of those kept (risk) against the share kept "
               "(coverage). A model whose confidence ranks its mistakes last has a curve that stays at zero until "
               "the end. The dots mark 95/98/99% coverage; the dashed line is the model's `uncertain` threshold."),
)


def plot_reliability(probs: Any, labels: Any, path: str | os.PathLike) -> Path:
    """Accuracy against confidence per bin (with the gap shaded), and the bin counts."""
    r = cal.reliability(probs, labels)
    edges = np.asarray(r["edges"])
    count = np.asarray(r["count"])
    acc = np.nan_to_num(np.asarray(r["accuracy"]))
    conf = np.asarray(r["confidence"])
    mids, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig = new_figure(6.0, 6.2)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    filled = count > 0
    conf = np.nan_to_num(conf)
    top.bar(mids[filled], acc[filled], width=width * 0.95, color=CORRECT_COLOR, alpha=0.75, label="accuracy")
    top.bar(mids[filled], np.abs(conf - acc)[filled], bottom=np.minimum(conf, acc)[filled], width=width * 0.95,
            fill=False, hatch="////", edgecolor=WRONG_COLOR, linewidth=0.8, label="gap to the mean confidence")
    top.plot([0, 1], [0, 1], color=NEUTRAL_COLOR, linestyle="--", linewidth=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in the bin")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"ECE {cal.expected_calibration_error(probs, labels) * 100:.2f}% ({cal.ECE_BINS} bins), "
                  f"NLL {cal.nll(probs, labels):.4f}", fontsize=10)
    bottom.bar(mids, np.maximum(count, 0.8), width=width * 0.95, color=NEUTRAL_COLOR, log=True)
    bottom.set_ylim(0.8, max(10.0, count.max() * 2))
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (probability of the answer)")
    bottom.set_ylabel("answers")
    return save(fig, path)


def plot_risk_coverage(probs: Any, labels: Any, path: str | os.PathLike, *, uncertain_below: float | None = None
                       ) -> Path:
    """Error of the most confident answers against their share, with 95/98/99% and the threshold marked."""
    coverage, accuracy, confidence = cal.risk_coverage(probs, labels)
    risk = (1.0 - accuracy) * 100
    fig = new_figure(6.5, 4.0)
    ax = fig.add_subplot()
    ax.plot(coverage * 100, risk, color=WRONG_COLOR, linewidth=1.5, label="error of the answers kept")
    lines = []
    for c in cal.COVERAGES:
        a = cal.accuracy_at_coverage(probs, labels, c)
        ax.plot([c * 100], [(1 - a) * 100], "o", color="black", markersize=4)
        lines.append(f"{c * 100:g}% kept: {a * 100:.2f}% right")
    ax.text(0.02, 0.62, "\n".join(lines), transform=ax.transAxes, fontsize=8, va="top",
            bbox={"facecolor": "white", "edgecolor": NEUTRAL_COLOR, "alpha": 0.9})
    if uncertain_below is not None and len(confidence):
        kept = float((confidence >= uncertain_below).mean())
        ax.axvline(kept * 100, color=NEUTRAL_COLOR, linestyle="--", linewidth=1,
                   label=f"uncertain below {uncertain_below:.3f}: {kept * 100:.2f}% answered")
    lo = 90.0 if len(coverage) and risk[int(0.9 * len(risk))] < 5 else 0.0
    ax.set_xlim(lo, 100)
    ax.set_ylim(0, max(0.05, float(risk[-1]) * 1.15) if len(risk) else 1)
    ax.set_xlabel("coverage: share of answers kept, most confident first (%)")
    ax.set_ylabel("risk: error of those kept (%)")
    ax.set_title(f"AURC {cal.area_under_risk_coverage(probs, labels) * 100:.3f}%", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)


def calibration_figures(probs: Any, labels: Any, out_dir: str | os.PathLike, *,
                        uncertain_below: float | None = None) -> dict[str, Path]:
    """Write the CALIBRATION_FIGURES into `out_dir`; keys are the file names."""
    out_dir = Path(out_dir)
    names = [f.name for f in CALIBRATION_FIGURES]
    return {names[0]: plot_reliability(probs, labels, out_dir / names[0]),
            names[1]: plot_risk_coverage(probs, labels, out_dir / names[1], uncertain_below=uncertain_below)}
