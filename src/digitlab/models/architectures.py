"""Model architectures, optimizers and schedules, and loading saved models.

The preset table itself is plain data in `presets.py` (so the CLI and Config
can use it without TensorFlow); each preset names one of the builders in
`ARCHITECTURES` here. `build_model` imports Keras only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..config.presets import PRESETS, describe_presets  # noqa: F401 - re-exported: the registry users know
from ..errors import ModelError
from ..files.layout import MODEL_FILE
from . import backend

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from ..config.settings import Config


def _seed_cnn(config: Config) -> keras.Model:
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
            layers.Dense(len(config.classes), activation="softmax", name="probabilities"),
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


def _probabilities(x: Any, config: Config) -> Any:
    """The softmax head, one output per class (10 for MNIST), always in float32: softmax and the
    loss lose too much in bfloat16."""
    return backend.keras().layers.Dense(len(config.classes), activation="softmax", name="probabilities",
                                        dtype="float32")(x)


def _fast_cnn(config: Config) -> keras.Model:
    """Tiny CNN (212,682 parameters, 1.5 MFLOP/image): Conv16 5x5/2 -> Conv32 3x3 -> pool -> Dense256 -> Dense10.

    A run of a few seconds on a CPU is limited by the cost per image, so: a
    strided first layer (12x12 maps, no 24x24 maps to pool), no batch norm
    (Keras' is unfused: +65% CPU per step and no gain after 1-2 epochs, measured),
    channel counts that are multiples of 16 (oneDNN's blocking). On validation
    after 2 epochs it matches the published one-epoch net (Conv24 5x5 -> pool ->
    Conv32 -> pool -> Dense256: 99.08% both, 2 seeds) at 52% of its time per
    training image (47 against 91 us; 37 us in bfloat16).
    """
    keras = backend.keras()
    layers = keras.layers
    size = config.image_size
    inputs = keras.Input(shape=(size, size, 1), name="image")
    x = layers.Conv2D(16, 5, strides=2, activation="relu")(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    return keras.Model(inputs, _probabilities(x, config), name="fast")


def _balanced_cnn(config: Config) -> keras.Model:
    """Small CNN (431,754 parameters, 5.4 MFLOP/image): Conv32 5x5 -> pool -> Conv64 3x3 -> pool -> Dense256 -> Dense10.

    The published one-epoch net's shape with wider convolutions. With augmentation
    and 12 epochs it reached 99.49% validation accuracy (2 seeds), against 99.45%
    for the strided `fast` shape at the same width and ~99.4% for narrower nets;
    no batch norm, for the same reason as `fast`.
    """
    keras = backend.keras()
    layers = keras.layers
    size = config.image_size
    inputs = keras.Input(shape=(size, size, 1), name="image")
    x = layers.Conv2D(32, 5, activation="relu")(inputs)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    return keras.Model(inputs, _probabilities(x, config), name="balanced")


def _strong_cnn(config: Config) -> keras.Model:
    """BN CNN (198,442 parameters): [Conv32-BN-ReLU]x2 -> pool -> [Conv64-BN-ReLU]x2 -> pool -> Dense128-BN-ReLU -> Dense10.

    'valid' padding keeps the maps small (26-24-12-10-8-4): ~19.6 MFLOP per image
    forward (0.1 ms per image on ONNX Runtime). Its accuracy comes from the recipe
    (augmentation, schedule, 20 epochs; see the preset's defaults), not from size.
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
    return keras.Model(inputs, _probabilities(x, config), name="strong")


# Builders by architecture name; the preset table (presets.py) says which one each preset uses
# and with which recipe.
ARCHITECTURES: Mapping[str, Callable[[Config], keras.Model]] = MappingProxyType(
    {"seed": _seed_cnn, "fast": _fast_cnn, "balanced": _balanced_cnn, "strong": _strong_cnn}
)


def planned_steps_per_epoch(config: Config, n_train: int | None = None) -> int:
    """Optimizer steps per epoch: ceil(training images / batch size).

    Without `n_train`, the count follows from `limit` (or MNIST's 60,000) and
    the validation fraction, as `train.make_splits` would cut it.
    """
    import math

    if n_train is None:
        n = config.limit if config.limit is not None else 60_000
        n_train = n - math.ceil(n * config.val_fraction)  # sklearn's rounding of the test share
    return max(1, math.ceil(n_train / config.batch_size))


def learning_rate(config: Config, steps_per_epoch: int | None = None) -> Any:
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


def training_loss(config: Config) -> Any:
    """Sparse CE (the tutorial's) or, with label smoothing, CE on one-hot targets."""
    if config.label_smoothing > 0:
        # Keras' sparse CE has no label_smoothing; train.py feeds one-hot labels in this case.
        return backend.keras().losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    return "sparse_categorical_crossentropy"


def compile_for_inference(model: keras.Model) -> keras.Model:
    """(Re)compile with sparse CE + accuracy, the contract of every saved model.

    Saved models are evaluated on integer labels (`evaluate.py`), whatever loss
    trained them. The optimizer object, and so its state, is kept.
    """
    keras = backend.keras()
    optimizer = getattr(model, "optimizer", None) or keras.optimizers.Adam()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_network(config: Config, precision: str | None = None) -> keras.Model:
    """The preset's network, uncompiled, its layers computing in `precision` (default: the config's).

    Keras reads the dtype policy when a layer is created, so the policy is set
    around the builder only and restored after it.
    """
    keras = backend.keras()
    precision = precision or config.precision
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return ARCHITECTURES[PRESETS[config.preset].architecture](config)
    finally:
        keras.config.set_dtype_policy(previous)


def float32_copy(model: keras.Model, config: Config) -> keras.Model:
    """`model` itself if it computes in float32, else a float32 twin with its weights (compiled for inference).

    What gets saved, evaluated and exported is always float32, so a model trained
    in mixed bfloat16 exports exactly (the parity check compares float32 to float32).
    """
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model._flatten_layers()):
        return model
    twin = build_network(config, "float32")
    twin.set_weights(model.get_weights())
    compile_for_inference(twin)
    # Built now, so the saved file holds a complete (unused) optimizer and loading it warns about nothing.
    twin.optimizer.build(twin.trainable_variables)
    return twin


def build_model(config: Config, steps_per_epoch: int | None = None) -> keras.Model:
    """Build and compile the model of `config.preset` (seeded by the caller).

    `steps_per_epoch` sizes the LR schedule (default: as planned from `config`).
    """
    return compile_for_training(build_network(config), config, steps_per_epoch)


def compile_for_training(model: keras.Model, config: Config, steps_per_epoch: int | None = None) -> keras.Model:
    """Compile `model` with `config`'s optimizer (Adam or AdamW, its LR schedule) and loss: for a
    new network (`build_model`) and for a trained one that is fine-tuned (`finetune`)."""
    keras = backend.keras()

    lr = learning_rate(config, steps_per_epoch)
    betas = {"beta_1": config.beta_1, "beta_2": config.beta_2}
    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, **betas)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=lr, **betas)
    model.compile(optimizer=optimizer, loss=training_loss(config), metrics=["accuracy"])
    return model


