"""`load_dataset(spec)`: the `Dataset` for a `--data SPEC` (see the package doc for the specs).

Every array set is parsed strictly (magic numbers, shapes, counts, label
range), bounded in memory (`digitlab.data.MAX_DATA_BYTES`, checked before
decompressing or allocating) and, when it is a known set, checked against its
published checksums (`known`); whatever could not be verified says so in
`Dataset.source` and `Dataset.verified`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.classes import DIGITS, check_class_names
from ..errors import DataError
from . import known as known_sets
from .arrays import ArraySet, idx_files, load_archive, load_idx, load_npz, npz_files
from .folder import MAX_FOLDER_IMAGES, Progress, Skipped, load_folder
from .formats import is_zip

UNVERIFIED_PREFIXES = ("idx", "npz")  # "idx:PATH": files of one's own, no identification


@dataclass(frozen=True, eq=False)  # eq=False: arrays make field-wise == ambiguous
class Dataset:
    """Train and test images (uint8 (N, 28, 28), white on black), integer labels, and what they are."""

    x_train: np.ndarray
    y_train: np.ndarray  # uint8 labels, indices into `classes`
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]  # class names in label order: saved with the model
    name: str  # "mnist", "fashion-mnist", "kmnist", "emnist-digits", "images" (a folder), "idx" or "npz"
    source: str  # human-readable and shareable (no local paths): what it is and what was verified
    location: str | None = None  # where it is on this machine (for `digitlab data`)
    verified: bool = False  # every file matched a published checksum
    skipped: tuple[Skipped, ...] = ()  # images of a folder left out, each with its reason
    notes: tuple[str, ...] = ()  # things a user should hear about (skipped images, missing classes, ...)

    def as_keras(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """`((x_train, y_train), (x_test, y_test))`, like `keras.datasets.*.load_data()`."""
        return (self.x_train, self.y_train), (self.x_test, self.y_test)

    def class_counts(self, split: str = "train") -> list[int]:
        """Examples per class in `split` ("train" or "test"), in label order."""
        y = {"train": self.y_train, "test": self.y_test}[split]
        return np.bincount(y, minlength=len(self.classes)).tolist()


@dataclass(frozen=True)
class DataSpec:
    """A parsed `--data` value."""

    kind: str  # "mnist", a known set's name, "unverified" (idx:/npz:), or "auto" (a path to look at)
    path: Path | None  # None: the packaged MNIST, or a known set's cache folder


def parse_spec(spec: str | os.PathLike | None) -> DataSpec:
    """`--data SPEC` -> what to load (see the module doc); nothing is read yet."""
    if spec is None or str(spec).strip() in ("", known_sets.MNIST):
        return DataSpec(known_sets.MNIST, None)
    text = os.fspath(spec)
    if text in known_sets.known_names():
        return DataSpec(text, None)
    name, sep, rest = text.partition(":")
    if sep and rest and (name in known_sets.known_names() or name in UNVERIFIED_PREFIXES):
        return DataSpec("unverified" if name in UNVERIFIED_PREFIXES else name, Path(rest).expanduser())
    return DataSpec("auto", Path(text).expanduser())


def load_dataset(spec: str | os.PathLike | None = None, *, seed: int = 42, download: bool = False,
                 classes: tuple[str, ...] | list[str] | None = None, max_images: int = MAX_FOLDER_IMAGES,
                 max_pixels: int | None = None, progress: Progress | None = None) -> Dataset:
    """Load the data set `spec` names (see the module doc) as a `Dataset`.

    `seed` fixes the 80/20 split of a single image-folder tree (the same
    seed gives the same split, so evaluating a model later sees the same
    test images). `download` fetches MNIST / a known set into the cache.
    `classes`, when given (e.g. the class names of a model being fine-tuned,
    `digits 0-9`), is the label order to use: the data's own class names are
    mapped onto it by name, so a folder with only 4/ and 7/ gets labels 4 and
    7; a name not in it is an error. `max_images` and `max_pixels` bound the
    cost of an image folder; `progress(done, total)` is called per image.

    How a Config records it (phase B): `Config.data` holds the spec as given
    (None = packaged MNIST; `data_dir=DIR` stays as the MNIST-only spelling
    of "mnist:DIR"), and `Config.classes` the resulting `Dataset.classes`
    (a tuple of strings, JSON list in config.json, checked with
    `class_names_problem`; default `DIGITS`), set by the pipeline with
    `config.replace(classes=dataset.classes)` before the config is saved
    beside the model. `Dataset.source` goes to metrics.json and the report as
    `data_source`, like MnistData.source today.
    """
    parsed = parse_spec(spec)
    if download and parsed.path is not None:
        raise DataError(f"--data {spec}: give either files or --download, not both")
    if parsed.kind == known_sets.MNIST:
        dataset = _mnist(parsed.path, download)
    elif parsed.path is None:
        dataset = _known_from_cache(parsed.kind, download)
    else:
        dataset = _from_path(parsed, seed=seed, max_images=max_images, max_pixels=max_pixels, progress=progress)
    if classes is not None:
        return conform(dataset, classes)
    if len(dataset.classes) < 2:
        raise DataError(f"{dataset.location}: one class only ({dataset.classes[0]!r}); a model needs at least 2 "
                        f"(to fine-tune a model on it, pass the model's classes)")
    return dataset


def conform(dataset: Dataset, classes: tuple[str, ...] | list[str]) -> Dataset:
    """`dataset` with its labels renumbered to `classes` (matched by name); a class it has that
    `classes` lacks is an error. The result's classes are `classes`."""
    classes = check_class_names(classes, "the class names to train with")
    if tuple(dataset.classes) == classes:
        return dataset
    position = {name: i for i, name in enumerate(classes)}
    used = set(np.unique(np.concatenate([dataset.y_train, dataset.y_test])).tolist())
    unknown = [dataset.classes[i] for i in sorted(used) if dataset.classes[i] not in position]
    if unknown:
        raise DataError(f"the data has class(es) {', '.join(map(repr, unknown[:10]))} that the model does not know "
                        f"(its classes: {', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''})")
    lookup = np.array([position.get(name, 0) for name in dataset.classes], dtype=np.uint8)
    return Dataset(dataset.x_train, lookup[dataset.y_train], dataset.x_test, lookup[dataset.y_test], classes,
                   dataset.name, dataset.source, dataset.location, dataset.verified, dataset.skipped, dataset.notes)


