"""Training: one repeated input stream, atomic checkpoints, clean Ctrl-C.

`fit` gets a single `tf.data` pipeline that repeats forever with an explicit
`steps_per_epoch`: rebuilding the iterator every epoch stalled 2-3 s at the
start of about half the epochs on a 2-core CPU. The shuffle works on indices
and gathers whole batches, so per-image Python/tf.data overhead stays out of
the step time.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.settings import Config
from ..data.mnist import MnistData, split_train_val
from ..errors import ConfigError, TrainingError
from ..files.atomic import atomic_path, atomic_write_json, atomic_write_text
from ..files.layout import BEST_FILE, HISTORY_CSV, HISTORY_JSON, MEMBERS_DIR, MODEL_FILE
from ..preprocess import to_model_input
from . import backend
from .architectures import average_model, build_model, compile_for_inference, compile_for_training, float32_copy
from .devices import data_parallel
from .recipe import outlier_exposure, training_digits

if TYPE_CHECKING:  # pragma: no cover
    import keras


@dataclass
class Splits:
    """Model-ready arrays for training, validation and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray  # uint8, as loaded: figures want raw pixels
    y_test: np.ndarray
    # Fine-tuning with replay (`finetune`): MNIST training images mixed into every batch.
    x_replay: np.ndarray | None = None
    y_replay: np.ndarray | None = None


def make_splits(config: Config, data: MnistData, replay: MnistData | None = None) -> Splits:
    """Apply `--limit`, then the seeded train/validation split, then scaling.

    With `replay` (MNIST, for fine-tuning: `finetune`), every training image of `data` trains and
    the split is of `replay`'s: its training part is mixed into the batches, its validation part
    validates.
    """
    x, y = data.x_train, data.y_train
    if config.limit is not None:
        x, y = x[: config.limit], y[: config.limit]
    if replay is not None:
        x_rep, y_rep, x_val, y_val = split_train_val(
            replay.x_train, replay.y_train, val_fraction=config.val_fraction, seed=config.seed,
            stratify=config.stratify)
        return Splits(x_train=to_model_input(x, scale=config.scale), y_train=y.astype(np.int32),
                      x_val=to_model_input(x_val, scale=config.scale), y_val=y_val.astype(np.int32),
                      x_test=data.x_test, y_test=data.y_test.astype(np.int32),
                      x_replay=to_model_input(x_rep, scale=config.scale), y_replay=y_rep.astype(np.int32))
    x_tr, y_tr, x_val, y_val = split_train_val(
        x, y, val_fraction=config.val_fraction, seed=config.seed, stratify=config.stratify
    )
    if config.batch_size > len(x_tr):
        # A batch larger than the data would be one padded step per epoch at best, and a huge
        # allocation at worst; it is always a typo.
        raise ConfigError(f"batch size {config.batch_size:,} is larger than the training set "
                          f"({len(x_tr):,} images); use at most {len(x_tr):,}")
    return Splits(
        x_train=to_model_input(x_tr, scale=config.scale),
        y_train=y_tr.astype(np.int32),
        x_val=to_model_input(x_val, scale=config.scale),
        y_val=y_val.astype(np.int32),
        x_test=data.x_test,
        y_test=data.y_test.astype(np.int32),
    )


@dataclass
class TrainResult:
    """What training produced; files are already written to `run_dir`."""

    model: keras.Model
    history: dict[str, list[float]]
    train_seconds: float
    epochs_completed: int
    interrupted: bool = False
    best_epoch: int | None = None
    files: dict[str, Path] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # trained data parallel on these; () = on one device


