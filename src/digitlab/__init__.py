"""digitlab: train, inspect and use handwritten-digit recognizers.

The names most programs need are importable from the package itself:

    from digitlab import Predictor, train, run, load_mnist, make_config

They are loaded on first use, so `import digitlab` stays cheap and never
imports TensorFlow (only training, evaluation and the Keras runtime do).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"


def lazy_exports(package: str, facade: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for a package whose names (name -> module) load on first use.

    Every package facade uses this, so `import digitlab.x` stays cheap: nothing under it is
    imported until one of its names is read.
    """

    def __getattr__(name: str) -> Any:
        try:
            module = facade[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(facade)

    return __getattr__, __dir__


# Module paths of digitlab 0.2 that docs/api.md named, kept importable after the move into
# packages (`import digitlab.inputs` is `digitlab.predict.inputs`); the others moved without one.
MOVED_MODULES = {
    "digitlab.datasets": "digitlab.data",
    "digitlab.inputs": "digitlab.predict.inputs",
    "digitlab.present": "digitlab.predict.present",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old module path with the module at its new place (the same module object)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(name, self) if name in MOVED_MODULES else None

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: Any) -> None:
        pass


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())

# The public facade: name -> the module that defines it.
_FACADE = {
    "Predictor": "digitlab.predict.predictor",
    "predict_to_file": "digitlab.predict.batch",
    "Config": "digitlab.config.settings",
    "make_config": "digitlab.pipeline",
    "load_mnist": "digitlab.data.mnist",
    "load_mnist_data": "digitlab.data.mnist",
    "train": "digitlab.pipeline",
    "run": "digitlab.pipeline",
    "evaluate_run": "digitlab.pipeline",
    "combine_models": "digitlab.combine",
    "export_model": "digitlab.export.exporter",
    "DigitlabError": "digitlab.errors",
}
__all__ = ["__version__", *_FACADE]
__getattr__, _dir = lazy_exports(__name__, _FACADE)


def __dir__() -> list[str]:
    return sorted(__all__)