def _mnist(path: Path | None, download: bool) -> Dataset:
    from .mnist import load_mnist_data

    d = load_mnist_data(path, download=download)
    return Dataset(d.x_train, d.y_train, d.x_test, d.y_test, DIGITS, known_sets.MNIST, d.source, d.location, True)


def _known_from_cache(name: str, download: bool) -> Dataset:
    known = known_sets.get(name)
    folder = known_sets.download(name) if download else known_sets.cache_dir(name)
    if not download and not (folder.is_dir() and any(folder.iterdir())):
        if known.files:
            how = f"run with --download to fetch it ({sum(f.size for f in known.files) / 1e6:.0f} MB)"
        elif known.archive is not None:
            how = f"download {known.archive.name} from {known.archive_url} and give --data {name}:PATH/{known.archive.name}"
        else:
            how = f"give its files with --data {name}:DIR"
        raise DataError(f"{known.title} is not in the cache ({folder}): {how}")
    return _from_path(DataSpec(name, folder), seed=0, max_images=MAX_FOLDER_IMAGES, max_pixels=None, progress=None)


def _from_path(parsed: DataSpec, *, seed: int, max_images: int, max_pixels: int | None,
               progress: Progress | None) -> Dataset:
    path = parsed.path
    assert path is not None
    claim = known_sets.get(parsed.kind) if parsed.kind not in ("auto", "unverified") else None
    unverified = parsed.kind == "unverified"
    if not path.exists():
        names = ", ".join(known_sets.known_names())
        raise DataError(f"--data {path}: no such file or folder (give a folder of images with one sub-folder per "
                        f"class, IDX or npz files, or one of: {names})")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return _from_arrays(load_npz(path, claim=claim, unverified=unverified), path)
        if is_zip(path) and not unverified:
            return _from_arrays(load_archive(path, claim=claim), path)
        raise DataError(f"--data {path}: give the folder that holds the data files (IDX files come as four: train "
                        f"and test images and labels), an .npz file, or EMNIST's gzip.zip")
    if idx_files(path, claim):
        return _from_arrays(load_idx(path, claim=claim, unverified=unverified), path)
    if npz_files(path, claim):
        return _from_arrays(load_npz(path, claim=claim, unverified=unverified), path)
    if claim is not None and claim.archive is not None and (path / claim.archive.name).is_file():
        return _from_arrays(load_archive(path / claim.archive.name, claim=claim), path)
    if claim is not None or unverified:
        what = f"{claim.title}'s files" if claim else "IDX or npz files"
        raise DataError(f"{path}: no {what} here (found: {_shown(path)})")
    f = load_folder(path, seed=seed, max_images=max_images, max_pixels=max_pixels, progress=progress)
    return Dataset(f.arrays["x_train"], f.arrays["y_train"], f.arrays["x_test"], f.arrays["y_test"], f.classes,
                   "images", f.how, str(path), False, tuple(f.skipped), tuple(f.notes))


def _from_arrays(a: ArraySet, path: Path) -> Dataset:
    source = f"{a.title}: {a.how}"
    return Dataset(a.arrays["x_train"], a.arrays["y_train"], a.arrays["x_test"], a.arrays["y_test"], a.classes,
                   a.name, source, str(path), a.verified, (), tuple(a.notes))


def _shown(path: Path) -> str:
    try:
        names = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    except OSError:
        return "nothing readable"
    return (", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")) or "nothing"


