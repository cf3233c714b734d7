"""Model presets: a registry of named architectures with their own defaults.

Adding a model means adding one `Preset` entry, never a branch elsewhere. The
registry is plain data (names, descriptions, default overrides) so the CLI can
list presets without importing TensorFlow; `build_model` imports Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import backend
from .errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from .config import Config

MODEL_FILE = "model.keras"  # final weights, as the tutorial ends training
BEST_FILE = "best.keras"  # best validation accuracy seen during training


@dataclass(frozen=True)
class Preset:
    """A named model: how to build it and which Config defaults it changes."""

    name: str
    description: str
    build: Callable[["Config"], "keras.Model"]
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _seed_cnn(config: "Config") -> "keras.Model":
    """The tutorial's CNN, layer for layer (121,930 parameters)."""
    keras = backend.keras()
    layers = keras.layers

    size = config.image_size
    return keras.Sequential(
        [
            keras.Input(shape=(size, size, 1), name="image"),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="seed",
    )


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "seed": Preset(
            name="seed",
            description="the tutorial's CNN: Conv32-Pool-Conv64-Pool-Dense64-Dense10, Adam, 10 epochs, batch 128",
            build=_seed_cnn,
            defaults={},  # Config's defaults are the tutorial's settings
        ),
    }
)


def build_model(config: "Config") -> "keras.Model":
    """Build and compile the model of `config.preset` (seeded by the caller)."""
    keras = backend.keras()

    model = PRESETS[config.preset].build(config)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def describe_presets() -> str:
    """One line per preset, for --help texts and `digitlab presets`."""
    return "\n".join(f"{p.name}: {p.description}" for p in PRESETS.values())


def count_params(model: "keras.Model") -> dict[str, int]:
    """Total and trainable parameter counts."""
    trainable = int(sum(int(w.numpy().size) for w in model.trainable_weights))
    return {"total": int(model.count_params()), "trainable": trainable}


def summary_text(model: "keras.Model") -> str:
    """Keras' model summary as plain text (with parameter counts)."""
    lines: list[str] = []
    # Keras' default width fits all columns; a narrower line_length truncates "Param #".
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    text = "\n".join(lines)
    # Rich renders box-drawing tables with ANSI styling when it thinks it is on a terminal.
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def load_model(path: str | Path) -> tuple["keras.Model", "Config"]:
    """Load a trained model and its config from a run directory or a .keras file.

    The config.json beside the model says how inputs must be prepared.
    """
    from .config import Config

    path = Path(path)
    model_file = path / MODEL_FILE if path.is_dir() else path
    if not model_file.is_file():
        raise ModelError(f"no model found at {model_file}")
    config = Config.load(model_file.parent)
    keras = backend.keras()
    try:
        model = keras.models.load_model(model_file, compile=True)
    except Exception as exc:  # Keras raises many types for a bad zip/h5/json
        raise ModelError(f"{model_file}: not a loadable Keras model ({type(exc).__name__}: {str(exc)[:200]})") from None
    return model, config
