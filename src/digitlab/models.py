"""Model architectures, optimizers and schedules, and loading saved models.

The preset table itself is plain data in `presets.py` (so the CLI and Config
can use it without TensorFlow); each preset names one of the builders in
`ARCHITECTURES` here. `build_model` imports Keras only when called.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import backend
from .errors import ModelError
from .layout import MODEL_FILE
from .presets import PRESETS, describe_presets  # noqa: F401 - re-exported: the registry users know

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from .config import Config



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


def _conv_bn_relu(x: Any, filters: int, *, kernel: int = 3, strides: int = 1) -> Any:
    """Conv (no bias: BN has one) -> BatchNorm -> ReLU, 'valid' padding (cheaper on a CPU)."""
    layers = backend.keras().layers
    x = layers.Conv2D(filters, kernel, strides=strides, use_bias=False)(x)
    # momentum 0.9: short runs (a few hundred steps) need moving statistics that catch up quickly.
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def _fast_cnn(config: "Config") -> "keras.Model":
    """Small BN CNN (66,986 parameters): Conv32 5x5/2 -> Conv64 -> Conv64 -> pool -> Dense10, all BN-ReLU.

    The strided 5x5 first layer works on 12x12 maps instead of 26x26: ~8.9
    MFLOP per image forward, with batch norm so a short OneCycle run converges
    (measured on the validation split: 99.23% after 5 epochs; without BN or
    with a 3x3 full-resolution first layer it was slower per accuracy).
    """
    keras = backend.keras()
    layers = keras.layers
    size = config.image_size
    inputs = keras.Input(shape=(size, size, 1), name="image")
    x = _conv_bn_relu(inputs, 32, kernel=5, strides=2)
    x = _conv_bn_relu(x, 64)
    x = _conv_bn_relu(x, 64)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fast")


def _strong_cnn(config: "Config") -> "keras.Model":
    """BN CNN (198,442 parameters): [Conv32-BN-ReLU]x2 -> pool -> [Conv64-BN-ReLU]x2 -> pool -> Dense128-BN-ReLU -> Dense10.

    'valid' padding keeps the maps small (26-24-12-10-8-4): ~19.6 MFLOP per image
    forward. Its accuracy comes from the recipe (augmentation, schedule, label
    smoothing; see the preset's defaults), not from size.
    """
    keras = backend.keras()
    layers = keras.layers
    size = config.image_size
    inputs = keras.Input(shape=(size, size, 1), name="image")
    x = _conv_bn_relu(inputs, 32)
    x = _conv_bn_relu(x, 32)
    x = layers.MaxPooling2D((2, 2))(x)
    x = _conv_bn_relu(x, 64)
    x = _conv_bn_relu(x, 64)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="strong")


# Builders by architecture name; the preset table (presets.py) says which one each preset uses.
ARCHITECTURES: Mapping[str, Callable[["Config"], "keras.Model"]] = MappingProxyType(
    {"seed": _seed_cnn, "fast": _fast_cnn, "strong": _strong_cnn}
)


def planned_steps_per_epoch(config: "Config", n_train: int | None = None) -> int:
    """Optimizer steps per epoch: ceil(training images / batch size).

    Without `n_train`, the count follows from `limit` (or MNIST's 60,000) and
    the validation fraction, as `train.make_splits` would cut it.
    """
    import math

    if n_train is None:
        n = config.limit if config.limit is not None else 60_000
        n_train = n - math.ceil(n * config.val_fraction)  # sklearn's rounding of the test share
    return max(1, math.ceil(n_train / config.batch_size))


def learning_rate(config: "Config", steps_per_epoch: int | None = None) -> Any:
    """The learning rate (a float or a built-in Keras schedule) for `config`."""
    keras = backend.keras()

    if config.schedule == "constant":
        return config.learning_rate
    total = planned_steps_per_epoch(config) if steps_per_epoch is None else steps_per_epoch
    total *= config.epochs
    warm = int(round(config.warmup * total))
    start = config.learning_rate / 25.0 if config.schedule == "onecycle" else 0.0
    # CosineDecay: linear warm-up from `initial` to `warmup_target`, then cosine to alpha * target.
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=start if warm else config.learning_rate,
        decay_steps=max(1, total - warm),
        alpha=1e-3 if config.schedule == "onecycle" else 0.0,
        warmup_target=config.learning_rate if warm else None,
        warmup_steps=warm,
    )


def training_loss(config: "Config") -> Any:
    """Sparse CE (the tutorial's) or, with label smoothing, CE on one-hot targets."""
    if config.label_smoothing > 0:
        # Keras' sparse CE has no label_smoothing; train.py feeds one-hot labels in this case.
        return backend.keras().losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    return "sparse_categorical_crossentropy"


def compile_for_inference(model: "keras.Model") -> "keras.Model":
    """(Re)compile with sparse CE + accuracy, the contract of every saved model.

    Saved models are evaluated on integer labels (`evaluate.py`), whatever loss
    trained them. The optimizer object, and so its state, is kept.
    """
    keras = backend.keras()
    optimizer = getattr(model, "optimizer", None) or keras.optimizers.Adam()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_model(config: "Config", steps_per_epoch: int | None = None) -> "keras.Model":
    """Build and compile the model of `config.preset` (seeded by the caller).

    `steps_per_epoch` sizes the LR schedule (default: as planned from `config`).
    """
    keras = backend.keras()

    model = ARCHITECTURES[PRESETS[config.preset].architecture](config)
    lr = learning_rate(config, steps_per_epoch)
    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=lr)
    model.compile(optimizer=optimizer, loss=training_loss(config), metrics=["accuracy"])
    return model


def average_model(members: "list[keras.Model]", *, image_size: int = 28, name: str = "ensemble") -> "keras.Model":
    """One model that averages the members' probabilities (soft vote), compiled for inference.

    A plain functional Keras model: one input -> every member -> Average, so
    evaluation, prediction, export and serving treat it like any single model.
    """
    keras = backend.keras()

    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    outputs = []
    for i, member in enumerate(members):
        # Nested models need unique names inside the ensemble graph.
        member.name = f"member_{i}"
        outputs.append(member(inputs))
    averaged = keras.layers.Average(name="probabilities")(outputs) if len(outputs) > 1 else outputs[0]
    model = keras.Model(inputs, averaged, name=name)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Built now, so the saved file holds a complete (unused) optimizer and loading it warns about nothing.
    model.optimizer.build(model.trainable_variables)
    return model


def count_params(model: "keras.Model") -> dict[str, int]:
    """The model's own parameters (optimizer state is not part of the model): total, trainable, non-trainable."""
    trainable = int(sum(int(w.numpy().size) for w in model.trainable_weights))
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def summary_text(model: "keras.Model") -> str:
    """Keras' model summary as plain text, with the same parameter counts as `count_params`.

    Keras adds the optimizer's slots to "Total params" of a compiled model
    (3x the weights for Adam), which reads like a different model size; the
    summary is taken from an uncompiled twin built from the same config.
    """
    import re

    twin = type(model).from_config(model.get_config())
    lines: list[str] = []
    # Keras' default width fits all columns; a narrower line_length truncates "Param #".
    twin.summary(print_fn=lambda line, *a, **k: lines.append(line))
    # Rich renders box-drawing tables with ANSI styling when it thinks it is on a terminal.
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(lines))


def load_model(path: str | Path) -> tuple["keras.Model", "Config"]:
    """Load a trained model and its config from a run directory or a .keras file.

    The config (config.json beside the model, or an exported file's own
    metadata) says how inputs must be prepared. The model comes back compiled
    for evaluation (sparse CE + accuracy), whether or not the file held an
    optimizer: an inference-only export evaluates like a run's model.
    """
    from .artifacts import load_config
    from .calibration import custom_objects

    path = Path(path)
    model_file = path / MODEL_FILE if path.is_dir() else path
    if not model_file.is_file():
        raise ModelError(f"no model found at {model_file}")
    config = load_config(model_file)
    keras = backend.keras()
    try:
        model = keras.models.load_model(model_file, compile=False, custom_objects=custom_objects())
    except Exception as exc:  # Keras raises many types for a bad zip/h5/json
        raise ModelError(f"{model_file}: not a loadable Keras model ({type(exc).__name__}: {str(exc)[:200]})") from None
    return compile_for_inference(model), config
