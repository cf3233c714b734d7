"""MNIST loading: the packaged copy, a user's directory or npz, or a download.

Every source is verified against the SHA-256 of the original MNIST files
(`FILES`), so a model is never trained or scored on data that merely looks like
MNIST. Problems raise `DataError` with a message that names the file and says
what is wrong. The network is used only when asked (`download=True`) or when
the packaged copy is missing from the installation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

from ..errors import DataError
from . import fetch
from .formats import (
    GZIP_MAGIC,
    IMAGE_SIZE,
    MAX_DATA_BYTES,
    Kind,
    gunzip,
    idx_sha256,
    is_zip,
    npz_array,
    open_npz,
    parse_idx,
    read_bytes,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["FILES", "IMAGE_SIZE", "LABEL_COUNTS", "MAX_DATA_BYTES", "MIRRORS", "SHA256", "SPLIT_SIZES", "MnistData",
           "MnistFile", "default_cache_dir", "download_mnist", "load_mnist", "load_mnist_data", "packaged_dir",
           "parse_idx", "read_idx_file", "split_train_val"]


class MnistFile(NamedTuple):
    """One of the four original MNIST files."""

    name: str  # official name, without ".gz"
    kind: Kind
    split: Literal["train", "test"]
    sha256: str  # of the uncompressed IDX file
    npz_key: str  # its array in a Keras-style mnist.npz


FILES: tuple[MnistFile, ...] = (
    MnistFile("train-images-idx3-ubyte", "images", "train",
              "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", "x_train"),
    MnistFile("train-labels-idx1-ubyte", "labels", "train",
              "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", "y_train"),
    MnistFile("t10k-images-idx3-ubyte", "images", "test",
              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", "x_test"),
    MnistFile("t10k-labels-idx1-ubyte", "labels", "test",
              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", "y_test"),
)
SHA256: Mapping[str, str] = {f.name: f.sha256 for f in FILES}

# Known facts, handy for sanity checks and tests (the sha256 check is the exact one).
SPLIT_SIZES: Mapping[str, int] = {"train": 60000, "test": 10000}
LABEL_COUNTS: Mapping[str, tuple[int, ...]] = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}

# The original yann.lecun.com site now refuses scripted downloads; these two
# are the mirrors torchvision and TensorFlow Datasets rely on.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPZ_NAME = "mnist.npz"
CACHE_ENV = "DIGITLAB_CACHE_DIR"

@dataclass(frozen=True, eq=False)  # eq=False: arrays make field-wise == ambiguous
class MnistData:
    """The four MNIST arrays (uint8) and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # human-readable and shareable (no local paths), e.g. "packaged MNIST copy ..., sha256 verified"
    location: str | None = None  # where the files are on this machine (for `digitlab data`)

    def as_keras(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """`((x_train, y_train), (x_test, y_test))`, like `keras.datasets.mnist.load_data()`."""
        return (self.x_train, self.y_train), (self.x_test, self.y_test)


# --------------------------------------------------------------------------
# The four files


def _checksum_error(name: str, digest: str, expected: str) -> DataError:
    return DataError(f"{name}: checksum mismatch (sha256 {digest}, expected {expected}): "
                     f"the file is corrupt or not the original MNIST file")


def _official(filename: str) -> MnistFile | None:
    base = filename[:-3] if filename.endswith(".gz") else filename
    return next((f for f in FILES if f.name == base), None)


def read_idx_file(path: str | os.PathLike, *, kind: Kind | None = None) -> np.ndarray:
    """Read one IDX file, raw or gzip-compressed.

    Files with an official MNIST name are checked against their SHA-256 (and
    their kind is known); other files need `kind` and are only parsed.
    """
    path = Path(path)
    spec = _official(path.name)
    if spec is None and kind is None:
        raise ValueError(f"{path.name} is not an official MNIST file name: pass kind='images' or 'labels'")
    data = gunzip(read_bytes(path, str(path)), str(path))
    arr = parse_idx(data, str(path), kind=kind or spec.kind)  # type: ignore[union-attr]
    if spec is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise _checksum_error(str(path), digest, spec.sha256)
    return arr


def _check_consistency(arrays: Mapping[str, np.ndarray], labels: Mapping[str, str]) -> None:
    """Image and label counts agree, labels are digits; `labels` maps npz key to display name."""
    for split in ("train", "test"):
        x_key, y_key = f"x_{split}", f"y_{split}"
        x, y = arrays[x_key], arrays[y_key]
        if len(x) != len(y):
            raise DataError(f"{labels[x_key]} holds {len(x)} images but {labels[y_key]} holds {len(y)} labels")
        if y.size and int(y.max()) > 9:
            raise DataError(f"{labels[y_key]}: label file contains values outside 0-9 (found {int(y.max())})")


def _load_idx_files(paths: Mapping[str, Path | Traversable]) -> dict[str, np.ndarray]:
    """Load the four files (keyed by official name); parse all, cross-check, then verify checksums.

    Checksums come last so that a structurally broken file gets the more
    specific message (truncated, wrong magic, ...) rather than just "mismatch".
    """
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    digests: dict[str, str] = {}
    for spec in FILES:
        src = paths[spec.name]
        label = str(src)
        data = gunzip(read_bytes(src, label), label)
        arrays[spec.npz_key] = parse_idx(data, label, kind=spec.kind)
        labels[spec.npz_key] = label
        digests[spec.npz_key] = hashlib.sha256(data).hexdigest()
        del data  # the decompressed training images are 47 MB
    _check_consistency(arrays, labels)
    for spec in FILES:
        if digests[spec.npz_key] != spec.sha256:
            raise _checksum_error(labels[spec.npz_key], digests[spec.npz_key], spec.sha256)
    return arrays


# --------------------------------------------------------------------------
# Keras-style npz


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Load and verify a Keras-style mnist.npz (x_train, y_train, x_test, y_test)."""
    specs = {f.npz_key: f for f in FILES}
    with open_npz(path, "an npz archive with x_train, y_train, x_test, y_test") as npz:
        missing = [k for k in specs if k not in npz.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {', '.join(missing)} "
                            f"(found: {', '.join(npz.files) or 'none'}); expected x_train, y_train, x_test, y_test")
        arrays = {key: npz_array(path, key, f"{path}: {key}", spec.kind, npz) for key, spec in specs.items()}
    _check_consistency(arrays, {k: f"{path}: {k}" for k in specs})
    for key, spec in specs.items():
        n, expected_n = len(arrays[key]), SPLIT_SIZES[spec.split]
        if n != expected_n:
            raise DataError(f"{path}: {key} holds {n} entries; the MNIST {spec.split} set has {expected_n}")
        digest = idx_sha256(arrays[key], spec.kind)
        if digest != spec.sha256:
            raise DataError(f"{path}: {key}: content differs from the original MNIST {spec.name} "
                            f"(sha256 of the equivalent IDX file {digest}, expected {spec.sha256})")
    return arrays


# --------------------------------------------------------------------------
# Locating files


def packaged_dir() -> Traversable:
    """Where the installed package keeps its MNIST copy (may be missing in a trimmed install)."""
    from importlib.resources import files

    return files("digitlab") / "mnist"


def _find_idx(directory: Path | Traversable, name: str) -> Path | Traversable | None:
    # Uncompressed first: it loads faster when a user has both.
    for candidate in (name, name + ".gz"):
        entry = directory / candidate
        if entry.is_file():
            return entry
    return None


def _find_all(directory: Path | Traversable) -> tuple[dict[str, Path | Traversable], list[str]]:
    """Found files by official name, and the names of the missing ones."""
    found: dict[str, Path | Traversable] = {}
    missing: list[str] = []
    for spec in FILES:
        entry = _find_idx(directory, spec.name)
        if entry is None:
            missing.append(spec.name)
        else:
            found[spec.name] = entry
    return found, missing


def _load_data_dir(data_dir: Path) -> tuple[dict[str, np.ndarray], str]:
    if data_dir.is_file():
        if data_dir.suffix == ".npz" or is_zip(data_dir):
            return _load_npz(data_dir), f"{data_dir} (Keras-style npz), verified against the MNIST sha256"
        raise DataError(f"{data_dir}: expected a directory holding the four MNIST IDX files, or an .npz file")
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    found, missing = _find_all(data_dir)
    if not missing:
        return _load_idx_files(found), f"IDX files in {data_dir}, sha256 verified"
    npz = data_dir / NPZ_NAME
    if npz.is_file():
        return _load_npz(npz), f"{npz} (Keras-style npz), verified against the MNIST sha256"
    try:
        present = sorted(p.name for p in data_dir.iterdir() if not p.name.startswith("."))
    except OSError:
        present = []
    shown = ", ".join(present[:12]) + (f" and {len(present) - 12} more" if len(present) > 12 else "")
    raise DataError(f"{data_dir}: missing MNIST file(s) {', '.join(missing)} (raw or .gz), and no {NPZ_NAME}; "
                    f"found: {shown or 'nothing'}")


# --------------------------------------------------------------------------
# Download


def default_cache_dir() -> Path:
    """`$DIGITLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/digitlab/mnist`, else `~/.cache/digitlab/mnist`."""
    own = os.environ.get(CACHE_ENV)
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore empty or relative values.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "digitlab" / "mnist"
    return Path.home() / ".cache" / "digitlab" / "mnist"


def _is_valid(path: Path | Traversable, spec: MnistFile) -> bool:
    try:
        data = gunzip(path.read_bytes(), str(path))
        parse_idx(data, str(path), kind=spec.kind)
    except (OSError, DataError):
        return False
    return hashlib.sha256(data).hexdigest() == spec.sha256


def download_mnist(cache_dir: str | os.PathLike | None = None, *, mirrors: Sequence[str] = MIRRORS,
                   timeout: float = 30) -> Path:
    """Fetch the four MNIST .gz files into `cache_dir` (default: `default_cache_dir()`).

    Files already present and valid are kept; mirrors are tried in order and a
    download lands (atomically) only after its checksum matches. Returns the directory.
    """
    if isinstance(mirrors, str):  # a lone URL would otherwise be iterated per character
        mirrors = (mirrors,)
    if not mirrors:
        raise DataError("cannot download MNIST: no mirrors given")
    directory = fetch.make_dir(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir())
    for spec in FILES:
        existing = _find_idx(directory, spec.name)
        if existing is not None and _is_valid(existing, spec):
            continue

        def check(url: str, raw: bytes, spec: MnistFile = spec) -> None:
            data = gunzip(raw, url)
            parse_idx(data, url, kind=spec.kind)
            digest = hashlib.sha256(data).hexdigest()
            if digest != spec.sha256:
                raise _checksum_error(url, digest, spec.sha256)

        raw = fetch.fetch_verified(spec.name + ".gz", mirrors, check, timeout=timeout, what=spec.name + ".gz")
        # A mirror serving the uncompressed file is fine, but it must not be stored as ".gz".
        fetch.store(directory / (spec.name + ".gz" if raw[:2] == GZIP_MAGIC else spec.name), raw)
    return directory


# --------------------------------------------------------------------------
# Public loaders


def load_mnist_data(data_dir: str | os.PathLike | None = None, *, download: bool = False,
                    cache_dir: str | os.PathLike | None = None, mirrors: Sequence[str] = MIRRORS,
                    timeout: float = 30) -> MnistData:
    """Load verified MNIST.

    Sources: `data_dir` (a directory of IDX files, raw or .gz, or a Keras-style
    mnist.npz, or the npz file itself); else a download into `cache_dir` when
    `download` is true; else the packaged copy. If the packaged copy is missing,
    the cache is used, downloading whatever is not valid there yet. A bad
    `data_dir` is an error, never a reason to fall back to another source.
    """
    if data_dir is not None:
        if download:
            raise DataError("give either a data directory or download=True, not both "
                            "(cache_dir chooses where downloads go)")
        arrays, source = _load_data_dir(Path(data_dir).expanduser())
        return MnistData(**arrays, source=source, location=str(Path(data_dir).expanduser()))
    if not download:
        packaged = packaged_dir()
        found, missing = _find_all(packaged) if packaged.is_dir() else ({}, [f.name for f in FILES])
        if not missing:
            try:
                arrays = _load_idx_files(found)
            except DataError as exc:
                raise DataError(f"the packaged MNIST copy is damaged: {exc} "
                                f"(reinstall digitlab, or use download=True / a data directory)") from None
            return MnistData(**arrays, source="packaged MNIST copy (digitlab/mnist), sha256 verified",
                             location=str(packaged))
    directory = download_mnist(cache_dir, mirrors=mirrors, timeout=timeout)
    found, _ = _find_all(directory)
    arrays = _load_idx_files(found)
    return MnistData(**arrays, source="MNIST download cache (see `digitlab data`), sha256 verified",
                     location=str(directory))


def load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = False,
               cache_dir: str | os.PathLike | None = None
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`((x_train, y_train), (x_test, y_test))` like Keras' `mnist.load_data()`, verified."""
    return load_mnist_data(data_dir, download=download, cache_dir=cache_dir).as_keras()


def split_train_val(x: np.ndarray, y: np.ndarray, *, val_fraction: float = 0.2, seed: int = 42,
                    stratify: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(x_tr, y_tr, x_val, y_val)`, identical to sklearn's `train_test_split`.

    Same as `train_test_split(x, y, test_size=val_fraction, random_state=seed,
    stratify=y if stratify else None)`, only with the outputs reordered.
    """
    from sklearn.model_selection import train_test_split  # keeps `import digitlab.data` light

    try:
        x_tr, x_val, y_tr, y_val = train_test_split(
            x, y, test_size=val_fraction, random_state=seed, stratify=y if stratify else None)
    except ValueError as exc:
        raise DataError(f"cannot split {len(y)} examples into training and validation sets "
                        f"(val_fraction={val_fraction}, stratify={stratify}): {exc}") from None
    return x_tr, y_tr, x_val, y_val
