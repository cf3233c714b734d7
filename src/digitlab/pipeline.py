"""The main job as a Python API: explore -> train -> evaluate -> figures -> report.

Everything a run produces goes into one run directory (see `layout` for the
file names). The directory is created only once the data is loaded and the
settings fit it, and removed again if the run ends without a model (an error,
or Ctrl-C before the first epoch), so no orphan directory is ever left. A
finished model is never lost: Ctrl-C during evaluation, figures or the report
keeps it, marks it in metrics.json and makes it the latest run.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .config.settings import Config
from .errors import ModelError
from .files.atomic import atomic_write_json, atomic_write_text, read_json
from .files.layout import FIGURES_DIR, HISTORY_JSON, METRICS_FILE, MODEL_FILE, SUMMARY_FILE, TIMINGS_FILE
from .runs.directories import new_run_dir, resolve_run, set_latest
from .runs.rundata import load_data

Log = Callable[[str], None]


@dataclass
class RunResult:
    """Where a run's outputs are and its headline numbers."""

    run_dir: Path
    metrics: dict[str, Any]
    timings: dict[str, float]
    report: Path | None = None
    interrupted: bool = False
    stopped_in: str | None = None  # "training" or "evaluation" when interrupted
    figures: dict[str, Path] = field(default_factory=dict)


