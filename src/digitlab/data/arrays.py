"""Digit-like sets stored as arrays: IDX files (raw or .gz), NumPy .npz files, EMNIST's archive.

All are parsed strictly by `digitlab.data` (magic numbers, dimensions, byte
counts; gzip bombs and oversized npz headers refused before anything is
decompressed or allocated), then cross-checked (image and label counts agree,
labels within the class list) and, for a known set, verified against its
published checksums (see `known`). What could and could not be verified is
said in the result's `how`, which ends up in the data set's `source`.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config.classes import CLASSES_FILE, DIGITS, MAX_CLASSES, check_class_names, read_classes_file
from ..errors import DataError
from . import formats
from . import known as known_sets
from . import mnist as mnist_data
from .known import ROLES, Kind, KnownSet, Split

KEYS: dict[tuple[Split, Kind], str] = {("train", "images"): "x_train", ("train", "labels"): "y_train",
                                       ("test", "images"): "x_test", ("test", "labels"): "y_test"}
# MNIST's official file names; Fashion-MNIST and KMNIST publish their files under the same names.
STANDARD_NAMES = frozenset(n for f in mnist_data.FILES for n in (f.name, f.name + ".gz"))
_MNIST_SHA = {(f.split, f.kind): f.sha256 for f in mnist_data.FILES}
_IDX_NAME = re.compile(r"idx[0-9]|\.idx(\.gz)?$")


@dataclass
class ArraySet:
    """Four arrays and what they are (internal: `load_dataset` turns it into a Dataset)."""

    arrays: dict[str, np.ndarray]  # x_train, y_train, x_test, y_test
    name: str  # "mnist", a known set's name, or "idx" / "npz" for a set of one's own
    title: str
    classes: tuple[str, ...]
    verified: bool
    how: str  # what was checked, for `source`
    notes: list[str] = field(default_factory=list)


@dataclass
class _Parsed:
    array: np.ndarray
    label: str  # the file, for messages
    gz: bool
    file_sha: str  # of the file's bytes as stored (compressed when gz)
    plain_sha: str  # of the uncompressed IDX bytes


# --------------------------------------------------------------------------- finding the files


def role_of(filename: str) -> tuple[Split, Kind] | None:
    """(split, kind) from a file name: train/t10k/test and images/imgs/idx3 or labels/idx1."""
    low = filename.lower()
    split: Split | None = "test" if ("t10k" in low or "test" in low) else "train" if "train" in low else None
    kind: Kind | None = ("images" if ("idx3" in low or "image" in low or "imgs" in low)
                         else "labels" if ("idx1" in low or "label" in low) else None)
    return None if split is None or kind is None else (split, kind)


def _listing(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if not p.name.startswith(".") and p.is_file())
    except OSError as exc:
        raise DataError(f"{directory}: cannot list the folder ({exc.strerror or exc})") from None


def idx_files(directory: Path, claim: KnownSet | None = None) -> list[Path]:
    """IDX files in `directory` (only `claim`'s own, when a set is named)."""
    return [p for p in _listing(directory)
            if _IDX_NAME.search(p.name.lower()) and (claim is None or claim.owns(p.name))]


def npz_files(directory: Path, claim: KnownSet | None = None) -> list[Path]:
    return [p for p in _listing(directory) if p.suffix.lower() == ".npz" and (claim is None or claim.owns(p.name))]


def _by_role(directory: Path, files: list[Path], what: str) -> dict[tuple[Split, Kind], Path]:
    """One file per role; a raw file and its .gz twin count as one (the .gz is the verifiable form)."""
    found: dict[tuple[Split, Kind], list[Path]] = {}
    for p in files:
        role = role_of(p.name)
        if role is not None:
            found.setdefault(role, []).append(p)
    out: dict[tuple[Split, Kind], Path] = {}
    for role, paths in found.items():
        stems = {p.name.lower().removesuffix(".gz") for p in paths}
        if len(paths) == 2 and len(stems) == 1:
            paths = [p for p in paths if p.name.lower().endswith(".gz")]
        if len(paths) > 1:
            raise DataError(f"{directory}: several {what} files for the {role[0]} {role[1]}: "
                            f"{', '.join(p.name for p in paths)}; keep one, or name the set "
                            f"(e.g. --data emnist-digits:DIR picks its own files)")
        out[role] = paths[0]
    missing = [f"{s} {k}" for s, k in ROLES if (s, k) not in out]
    if missing:
        shown = ", ".join(p.name for p in files) or "none"
        raise DataError(f"{directory}: no {what} file for the {', '.join(missing)} (found: {shown}); a data set needs "
                        f"four files: train images, train labels, test (or t10k) images, test labels")
    return out


# --------------------------------------------------------------------------- parsing


def _parse_idx_bytes(raw: bytes, label: str, kind: Kind) -> _Parsed:
    gz = raw[:2] == formats.GZIP_MAGIC
    file_sha = hashlib.sha256(raw).hexdigest()
    plain = formats.gunzip(raw, label)
    array = formats.parse_idx(plain, label, kind=kind)
    plain_sha = hashlib.sha256(plain).hexdigest() if gz else file_sha
    return _Parsed(array, label, gz, file_sha, plain_sha)


def _read_idx(path: Path, kind: Kind) -> _Parsed:
    return _parse_idx_bytes(formats.read_bytes(path, str(path)), str(path), kind)


def _read_npz_file(path: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """A Keras-style npz: x_train, y_train, x_test, y_test, and optionally `classes` (strings)."""
    with formats.open_npz(path) as npz:
        missing = [k for k in KEYS.values() if k not in npz.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {', '.join(missing)} (found: {', '.join(npz.files) or 'none'}); "
                            f"expected x_train, y_train, x_test, y_test (and optionally classes)")
        arrays = {key: formats.npz_array(path, key, f"{path}: {key}", role[1], npz) for role, key in KEYS.items()}
        classes = None
        if "classes" in npz.files:
            formats.check_npy_header(path, "classes", f"{path}: classes")
            names = npz["classes"]
            if names.dtype.kind != "U" or names.ndim != 1:
                raise DataError(f"{path}: classes must be a 1-D array of strings (got {names.dtype}, shape {names.shape})")
            classes = check_class_names((str(n) for n in names), f"{path}: classes")
    return arrays, classes


def _read_npz_roles(directory: Path, paths: dict[tuple[Split, Kind], Path]) -> dict[str, np.ndarray]:
    """Four single-array npz files (KMNIST's NumPy format: kmnist-train-imgs.npz holds arr_0)."""
    arrays = {}
    for role, path in paths.items():
        with formats.open_npz(path) as npz:
            if len(npz.files) != 1:
                raise DataError(f"{path}: holds {len(npz.files)} arrays ({', '.join(npz.files)}); expected one "
                                f"(the {role[0]} {role[1]})")
            arrays[KEYS[role]] = formats.npz_array(path, npz.files[0], str(path), role[1], npz)
    return arrays


# --------------------------------------------------------------------------- checks and identification


def _check_pairs(arrays: dict[str, np.ndarray], labels: dict[str, str]) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DataError(f"{labels[f'x_{split}']} holds {len(x):,} images but {labels[f'y_{split}']} "
                            f"holds {len(y):,} labels")
        if len(x) == 0:
            raise DataError(f"{labels[f'x_{split}']}: holds no images")


def _check_labels(arrays: dict[str, np.ndarray], classes: tuple[str, ...], where: str, labels: dict[str, str]) -> None:
    for key in ("y_train", "y_test"):
        top = int(arrays[key].max())
        if top >= len(classes):
            raise DataError(f"{labels[key]}: label {top} is outside the {len(classes)} classes of {where} "
                            f"(labels must be 0-{len(classes) - 1})")


def _known_result(known: KnownSet, arrays: dict[str, np.ndarray], labels: dict[str, str], *,
                  verified: bool, how: str, notes: list[str] | None = None) -> ArraySet:
    """A known set's arrays after its structural checks (counts, label range) and orientation."""
    for split, expected in zip(("train", "test"), known.counts, strict=True):
        n = len(arrays[f"x_{split}"])
        if n != expected:
            raise DataError(f"{labels[f'x_{split}']}: holds {n:,} images; the {known.title} {split} set has {expected:,}")
    _check_labels(arrays, known.classes, known.title, labels)
    if known.transposed:
        for key in ("x_train", "x_test"):
            arrays[key] = np.ascontiguousarray(arrays[key].transpose(0, 2, 1))
    return ArraySet(arrays, known.name, known.title, known.classes, verified, how, list(notes or []))


def _own_result(arrays: dict[str, np.ndarray], labels: dict[str, str], folder: Path, name: str, what: str,
                classes: tuple[str, ...] | None, transposed: bool) -> ArraySet:
    """A set of one's own: classes from the data, classes.txt, or 0..N-1."""
    notes: list[str] = []
    classes_file = folder / CLASSES_FILE
    if classes is None and classes_file.is_file():
        classes = read_classes_file(classes_file)
        notes.append(f"class names from {CLASSES_FILE}")
    elif classes is None:
        n = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
        if n > MAX_CLASSES:
            raise DataError(f"{labels['y_train']}: labels go up to {n - 1}; at most {MAX_CLASSES} classes are supported")
        classes = DIGITS if n <= 10 else tuple(str(i) for i in range(n))
        notes.append(f"class names 0-{len(classes) - 1} (no {CLASSES_FILE} beside the files)")
    _check_labels(arrays, classes, "this data set", labels)
    absent = [classes[i] for i in np.setdiff1d(np.arange(len(classes)), np.unique(arrays["y_train"]))]
    if absent:
        notes.append(f"no training examples for class(es) {', '.join(absent[:10])}" + (" ..." if len(absent) > 10 else ""))
    if transposed:
        for key in ("x_train", "x_test"):
            arrays[key] = np.ascontiguousarray(arrays[key].transpose(0, 2, 1))
        notes.append("images transposed (EMNIST files store them column by column)")
    how = f"{what}, structure checked; a data set of your own, so no checksum to verify"
    return ArraySet(arrays, name, f"own data '{folder.name or name}'", classes, False, how, notes)


def _describe(known_file: tuple[KnownSet, known_sets.KnownFile] | None, mnist_role: tuple[Split, Kind] | None) -> str:
    if known_file is not None:
        k, f = known_file
        return f"{k.title}'s {f.split} {f.kind}"
    if mnist_role is not None:
        return f"MNIST's {mnist_role[0]} {mnist_role[1]}"
    return "no known set's file"


def load_idx(directory: Path, *, claim: KnownSet | None = None, unverified: bool = False) -> ArraySet:
    """The four IDX files in `directory`, verified when they are a known set's published files."""
    paths = _by_role(directory, idx_files(directory, claim), "IDX")
    parsed = {role: _read_idx(path, role[1]) for role, path in paths.items()}
    arrays = {KEYS[role]: p.array for role, p in parsed.items()}
    labels = {KEYS[role]: p.label for role, p in parsed.items()}
    _check_pairs(arrays, labels)
    names = [p.name for p in paths.values()]
    gz = all(p.gz for p in parsed.values())
    fmt = f"4 IDX files{' (.gz)' if gz else ''}"
    transposed = all(n.lower().startswith("emnist-") for n in names)
    if unverified:
        return _own_result(arrays, labels, directory, "idx", fmt, None, transposed)
    if claim is not None:
        return _claimed(claim, parsed, arrays, labels, fmt)
    # Identify by content: a file's published checksum says which set and which file it is.
    ids = {role: known_sets.identify_file(p.file_sha) if p.gz else None for role, p in parsed.items()}
    mnist = {role: role if p.plain_sha == _MNIST_SHA[role] else None for role, p in parsed.items()}
    if all(mnist.values()):
        return ArraySet(arrays, "mnist", "MNIST", DIGITS, True, f"{fmt}, sha256 verified against the MNIST checksums")
    owners = {v[0].name: v[0] for v in ids.values() if v is not None}
    if len(owners) == 1 and not any(mnist.values()) and all(
            v is None or (v[1].split, v[1].kind) == role for role, v in ids.items()):
        # Files of one known set in their right roles: the others must be its too (a damaged one fails here).
        return _claimed(next(iter(owners.values())), parsed, arrays, labels, fmt)
    if not owners and any(mnist.values()):
        role = next(r for r in ROLES if mnist[r] is None)
        raise DataError(f"{parsed[role].label}: checksum mismatch (sha256 {parsed[role].plain_sha} of the IDX data, "
                        f"expected {_MNIST_SHA[role]}): the other files are MNIST's, this one is corrupt or not "
                        f"the original MNIST file")
    if any(ids.values()) or any(mnist.values()):
        detail = "; ".join(f"{Path(parsed[r].label).name} is {_describe(ids[r], mnist[r])}" for r in ROLES)
        raise DataError(f"{directory}: the four files are not one set's train images, train labels, test images "
                        f"and test labels: {detail}")
    if all(n.lower() in STANDARD_NAMES for n in names):
        raise DataError(
            f"{directory}: the files carry the standard MNIST file names but match none of the published checksums "
            f"({', '.join(('MNIST', *(k.title for k in known_sets.KNOWN_SETS.values() if k.files)))}): damaged, "
            f"or unpacked (only the .gz files as published can be verified)? Name the set to load an unpacked "
            f"copy with structure checks (--data fashion-mnist:DIR), or use --data idx:DIR for files of your own")
    for k in known_sets.KNOWN_SETS.values():
        if k.file_prefix and all(n.lower().startswith(k.file_prefix) for n in names):
            return _claimed(k, parsed, arrays, labels, fmt)
    return _own_result(arrays, labels, directory, "idx", fmt, None, transposed)


def _claimed(claim: KnownSet, parsed: dict[tuple[Split, Kind], _Parsed], arrays: dict[str, np.ndarray],
             labels: dict[str, str], fmt: str) -> ArraySet:
    """Files said to be `claim`: every published checksum that applies must match."""
    unverifiable = []
    for role, p in parsed.items():
        f = claim.file(*role)
        if f is None or not p.gz:
            unverifiable.append(Path(p.label).name)
        elif p.file_sha != f.sha256:
            raise DataError(f"{p.label}: checksum mismatch (sha256 {p.file_sha}, expected {f.sha256}): not the "
                            f"published {claim.title} {f.name} (corrupt, or another set)")
    if not unverifiable:
        return _known_result(claim, arrays, labels, verified=True,
                             how=f"{fmt}, sha256 verified against the published {claim.title} checksums")
    why = ("checksums are published only for the files as distributed (.gz)" if claim.files
           else f"a checksum is published only for the whole {claim.archive.name if claim.archive else 'archive'}")
    return _known_result(claim, arrays, labels, verified=False,
                         how=f"{fmt}, structure and counts checked; NOT checksum-verified ({why})",
                         notes=[f"not checksum-verified: {', '.join(unverifiable)}"])


def load_npz(path: Path, *, claim: KnownSet | None = None, unverified: bool = False) -> ArraySet:
    """A Keras-style .npz (one file, four arrays) or four single-array .npz files in a folder."""
    classes = None
    if path.is_file():
        arrays, classes = _read_npz_file(path)
        labels = {k: f"{path}: {k}" for k in KEYS.values()}
        folder, names, fmt = path.parent, [path.name], "an npz file"
    else:
        candidates = npz_files(path, claim)
        keras_style = []
        for p in candidates:
            try:
                with zipfile.ZipFile(p) as z:
                    members = set(z.namelist())
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"{p}: not a readable npz archive ({exc})") from None
            if {k + ".npy" for k in KEYS.values()} <= members:
                keras_style.append(p)
        if len(keras_style) > 1:
            raise DataError(f"{path}: several npz files with x_train, y_train, x_test, y_test: "
                            f"{', '.join(p.name for p in keras_style)}; give one of them")
        if keras_style:
            return load_npz(keras_style[0], claim=claim, unverified=unverified)
        roles = _by_role(path, candidates, "npz")
        arrays = _read_npz_roles(path, roles)
        labels = {KEYS[r]: str(p) for r, p in roles.items()}
        folder, names, fmt = path, [p.name for p in roles.values()], "4 npz files"
    _check_pairs(arrays, labels)
    if unverified:
        return _own_result(arrays, labels, folder, "npz", fmt, classes, False)
    if all(formats.idx_sha256(arrays[KEYS[r]], r[1]) == _MNIST_SHA[r] for r in ROLES):
        return ArraySet(arrays, "mnist", "MNIST", DIGITS, True,
                        f"{fmt}, verified against the MNIST checksums (of the equivalent IDX files)")
    if claim is None:
        claim = next((k for k in known_sets.KNOWN_SETS.values()
                      if k.file_prefix and all(n.lower().startswith(k.file_prefix) for n in names)), None)
    if claim is not None:
        return _known_result(claim, arrays, labels, verified=False,
                             how=f"{fmt}, structure and counts checked; NOT checksum-verified (no checksums are "
                                 f"published for {claim.title} in NumPy format)")
    return _own_result(arrays, labels, folder, "npz", fmt, classes, False)


def load_archive(path: Path, *, claim: KnownSet | None = None) -> ArraySet:
    """A known set's published archive (EMNIST's gzip.zip): its checksum verified, its members read."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    known = claim if claim is not None else known_sets.identify_archive(size)
    if known is None or known.archive is None:
        names = [k.archive.name for k in known_sets.KNOWN_SETS.values() if k.archive]
        raise DataError(f"{path}: a .zip archive that is no known set's ({', '.join(names) or 'none known'}); unpack it "
                        f"and give the folder with the IDX or npz files")
    digest = known_sets.sha256_stream(path) if size == known.archive.size else None
    if digest != known.archive.sha256:
        found = f"sha256 {digest}" if digest else f"{size:,} bytes"
        raise DataError(f"{path}: checksum mismatch ({found}, expected sha256 {known.archive.sha256} and "
                        f"{known.archive.size:,} bytes): not the published {known.title} archive {known.archive.name}")
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for role, member in known.members.items():
                label = f"{path}: {member}"
                try:
                    info = archive.getinfo(member)
                except KeyError:
                    raise DataError(f"{path}: has no member {member}") from None
                if info.file_size > formats.MAX_DATA_BYTES:
                    raise DataError(f"{label}: {info.file_size:,} bytes, more than the "
                                    f"{formats.MAX_DATA_BYTES:,}-byte limit for a digit data set")
                arrays[KEYS[role]] = _parse_idx_bytes(archive.read(member), label, role[1]).array
                labels[KEYS[role]] = label
    except (OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot read the archive ({exc})") from None
    _check_pairs(arrays, labels)
    return _known_result(known, arrays, labels, verified=True,
                         how=f"the published {known.archive.name}, sha256 verified; its {known.name} files read")