def average_model(members: list[keras.Model], *, image_size: int = 28, name: str = "ensemble") -> keras.Model:
    """One model that averages the members' probabilities (soft vote), compiled for inference.

    A plain functional Keras model: one input -> every member -> Average, so
    evaluation, prediction, export and serving treat it like any single model.
    """
    keras = backend.keras()

    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    outputs = []
    for i, member in enumerate(members):
        # Each member as a plain graph of its layers (the same weights): a trained member's optimizer
        # state would be saved inside the ensemble for nothing (3 MB of 8 for two strong members).
        # Nested models need unique names inside the ensemble graph.
        plain = keras.Model(member.inputs[0], member.outputs[0], name=f"member_{i}")
        outputs.append(plain(inputs))
    averaged = keras.layers.Average(name="probabilities")(outputs) if len(outputs) > 1 else outputs[0]
    model = keras.Model(inputs, averaged, name=name)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Built now, so the saved file holds a complete (unused) optimizer and loading it warns about nothing.
    model.optimizer.build(model.trainable_variables)
    return model


def count_params(model: keras.Model) -> dict[str, int]:
    """The model's own parameters (optimizer state is not part of the model): total, trainable, non-trainable."""
    trainable = int(sum(int(w.numpy().size) for w in model.trainable_weights))
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def summary_text(model: keras.Model) -> str:
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


def load_model(path: str | Path) -> tuple[keras.Model, Config]:
    """Load a trained model and its config from a run directory or a .keras file.

    The config (config.json beside the model, or an exported file's own
    metadata) says how inputs must be prepared. The model comes back compiled
    for evaluation (sparse CE + accuracy), whether or not the file held an
    optimizer: an inference-only export evaluates like a run's model.
    """
    from ..runs.artifacts import load_config
    from .calibration import custom_objects

    path = Path(path)
    model_file = path / MODEL_FILE if path.is_dir() else path
    if not model_file.is_file():
        raise ModelError(f"no model found at {model_file}")
    config = load_config(model_file)
    keras = backend.keras()
    try:
        model = keras.models.load_model(model_file, compile=False, custom_objects=custom_objects())
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad zip/h5/json
        raise ModelError(f"{model_file}: not a loadable Keras model ({type(exc).__name__}: {str(exc)[:200]})") from None
    return compile_for_inference(model), config
