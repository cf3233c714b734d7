"""Digit-like data sets digitlab knows by name: their files, checksums, classes and mirrors.

A known set's files are verified against the checksums their publishers (or
the big dataset libraries) publish. Those checksums are of the files as
distributed (.gz, or EMNIST's one archive), so only those forms can be
verified; an unpacked copy is checked for structure and known counts only,
and says so in its `source`. MNIST is not here: `digitlab.data.mnist` verifies it
(against the sums of the uncompressed files) and stays the default.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import DataError
from . import fetch
from . import mnist as mnist_data

Split = Literal["train", "test"]
Kind = Literal["images", "labels"]
ROLES: tuple[tuple[Split, Kind], ...] = (("train", "images"), ("train", "labels"), ("test", "images"), ("test", "labels"))


@dataclass(frozen=True)
class KnownFile:
    """One published file of a known set (a .gz IDX file, or an archive)."""

    name: str  # as published
    sha256: str  # of the file exactly as published (compressed)
    size: int  # bytes, as published
    split: Split | None = None  # None for an archive holding all four
    kind: Kind | None = None


@dataclass(frozen=True)
class KnownSet:
    """A data set known by name: what verifies it and what its labels mean."""

    name: str  # the --data name, e.g. "fashion-mnist"
    title: str  # for people, e.g. "Fashion-MNIST"
    classes: tuple[str, ...]  # in label order
    counts: tuple[int, int]  # (train, test) examples
    files: tuple[KnownFile, ...] = ()  # per-file checksums, when published
    mirrors: tuple[str, ...] = ()  # base URLs for `download`, tried in order
    archive: KnownFile | None = None  # the one published archive, when only that has a checksum
    archive_url: str = ""  # where that archive is published (for the message that says where to get it)
    members: Mapping[tuple[Split, Kind], str] = field(default_factory=dict)  # role -> member of the archive
    file_prefix: str = ""  # how its own files are named in a folder holding several sets
    transposed: bool = False  # images stored column-major (EMNIST): transposed on load
    credit: str = ""

    def file(self, split: Split, kind: Kind) -> KnownFile | None:
        return next((f for f in self.files if f.split == split and f.kind == kind), None)

    def owns(self, filename: str) -> bool:
        """Whether a file of this name may be one of this set's (in a folder that holds several sets)."""
        low = filename.lower()
        published = {n.lower() for f in self.files for n in (f.name, f.name.removesuffix(".gz"))}
        return low in published or bool(self.file_prefix and low.startswith(self.file_prefix))


def _gz(split: Split, kind: Kind, sha256: str, size: int) -> KnownFile:
    stem = {"train": "train", "test": "t10k"}[split]
    return KnownFile(f"{stem}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz", sha256, size, split, kind)


