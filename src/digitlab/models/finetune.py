"""Fine-tuning: start from a trained model, keep MNIST in view (replay), say what changed.

    digitlab train --data corrections/ --init pretrained

`--init MODEL` ("pretrained", a run, or a model file) makes a fine-tuning
config (`finetune_config`): MODEL's architecture, classes, preprocessing and
augmentation, then `presets.FINETUNE_DEFAULTS` (few passes, a low learning
rate), then the user's options. The data is conformed to MODEL's classes:
a folder with only 4/ and 7/ trains outputs 4 and 7; a class MODEL does not
have is an error (`datasets.conform`).

Replay (rehearsal): a digit model fine-tuned on other data gets MNIST's
training images mixed into every batch, `Config.replay` of it (nine tenths
by default). A few hundred steps on a few dozen images would otherwise pull the
whole network towards them and away from everything else it could read
(catastrophic forgetting; McCloskey & Cohen 1989, Robins 1995 for
rehearsal). With replay, every user image goes to training, and validation
(the best epoch, and the calibration step every run gets) uses MNIST's
validation split: a handful of the user's images can neither choose an epoch
nor fit a temperature.

The forgetting budget (`Config.forgetting_budget`): replay slows forgetting
but does not bound it, and a user's writing can contradict MNIST (one
writer's 1 is another's 7). After training, `keep_within_budget` measures
MNIST validation accuracy; if the run lost more than the budget, the weights
are blended back towards the starting model's (`BLEND_STEPS`) until it is
within. The user's own test split and MNIST's test set are both scored
before and after (`compare`), so forgetting is measured, not assumed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.classes import is_digit_classes
from ..config.presets import FINETUNE_DEFAULTS
from ..config.settings import Config
from ..errors import ConfigError, ModelError

if TYPE_CHECKING:  # pragma: no cover
    import keras

# What a fine-tuning run decides for itself, not MODEL: the data and its split, where the run
# goes, and the calibration (fitted again after fine-tuning); everything else (architecture,
# classes, preprocessing, augmentation and other recipe fields) is MODEL's, then FINETUNE_DEFAULTS.
_OWN_FIELDS = frozenset({"data", "data_dir", "download", "limit", "val_fraction", "stratify", "seed", "out", "name",
                         "version", "schema_version", "temperature", "uncertain_below", "not_digit_above", "init",
                         "replay", "freeze_batch_norm", "forgetting_budget", "min_steps"})
# What must agree between a fine-tuning config and the model it loads.
_MODEL_FIELDS = ("preset", "members", "classes", "image_size", "scale", "polarity")


def resolve_init(init: str, out: str | os.PathLike | None = None) -> Path:
    """The .keras file `--init` names: "pretrained", a run (name, directory, "latest") or a file."""
    from ..runs.artifacts import keras_model_file

    return keras_model_file(init, out, label=f"--init {init}", needs="fine-tuning starts from a Keras model")


def finetune_config(init: str, *, preset: str | None = None, **overrides: Any) -> Config:
    """The Config for fine-tuning the model `init` names (see the module doc): its architecture,
    classes and preprocessing, FINETUNE_DEFAULTS, then `overrides` (Config fields)."""
    from ..runs.artifacts import load_config

    init = str(init)
    base = load_config(resolve_init(init, overrides.get("out")))
    if preset is not None and preset != base.preset:
        raise ConfigError(f"--preset {preset} does not match the --init model (a {base.preset} network); "
                          f"fine-tuning keeps the model's architecture, so leave --preset out")
    for name in _MODEL_FIELDS:
        if name in overrides and overrides[name] != getattr(base, name):
            raise ConfigError(f"{name} comes from the --init model when fine-tuning (it has "
                              f"{_short(getattr(base, name))}); it cannot be changed")
    inherited = {f.name: getattr(base, f.name) for f in dataclasses.fields(Config) if f.name not in _OWN_FIELDS}
    return Config(**inherited).replace(**dict(FINETUNE_DEFAULTS)).replace(init=init, **overrides)


def _short(value: Any) -> str:
    text = ", ".join(value) if isinstance(value, tuple) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_init(config: Config) -> tuple[keras.Model, Path]:
    """The model `config.init` names, as trained (a calibrated model's temperature layer removed:
    fine-tuning changes the network, and the run calibrates it again), and its file."""
    from ..runs.artifacts import load_config
    from .architectures import load_model
    from .calibration import without_temperature

    if config.init is None:
        raise ConfigError("this config does not fine-tune (no init model)")
    model_file = resolve_init(config.init, config.out)
    base = load_config(model_file)
    differ = [name for name in _MODEL_FIELDS if getattr(base, name) != getattr(config, name)]
    if differ:
        raise ConfigError(f"--init {config.init}: the model's {', '.join(differ)} differ from this config's; "
                          f"make fine-tuning configs with finetune_config (or digitlab.make_config(init=...))")
    model, _ = load_model(model_file)
    model = without_temperature(model)
    if config.freeze_batch_norm:
        freeze_batch_norm(model)
    return model, model_file


def freeze_batch_norm(model: keras.Model) -> int:
    """Keep every BatchNormalization layer as trained: its statistics fixed and used as they are
    (a frozen BN layer runs in inference mode in Keras 3). Returns how many were frozen."""
    from . import backend

    bn = backend.keras().layers.BatchNormalization
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, bn)]
    for layer in layers:
        layer.trainable = False
    return len(layers)


def mnist_reference(classes: tuple[str, ...] | None = None) -> Any:
    """The packaged MNIST as a `datasets.Dataset` for replay and the before/after scores; with
    `classes` (some digits: a model that knows only those), only their images, labelled by position."""
    from ..data import Dataset, load_dataset

    mnist = load_dataset(None)
    if classes is None or tuple(classes) == mnist.classes:
        return mnist
    if not is_digit_classes(classes):
        raise ConfigError(f"MNIST cannot stand in for classes {_short(tuple(classes))}")
    lookup = np.full(10, -1, np.int64)
    for i, name in enumerate(classes):
        lookup[int(name)] = i
    parts = []
    for x, y in ((mnist.x_train, mnist.y_train), (mnist.x_test, mnist.y_test)):
        keep = lookup[y] >= 0
        parts += [x[keep], lookup[y[keep]].astype(np.uint8)]
    return Dataset(*parts, classes=tuple(classes), name=mnist.name,
                   source=f"{mnist.source}, digits {', '.join(classes)} only", location=mnist.location,
                   verified=mnist.verified)


# Blend shares tried, largest first, in tenths: a 12,000-image validation estimate cannot tell finer
# steps apart, and at most 11 evaluations (about 2 s each for `strong` on 2 cores) bound the cost.
BLEND_STEPS = tuple(round(1 - i / 10, 1) for i in range(11))
# Names of the scored test sets, for the CLI summary and the report.
TEST_SET_NAMES = {"data": "the run's own test split", "mnist": "MNIST test set"}


def start_point(model: keras.Model, splits: Any) -> dict[str, Any] | None:
    """What `keep_within_budget` compares with: the starting model's weights and MNIST validation
    accuracy, taken before training changes them (None without replay: no MNIST validation split)."""
    if splits.x_replay is None:
        return None
    return {"weights": model.get_weights(), "val_accuracy": _accuracy(model, splits.x_val, splits.y_val)}


def keep_within_budget(model: keras.Model, start: dict[str, Any], config: Config, x_val: np.ndarray,
                       y_val: np.ndarray) -> dict[str, Any]:
    """Blend `model`'s weights (in place) with the starting model's, w = (1 - a) * start + a * tuned,
    with the largest a of BLEND_STEPS whose MNIST validation accuracy is within
    `config.forgetting_budget` of the start's. Returns the record for metrics.json."""
    tuned = model.get_weights()
    if [w.shape for w in tuned] != [w.shape for w in start["weights"]]:
        raise ModelError("the fine-tuned network's weights do not match the starting model's")
    floor = start["val_accuracy"] - config.forgetting_budget
    record = {"budget": config.forgetting_budget, "val_before": start["val_accuracy"]}
    for share in BLEND_STEPS:
        if share < 1:
            model.set_weights([_blend(w0, w1, share) for w0, w1 in zip(start["weights"], tuned, strict=True)])
        accuracy = _accuracy(model, x_val, y_val)
        record.setdefault("val_tuned", accuracy)
        # (A share of 0 is the starting model itself, within budget by definition.)
        if accuracy >= floor - 1e-9 or share == 0:
            return {**record, "val_after": accuracy, "blend": share}
    raise AssertionError("unreachable: BLEND_STEPS ends with 0")  # pragma: no cover