class Timer:
    """Collects named wall-clock durations, for the report and BENCHMARKS.md."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, name: str) -> Timer:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.timings[self._name] = self.timings.get(self._name, 0.0) + time.perf_counter() - self._t0


def _quiet(msg: str) -> None:
    """The default `log`: the Python API prints nothing unless asked."""


def environment() -> dict[str, Any]:
    """Versions and machine facts, so numbers in a report can be compared (no local paths)."""
    from .models import backend

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
        "device": backend.device_name(),
    }


def write_eval_outputs(run_dir: Path, config: Config, model: Any, data: Any, history: dict | None,
                       timer: Timer, *, command: str, base_metrics: dict[str, Any],
                       figures: dict[str, Path], figures_and_report: bool = True, log: Log = _quiet) -> RunResult:
    """Evaluate `model` on the test set and write the summary and metrics, then
    (unless `figures_and_report` is off, as for `digitlab train`) figures and report."""
    from .models import calibration
    from .models.architectures import count_params, summary_text
    from .models.attribution import occlusion_of
    from .models.evaluate import evaluate_model
    from .report import calibration_figures, sections
    from .report import figures as plots

    log("evaluating on the test set")
    with timer("evaluate"):
        ev = evaluate_model(model, data.x_test, data.y_test, scale=config.scale, classes=config.classes,
                            uncertain_below=config.uncertain_below, not_digit_above=config.not_digit_above)
    metrics = {**base_metrics, **ev.metrics, "params": count_params(model)}
    summary = summary_text(model)
    atomic_write_text(run_dir / SUMMARY_FILE, summary + "\n")
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    if not figures_and_report:
        return RunResult(run_dir=run_dir, metrics=metrics, timings=timer.timings)
    log("drawing the evaluation figures")
    with timer("evaluation_figures"):
        figures.update(plots.evaluation_figures(
            history or {}, metrics["confusion_matrix"], data.x_test, data.y_test, ev.probs,
            run_dir / FIGURES_DIR, seed=config.seed, classes=config.classes,
            explain=occlusion_of(lambda a: calibration.predict(model, a), data.x_test, config.scale),
        ))
        figures.update(calibration_figures.calibration_figures(ev.probs, data.y_test, run_dir / FIGURES_DIR,
                                                             uncertain_below=config.uncertain_below))
    log("writing the report")
    with timer("report"):
        report_path = sections.write_report(
            run_dir, config=config.to_dict(), metrics=metrics, history=history, model_summary=summary,
            figures=figures, timings=timer.timings, command=command, data_source=data.source,
            extra={"environment": environment()},
        )
    atomic_write_json(run_dir / TIMINGS_FILE, timer.timings)
    return RunResult(run_dir=run_dir, metrics=metrics, timings=timer.timings, report=report_path, figures=figures)


def calibrate_and_save(model: Any, config: Config, x_val: Any, y_val: Any, run_dir: Path) -> tuple[Any, Config, dict]:
    """The calibration step: temperature and thresholds fitted on the validation split, the
    calibrated model saved as the run's model and the config (with them) as its config.json.
    The model is written first: until the config names the thresholds, Predictor keeps its
    defaults, which suit a calibrated model too."""
    from .models.calibration import calibrate_model
    from .models.training import save_model

    model, config, summary = calibrate_model(model, config, x_val, y_val)
    save_model(model, run_dir / MODEL_FILE)
    config.save(run_dir)
    return model, config, summary


def make_config(preset: str | None = None, **overrides: Any) -> Config:
    """Config for `preset` (default "seed"): defaults, then the preset's own, then `overrides` (validated).

    With `init=MODEL` among the overrides it is a fine-tuning config instead (`finetune.finetune_config`):
    the architecture, classes and preprocessing of MODEL, the fine-tuning defaults, then `overrides`;
    a `preset` other than MODEL's is an error.
    """
    if overrides.get("init") is not None:
        from .models.finetune import finetune_config

        return finetune_config(overrides.pop("init"), preset=preset, **overrides)
    from .config.settings import make_config as training_config

    return training_config(preset, **overrides)


def _as_config(config: Config | str | None, overrides: dict[str, Any]) -> Config:
    from .config.presets import DEFAULT_PRESET

    if isinstance(config, Config):
        return config.replace(**overrides) if overrides else config
    if config is None and overrides.get("init") is None:
        config = DEFAULT_PRESET
    return make_config(config, **overrides)


def train(config: Config | str | None = None, *, log: Log | None = None, progress: bool | None = False,
          callbacks: list[Any] | tuple[Any, ...] = (), **overrides: Any) -> RunResult:
    """Train and test a model, without figures or report (what `digitlab train` does).

    `train("fast", epochs=3, limit=5000)`, `train(config)`, or fine-tuning
    `train(init="pretrained", data="corrections/")`; keyword overrides are
    Config fields; the preset defaults to "fast" (to the init model's when
    fine-tuning). Returns where the run went and its metrics.
    """
    return run(_as_config(config, overrides), full_report=False, log=log, progress=progress, callbacks=callbacks)


def run(config: Config | str | None = None, *, command: str = "digitlab (Python API)", explore: bool = True,
        full_report: bool = True, progress: bool | None = None, log: Log | None = None,
        callbacks: list[Any] | tuple[Any, ...] = (), **overrides: Any) -> RunResult:
    """Run the whole job (`digitlab run`) and return where everything went.

    `config` is a Config or a preset name; keyword overrides are Config
    fields (`run("seed", epochs=3)`). `explore=False` skips the
    data-exploration figures; `full_report=False` stops after the model,
    history and test metrics, without figures or report. `progress` draws
    Keras' progress bar (default: when stdout is a terminal); `log` receives
    one line per phase and, without a progress bar, per epoch. `callbacks`
    go to Keras' fit.
    """
    from .files.atomic import check_writable_dir
    from .models import finetune
    from .models.backend import device_name
    from .models.training import make_splits
    from .models.training import train as train_model
    from .report import figures as plots

    config = _as_config(config, overrides)
    say = log or _quiet
    timer = Timer()
    t_start = time.perf_counter()
    check_writable_dir(config.out)  # a bad --out fails now, not after loading the data
    say(f"loading {config.data or 'MNIST'}")
    with timer("load_data"):
        data = load_data(config, conform=config.init is not None, log=say)
        reference, replay = finetune.reference_sets(config, data)
        splits = make_splits(config, data, replay)
    for note in data.notes:
        say(f"note: {note}")
    config = config.replace(classes=data.classes)
    say(f"data: {len(splits.x_train):,} training, {len(splits.x_val):,} validation, "
        f"{len(splits.x_test):,} test images, {len(config.classes)} classes ({data.source})")
    if replay is not None:
        say(f"replay: {config.replay:.0%} of each batch from MNIST's {len(splits.x_replay):,} training images; "
            f"validation on MNIST's {len(splits.x_val):,}")
    device = device_name()
    run_dir = new_run_dir(config.out, config.name, config.preset)
    figures: dict[str, Path] = {}
    before: dict[str, Any] = {}
    initial = start = None
    try:
        config.save(run_dir)
        if explore and full_report:
            say("drawing the data-exploration figures")
            with timer("explore_figures"):
                figures.update(plots.explore_figures(data.x_train, data.y_train, data.y_test,
                                                     run_dir / FIGURES_DIR, seed=config.seed, classes=config.classes))
        if config.init is not None:
            from .runs.artifacts import model_id

            with timer("finetune_before"):
                initial, init_file = finetune.load_init(config)
                before = finetune.scores(initial, config, data, reference)
                start = finetune.start_point(initial, splits)
            say(f"fine-tuning {config.init} ({init_file.name}, {model_id(init_file)}); before: "
                + ", ".join(f"{name} {'-' if acc is None else f'{acc:.2%}'}" for name, acc in before.items()))
        say(f"training preset {config.preset}: {config.epochs} epochs, batch {config.batch_size}"
            + (f", {config.members} members" if config.members > 1 else "")
            + f", on {device} -> {run_dir}")
        with timer("train"):
            result = train_model(config, splits, run_dir, progress=progress, log=say, callbacks=callbacks,
                                 initial=initial)
    except BaseException:
        _discard_if_empty(run_dir)
        raise
    base = {
        "preset": config.preset,
        "interrupted": result.interrupted,
        "epochs_planned": config.epochs,
        "epochs_completed": result.epochs_completed,
        "best_epoch": result.best_epoch,
        # One training time everywhere (summary line, report, metrics): the whole training phase,
        # model building and checkpoints included; history.json has the seconds of each epoch.
        "train_seconds": timer.timings["train"],
        "seconds_per_epoch": (sum(result.history.get("epoch_seconds", [])) / result.epochs_completed
                              if result.epochs_completed else None),
        "n_train": int(len(splits.x_train)),
        "n_val": int(len(splits.x_val)),
        "data_source": data.source,
        "device": device if not result.devices else f"{device}; data parallel over {len(result.devices)} devices",
    }
    if result.devices:
        base["devices"] = list(result.devices)
    if data.notes:
        base["data_notes"] = list(data.notes)
    if result.interrupted:
        # The user asked to stop: keep what is there and leave evaluation for later.
        if not result.epochs_completed:
            _discard_if_empty(run_dir)
            return RunResult(run_dir=run_dir, metrics=base, timings=timer.timings, interrupted=True,
                             stopped_in="training")
        atomic_write_json(run_dir / METRICS_FILE, base)
        set_latest(run_dir)
        return RunResult(run_dir=run_dir, metrics=base, timings=timer.timings, interrupted=True,
                         stopped_in="training")
    try:
        budget = None
        if start is not None:
            with timer("finetune_budget"):
                budget = finetune.keep_within_budget(result.model, start, config, splits.x_val, splits.y_val)
            say(finetune.budget_line(budget))
        say("calibrating the confidence on the validation split")
        with timer("calibrate"):
            model, config, base["calibration_fit"] = calibrate_and_save(result.model, config, splits.x_val,
                                                                        splits.y_val, run_dir)
        if config.init is not None:
            with timer("finetune_after"):
                after = finetune.scores(model, config, data, reference)
            base["finetune"] = finetune.summary(config, init_file, before, after, data, reference, splits,
                                                     budget)
        out = write_eval_outputs(run_dir, config, model, data, result.history, timer, command=command,
                                 base_metrics=base, figures=figures, figures_and_report=full_report, log=say)
    except KeyboardInterrupt:
        # Training finished, so the model is complete and saved: keep it usable.
        metrics = {**base, "evaluation": "interrupted"}
        atomic_write_json(run_dir / METRICS_FILE, read_json(run_dir / METRICS_FILE, missing={}) | metrics)
        set_latest(run_dir)
        return RunResult(run_dir=run_dir, metrics=metrics, timings=timer.timings, interrupted=True,
                         stopped_in="evaluation")
    timer.timings["total"] = time.perf_counter() - t_start
    timer.timings["outside_fit_share"] = 1.0 - timer.timings["train"] / timer.timings["total"]
    atomic_write_json(run_dir / TIMINGS_FILE, timer.timings)
    set_latest(run_dir)
    return out


def _discard_if_empty(run_dir: Path) -> None:
    """Remove a run directory that holds no model (nothing in it is worth keeping)."""
    if run_dir.is_dir() and not (run_dir / MODEL_FILE).exists() and not any(run_dir.glob("**/*.keras")):
        shutil.rmtree(run_dir, ignore_errors=True)


def evaluate_run(run: str | os.PathLike | None = None, *, out: str | None = None, data_dir: str | None = None,
                 data: str | None = None, command: str = "digitlab evaluate (Python API)",
                 log: Log | None = None) -> RunResult:
    """Re-evaluate a saved run (default: the latest) and rewrite its metrics, figures and report.

    The test set is the run's own data's (`config.data`, the same seeded split), unless `data`
    (a `--data` spec) or `data_dir` (MNIST files) names another; its classes must be the model's."""
    from .models.architectures import load_model

    say = log or _quiet
    timer = Timer()
    run_dir = resolve_run(run, out)
    # Every JSON file of the run is read the same way: a damaged one is a clear error, before any work.
    history = read_json(run_dir / HISTORY_JSON, missing=None)
    old = read_json(run_dir / METRICS_FILE, missing={})
    for name, value in ((HISTORY_JSON, history), (METRICS_FILE, old)):
        if value is not None and not isinstance(value, dict):
            raise ModelError(f"{run_dir / name}: expected a JSON object; delete or restore it")
    if (run_dir / FIGURES_DIR).exists() and not (run_dir / FIGURES_DIR).is_dir():
        raise ModelError(f"{run_dir / FIGURES_DIR} is a file where the figures folder belongs; move it away")
    say(f"loading the model in {run_dir}")
    with timer("load_model"):
        model, config = load_model(run_dir)
    with timer("load_data"):
        given = config if data is None else config.replace(data=data, data_dir=None, download=False)
        dataset = load_data(given, data_dir=data_dir, log=say)
    # Keep how the model was trained; recompute everything about the test set.
    base = {k: old[k] for k in ("preset", "interrupted", "epochs_planned", "epochs_completed", "best_epoch",
                                "train_seconds", "seconds_per_epoch", "n_train", "n_val", "calibration_fit",
                                "device", "finetune", "ensemble") if k in old}
    # Exploration figures from the original run stay valid; evaluation ones are redrawn.
    figures = {p.name: p for p in sorted((run_dir / FIGURES_DIR).glob("*.png")) if p.is_file()}
    return write_eval_outputs(run_dir, config, model, dataset, history, timer, command=command,
                              base_metrics={**base, "data_source": dataset.source}, figures=figures, log=say)


def calibrate_run(run: str | os.PathLike | None = None, *, out: str | None = None,
                  command: str = "digitlab (Python API): calibrate_run", log: Log | None = None) -> RunResult:
    """Calibrate a trained run (default: the latest) as `run` does after training, then
    re-evaluate it: for models trained before calibration existed, or to re-fit it."""
    from .models import finetune
    from .models.architectures import load_model
    from .models.training import make_splits

    say = log or _quiet
    run_dir = resolve_run(run, out)
    old = read_json(run_dir / METRICS_FILE, missing={})
    if not isinstance(old, dict):
        raise ModelError(f"{run_dir / METRICS_FILE}: expected a JSON object; delete or restore it")
    model, config = load_model(run_dir)
    data = load_data(config, log=say)
    splits = make_splits(config, data, finetune.reference_sets(config, data)[1])
    say("calibrating the confidence on the validation split")
    _, _, summary = calibrate_and_save(model, config, splits.x_val, splits.y_val, run_dir)
    atomic_write_json(run_dir / METRICS_FILE, {**old, "calibration_fit": summary})
    return evaluate_run(run_dir, command=command, log=log)