def _train_stream(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, *, shift: float = 0.0,
                  rotation: float = 0.0, zoom: float = 0.0, one_hot: bool = False,
                  outliers: np.ndarray | None = None, outlier_weight: float = 0.0, corruptions: float = 0.0,
                  classes: int = 10, index_batches: Any = None) -> Any:
    """Shuffled, repeated batches; augmentation and one-hot labels only when asked for.

    Augmentation runs here, on whole batches with TF ops, so it is never part
    of the model that gets saved, exported or served. `outliers` (model input
    of non-digits) are mixed into every batch for outlier exposure (`ood.mix_outliers`);
    `corruptions` is the share of images degraded by `augment.corrupt_batch`.
    `index_batches`, if given, says which images make each batch (`finetune.replay_batches`).
    """
    tf = backend.tensorflow()
    from .augment import affine_batch, corrupt_batch, is_active

    n = len(x)
    xs, ys = tf.constant(x), tf.constant(y)
    # Shuffle indices (cheap scalars), gather a whole batch at once.
    batches = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size)
    ) if index_batches is None else index_batches
    if not is_active(shift, rotation, zoom) and not one_hot and corruptions <= 0:  # the tutorial's stream
        return batches.map(lambda idx: (tf.gather(xs, idx), tf.gather(ys, idx)),
                           num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    outlier_tensor = tf.constant(outliers) if outliers is not None else None

    def make_batch(step: Any, idx: Any) -> Any:
        images, labels = tf.gather(xs, idx), tf.gather(ys, idx)
        if one_hot:
            labels = tf.one_hot(labels, classes)
        if outlier_tensor is not None:  # outlier exposure: non-digits join the batch (augmented alike)
            from .ood import mix_outliers

            images, labels, weights = mix_outliers(images, labels, outlier_tensor, step, seed=seed,
                                                   weight=outlier_weight, classes=classes)
        if is_active(shift, rotation, zoom):
            images = affine_batch(images, step, seed=seed, shift=shift, rotation=rotation, zoom=zoom)
        if corruptions > 0:
            images = corrupt_batch(images, step, seed=seed, share=corruptions)
        return (images, labels, weights) if outlier_tensor is not None else (images, labels)

    # enumerate: the batch number keys the stateless random draws of the augmentation.
    return batches.enumerate().map(make_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _eval_stream(x: np.ndarray, y: np.ndarray, batch_size: int, *, one_hot: bool = False, classes: int = 10) -> Any:
    tf = backend.tensorflow()
    if one_hot:
        y = np.eye(classes, dtype=np.float32)[y]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def save_model(model: keras.Model, path: Path) -> Path:
    """Save a .keras file atomically (temp file in the same dir, then rename)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def _history_csv(history: dict[str, list[float]]) -> str:
    keys = list(history)
    rows = ["epoch," + ",".join(keys)]
    for i in range(max((len(v) for v in history.values()), default=0)):
        rows.append(f"{i + 1}," + ",".join(f"{history[k][i]:.6g}" if i < len(history[k]) else "" for k in keys))
    return "\n".join(rows) + "\n"


def _make_callbacks(run_dir: Path, history: dict[str, list[float]], state: dict[str, Any]) -> list[Any]:
    keras = backend.keras()

    class RunRecorder(keras.callbacks.Callback):
        """Per-epoch timing, history files and the best-validation checkpoint.

        Everything is written atomically at the end of each epoch, so an
        interrupted run keeps a consistent history and a loadable best model.
        """

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = dict(logs or {})
            losses = [float(logs[k]) for k in ("loss", "val_loss") if k in logs]
            if not all(math.isfinite(v) for v in losses):
                # Diverged (too high a learning rate, say): stop, and checkpoint nothing of it.
                state["diverged"] = (epoch + 1, losses)
                self.model.stop_training = True
                return
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                if key in logs:
                    history.setdefault(key, []).append(float(logs[key]))
            history.setdefault("epoch_seconds", []).append(time.perf_counter() - self._t0)
            state["epochs_completed"] = epoch + 1
            val_acc = logs.get("val_accuracy")
            if val_acc is not None and val_acc > state.get("best_val_accuracy", -1.0):
                state["best_val_accuracy"] = float(val_acc)
                state["best_epoch"] = epoch + 1
                save_model(self.model, run_dir / BEST_FILE)
            atomic_write_json(run_dir / HISTORY_JSON, history)
            atomic_write_text(run_dir / HISTORY_CSV, _history_csv(history))

    return [RunRecorder()]


def _epoch_logger(log: Callable[[str], None], epochs: int, prefix: str = "") -> Any:
    """One line per epoch through `log`: the progress report where no progress bar can be drawn."""
    keras = backend.keras()

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            parts = [f"{prefix}epoch {epoch + 1}/{epochs}"]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                if key in logs:
                    v = float(logs[key])
                    parts.append(f"{key} {v * 100:.2f}%" if key.endswith("accuracy") else f"{key} {v:.4f}")
            log("  ".join(parts) + f"  ({time.perf_counter() - self._t0:.1f} s)")

    return EpochLogger()


def train(config: Config, splits: Splits, run_dir: str | Path, *, progress: bool | None = None,
          callbacks: list[Any] | tuple[Any, ...] = (), log: Callable[[str], None] | None = None,
          log_prefix: str = "", initial: keras.Model | None = None) -> TrainResult:
    """Train `config.preset` on `splits`, writing checkpoints and history to `run_dir`.

    Ctrl-C stops training cleanly: if at least one epoch finished, the model
    as it stands is saved (the caller marks the run as interrupted); before
    that, no model file is written at all. A loss that turns NaN/inf stops
    training with a TrainingError, and nothing of the diverged epoch is saved.
    `callbacks` are extra Keras callbacks (run after the recorder).
    `progress` draws Keras' progress bar (default: when stdout is a
    terminal); without it, `log` (if given) gets one line per epoch. With
    `config.members > 1` the members are trained one after another (see
    `train_ensemble`). With `config.init` it fine-tunes that model (`initial`, if already loaded:
    `finetune.load_init`), with `splits.x_replay` mixed into every batch when present.
    """
    if config.members > 1 and config.init is None:
        return train_ensemble(config, splits, run_dir, progress=progress, callbacks=callbacks, log=log)
    # Data parallel over several devices (`devices`); not when fine-tuning (a model loaded outside it).
    with data_parallel(config.devices if config.init is None else "one") as names:
        result = _train_one(config, splits, run_dir, progress=progress, callbacks=callbacks, log=log,
                            log_prefix=log_prefix, initial=initial)
    result.devices = tuple(names)
    return result


def _train_one(config: Config, splits: Splits, run_dir: str | Path, *, progress: bool | None,
               callbacks: list[Any] | tuple[Any, ...], log: Callable[[str], None] | None,
               log_prefix: str, initial: keras.Model | None) -> TrainResult:
    run_dir = Path(run_dir)
    backend.set_seed(config.seed)
    x_train, y_train, pairs = training_digits(config, splits, log)
    steps = math.ceil(len(x_train) / config.batch_size)
    batch, index_batches = config.batch_size, None
    if splits.x_replay is not None:  # fine-tuning: MNIST in every batch (`finetune`)
        from .finetune import replay_batch, replay_batches

        x_train, y_train, index_batches, steps = replay_batches(config, x_train, y_train, splits.x_replay,
                                                                splits.y_replay)
        batch = config.batch_size - replay_batch(config)
    steps = max(steps, config.min_steps)
    if config.init is not None:
        from .finetune import load_init

        model = compile_for_training(initial if initial is not None else load_init(config)[0], config, steps)
    else:
        model = build_model(config, steps_per_epoch=steps)
    outliers = outlier_exposure(config, model, log, pairs)
    one_hot = config.label_smoothing > 0 or outliers is not None
    train_ds = _train_stream(x_train, y_train, batch, config.seed, index_batches=index_batches,
                             classes=len(config.classes), shift=config.shift,
                             rotation=config.rotation, zoom=config.zoom, one_hot=one_hot,
                             outliers=outliers, outlier_weight=config.outlier_exposure,
                             corruptions=config.corruptions)
    val_ds = _eval_stream(splits.x_val, splits.y_val, config.batch_size, one_hot=one_hot, classes=len(config.classes))
    history: dict[str, list[float]] = {}
    state: dict[str, Any] = {"epochs_completed": 0}
    if progress is None:
        progress = sys.stdout.isatty()  # a progress bar on a terminal, quiet in logs/CI
    interrupted = False
    logger = [_epoch_logger(log, config.epochs, log_prefix)] if log is not None and not progress else []
    t0 = time.perf_counter()
    try:
        model.fit(
            train_ds,
            epochs=config.epochs,
            steps_per_epoch=steps,
            validation_data=val_ds,
            callbacks=[*_make_callbacks(run_dir, history, state), *logger, *callbacks],
            verbose=1 if progress else 0,
            shuffle=False,  # the stream shuffles itself; Keras would only warn
        )
    except KeyboardInterrupt:
        interrupted = True
    train_seconds = time.perf_counter() - t0
    if "diverged" in state:
        epoch, losses = state["diverged"]
        raise TrainingError(
            f"training diverged in epoch {epoch}: the loss became {', '.join(f'{v:g}' for v in losses)} "
            f"(learning rate {config.learning_rate:g} too high?); no model of that epoch was saved")
    files: dict[str, Path] = {}
    # Saved models compute in float32 and are evaluated on integer labels (sparse loss), whatever
    # arithmetic and targets trained them.
    convert = one_hot or config.precision != "float32"
    if convert:
        model = compile_for_inference(float32_copy(model, config))
    if state["epochs_completed"] > 0:
        files["model"] = save_model(model, run_dir / MODEL_FILE)
        if (run_dir / BEST_FILE).exists():
            if convert:
                keras = backend.keras()
                best = keras.models.load_model(run_dir / BEST_FILE, compile=False)
                save_model(compile_for_inference(float32_copy(best, config)), run_dir / BEST_FILE)
            files["best"] = run_dir / BEST_FILE
        files["history"] = run_dir / HISTORY_JSON
    return TrainResult(
        model=model,
        history=history,
        train_seconds=train_seconds,
        epochs_completed=state["epochs_completed"],
        interrupted=interrupted,
        best_epoch=state.get("best_epoch"),
        files=files,
    )


def train_ensemble(config: Config, splits: Splits, run_dir: str | Path, *, progress: bool | None = None,
                   callbacks: list[Any] | tuple[Any, ...] = (), log: Callable[[str], None] | None = None
                   ) -> TrainResult:
    """Train `config.members` models (seeds seed, seed+1, ...) and save their average as the run's model.

    Each member keeps its own model, config and history in `members/<i>/`;
    the run's `model.keras` is ONE functional model averaging the members'
    probabilities, so evaluation, prediction, export and serving are unchanged.
    The run's history is the members' mean per epoch (epoch_seconds: the sum,
    i.e. the time to train one epoch of every member).
    """
    run_dir = Path(run_dir)
    results: list[TrainResult] = []
    t0 = time.perf_counter()
    for i in range(config.members):
        member_config = config.replace(seed=config.seed + i, members=1, name=f"member-{i}")
        member_dir = run_dir / MEMBERS_DIR / str(i)
        member_dir.mkdir(parents=True, exist_ok=True)
        member_config.save(member_dir)
        result = train(member_config, splits, member_dir, progress=progress, callbacks=callbacks, log=log,
                       log_prefix=f"member {i + 1}/{config.members}  ")
        if result.epochs_completed == 0 or result.interrupted:
            if result.epochs_completed:
                results.append(result)
            break
        results.append(result)
    train_seconds = time.perf_counter() - t0
    interrupted = len(results) < config.members
    history: dict[str, list[float]] = {}
    files: dict[str, Path] = {}
    if results:
        n_epochs = min(r.epochs_completed for r in results)
        for key in results[0].history:
            columns = [r.history[key][:n_epochs] for r in results]
            reduce = np.sum if key == "epoch_seconds" else np.mean
            history[key] = [float(reduce([c[e] for c in columns])) for e in range(n_epochs)]
        atomic_write_json(run_dir / HISTORY_JSON, history)
        atomic_write_text(run_dir / HISTORY_CSV, _history_csv(history))
        model = average_model([r.model for r in results], image_size=config.image_size)
        files["model"] = save_model(model, run_dir / MODEL_FILE)
        files["history"] = run_dir / HISTORY_JSON
    else:
        model = None
    return TrainResult(
        model=model,
        history=history,
        train_seconds=train_seconds,
        epochs_completed=min((r.epochs_completed for r in results), default=0),
        interrupted=interrupted,
        best_epoch=None,
        files=files,
        devices=results[0].devices if results else (),
    )
