"""The one configuration object shared by the CLI, the Python API and training.

A `Config` is frozen and validated; it is saved as `config.json` beside every
model, so a loaded model knows how its inputs were prepared and how it was
trained. All defaults live in the table below (grouped, each with its reason);
presets override some of them (see `models.PRESETS`), command-line options
override both.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .errors import ConfigError

CONFIG_FILE = "config.json"
# Bumped when a field changes meaning; older files are still read (unknown
# fields ignored, missing ones defaulted) so old runs keep loading.
SCHEMA_VERSION = 1
SCHEDULES = ("constant", "onecycle", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclass(frozen=True)
class Config:
    """Every knob of a digitlab run, with the reason for each default."""

    # --- model -----------------------------------------------------------
    preset: str = "seed"  # the tutorial's CNN; other presets trade size for speed/accuracy

    # --- data --------------------------------------------------------------
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

    # --- preprocessing contract (what a model expects as input) --------------
    image_size: int = 28  # MNIST resolution; models take (N, 28, 28, 1)
    scale: float = 1.0 / 255.0  # uint8 pixels to [0, 1], as in the tutorial
    polarity: str = "white-on-black"  # MNIST ink is bright on a dark background

    # --- outputs -----------------------------------------------------------
    out: str = "runs"  # every run gets its own directory below this one
    name: str | None = None  # None = "<preset>-<timestamp>"

    # --- bookkeeping (filled in by digitlab, not by users) -------------------
    version: str = field(default=__version__)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError with a readable message if any value is invalid."""
        from .models import PRESETS  # the registry itself imports no TensorFlow

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.preset in PRESETS, f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        need(_is_int(self.epochs) and self.epochs >= 1, f"epochs must be an integer >= 1 (got {self.epochs!r})")
        need(_is_int(self.batch_size) and self.batch_size >= 1, f"batch size must be an integer >= 1 (got {self.batch_size!r})")
        need(_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0 (got {self.seed!r})")
        need(self.limit is None or (_is_int(self.limit) and self.limit >= 20),
             f"limit must be an integer >= 20 so that both splits hold images (got {self.limit!r})")
        need(isinstance(self.val_fraction, (int, float)) and 0.0 < self.val_fraction < 1.0,
             f"validation fraction must be between 0 and 1 (got {self.val_fraction!r})")
        need(isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0,
             f"learning rate must be > 0 (got {self.learning_rate!r})")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")

        def frac(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v < hi,
                 f"{name.replace('_', ' ')} must be a number in [{lo:g}, {hi:g}) (got {v!r})")

        frac("warmup", 0.0, 1.0)
        frac("weight_decay", 0.0, 1.0)
        frac("label_smoothing", 0.0, 1.0)
        frac("beta_1", 0.0, 1.0)
        frac("beta_2", 0.0, 1.0)
        need(self.precision in PRECISIONS,
             f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        frac("shift", 0.0, 14.0)
        frac("rotation", 0.0, 180.0)
        frac("zoom", 0.0, 1.0)
        need(_is_int(self.members) and 1 <= self.members <= 50,
             f"members must be an integer between 1 and 50 (got {self.members!r})")
        need(not (self.data_dir and self.download),
             "give either a data directory or --download, not both")
        need(self.image_size == 28, f"image_size must be 28 for MNIST models (got {self.image_size!r})")
        need(self.polarity in ("white-on-black",), f"unsupported polarity {self.polarity!r}")

    def replace(self, **changes: Any) -> "Config":
        """A copy with `changes` applied (None values are ignored: 'not given')."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON (atomically); `path` may be a file or a model directory."""
        from .runs import atomic_write_json

        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILE
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Build from a dict, ignoring unknown keys (files from newer versions)."""
        if not isinstance(data, Mapping):
            raise ConfigError("config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Config":
        """Read a config.json (or the one inside a model directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable JSON config ({exc})") from None
        try:
            return cls.from_dict(data)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def make_config(preset: str = "seed", **overrides: Any) -> Config:
    """Config for `preset`: defaults, then the preset's own, then `overrides`.

    Overrides that are None mean "not given" and leave the default in place,
    which is how the CLI passes options the user did not type.
    """
    from .models import PRESETS

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return Config(preset=preset).replace(**dict(PRESETS[preset].defaults)).replace(**overrides)
