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


# The strong recipe, shared by `strong` and `ensemble` (whose members are strong models).
_STRONG_RECIPE: Mapping[str, Any] = {
    "epochs": 10, "batch_size": 128, "learning_rate": 3e-3, "schedule": "onecycle", "warmup": 0.2,
    "label_smoothing": 0.1, "shift": 2.0, "rotation": 10.0, "zoom": 0.1,
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
            description="small BN CNN (Conv32 5x5/2-Conv64-Conv64-Dense10), ±1.5 px shifts, OneCycle, batch 256, 5 epochs",
            architecture="fast",
            # batch 256: fewer steps (less per-step overhead on 2 cores) while 5 epochs still give
            # ~940 steps; peak LR 5e-3 with BN; shifts only (rotation/zoom cost accuracy at 5 epochs).
            defaults={"epochs": 5, "batch_size": 256, "learning_rate": 5e-3, "schedule": "onecycle", "warmup": 0.2,
                      "shift": 1.5},
        ),
        "strong": Preset(
            name="strong",
            description="BN CNN 32-32-64-64-Dense128, shifts/rotations/zoom, OneCycle, label smoothing 0.1, 10 epochs",
            architecture="strong",
            defaults=dict(_STRONG_RECIPE),
        ),
        "ensemble": Preset(
            name="ensemble",
            description="N strong models (--members, default 5) with seeds seed..seed+N-1, averaged (soft vote) in one model",
            architecture="strong",
            defaults={**_STRONG_RECIPE, "members": 5},
        ),
    }
)


def describe_presets() -> str:
    """One line per preset, for --help texts and `digitlab presets`."""
    return "\n".join(f"{p.name}: {p.description}" for p in PRESETS.values())
