"""The one configuration object shared by the CLI, the Python API and training.

A `Config` is frozen and validated (types and ranges, every field); it is
saved as `config.json` beside every model, so a loaded model knows how its
inputs were prepared and how it was trained. All defaults live in the table
below (grouped, each with its reason); presets override some of them
(`presets.PRESETS`), command-line options and `--set key=value` override both.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError
from ..files.layout import CONFIG_FILE, default_runs_dir
from .classes import DIGITS, class_names_problem
from .presets import PRESETS

# Bumped when a field changes meaning; older files are still read (unknown
# fields ignored, missing ones defaulted) so old runs keep loading.
SCHEMA_VERSION = 1
SCHEDULES = ("constant", "onecycle", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16")
DEVICES = ("auto", "one", "all")  # Config.devices
# Upper bounds that no sensible run reaches; they turn a typo (an extra zero
# or twenty) into a clear error instead of an overflow deep inside TensorFlow.
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1  # NumPy and TensorFlow seeds are 32-bit
MAX_LIMIT = 10**9
MAX_LEARNING_RATE = 10.0  # Adam diverges long before this


@dataclass(frozen=True)
class Config:
    """Every knob of a digitlab run, with the reason for each default."""

    # --- model -----------------------------------------------------------
    preset: str = "seed"  # the tutorial's CNN; other presets trade size for speed/accuracy

    # --- data --------------------------------------------------------------
    # What to train on (`--data SPEC`, see `digitlab.data`): a folder of images with one
    # sub-folder per class, IDX/npz files, or a known set by name. None = MNIST, the default.
    data: str | None = None
    data_dir: str | None = None  # None = the MNIST copy shipped inside the package (offline)
    download: bool = False  # fetch from public mirrors only when asked: default runs need no network
    val_fraction: float = 0.2  # the tutorial's 80/20 train/validation split
    stratify: bool = False  # off = identical to train_test_split(test_size=0.2, random_state=seed)
    limit: int | None = None  # train on the first N training images, for quick looks; None = all

    # --- training ----------------------------------------------------------
    epochs: int = 10  # the tutorial's setting; seed CNN's validation accuracy plateaus around here
    batch_size: int = 128  # the tutorial's setting; fast on 2 CPU cores, stable Adam steps
    learning_rate: float = 1e-3  # Adam's default, which the tutorial uses implicitly
    seed: int = 42  # split + weight init + shuffling: the same seed gives the same run
    # LR schedule over all steps of training. "constant" is the tutorial's; "onecycle" warms up
    # linearly from learning_rate/25 to learning_rate, then anneals with a cosine to ~0 (large
    # steps early, small steps to settle: most accuracy per epoch when epochs are few);
    # "cosine" is the same without the low start (warm-up from 0 over `warmup` only if > 0).
    schedule: str = "constant"
    warmup: float = 0.0  # share of all training steps spent warming up (schedules other than constant)
    weight_decay: float = 0.0  # > 0 switches Adam to AdamW (decoupled decay); 0 = the tutorial's Adam
    # Adam's moment decays; Keras' defaults are the tutorial's. A run of a few hundred steps at a high
    # OneCycle peak learns faster with shorter memories (0.7, 0.9: +0.17% validation accuracy after
    # 2 epochs of `fast`, measured; the published one-epoch MNIST recipe uses the same values).
    beta_1: float = 0.9
    beta_2: float = 0.999
    # Arithmetic of training: "mixed_bfloat16" runs convolutions and matmuls in bfloat16 (weights stay
    # float32; 20-40% less time per training image on CPUs with AVX512-BF16 (measured: fast -22%,
    # balanced -38%), the same validation accuracy).
    # The saved model is always a float32 copy, so evaluation, export and serving are exact float32.
    precision: str = "float32"
    # Devices to train on: "auto" = data parallel (tf.distribute.MirroredStrategy, one model copy per
    # device, the batch split between them) when more than one GPU is visible, else the one device
    # TensorFlow picks; "one" = that one device always; "all" = every visible device, also CPU
    # devices (for tests: logical CPUs). Parallel training gives a different, equally good model than
    # one device (the gradients are summed in another order), hence a switch.
    devices: str = "auto"
    label_smoothing: float = 0.0  # > 0 trains on smoothed one-hot targets (less over-confident); 0 = sparse CE as in the tutorial
    # Training-time augmentation, applied to batches in the tf.data stream (never part of the
    # saved/exported model): random shifts (pixels), rotations (degrees), zoom (fraction of size).
    # Handwriting varies in exactly these ways; 0 = off, as in the tutorial.
    shift: float = 0.0
    rotation: float = 0.0
    zoom: float = 0.0
    # Number of independently seeded models (seeds seed, seed+1, ...) averaged into one soft-voting
    # model; 1 = a single model. Members share the train/validation split of `seed`.
    members: int = 1
    # Outlier exposure (Hendrycks et al. 2019): the weight of a second loss that trains the model
    # towards the uniform distribution on generated non-digits (`nondigits`' calibration split, as
    # the prediction preprocessing turns them into model input), so that "not a digit" becomes
    # separable from the model's answer (`ood.py`). 0 = off: the tutorial's training, digits only.
    outlier_exposure: float = 0.0
    # How many non-digit images outlier exposure draws (about 10 ms each to draw and preprocess);
    # used only when outlier_exposure > 0.
    outlier_images: int = 20_000
    # Pairs of training digits written touching and read back as `predict --number` reads them
    # (`ood.touching_pairs`): each pair whole and a fragment of its candidate cuts join outlier
    # exposure's non-digits, the cut piece that is one of its digits joins the training digits. The
    # reading can only choose among the model's answers: taught that two digits or a third of one
    # are no digit, and that a digit with a neighbour's stroke end in it is still that digit, it
    # cuts touching numbers where they part. 0 = off; needs outlier_exposure > 0 (about 100 ms a
    # pair, on all cores).
    touching_pairs: int = 0
    # Training digits also drawn as users' files (the non-digits' renderings: paper, canvas, photo)
    # and read back through the prediction preprocessing, added to the training set: the model then
    # learns digits as preprocessing delivers them (cropped, thinned, resampled), not only MNIST's
    # arrays. 0 = off (the tutorial's data).
    rendered_digits: int = 0
    # Share of training images degraded the ways real inputs are (blur, motion smear, noise, speckle,
    # a line or zigzag across, hollow outlines, jitter: `augment.corrupt_batch`), in the input stream
    # like the other augmentation; makes the model hold up on damaged digits (MNIST-C-style
    # benchmark) without training on that benchmark's transforms. 0 = off, as in the tutorial.
    corruptions: float = 0.0

    # --- fine-tuning -----------------------------------------------------------
    # The model to start from (`--init`): "pretrained" (the shipped model), a run (name, directory or
    # "latest") or a model file. None = random initial weights. Its architecture, classes and
    # preprocessing come with it (`finetune.finetune_config`); so do the fine-tuning defaults
    # (`presets.FINETUNE_DEFAULTS`: few passes, a low learning rate).
    init: str | None = None
    # Rehearsal against forgetting: the share of every fine-tuning batch drawn from MNIST's training
    # images (a digit model fine-tuned on other data). A handful of the user's images alone would pull
    # the model towards them and away from everything else it knew (catastrophic forgetting). Measured
    # on the handwriting-style benchmark (bench_style.py --finetune 10, BENCHMARKS.md; 5 epochs, batch
    # norm unfrozen, no forgetting budget), MNIST test after: 99.28% with three quarters of each batch
    # from MNIST, 99.43% with nine tenths; the writer's style was learnt either way (99.7-99.9%).
    # 0 = the user's data only.
    replay: float = 0.9
    # Freeze batch normalisation (statistics and scale as trained, the layers run as at inference), as
    # Keras' transfer-learning guide advises for small data. Off by default because it forgot more
    # here: with 90% of each batch from MNIST the batch statistics stay MNIST's anyway, and the frozen
    # model fell to 99.12% on MNIST test against 99.28% unfrozen (replay 0.75, bench_style.py).
    # Models without BN (seed, fast, balanced) are unaffected.
    freeze_batch_norm: bool = False
    # The most MNIST validation accuracy fine-tuning may cost (0.0005 = 0.05 points, 6 of 12,000
    # images). When the fine-tuned network loses more, its weights are blended back towards the
    # starting model's, w = (1 - a) * start + a * tuned (weight-space ensembling, "WiSE-FT", Wortsman
    # et al. 2022), with the largest a of 1, 0.9, ..., 0 that stays within budget; metrics.json
    # records a. The user's data can contradict MNIST (a writer's long-flag 1 is an MNIST 7), so some
    # points are a trade. Measured with bench_style.py --finetune 10,20 (BENCHMARKS.md): with this
    # budget the single model shipped until 2026-12-04 kept 99.58% on MNIST test (99.59% before) and
    # read 96.9% / 95.4% of the writer's held-out digits (75.3% before), keeping 50% / 40% of the
    # change; with 0.001 it kept 100% / 80% of it, 99.9% / 99.7% of the writer, but 99.42% / 99.45%
    # on MNIST test. 0.0005 was half of what that model could lose before it dropped below 99.5%: a
    # validation estimate of a drop is noisy by a few hundredths (the shipped vote, 99.65% before,
    # kept 99.53% / 99.46% and read 99.5% / 99.8% of the writer). 1 = no limit (only the user's
    # digits matter).
    # Applies with replay (the validation split is then MNIST's).
    forgetting_budget: float = 0.0005
    # Steps in an epoch at least: a small data set repeats within an epoch, so that an epoch means some
    # learning whatever the data's size (100 images at 16 a batch are 7 steps). 0 = one pass over the
    # training data, as in the tutorial; fine-tuning sets it (`presets.FINETUNE_DEFAULTS`).
    min_steps: int = 0

    # --- preprocessing contract (what a model expects as input) --------------
    # What each output of the model means, in output order: saved with the model, so predictions,
    # the page, the report and every export name them. Set by digitlab from the data (its class
    # folders, a known set's names, or classes.txt), never by hand.
    classes: tuple[str, ...] = DIGITS
    image_size: int = 28  # MNIST resolution; models take (N, 28, 28, 1)
    scale: float = 1.0 / 255.0  # uint8 pixels to [0, 1], as in the tutorial
    polarity: str = "white-on-black"  # MNIST ink is bright on a dark background

    # --- outputs -----------------------------------------------------------
    # Every run gets its own directory below this one: $DIGITLAB_RUNS, else ./runs.
    out: str = field(default_factory=default_runs_dir)
    name: str | None = None  # None = "<preset>-<timestamp>"

    # --- bookkeeping (filled in by digitlab, not by users) -------------------
    version: str = field(default=__version__)
    schema_version: int = SCHEMA_VERSION
    # Calibration, filled in after training (`calibration.py`, `ood.py`); None = not calibrated.
    # The temperature fitted on the validation split. It is baked into the saved model (its last
    # layer), so every export and runtime applies it by construction: this field only records it.
    temperature: float | None = None
    # Answers with a (calibrated) confidence below this are "uncertain": the point of the
    # validation risk-coverage curve that answers ood.UNCERTAIN_COVERAGE of the digits.
    # `Predictor.load` uses it unless given a threshold.
    uncertain_below: float | None = None
    # Answers whose not-a-digit score (normalised entropy) exceeds this are "not a digit": chosen
    # on validation digits to flag at most ood.NOT_DIGIT_FPR of them. None = no such decision.
    not_digit_above: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError with a readable message if any value has the wrong type or range."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            need(_has_type(value, _field_types()[f.name]),
                 f"{_label(f.name)} must be {_type_words(_field_types()[f.name])} (got {value!r})")
        need(self.preset in PRESETS, f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        need(1 <= self.epochs <= MAX_EPOCHS, f"epochs must be an integer between 1 and {MAX_EPOCHS:,} (got {self.epochs!r})")
        need(1 <= self.batch_size <= MAX_BATCH,
             f"batch size must be an integer between 1 and {MAX_BATCH:,} (got {self.batch_size!r})")
        need(0 <= self.seed <= MAX_SEED, f"seed must be an integer between 0 and {MAX_SEED} (got {self.seed!r})")
        need(self.limit is None or 20 <= self.limit <= MAX_LIMIT,
             f"limit must be an integer >= 20 so that both splits hold images (got {self.limit!r})")
        need(0.0 < self.val_fraction < 1.0, f"validation fraction must be between 0 and 1 (got {self.val_fraction!r})")
        need(0.0 < self.learning_rate <= MAX_LEARNING_RATE,
             f"learning rate must be > 0 and <= {MAX_LEARNING_RATE:g} (got {self.learning_rate!r})")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")
        for name, lo, hi in (("warmup", 0.0, 1.0), ("weight_decay", 0.0, 1.0), ("label_smoothing", 0.0, 1.0),
                             ("beta_1", 0.0, 1.0), ("beta_2", 0.0, 1.0), ("corruptions", 0.0, 1.0),
                             ("shift", 0.0, 14.0), ("rotation", 0.0, 180.0), ("zoom", 0.0, 1.0)):
            v = getattr(self, name)
            need(lo <= v < hi, f"{_label(name)} must be a number in [{lo:g}, {hi:g}) (got {v!r})")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        need(self.devices in DEVICES, f"devices must be one of {', '.join(DEVICES)} (got {self.devices!r})")
        need(1 <= self.members <= 50, f"members must be an integer between 1 and 50 (got {self.members!r})")
        need(0.0 <= self.outlier_exposure <= 10.0,
             f"outlier exposure must be a number in [0, 10] (got {self.outlier_exposure!r})")
        need(100 <= self.outlier_images <= 1_000_000,
             f"outlier images must be an integer between 100 and 1,000,000 (got {self.outlier_images!r})")
        need(0 <= self.touching_pairs <= 1_000_000,
             f"touching pairs must be an integer between 0 and 1,000,000 (got {self.touching_pairs!r})")
        need(self.touching_pairs == 0 or self.outlier_exposure > 0,
             "touching pairs need outlier exposure (e.g. --set outlier_exposure=0.5): a pair whole is taught as no digit")
        need(0 <= self.rendered_digits <= 1_000_000,
             f"rendered digits must be an integer between 0 and 1,000,000 (got {self.rendered_digits!r})")
        need(self.temperature is None or 0.0 < self.temperature <= 100.0,
             f"temperature must be a number in (0, 100] or none (got {self.temperature!r})")
        for name in ("uncertain_below", "not_digit_above"):
            v = getattr(self, name)
            need(v is None or 0.0 <= v <= 1.0, f"{_label(name)} must be a number in [0, 1] or none (got {v!r})")
        need(not (self.data_dir and self.download), "give either a data directory or --download, not both")
        need(not (self.data and self.data_dir), "give either --data or --data-dir, not both "
                                                "(--data mnist:DIR is the same as --data-dir DIR)")
        need(self.data is None or bool(self.data.strip()), "--data must not be empty")
        problem = class_names_problem(self.classes)
        need(problem is None, f"classes: {problem}")
        need(self.init is None or bool(self.init.strip()), "--init must not be empty")
        need(0 <= self.min_steps <= 1_000_000, f"min steps must be an integer between 0 and 1,000,000 "
                                               f"(got {self.min_steps!r})")
        need(0.0 <= self.forgetting_budget <= 1.0, f"forgetting budget must be a number in [0, 1] "
                                                   f"(got {self.forgetting_budget!r}): a share of accuracy")
        need(0.0 <= self.replay <= 0.9, f"replay must be a number in [0, 0.9] (got {self.replay!r}): "
                                        f"a share of each batch, and the user's data needs the rest")
        # Fine-tuning trains the loaded model as it is, and a saved model is float32.
        need(self.init is None or self.precision == "float32",
             f"fine-tuning (--init) trains in float32 (got precision {self.precision!r})")
        need(self.image_size == 28, f"image_size must be 28 for MNIST models (got {self.image_size!r})")
        # The model was trained on pixels * scale; a scale of 0 or 1000 would feed it garbage.
        need(0.0 < self.scale <= 1.0, f"scale must be a number in (0, 1] (got {self.scale!r})")
        need(self.polarity in ("white-on-black",), f"unsupported polarity {self.polarity!r}")

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied (validated). None is a value: `replace(limit=None)` clears it."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples (the class names) become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON (atomically); `path` may be a file or a model directory."""
        from ..files.atomic import atomic_write_json

        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILE
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build from a dict, ignoring unknown keys (files from newer versions)."""
        if not isinstance(data, Mapping):
            raise ConfigError("config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("classes"), list):  # JSON has no tuples
            values["classes"] = tuple(values["classes"])
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        """Read a config.json (or the one inside a model directory), fully validated."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILE
        try:
            # parse_constant: JSON has no NaN/Infinity; Python's reader accepts them unless told not to.
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable JSON config ({exc})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _label(name: str) -> str:
    return {"val_fraction": "validation fraction"}.get(name, name.replace("_", " "))


