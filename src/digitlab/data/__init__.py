"""Training data beyond MNIST: `load_dataset(spec)` for `--data SPEC`.

    spec                      what it loads
    None, "mnist"             the packaged MNIST, sha256 verified (the default; download=True: the MNIST cache)
    "mnist:DIR"               MNIST from DIR (IDX files or mnist.npz), verified (`digitlab.data`)
    "fashion-mnist", "kmnist", "emnist-digits"
                              a known set from its cache folder (`known.cache_dir`); download=True fetches
                              Fashion-MNIST / KMNIST (EMNIST is one 562 MB archive: give its path)
    "NAME:PATH"               known set NAME from PATH: its .gz files, npz files or (EMNIST) gzip.zip;
                              every published checksum that applies must match
    "idx:PATH", "npz:PATH"    IDX / npz files of one's own: structure checks only, no identification
    "PATH"                    a folder of images with one sub-folder per class (see `folder`), or IDX/npz
                              files (identified by their checksums when they are a known set's), or a
                              Keras-style .npz, or EMNIST's gzip.zip

Modules: `core` (Dataset, load_dataset), `classes` (class-name rules; light, for config.py),
`known` (the known sets, their checksums and download), `arrays` (IDX/npz/archive), `folder`
(image folders). The names below are loaded on first use, so `import digitlab.datasets.classes`
stays cheap (no numpy).
"""

from __future__ import annotations

import importlib
from typing import Any

_FACADE = {
    "Dataset": "core", "DataSpec": "core", "load_dataset": "core", "parse_spec": "core", "conform": "core",
    "Skipped": "folder", "MAX_FOLDER_IMAGES": "folder",
    "DIGITS": "classes", "CLASSES_FILE": "classes", "MAX_CLASSES": "classes",
    "class_names_problem": "classes", "check_class_names": "classes", "class_sort_key": "classes",
    "is_digit_classes": "classes", "folder_name_problem": "classes",
}
__all__ = sorted(_FACADE)


def __getattr__(name: str) -> Any:
    try:
        module = _FACADE[name]
    except KeyError:
        raise AttributeError(f"module 'digitlab.datasets' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
