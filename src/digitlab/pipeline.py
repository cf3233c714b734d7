"""The main job as a Python API: explore -> train -> evaluate -> figures -> report.

Everything a run produces goes into one run directory:

    runs/<name>/
      config.json      the resolved Config (what a loaded model needs to know)
      model.keras      final model;  best.keras: best validation accuracy
      history.json/.csv, metrics.json, summary.txt
      figures/*.png, report.html
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config
from .runs import atomic_write_json, atomic_write_text, new_run_dir, resolve_run, set_latest

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.txt"
FIGURES_DIR = "figures"
TIMINGS_FILE = "timings.json"


@dataclass
class RunResult:
    """Where a run's outputs are and its headline numbers."""

    run_dir: Path
    metrics: dict[str, Any]
    timings: dict[str, float]
    report: Path | None = None
    interrupted: bool = False
    figures: dict[str, Path] = field(default_factory=dict)


class _Timer:
    """Collects named wall-clock durations, for the report and BENCHMARKS.md."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, name: str) -> "_Timer":
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.timings[self._name] = self.timings.get(self._name, 0.0) + time.perf_counter() - self._t0


def environment() -> dict[str, Any]:
    """Versions and machine facts, so numbers in a report can be compared."""
    from . import backend

    tf = backend.tensorflow()
    keras = backend.keras()
    import numpy

    return {
        "digitlab": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def _write_eval_outputs(run_dir: Path, config: Config, model: Any, data: Any, history: dict | None,
                        timer: _Timer, *, command: str, base_metrics: dict[str, Any],
                        figures: dict[str, Path], figures_and_report: bool = True) -> RunResult:
    """Evaluate `model` on the test set and write the summary and metrics, then
    (unless `figures_and_report` is off, as for `digitlab train`) figures and report."""
    from . import plots, report
    from .evaluate import evaluate_model
    from .models import count_params, summary_text

    with timer("evaluate"):
        ev = evaluate_model(model, data.x_test, data.y_test, scale=config.scale)
    metrics = {**base_metrics, **ev.metrics, "params": count_params(model)}
    summary = summary_text(model)
    atomic_write_text(run_dir / SUMMARY_FILE, summary + "\n")
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    if not figures_and_report:
        return RunResult(run_dir=run_dir, metrics=metrics, timings=timer.timings)
    with timer("evaluation_figures"):
        figures.update(plots.evaluation_figures(
            history or {}, metrics["confusion_matrix"], data.x_test, data.y_test, ev.probs,
            run_dir / FIGURES_DIR, seed=config.seed,
        ))
    with timer("report"):
        report_path = report.write_report(
            run_dir, config=config.to_dict(), metrics=metrics, history=history, model_summary=summary,
            figures=figures, timings=timer.timings, command=command, data_source=data.source,
            extra={"environment": environment()},
        )
    atomic_write_json(run_dir / TIMINGS_FILE, timer.timings)
    return RunResult(run_dir=run_dir, metrics=metrics, timings=timer.timings, report=report_path, figures=figures)


def run(config: Config, *, command: str = "digitlab (Python API)", explore: bool = True,
        full_report: bool = True, progress: bool | None = None) -> RunResult:
    """Run the whole job for `config` and return where everything went.

    `explore=False` skips the data-exploration figures; `full_report=False`
    (what `digitlab train` does) stops after the model, history and test
    metrics, without figures or report.
    """
    from . import plots
    from .data import load_mnist_data
    from .train import make_splits, train

    timer = _Timer()
    t_start = time.perf_counter()
    run_dir = new_run_dir(config.out, config.name, config.preset)
    config.save(run_dir)
    with timer("load_data"):
        data = load_mnist_data(config.data_dir, download=config.download)
        splits = make_splits(config, data)
    figures: dict[str, Path] = {}
    if explore and full_report:
        with timer("explore_figures"):
            figures.update(plots.explore_figures(data.x_train, data.y_train, data.y_test,
                                                 run_dir / FIGURES_DIR, seed=config.seed))
    with timer("train"):
        result = train(config, splits, run_dir, progress=progress)
    base = {
        "preset": config.preset,
        "interrupted": result.interrupted,
        "epochs_planned": config.epochs,
        "epochs_completed": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": (sum(result.history.get("epoch_seconds", [])) / result.epochs_completed
                              if result.epochs_completed else None),
        "n_train": int(len(splits.x_train)),
        "n_val": int(len(splits.x_val)),
        "data_source": data.source,
    }
    if result.interrupted:
        # The user asked to stop: save what is there and leave evaluation for later.
        if result.epochs_completed:
            atomic_write_json(run_dir / METRICS_FILE, base)
            set_latest(run_dir)
        return RunResult(run_dir=run_dir, metrics=base, timings=timer.timings, interrupted=True)
    out = _write_eval_outputs(run_dir, config, result.model, data, result.history, timer, command=command,
                              base_metrics=base, figures=figures, figures_and_report=full_report)
    timer.timings["total"] = time.perf_counter() - t_start
    timer.timings["outside_fit_share"] = 1.0 - timer.timings["train"] / timer.timings["total"]
    atomic_write_json(run_dir / TIMINGS_FILE, timer.timings)
    set_latest(run_dir)
    return out


def evaluate_run(run: str | os.PathLike | None = None, *, out: str = "runs", data_dir: str | None = None,
                 command: str = "digitlab evaluate (Python API)") -> RunResult:
    """Re-evaluate a saved run (default: the latest) and rewrite its metrics, figures and report."""
    import json

    from .data import load_mnist_data
    from .models import load_model

    timer = _Timer()
    run_dir = resolve_run(run, out)
    with timer("load_model"):
        model, config = load_model(run_dir)
    with timer("load_data"):
        data = load_mnist_data(data_dir if data_dir is not None else config.data_dir, download=config.download)
    history = None
    history_file = run_dir / "history.json"
    if history_file.is_file():
        history = json.loads(history_file.read_text())
    base: dict[str, Any] = {}
    metrics_file = run_dir / METRICS_FILE
    if metrics_file.is_file():
        old = json.loads(metrics_file.read_text())
        # Keep how the model was trained; recompute everything about the test set.
        base = {k: old[k] for k in ("preset", "interrupted", "epochs_planned", "epochs_completed", "best_epoch",
                                    "train_seconds", "seconds_per_epoch", "n_train", "n_val") if k in old}
    # Exploration figures from the original run stay valid; evaluation ones are redrawn.
    figures = {p.name: p for p in sorted((run_dir / FIGURES_DIR).glob("*.png"))}
    return _write_eval_outputs(run_dir, config, model, data, history, timer, command=command,
                               base_metrics={**base, "data_source": data.source}, figures=figures)
