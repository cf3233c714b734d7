"""A folder of labelled images, one sub-folder per class (as Keras' `image_dataset_from_directory`).

Every image goes through the same path as prediction (`preprocess.load_image`
then `preprocess.find_digit`), so a model trains on exactly what it will be
shown later. Images that cannot be read, or hold no ink, are not dropped
silently: each is listed in `skipped` with its reason, and a class left with
no image is an error. Cost is bounded: the images are counted before any is
decoded (at most `max_images`), and each one is held to the pixel and byte
caps of `load_image`.

    DIR/<class>/...                     one tree: a seeded, stratified 80/20 train/test split
    DIR/train/<class>/, DIR/test/<class>/   the split as given

Class names are the sub-folder names, whole numbers in numeric order (see
`classes.class_sort_key`); images may sit in nested folders below their class
folder; names starting with "." (and files that are not images by their
extension) are ignored, the latter counted in a note.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.classes import MAX_CLASSES, SPLIT_NAMES, check_class_names, class_sort_key
from ..errors import DataError, DigitlabError

MAX_FOLDER_IMAGES = 100_000  # decoding and normalising costs ~1-10 ms an image: minutes, not hours
TEST_FRACTION = 0.2  # the tutorial's 80/20 split, applied per class
SPLIT_DIRS = SPLIT_NAMES
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Skipped:
    """An image left out, and why (its path relative to the data folder, with / separators)."""

    path: str
    reason: str


@dataclass
class FolderSet:
    """What the folder gave (internal: `load_dataset` turns it into a Dataset)."""

    arrays: dict[str, np.ndarray]
    classes: tuple[str, ...]
    how: str
    skipped: list[Skipped]
    notes: list[str]


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None


def _image_files(class_dir: Path) -> tuple[list[Path], int]:
    """Image files below `class_dir` (sorted, hidden names skipped, links to folders not followed)
    and how many other files were ignored."""
    from ..preprocess import IMAGE_EXTENSIONS

    images: list[Path] = []
    ignored = 0

    def fail(exc: OSError) -> None:
        raise DataError(f"{exc.filename}: cannot list the folder ({exc.strerror or exc})")

    for root, dirs, files in os.walk(class_dir, onerror=fail):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(Path(root) / name)
            else:
                ignored += 1
    return images, ignored


def class_folders(folder: Path) -> dict[str, Path]:
    """Class name -> its folder, in label order."""
    dirs = sorted(_visible_dirs(folder), key=lambda p: class_sort_key(p.name))
    if not dirs:
        raise DataError(f"{folder}: no class sub-folders; put the images of each class in a folder named after "
                        f"it (DIR/0/*.png, DIR/1/*.png, ...), or give IDX/npz files")
    if len(dirs) > MAX_CLASSES:
        raise DataError(f"{folder}: {len(dirs)} class folders; at most {MAX_CLASSES} classes are supported")
    return {p.name: p for p in dirs}


def _decode(path: Path, max_pixels: int | None) -> np.ndarray | str:
    """uint8 (28, 28) through the prediction path, or why not."""
    from .. import preprocess as pp

    try:
        img = pp.load_image(path, max_pixels=max_pixels or pp.MAX_PIXELS)
        found = pp.find_digit(img)
    except DigitlabError as exc:
        text = str(exc)
        return text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text
    if found is None:
        return "no ink (a blank image)"
    return found[1]


def load_folder(folder: Path, *, seed: int = 42, max_images: int = MAX_FOLDER_IMAGES, max_pixels: int | None = None,
                progress: Progress | None = None) -> FolderSet:
    """Read an image folder (see the module doc) into train/test arrays."""
    subdirs = {p.name for p in _visible_dirs(folder)}
    split_dirs = subdirs & set(SPLIT_DIRS)
    given_split = bool(split_dirs)
    if given_split and subdirs != set(SPLIT_DIRS):
        if len(split_dirs) == 1:
            have = split_dirs.pop()
            problem = f"has {have}/ but no {'test' if have == 'train' else 'train'}/"
        else:
            problem = f"has train/ and test/ beside other folders ({', '.join(sorted(subdirs - split_dirs)[:5])})"
        raise DataError(f"{folder}: {problem}; give train/ and test/ (each with one folder per class) and nothing "
                        f"else, or only the class folders")
    trees = {s: class_folders(folder / s) for s in SPLIT_DIRS} if given_split else {"all": class_folders(folder)}
    # One class is fine here (a folder of corrections of one digit); `load_dataset` asks for 2 unless
    # the classes come from elsewhere (the model being fine-tuned).
    classes = check_class_names(trees["train" if given_split else "all"], f"{folder}: class folder names", minimum=1)
    if given_split:
        extra = [c for c in trees["test"] if c not in trees["train"]]
        if extra:
            raise DataError(f"{folder / 'test'}: class folder(s) {', '.join(extra)} have no counterpart in "
                            f"{folder / 'train'}; a class must have training images")
    # Count first: nothing is decoded when the folder is over the limit.
    files: dict[tuple[str, str], list[Path]] = {}
    ignored = 0
    for part, tree in trees.items():
        for name, path in tree.items():
            found, skipped_files = _image_files(path)
            files[(part, name)] = found
            ignored += skipped_files
    total = sum(len(v) for v in files.values())
    if total > max_images:
        raise DataError(f"{folder}: {total:,} images, more than the limit of {max_images:,}; use a subset "
                        f"(or raise the limit if you mean it: decoding costs about 1-10 ms an image)")
    if total == 0:
        raise DataError(f"{folder}: the class folders hold no images ({', '.join(_extensions())})")
    index = {c: i for i, c in enumerate(classes)}
    images: dict[tuple[str, str], list[np.ndarray]] = {}
    skipped: list[Skipped] = []
    done = 0
    for (part, name), paths in files.items():
        kept: list[np.ndarray] = []
        for path in paths:
            result = _decode(path, max_pixels)
            if isinstance(result, str):
                skipped.append(Skipped(path.relative_to(folder).as_posix(), result))
            else:
                kept.append(result)
            done += 1
            if progress is not None:
                progress(done, total)
        images[(part, name)] = kept
    _check_not_empty(folder, files, images, skipped, given_split)
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    singles = []
    for (part, name), kept in images.items():
        label = index[name]
        if given_split:
            out[part].extend((a, label) for a in kept)
            continue
        order = rng.permutation(len(kept))
        n_test = min(max(round(TEST_FRACTION * len(kept)), 1), len(kept) - 1) if len(kept) >= 2 else 0
        if len(kept) < 2:
            singles.append(name)
        test_ids = set(order[:n_test].tolist())
        for i, a in enumerate(kept):
            out["test" if i in test_ids else "train"].append((a, label))
    arrays = {}
    for part in ("train", "test"):
        # Shuffled (seeded), as Keras' image_dataset_from_directory does: in folder order, `--limit N`
        # would keep the first classes only.
        pairs = [out[part][i] for i in rng.permutation(len(out[part]))]
        arrays[f"x_{part}"] = np.stack([a for a, _ in pairs]) if pairs else np.zeros((0, 28, 28), np.uint8)
        arrays[f"y_{part}"] = np.array([y for _, y in pairs], dtype=np.uint8)
    if len(arrays["x_test"]) == 0:
        raise DataError(f"{folder}: no test images (each class needs at least 2 images for the 80/20 split, "
                        f"or give train/ and test/ folders)")
    notes = _notes(skipped, ignored, singles, given_split, classes, arrays)
    split = "train/ and test/ as given" if given_split else f"a seeded, stratified {100 - round(100 * TEST_FRACTION)}/" \
                                                            f"{round(100 * TEST_FRACTION)} split"
    how = (f"image folder '{folder.name}' ({total - len(skipped):,} images in {len(classes)} classes, {split}, "
           f"preprocessed like predict" + (f"; {len(skipped)} skipped" if skipped else "") + ")")
    return FolderSet(arrays, classes, how, skipped, notes)


def _extensions() -> tuple[str, ...]:
    from ..preprocess import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def _check_not_empty(folder: Path, files: dict[tuple[str, str], list[Path]], images: dict[tuple[str, str], list],
                     skipped: list[Skipped], given_split: bool) -> None:
    """A class (its training part, when the split is given) with no usable image is an error that says why."""
    for (part, name), kept in images.items():
        if kept or (given_split and part == "test"):
            continue
        where = f"{part}/{name}" if given_split else name
        prefix = where + "/"
        reasons = [s for s in skipped if s.path.startswith(prefix)]
        if not files[(part, name)]:
            raise DataError(f"{folder}: class folder {where}/ holds no images ({', '.join(_extensions())})")
        shown = "; ".join(f"{s.path}: {s.reason}" for s in reasons[:3]) + (" ..." if len(reasons) > 3 else "")
        raise DataError(f"{folder}: class {name!r} has no usable image: all {len(reasons)} were skipped ({shown})")


def _notes(skipped: list[Skipped], ignored: int, singles: list[str], given_split: bool, classes: tuple[str, ...],
           arrays: dict[str, np.ndarray]) -> list[str]:
    notes = []
    if skipped:
        blank = sum(s.reason.startswith("no ink") for s in skipped)
        shown = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        notes.append(f"{len(skipped)} image(s) skipped ({blank} without ink, {len(skipped) - blank} unreadable): {shown}")
    if ignored:
        notes.append(f"{ignored} file(s) ignored: not images by their extension")
    if singles:
        notes.append(f"class(es) {', '.join(singles)} have one image only: it is used for training, none for testing")
    if given_split:
        missing = [classes[i] for i in np.setdiff1d(np.arange(len(classes)), np.unique(arrays["y_test"]))]
        if missing:
            notes.append(f"no test images for class(es) {', '.join(missing)}")
    return notes