# Checksums and sizes (of the .gz files as published) from TensorFlow Datasets'
# tensorflow_datasets/url_checksums/fashion_mnist.txt; the MD5 sums in Zalando's
# README (github.com/zalandoresearch/fashion-mnist) and torchvision's FashionMNIST
# class agree with these files. Labels: Zalando's README, "Labels" table.
FASHION_MNIST = KnownSet(
    name="fashion-mnist",
    title="Fashion-MNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    counts=(60000, 10000),
    files=(
        _gz("train", "images", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        _gz("train", "labels", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        _gz("test", "images", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        _gz("test", "labels", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    credit="Fashion-MNIST by Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf), MIT license",
)

# Checksums and sizes from TensorFlow Datasets' tensorflow_datasets/url_checksums/kmnist.txt
# (torchvision's KMNIST class pins the MD5 of the same files). Class names: the set's
# kmnist_classmap.csv (index, codepoint, char: 0 U+304A お ... 9 U+3092 を), one hiragana
# per row of the syllabary (github.com/rois-codh/kmnist README).
KMNIST = KnownSet(
    name="kmnist",
    title="Kuzushiji-MNIST",
    classes=("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を"),
    counts=(60000, 10000),
    files=(
        _gz("train", "images", "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", 18165135),
        _gz("train", "labels", "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", 29497),
        _gz("test", "images", "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", 3041136),
        _gz("test", "labels", "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", 5120),
    ),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    file_prefix="kmnist-",  # its NumPy-format files: kmnist-train-imgs.npz, ...
    credit='"KMNIST Dataset" (created by CODH), adapted from "Kuzushiji Dataset" (created by NIJL and others), '
           "doi:10.20676/00000341, CC BY-SA 4.0",
)

# NIST publishes EMNIST as one archive (gzip.zip, all six splits); only the archive has a
# published checksum: sha256 and size from TensorFlow Datasets'
# tensorflow_datasets/url_checksums/emnist.txt (torchvision's EMNIST class pins its MD5,
# 58c8d27c78d21e728a6bc7b3cc06412e). The digits split has 240,000 training and 40,000
# test images (Cohen et al., "EMNIST: an extension of MNIST to handwritten letters", 2017),
# labels 0-9, images stored transposed relative to MNIST.
EMNIST_DIGITS = KnownSet(
    name="emnist-digits",
    title="EMNIST Digits",
    classes=tuple("0123456789"),
    counts=(240000, 40000),
    archive=KnownFile("gzip.zip", "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e", 561753746),
    archive_url="https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip",
    members={
        ("train", "images"): "gzip/emnist-digits-train-images-idx3-ubyte.gz",
        ("train", "labels"): "gzip/emnist-digits-train-labels-idx1-ubyte.gz",
        ("test", "images"): "gzip/emnist-digits-test-images-idx3-ubyte.gz",
        ("test", "labels"): "gzip/emnist-digits-test-labels-idx1-ubyte.gz",
    },
    file_prefix="emnist-digits-",
    transposed=True,
    credit="EMNIST by Gregory Cohen, Saeed Afshar, Jonathan Tapson and Andre van Schaik (NIST Special Database 19)",
)

# name -> set; looked up at call time, so a test can add an entry for its own fixture files.
KNOWN_SETS: dict[str, KnownSet] = {s.name: s for s in (FASHION_MNIST, KMNIST, EMNIST_DIGITS)}
MNIST = "mnist"  # the default set, verified by digitlab.data.mnist


def known_names() -> tuple[str, ...]:
    return (MNIST, *KNOWN_SETS)


def get(name: str) -> KnownSet:
    try:
        return KNOWN_SETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(known_names())}") from None


def identify_file(sha256: str) -> tuple[KnownSet, KnownFile] | None:
    """The known set and file whose published checksum is `sha256`, if any."""
    for known in KNOWN_SETS.values():
        for f in known.files:
            if f.sha256 == sha256:
                return known, f
    return None


def identify_archive(size: int) -> KnownSet | None:
    """The known set whose published archive has this size (the checksum decides after)."""
    return next((k for k in KNOWN_SETS.values() if k.archive is not None and k.archive.size == size), None)


def sha256_stream(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file read in chunks (EMNIST's archive is 562 MB: never whole in memory)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return h.hexdigest()


# --------------------------------------------------------------------------- download


def cache_dir(name: str) -> Path:
    """Where `download` puts a known set: beside the MNIST cache (`digitlab.data.default_cache_dir`).

    $DIGITLAB_CACHE_DIR (MNIST's own folder) gets one sub-folder per set; otherwise
    the sets sit side by side: ~/.cache/digitlab/mnist, ~/.cache/digitlab/fashion-mnist, ...
    """
    base = mnist_data.default_cache_dir()
    return base / name if os.environ.get(mnist_data.CACHE_ENV) else base.parent / name


def download(name: str, directory: str | os.PathLike | None = None, *, mirrors: tuple[str, ...] | None = None,
             timeout: float = 30) -> Path:
    """Fetch the published files of known set `name` into `directory` (default `cache_dir(name)`).

    Files already there with the right checksum are kept; a download lands
    (atomically) only after its checksum matches. Returns the directory.
    """
    known = get(name)
    if not known.files and known.archive is not None:
        raise DataError(f"{known.title} is published as one {known.archive.size / 1e6:.0f} MB archive "
                        f"({known.archive_url or known.archive.name}); digitlab does not download it: fetch it "
                        f"yourself and give --data {known.name}:PATH/{known.archive.name}")
    if not known.files or not (mirrors or known.mirrors):
        raise DataError(f"{known.title} has no download mirrors; give its files with --data {known.name}:DIR")
    target = fetch.make_dir(Path(directory).expanduser() if directory is not None else cache_dir(name))
    for f in known.files:
        path = target / f.name
        if path.is_file() and path.stat().st_size == f.size and sha256_stream(path) == f.sha256:
            continue

        def check(url: str, raw: bytes, f: KnownFile = f) -> None:
            digest = hashlib.sha256(raw).hexdigest()
            if digest != f.sha256:
                raise DataError(f"{url}: checksum mismatch (sha256 {digest}, expected {f.sha256})")

        raw = fetch.fetch_verified(f.name, mirrors or known.mirrors, check, timeout=timeout,
                                   what=f"{f.name} of {known.title}")
        fetch.store(path, raw)
    return target