def budget_line(record: dict[str, Any]) -> str:
    """One sentence on what the forgetting budget did (`keep_within_budget`'s record), for the log,
    the CLI summary and the report."""
    def pct(value: Any) -> str:
        return f"{value:.2%}" if isinstance(value, (int, float)) else "?"

    budget = record.get("budget")
    points = f"{budget * 100:.2f} points" if isinstance(budget, (int, float)) else "?"
    share = record.get("blend")
    head = f"MNIST validation {pct(record.get('val_before'))} before, {pct(record.get('val_tuned'))} fine-tuned"
    if share == 1:
        return f"{head}: within the forgetting budget ({points}), the fine-tuned weights are kept"
    if share == 0:
        return (f"{head}: even a tenth of the change costs more than the forgetting budget ({points}), so the "
                f"model stays the starting one; this data contradicts MNIST (--set forgetting_budget=1 "
                f"keeps the change whatever it costs)")
    if not isinstance(share, (int, float)):
        return f"{head}; forgetting budget {points}"
    return (f"{head}: more than the forgetting budget ({points}) allows, so the weights are {share:.0%} "
            f"fine-tuned, {1 - share:.0%} the starting model's ({pct(record.get('val_after'))})")


def _blend(start: np.ndarray, tuned: np.ndarray, share: float) -> np.ndarray:
    # Only real-valued weights mix; counters and random-generator states (integers) stay as trained.
    if not np.issubdtype(tuned.dtype, np.floating):
        return tuned
    return ((1.0 - share) * start + share * tuned).astype(tuned.dtype, copy=False)


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    from .calibration import predict

    return float((predict(model, x).argmax(axis=1) == np.asarray(y)).mean())


