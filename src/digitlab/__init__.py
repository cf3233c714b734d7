"""digitlab: train, inspect and use handwritten-digit recognizers.

The names most programs need are importable from the package itself:

    from digitlab import Predictor, train, run, load_mnist, make_config

They are loaded on first use, so `import digitlab` stays cheap and never
imports TensorFlow (only training, evaluation and the Keras runtime do).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> (module, attribute): the public facade, resolved lazily by __getattr__.
_FACADE = {
    "Predictor": ("digitlab.predict", "Predictor"),
    "Config": ("digitlab.config", "Config"),
    "make_config": ("digitlab.config", "make_config"),
    "load_mnist": ("digitlab.data", "load_mnist"),
    "load_mnist_data": ("digitlab.data", "load_mnist_data"),
    "train": ("digitlab.pipeline", "train"),
    "run": ("digitlab.pipeline", "run"),
    "evaluate_run": ("digitlab.pipeline", "evaluate_run"),
    "export_model": ("digitlab.export", "export_model"),
    "DigitlabError": ("digitlab.errors", "DigitlabError"),
}
__all__ = ["__version__", *_FACADE]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _FACADE[name]
    except KeyError:
        raise AttributeError(f"module 'digitlab' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