@functools.cache
def _field_types() -> dict[str, Any]:
    """Resolved annotations of Config (computed on first use, not at import time)."""
    return typing.get_type_hints(Config)


def _has_type(value: Any, tp: Any) -> bool:
    """isinstance for the field types used here, strict about bool vs int and finite floats."""
    if typing.get_origin(tp) is tuple:  # tuple[str, ...]
        return isinstance(value, tuple) and all(_has_type(v, typing.get_args(tp)[0]) for v in value)
    args = typing.get_args(tp)
    if args:  # X | None
        return any(_has_type(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, tp)


def _type_words(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "a list of strings"
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}[base]
    return words + (" or none" if args else "")


def _coerce(name: str, text: str) -> Any:
    """A `--set` value (a string) as the type of field `name`."""
    tp = _field_types()[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    low = text.strip().lower()
    if args and low in ("none", "null", ""):
        return None
    if base is bool:
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    elif base is int:
        try:
            return int(low.replace("_", ""))
        except ValueError:
            pass
    elif base is float:
        try:
            return float(low)  # inf/nan parse here and are refused by validate()
        except ValueError:
            pass
    else:
        return text
    raise ConfigError(f"--set {name}={text}: {_label(name)} must be {_type_words(tp)}")


_NOT_SETTABLE = {"classes": "the class names come from the data (its folders, a known set or classes.txt)"}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["epochs=3", "limit=none"]` -> `{"epochs": 3, "limit": None}`, typed by the Config fields."""
    names = {f.name for f in dataclasses.fields(Config)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set epochs=3")
        if key not in names:
            raise ConfigError(f"--set {item!r}: unknown config field {key!r}; fields: {', '.join(sorted(names))}")
        if key in _NOT_SETTABLE:
            raise ConfigError(f"--set {item!r}: {_NOT_SETTABLE[key]}")
        out[key] = _coerce(key, value)
    return out


def make_config(preset: str | None = None, **overrides: Any) -> Config:
    """Config for `preset` (default "seed"): defaults, then the preset's own, then `overrides` (validated).

    A fine-tuning config (`init=MODEL`) starts from MODEL's own config, which this layer cannot
    read: `digitlab.make_config` (`pipeline.make_config`) makes both kinds.
    """
    if overrides.get("init") is not None:
        raise ConfigError("init=MODEL: a fine-tuning config starts from the model's own config; "
                          "make it with digitlab.make_config(init=...) or digitlab.models.finetune.finetune_config")
    preset = "seed" if preset is None else preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return Config(preset=preset).replace(**dict(PRESETS[preset].defaults)).replace(**overrides)
