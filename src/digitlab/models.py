"""Model presets: a registry of named architectures with their own defaults.

Adding a model means adding one `Preset` entry, never a branch elsewhere. The
registry is plain data (names, descriptions, default overrides) so the CLI can
list presets without importing TensorFlow; `build_model` imports Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from .config import Config


@dataclass(frozen=True)
class Preset:
    """A named model: how to build it and which Config defaults it changes."""

    name: str
    description: str
    build: Callable[["Config"], "keras.Model"]
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _seed_cnn(config: "Config") -> "keras.Model":
    """The tutorial's CNN, layer for layer (121,930 parameters)."""
    import keras
    from keras import layers

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
    import keras

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
