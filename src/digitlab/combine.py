"""Trained models voting as one (`digitlab ensemble A B ...`): their soft vote, calibrated and
evaluated like a trained run's model, in a run directory of its own.

`--members N` trains N models of one recipe (only the seeds differ). Models of different
recipes vote better where their mistakes differ: the shipped model pairs the plain recipe
(clean digits, rejection of non-digits) with one trained on touching pairs (numbers on forms):
the vote reads clean digits and non-digits better than either, and form numbers better than the
first (BENCHMARKS.md, "Numbers on forms").

The vote is `architectures.average_model` of the members as trained (their temperatures taken
out), calibrated anew on the validation split: a mean of calibrated probabilities is not itself
calibrated. So every member must have been trained with that same split (the same data, limit,
validation share, seed and stratification, and no fine-tuning): otherwise some validation
images would be a member's training images, and the temperature would be fitted on memory.
The run's config.json is the first member's with `members` set and its own calibration: what a
loaded model needs to know of its input is the same for all members (checked). Each member's
config, metrics and model (as it votes) are kept in members/<i>/, as `--members` keeps them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigError
from .files.atomic import atomic_write_json, read_json
from .files.layout import CONFIG_FILE, MEMBERS_DIR, METRICS_FILE, MODEL_FILE

Log = Callable[[str], None]
INPUT_FIELDS = ("classes", "image_size", "scale", "polarity")  # a model's input: every member must take the same
SPLIT_FIELDS = ("data", "data_dir", "limit", "val_fraction", "seed", "stratify", "init")  # ... and share the split


def check_members(configs: Sequence[Any], names: Sequence[str]) -> None:
    """ConfigError unless the members take the same input and were validated on the same split."""
    first = configs[0]
    for fields, why in ((INPUT_FIELDS, "take the same input"),
                        (SPLIT_FIELDS, "be trained with the same validation split (the vote is calibrated on it)")):
        for config, name in zip(configs[1:], names[1:]):
            differ = [f for f in fields if getattr(config, f) != getattr(first, f)]
            if differ:
                shown = ", ".join(f"{f} {getattr(first, f)!r} vs {getattr(config, f)!r}" for f in differ)
                raise ConfigError(f"ensemble members must {why}: {names[0]} and {name} differ in {shown}")
    if first.init is not None:
        raise ConfigError(f"{names[0]} is fine-tuned (init {first.init!r}); an ensemble's members must be trained "
                          f"runs, whose validation split is their own")


def combine_models(models: Sequence[str | os.PathLike], *, name: str | None = None, out: str | os.PathLike | None = None,
                   command: str = "digitlab (Python API): combine_models", log: Log | None = None) -> Any:
    """Average trained models ("pretrained", run names, run or model directories, .keras files) into one
    calibrated, evaluated model in a new run directory under `out` (the runs directory, where run names
    are looked up too; default: $DIGITLAB_RUNS, else ./runs); returns the `pipeline.RunResult`."""
    from .files.layout import default_runs_dir
    from .models.architectures import average_model, load_model
    from .models.calibration import without_temperature
    from .models.training import make_splits, save_model
    from .pipeline import Timer, calibrate_and_save, write_eval_outputs
    from .runs.artifacts import keras_model_file
    from .runs.directories import new_run_dir, set_latest
    from .runs.rundata import load_data

    say = log or (lambda _msg: None)
    if len(models) < 2:
        raise ConfigError(f"an ensemble needs at least two models (got {len(models)})")
    timer = Timer()
    runs = out if out is not None else default_runs_dir()
    paths = [keras_model_file(m, runs, label=str(m), needs="an ensemble is built from Keras models") for m in models]
    names = [str(m) for m in models]
    with timer("load_model"):
        loaded = [load_model(p) for p in paths]
    configs = [c for _, c in loaded]
    check_members(configs, names)
    config = configs[0].replace(members=len(loaded), name=name, out=str(runs),
                                temperature=None, uncertain_below=None, not_digit_above=None)
    say(f"loading {config.data or 'MNIST'}")
    with timer("load_data"):
        data = load_data(config, log=say)
        splits = make_splits(config, data)
    run_dir = new_run_dir(config.out, name, f"{config.preset}-ensemble")
    trained = [read_json(p.parent / METRICS_FILE, missing={}) for p in paths]
    trained = [t if isinstance(t, dict) else {} for t in trained]
    try:  # nothing here is lost if it stops (the members are where they were): no half-made run is left
        config.save(run_dir)
        members = []
        for i, (model, member_config) in enumerate(loaded):
            member_dir = run_dir / MEMBERS_DIR / str(i)
            member_dir.mkdir(parents=True)
            member_config.save(member_dir / CONFIG_FILE)
            if trained[i]:
                atomic_write_json(member_dir / METRICS_FILE, trained[i])
            members.append(without_temperature(model))
        with timer("combine"):
            model = average_model(members, image_size=config.image_size)
            save_model(model, run_dir / MODEL_FILE)
        for i, m in enumerate(members):  # the members as they vote (temperature 1), each a loadable model
            save_model(m, run_dir / MEMBERS_DIR / str(i) / MODEL_FILE)
        say(f"calibrating the vote of {len(members)} models on the validation split -> {run_dir}")
        with timer("calibrate"):
            model, config, fit = calibrate_and_save(model, config, splits.x_val, splits.y_val, run_dir)
        seconds = [t.get("train_seconds") for t in trained]
        base = {
            "preset": config.preset,
            "interrupted": False,
            # training the ensemble is training its members, one after another
            "train_seconds": sum(seconds) if all(isinstance(s, (int, float)) for s in seconds) else None,
            "n_train": int(len(splits.x_train)),
            "n_val": int(len(splits.x_val)),
            "data_source": data.source,
            "calibration_fit": fit,
            "ensemble": [{"model": n, "preset": c.preset, "name": c.name, "test_accuracy": t.get("test_accuracy")}
                         for n, c, t in zip(names, configs, trained)],
        }
        result = write_eval_outputs(run_dir, config, model, data, None, timer, command=command, base_metrics=base,
                                    figures={}, log=say)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    set_latest(run_dir)
    return result