def replay_batch(config: Config) -> int:
    """How many MNIST images each batch of `config.batch_size` holds (at least 1, the user's at least 1)."""
    return min(config.batch_size - 1, max(1, round(config.batch_size * config.replay)))


def replay_batches(config: Config, x_user: np.ndarray, y_user: np.ndarray, x_replay: np.ndarray,
                   y_replay: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any, int]:
    """The training arrays with MNIST appended, the stream of index batches that mixes them (each
    batch: the user's images, then `replay_batch` MNIST images, each part shuffled on its own), and
    the steps of one epoch (one pass over the user's images)."""
    from . import backend

    tf = backend.tensorflow()
    n, m = len(x_user), len(x_replay)
    r = replay_batch(config)
    u = config.batch_size - r
    seed = config.seed
    # Each part repeats on its own, so a user part larger than the user's images wraps around.
    users = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat().batch(u)
    others = (tf.data.Dataset.range(n, n + m).shuffle(m, seed=seed + 1, reshuffle_each_iteration=True)
              .repeat().batch(r))
    batches = tf.data.Dataset.zip((users, others)).map(lambda a, b: tf.concat([a, b], axis=0))
    x = np.concatenate([x_user, x_replay.astype(x_user.dtype, copy=False)])
    y = np.concatenate([y_user, y_replay.astype(y_user.dtype, copy=False)])
    return x, y, batches, math.ceil(n / u)  # (at least config.min_steps: the caller's)


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, scale: float) -> float | None:
    """Share of uint8 MNIST-format `images` that `model` labels right (None for no images)."""
    from ..preprocess import to_model_input

    return None if len(images) == 0 else _accuracy(model, to_model_input(images, scale=scale), labels)


def compare(before: dict[str, float | None], after: dict[str, float | None], sizes: dict[str, int],
            **facts: Any) -> dict[str, Any]:
    """The `finetune` entry of metrics.json: accuracy before and after on each test set."""
    return {**facts, "test_sets": {name: {"n": sizes[name], "before": before[name], "after": after.get(name)}
                                   for name in before}}


def reference_sets(config: Config, data: Any) -> tuple[Any, Any]:
    """(reference, replay) for a run of `config` on `data`: MNIST (a Dataset in the model's classes)
    when fine-tuning a digit model on other data, scored before and after; the same as replay, mixed
    into training, unless `config.replay` is 0. (None, None) otherwise."""
    if config.init is None or data.name == "mnist" or not is_digit_classes(config.classes):
        return None, None
    reference = mnist_reference(config.classes)
    return reference, reference if config.replay > 0 else None


def scores(model: keras.Model, config: Config, data: Any, reference: Any) -> dict[str, float | None]:
    """Accuracy on the data's test split ("data") and, with a reference, on MNIST's test set ("mnist")."""
    out = {"data": accuracy(model, data.x_test, data.y_test, scale=config.scale)}
    if reference is not None:
        out["mnist"] = accuracy(model, reference.x_test, reference.y_test, scale=config.scale)
    return out


def summary(config: Config, init_file: Path, before: dict, after: dict, data: Any, reference: Any,
            splits: Any, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `finetune` entry of metrics.json for a finished fine-tuning run (`compare`, with its facts,
    and `budget`: what `keep_within_budget` found)."""
    sizes = {"data": int(len(data.x_test))}
    if reference is not None:
        sizes["mnist"] = int(len(reference.x_test))
    replay = splits.x_replay is not None
    from ..runs.artifacts import model_id

    return compare(before, after, sizes, init=config.init, init_model_id=model_id(init_file),
                   replay=config.replay if replay else 0.0,
                   replay_per_batch=replay_batch(config) if replay else 0, n_user_train=int(len(splits.x_train)),
                   **({"mnist_validation": budget} if budget is not None else {}))
