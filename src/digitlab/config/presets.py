"""The preset table: named recipes as plain data (no TensorFlow, no imports of models).

A preset names an architecture (built in `models.ARCHITECTURES`) and the
Config defaults it changes. `config.py` validates preset names against this
table and `models.py` builds from it; neither imports the other. Adding a
model means adding one entry here and one builder in models.py, never a
branch on the preset's name elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named recipe: which architecture, and which Config defaults it changes."""

    name: str
    description: str
    architecture: str  # key of models.ARCHITECTURES
    defaults: Mapping[str, Any] = field(default_factory=dict)


# No label smoothing: it hurts calibrated confidence (issue 9). Measured on validation (bfloat16, means
# of 2 seeds): 10 epochs 99.52%, 20 epochs 99.55%; 10 epochs with smoothing 0.1 reached 99.58% (3 seeds)
# in half the time, within the noise of 12,000 validation images (+-0.06%) and not worth the calibration.
_STRONG_RECIPE: Mapping[str, Any] = {
    "epochs": 20, "batch_size": 128, "learning_rate": 3e-3, "schedule": "onecycle", "warmup": 0.2,
    "shift": 2.0, "rotation": 10.0, "zoom": 0.1, "precision": "mixed_bfloat16",
}

# Peak LR 5e-3: 99.49% validation against 99.45% with 1e-2 (12 epochs, 2 seeds each); the strided
# first layer of `fast` at the same width reached 99.45%.
_BALANCED_RECIPE: Mapping[str, Any] = {
    "epochs": 12, "batch_size": 256, "learning_rate": 5e-3, "schedule": "onecycle", "warmup": 0.2,
    "beta_1": 0.7, "beta_2": 0.9, "precision": "mixed_bfloat16", "shift": 2.0, "rotation": 10.0, "zoom": 0.1,
}

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "seed": Preset(
            name="seed",
            description="the tutorial's CNN: Conv32-Pool-Conv64-Pool-Dense64-Dense10, Adam, 10 epochs, batch 128",
            architecture="seed",
            defaults={},  # Config's defaults are the tutorial's settings
        ),
        "fast": Preset(
            name="fast",
            description="tiny CNN (Conv16 5x5/2-Conv32-Dense256), 2 epochs, batch 256, OneCycle 1e-2, bfloat16",
            architecture="fast",
            # The published one-epoch recipe (Adam 1e-2, betas 0.7/0.9, OneCycle, batch 256), run for 2 epochs:
            # one epoch stays at 98.6-98.9% validation whatever the width, lr, batch or warm-up (measured).
            defaults={"epochs": 2, "batch_size": 256, "learning_rate": 1e-2, "schedule": "onecycle", "warmup": 0.2,
                      "beta_1": 0.7, "beta_2": 0.9, "precision": "mixed_bfloat16"},
        ),
        "balanced": Preset(
            name="balanced",
            description="small CNN (Conv32 5x5-Pool-Conv64-Pool-Dense256), shifts/rotations/zoom, 12 epochs, "
                        "OneCycle 5e-3, bfloat16",
            architecture="balanced",
            defaults=dict(_BALANCED_RECIPE),
        ),
        "strong": Preset(
            name="strong",
            description="BN CNN 32-32-64-64-Dense128, shifts/rotations/zoom, 20 epochs, OneCycle 3e-3, bfloat16",
            architecture="strong",
            defaults=dict(_STRONG_RECIPE),
        ),
        "ensemble": Preset(
            name="ensemble",
            description="N balanced networks (--members, default 3; seeds seed..seed+N-1), 30 epochs each, "
                        "averaged (soft vote) in one model",
            architecture="balanced",
            # Small members: the soft vote's cost per image is the sum of theirs (3 x 5.4 MFLOP, ~0.14 ms
            # on ONNX Runtime, against 3 x 19.7 MFLOP and ~0.3 ms for strong members). Validation accuracy:
            # members 99.54% (30 epochs) against 99.49% (12), their 3-vote 99.62%; 2 strong seeds vote 99.61%.
            defaults={**_BALANCED_RECIPE, "epochs": 30, "members": 3},
        ),
    }
)


# The preset of `digitlab run`/`train` and of the Python API's run/train when none is named: `fast`
# beats the tutorial's `seed` on accuracy AND time (BENCHMARKS.md). (Fine-tuning: the model's own.)
DEFAULT_PRESET = "fast"

# Fine-tuning (`--init MODEL`): the Config values that replace the MODEL's own recipe, before the
# user's options. Architecture, classes, preprocessing and augmentation stay MODEL's (`finetune.py`).
# Chosen on the handwriting-style benchmark (benchmarks/bench_style.py --finetune, BENCHMARKS.md):
FINETUNE_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    # Epochs of at least `min_steps` steps each, so that an epoch means some learning however few the
    # user's images (they get 3 of each batch of 32 with 90% replay: 30 corrections are 10 steps).
    # (10 epochs of 50 steps, 500 in all: blended at the same
    # share (0.65, `Config.forgetting_budget`), a 10-epoch run read 99.2% of a writer's held-out digits
    # against 98.1% after 5 epochs, with MNIST validation at 99.52% against 99.47%; 20 epochs gained
    # nothing more. bench_style.py, one run each.)
    "epochs": 10,
    "min_steps": 50,
    # Small batches: many steps from few images; most of each batch is MNIST (Config.replay).
    "batch_size": 32,
    # Low and constant: the weights are already good, a large step would undo MNIST (forgetting),
    # and a schedule's warm-up or decay would be tuned to a run length that depends on the data.
    "learning_rate": 1e-4,
    "schedule": "constant",
    "warmup": 0.0,
    # The loaded model computes in float32; a short fine-tuning gains nothing from bfloat16.
    "precision": "float32",
    # Outlier exposure (if MODEL was trained with it) keeps its non-digits in view; a few hundred
    # steps need far fewer of them than a full training run (about 10 ms each to draw).
    "outlier_images": 2_000,
})


def describe_presets() -> str:
    """One line per preset, for --help texts and `digitlab presets`."""
    return "\n".join(f"{p.name}: {p.description}" for p in PRESETS.values())
