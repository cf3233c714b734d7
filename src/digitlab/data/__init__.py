"""Data: the packaged MNIST (`mnist`), any `--data SPEC` as a Dataset (`dataset`), and the
generated images training and benchmarks use (`styles`: rendered handwriting styles,
`nondigits`: shapes that are not digits).

Layer: imports `errors`, `files`, `config` and `preprocess`, never models or anything above.

`load_dataset(spec)` for `--data SPEC`:

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

Modules: `mnist` (load_mnist, the packaged files and their checksums), `formats` (IDX and
npz parsing), `fetch` (downloads), `dataset` (Dataset, load_dataset), `known` (the known sets,
their checksums and download), `arrays` (IDX/npz/archive), `folder` (image folders). The names
below are loaded on first use, so `import digitlab.data` stays cheap (no numpy).
"""

from __future__ import annotations

from .. import lazy_exports

_FACADE = {
    **dict.fromkeys(("Dataset", "DataSpec", "load_dataset", "parse_spec", "conform"), "digitlab.data.dataset"),
    **dict.fromkeys(("Skipped", "MAX_FOLDER_IMAGES"), "digitlab.data.folder"),
    **dict.fromkeys(("load_mnist", "load_mnist_data", "MnistData", "split_train_val"), "digitlab.data.mnist"),
    **dict.fromkeys(("DIGITS", "CLASSES_FILE", "MAX_CLASSES", "class_names_problem", "check_class_names",
                     "class_sort_key", "is_digit_classes", "folder_name_problem"), "digitlab.config.classes"),
}
__all__ = sorted(_FACADE)
__getattr__, __dir__ = lazy_exports(__name__, _FACADE)
