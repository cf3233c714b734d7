"""Tests for digitlab.data: parsing, verification, sources, download, splitting.

No test touches the internet: downloads go to a local HTTP server, and an
autouse guard fails any request to another host.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import struct
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from digitlab.data import mnist as data
from digitlab.errors import DataError

NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
# Written out here rather than taken from data.LABEL_COUNTS, so a wrong constant fails.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """Refuse any non-loopback request, and keep default caches out of $HOME."""
    real = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        full = url.full_url if isinstance(url, urllib.request.Request) else url
        host = urllib.parse.urlsplit(full).hostname
        assert host in ("127.0.0.1", "localhost"), f"test tried to reach {full}"
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def mnist() -> data.MnistData:
    return data.load_mnist_data()


@pytest.fixture(scope="module")
def pkg_dir() -> Path:
    return Path(str(data.packaged_dir()))


@pytest.fixture(scope="module")
def raw(pkg_dir) -> dict[str, bytes]:
    """Uncompressed official IDX bytes by name."""
    return {n: gzip.decompress((pkg_dir / f"{n}.gz").read_bytes()) for n in NAMES}


def copy_gz(pkg_dir: Path, dest: Path, names=NAMES) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(pkg_dir / f"{n}.gz", dest / f"{n}.gz")
    return dest


def assert_same(loaded: data.MnistData, ref: data.MnistData) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(loaded, key), getattr(ref, key)
        assert a.dtype == np.uint8 and a.shape == b.shape
        assert np.array_equal(a, b), key


def idx(kind: str, n: int, rows: int = 28, cols: int = 28, *, magic: int | None = None) -> bytes:
    if kind == "images":
        header = struct.pack(">IIII", 2051 if magic is None else magic, n, rows, cols)
        return header + bytes(range(256)) * (n * rows * cols // 256) + bytes(n * rows * cols % 256)
    return struct.pack(">II", 2049 if magic is None else magic, n) + bytes(i % 10 for i in range(n))


def flip_middle(blob: bytes, count: int = 16) -> bytes:
    mid = len(blob) // 2
    return blob[:mid] + bytes(b ^ 0xFF for b in blob[mid:mid + count]) + blob[mid + count:]


# --------------------------------------------------------------------------
# Packaged copy


def test_packaged_load(mnist):
    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.y_train.shape == (60000,)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_test.shape == (10000,)
    for arr in (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test):
        assert arr.dtype == np.uint8
        assert arr.flags.writeable and arr.flags.owndata
    assert mnist.x_train.min() == 0 and mnist.x_train.max() == 255
    assert mnist.x_test.min() == 0 and mnist.x_test.max() == 255
    assert np.bincount(mnist.y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.y_test, minlength=10).tolist() == TEST_COUNTS
    assert "packaged" in mnist.source and "sha256 verified" in mnist.source


def test_load_mnist_keras_style(mnist):
    (x_tr, y_tr), (x_te, y_te) = data.load_mnist()
    assert np.array_equal(x_tr, mnist.x_train) and np.array_equal(y_te, mnist.y_test)
    assert y_tr.shape == (60000,) and x_te.shape == (10000, 28, 28)


def test_constants_agree_with_packaged_sha256sums(pkg_dir):
    lines = (pkg_dir / "SHA256SUMS.uncompressed").read_text().split("\n")
    sums = {name: digest for digest, name in (line.split() for line in lines if line.strip())}
    assert sums == dict(data.SHA256)
    assert [f.name for f in data.FILES] == NAMES
    assert {f.name: f.sha256 for f in data.FILES} == sums
    assert list(data.LABEL_COUNTS["train"]) == TRAIN_COUNTS and list(data.LABEL_COUNTS["test"]) == TEST_COUNTS


# --------------------------------------------------------------------------
# parse_idx


def test_parse_idx_valid_small():
    images = data.parse_idx(idx("images", 3), "x", kind="images")
    labels = data.parse_idx(idx("labels", 3), "y", kind="labels")
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8 and images.flags.writeable
    assert images[0, 0, :5].tolist() == [0, 1, 2, 3, 4]
    assert labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "blob, kind, message",
    [
        (idx("images", 2, magic=1234), "images",
         "f.gz: wrong magic number 1234 (expected 2051 for an IDX image file)"),
        (idx("labels", 2, magic=0x01020801), "labels", "f.gz: wrong magic number 16910337 (expected 2049"),
        (idx("labels", 2), "images", "f.gz: wrong magic number 2049 (expected 2051 for an IDX image file); "
                                     "it looks like a label file"),
        (idx("images", 2, magic=0x0D03), "images", "f.gz: unsupported data type byte 0x0d (float32)"),
        (idx("images", 2)[:-1], "images", "f.gz: truncated: expected 1568 bytes of pixel data, found 1567"),
        (idx("labels", 5)[:-2], "labels", "f.gz: truncated: expected 5 bytes of label data, found 3"),
        (idx("images", 2) + b"\0\0\0", "images", "f.gz: 3 trailing bytes after the 1568 bytes of pixel data"),
        (idx("images", 2, 32, 32), "images", "f.gz: images are 32x32 pixels, expected 28x28"),
        (idx("images", 2)[:10], "images", "f.gz: truncated header: expected 16 bytes, found 10"),
        (b"\x00\x00", "labels", "f.gz: file is too short"),
        (gzip.compress(idx("labels", 2)), "labels", "the data is still gzip-compressed"),
    ],
)
def test_parse_idx_rejects(blob, kind, message):
    with pytest.raises(DataError) as err:
        data.parse_idx(blob, "f.gz", kind=kind)
    assert str(err.value).startswith("f.gz: ")
    assert message in str(err.value)


# --------------------------------------------------------------------------
# Reading single files


def test_read_idx_file_raw_gz_and_gzip_without_extension(tmp_path, pkg_dir, mnist):
    name = "t10k-labels-idx1-ubyte"
    gz = pkg_dir / f"{name}.gz"
    assert np.array_equal(data.read_idx_file(gz), mnist.y_test)
    # gzip detected by its magic bytes, not the extension
    disguised = tmp_path / name
    disguised.write_bytes(gz.read_bytes())
    assert np.array_equal(data.read_idx_file(disguised), mnist.y_test)
    other = tmp_path / "mine.idx"
    other.write_bytes(idx("labels", 4))
    assert data.read_idx_file(other, kind="labels").tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("damage", ["flip", "truncate", "truncate-header"])
def test_corrupt_gzip_rejected(tmp_path, pkg_dir, damage):
    name = "train-labels-idx1-ubyte.gz"
    blob = (pkg_dir / name).read_bytes()
    blob = {"flip": flip_middle(blob), "truncate": blob[: len(blob) // 2], "truncate-header": blob[:6]}[damage]
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(DataError) as err:
        data.read_idx_file(path)
    assert str(err.value).startswith(str(path) + ": corrupt or truncated gzip data")


def test_corrupt_gzip_in_data_dir_names_file(tmp_path, pkg_dir):
    d = copy_gz(pkg_dir, tmp_path / "d")
    target = d / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(flip_middle(target.read_bytes()))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        data.load_mnist_data(d)


def test_checksum_mismatch_one_pixel(tmp_path, pkg_dir, raw):
    d = copy_gz(pkg_dir, tmp_path / "d", NAMES[:2] + NAMES[3:])
    blob = bytearray(raw["t10k-images-idx3-ubyte"])
    blob[16 + 28 * 14 + 14] ^= 0x01  # one pixel of the first test image
    (d / "t10k-images-idx3-ubyte").write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        data.load_mnist_data(d)
    msg = str(err.value)
    assert msg.startswith(str(d / "t10k-images-idx3-ubyte") + ": checksum mismatch (sha256 ")
    assert "expected 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7" in msg
    assert "not the original MNIST file" in msg
    # the single-file reader verifies official names too
    with pytest.raises(DataError, match="checksum mismatch"):
        data.read_idx_file(d / "t10k-images-idx3-ubyte")


def test_label_out_of_range_and_count_mismatch(tmp_path, pkg_dir, raw):
    d = copy_gz(pkg_dir, tmp_path / "d", NAMES[:3])
    labels = bytearray(raw["t10k-labels-idx1-ubyte"])
    labels[8 + 5] = 12
    (d / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label file contains values outside 0-9"):
        data.load_mnist_data(d)
    short = struct.pack(">II", 2049, 9999) + raw["t10k-labels-idx1-ubyte"][8:-1]
    (d / "t10k-labels-idx1-ubyte").write_bytes(short)
    with pytest.raises(DataError, match=r"holds 10000 images but .*t10k-labels-idx1-ubyte holds 9999 labels"):
        data.load_mnist_data(d)


# --------------------------------------------------------------------------
# data_dir sources


def test_data_dir_gz(tmp_path, pkg_dir, mnist):
    d = copy_gz(pkg_dir, tmp_path / "gz")
    loaded = data.load_mnist_data(d)
    assert_same(loaded, mnist)
    assert str(d) in loaded.source and "sha256 verified" in loaded.source


def test_data_dir_raw(tmp_path, raw, mnist):
    d = tmp_path / "raw"
    d.mkdir()
    for n in NAMES:
        (d / n).write_bytes(raw[n])
    assert_same(data.load_mnist_data(str(d)), mnist)


def test_data_dir_missing_files_listed(tmp_path, pkg_dir):
    d = copy_gz(pkg_dir, tmp_path / "d", ["train-labels-idx1-ubyte"])
    (d / "notes.txt").write_text("hi")
    with pytest.raises(DataError) as err:
        data.load_mnist_data(d)
    msg = str(err.value)
    assert "missing MNIST file(s) train-images-idx3-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in msg
    assert "found: notes.txt, train-labels-idx1-ubyte.gz" in msg


def test_bad_data_dir_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_mnist_data(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found: nothing"):
        data.load_mnist_data(tmp_path / "empty")
    with pytest.raises(DataError, match="not both"):
        data.load_mnist_data(tmp_path, download=True)


def test_npz_keras_style(tmp_path, mnist):
    d = tmp_path / "npz"
    d.mkdir()
    npz = d / "mnist.npz"
    np.savez_compressed(npz, x_train=mnist.x_train, y_train=mnist.y_train,
                        x_test=mnist.x_test, y_test=mnist.y_test)
    from_dir = data.load_mnist_data(d)
    assert_same(from_dir, mnist)
    assert "npz" in from_dir.source
    assert_same(data.load_mnist_data(npz), mnist)


def test_npz_other_integer_dtype_accepted(tmp_path, mnist):
    npz = tmp_path / "wide.npz"
    np.savez(npz, x_train=mnist.x_train, y_train=mnist.y_train.astype(np.int64),
             x_test=mnist.x_test, y_test=mnist.y_test.astype(np.int32))
    loaded = data.load_mnist_data(npz)
    assert loaded.y_train.dtype == np.uint8
    assert_same(loaded, mnist)


def test_npz_tampered_label_rejected(tmp_path, mnist):
    y = mnist.y_train.copy()
    y[0] = (y[0] + 1) % 10
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=mnist.x_train, y_train=y, x_test=mnist.x_test, y_test=mnist.y_test)
    with pytest.raises(DataError) as err:
        data.load_mnist_data(npz)
    assert str(err.value).startswith(f"{npz}: y_train: content differs from the original MNIST "
                                     "train-labels-idx1-ubyte")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((2, 28, 28), np.uint8)}, "missing key(s) y_train, x_test, y_test"),
        ({"x_train": np.zeros((2, 28, 27), np.uint8), "y_train": np.zeros(2, np.uint8),
          "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.zeros(2, np.uint8)},
         "x_train: shape (2, 28, 27), expected (N, 28, 28)"),
        ({"x_train": np.full((2, 28, 28), 0.5), "y_train": np.zeros(2, np.uint8),
          "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.zeros(2, np.uint8)},
         "x_train: dtype float64 with values that are not integers in 0-255"),
        ({"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.zeros(3, np.uint8),
          "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.zeros(2, np.uint8)},
         "x_train holds 2 images but"),
        ({"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.array([1, 10], np.uint8),
          "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.zeros(2, np.uint8)},
         "y_train: label file contains values outside 0-9"),
        ({"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.zeros(2, np.uint8),
          "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.zeros(2, np.uint8)},
         "x_train holds 2 entries; the MNIST train set has 60000"),
    ],
)
def test_npz_invalid(tmp_path, arrays, message):
    npz = tmp_path / "bad.npz"
    np.savez(npz, **arrays)
    with pytest.raises(DataError) as err:
        data.load_mnist_data(npz)
    assert str(err.value).startswith(str(npz))
    assert message in str(err.value)


def test_npz_not_a_zip(tmp_path):
    npz = tmp_path / "mnist.npz"
    npz.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable npz archive"):
        data.load_mnist_data(npz)


# --------------------------------------------------------------------------
# split_train_val


def test_split_matches_sklearn_subset(mnist):
    from sklearn.model_selection import train_test_split

    x, y = mnist.x_train[:3000], mnist.y_train[:3000]
    x_tr, y_tr, x_val, y_val = data.split_train_val(x, y, val_fraction=0.2, seed=42)
    ex_tr, ex_val, ey_tr, ey_val = train_test_split(x, y, test_size=0.2, random_state=42)
    for got, want in ((x_tr, ex_tr), (y_tr, ey_tr), (x_val, ex_val), (y_val, ey_val)):
        assert np.array_equal(got, want)
    assert len(y_tr) == 2400 and len(y_val) == 600
    other = data.split_train_val(x, y, seed=7)
    assert not np.array_equal(other[1], y_tr)


def test_split_matches_sklearn_full_size(mnist):
    from sklearn.model_selection import train_test_split

    x_tr, y_tr, x_val, y_val = data.split_train_val(mnist.x_train, mnist.y_train)
    assert x_tr.shape == (48000, 28, 28) and y_tr.shape == (48000,)
    assert x_val.shape == (12000, 28, 28) and y_val.shape == (12000,)
    ex_tr, ex_val, ey_tr, ey_val = train_test_split(mnist.x_train, mnist.y_train, test_size=0.2, random_state=42)
    for got, want in ((x_tr, ex_tr), (y_tr, ey_tr), (x_val, ex_val), (y_val, ey_val)):
        assert np.array_equal(got, want)


def test_split_stratify(mnist):
    from sklearn.model_selection import train_test_split

    x, y = mnist.x_train[:5000], mnist.y_train[:5000]
    x_tr, y_tr, x_val, y_val = data.split_train_val(x, y, val_fraction=0.2, seed=42, stratify=True)
    _, ex_val, _, ey_val = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)
    assert np.array_equal(y_val, ey_val) and np.array_equal(x_val, ex_val)
    assert len(y_tr) == 4000 and len(y_val) == 1000
    # per-class proportions preserved to within one example
    want = np.bincount(y, minlength=10) * 0.2
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - want) <= 1)


def test_split_impossible_stratify_is_data_error():
    x = np.zeros((20, 28, 28), np.uint8)
    y = np.array([0] * 19 + [1], np.uint8)
    with pytest.raises(DataError, match="cannot split 20 examples"):
        data.split_train_val(x, y, stratify=True)


# --------------------------------------------------------------------------
# Download (local HTTP server only)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def mirror_server(tmp_path_factory, pkg_dir):
    """Serve good/, flipped/ (corrupt gzip), swapped/ (valid but wrong files) and empty/ (404s)."""
    root = tmp_path_factory.mktemp("mirrors")
    good = copy_gz(pkg_dir, root / "good")
    (root / "empty").mkdir()
    (root / "flipped").mkdir()
    (root / "swapped").mkdir()
    for n in NAMES:
        blob = (good / f"{n}.gz").read_bytes()
        (root / "flipped" / f"{n}.gz").write_bytes(flip_middle(blob))
        partner = n.replace("train", "TMP").replace("t10k", "train").replace("TMP", "t10k")
        shutil.copyfile(good / f"{partner}.gz", root / "swapped" / f"{n}.gz")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {k: f"{base}/{k}/" for k in ("good", "empty", "flipped", "swapped")} | {"root": root}
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_from_local_mirror(tmp_path, mirror_server):
    cache = tmp_path / "cache"
    got = data.download_mnist(cache, mirrors=[mirror_server["good"]], timeout=10)
    assert got == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    for n in NAMES:
        assert (cache / f"{n}.gz").read_bytes() == (mirror_server["root"] / "good" / f"{n}.gz").read_bytes()
    # valid files are kept: a second call needs no working mirror
    assert data.download_mnist(cache, mirrors=[mirror_server["empty"]], timeout=10) == cache


def test_download_replaces_invalid_cached_file(tmp_path, mirror_server, pkg_dir):
    cache = copy_gz(pkg_dir, tmp_path / "cache", NAMES[:3])
    bad = cache / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"junk")
    data.download_mnist(cache, mirrors=[mirror_server["good"]], timeout=10)
    assert bad.read_bytes() == (pkg_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_download_skips_bad_mirrors(tmp_path, mirror_server):
    cache = tmp_path / "cache"
    mirrors = [mirror_server["empty"], mirror_server["flipped"], mirror_server["swapped"],
               mirror_server["good"].rstrip("/")]  # a mirror without the trailing slash works too
    data.download_mnist(cache, mirrors=mirrors, timeout=10)
    for n in NAMES:
        assert (cache / f"{n}.gz").read_bytes() == (mirror_server["root"] / "good" / f"{n}.gz").read_bytes()
    assert len(list(cache.iterdir())) == 4


def test_download_all_mirrors_bad(tmp_path, mirror_server):
    cache = tmp_path / "cache"
    mirrors = [mirror_server["empty"], mirror_server["flipped"], mirror_server["swapped"]]
    with pytest.raises(DataError) as err:
        data.download_mnist(cache, mirrors=mirrors, timeout=10)
    msg = str(err.value)
    assert "could not download train-images-idx3-ubyte.gz from any of 3 mirror(s)" in msg
    assert f"{mirror_server['empty']}train-images-idx3-ubyte.gz: HTTP 404" in msg
    assert f"{mirror_server['flipped']}train-images-idx3-ubyte.gz: corrupt or truncated gzip" in msg
    assert f"{mirror_server['swapped']}train-images-idx3-ubyte.gz: checksum mismatch" in msg
    assert list(cache.iterdir()) == []  # nothing bad, partial or temporary left behind


def test_download_unreachable_mirror(tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=rf"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz: "):
        data.download_mnist(tmp_path / "c", mirrors=[f"http://127.0.0.1:{port}/"], timeout=5)
    with pytest.raises(DataError, match="no mirrors given"):
        data.download_mnist(tmp_path / "c", mirrors=[])


def test_load_with_download(tmp_path, mirror_server, mnist):
    cache = tmp_path / "cache"
    loaded = data.load_mnist_data(download=True, cache_dir=cache, mirrors=[mirror_server["good"]])
    assert_same(loaded, mnist)
    assert loaded.location == str(cache) and "download cache" in loaded.source and str(cache) not in loaded.source


def test_packaged_absent_uses_cache_then_downloads(tmp_path, monkeypatch, mirror_server, mnist, pkg_dir):
    monkeypatch.setattr(data, "packaged_dir", lambda: tmp_path / "not-installed")
    # cache already valid: no request is made (the only mirror given 404s)
    cache = copy_gz(pkg_dir, tmp_path / "cache")
    loaded = data.load_mnist_data(cache_dir=cache, mirrors=[mirror_server["empty"]])
    assert_same(loaded, mnist)
    assert "download cache" in loaded.source
    # empty cache: downloaded
    fresh = tmp_path / "fresh"
    assert_same(data.load_mnist_data(cache_dir=fresh, mirrors=[mirror_server["good"]]), mnist)
    assert len(list(fresh.iterdir())) == 4


def test_damaged_packaged_copy_is_an_error_not_a_download(tmp_path, monkeypatch, pkg_dir, mirror_server):
    fake = copy_gz(pkg_dir, tmp_path / "pkg")
    labels = fake / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-20])
    monkeypatch.setattr(data, "packaged_dir", lambda: fake)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="packaged MNIST copy is damaged: .*t10k-labels-idx1-ubyte.gz"):
        data.load_mnist_data(cache_dir=cache, mirrors=[mirror_server["good"]])
    assert not cache.exists()


# --------------------------------------------------------------------------
# default_cache_dir


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("DIGITLAB_CACHE_DIR")
    assert data.default_cache_dir() == tmp_path / "xdg" / "digitlab" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "digitlab" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "digitlab" / "mnist"


def test_download_uses_default_cache_dir(monkeypatch, tmp_path, mirror_server):
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "env-cache"))
    assert data.download_mnist(mirrors=[mirror_server["good"]]) == tmp_path / "env-cache"
    assert len(list((tmp_path / "env-cache").iterdir())) == 4


# --------------------------------------------------------------------------- bounded cost on hostile files


def _idx_header(n: int) -> bytes:
    return struct.pack(">IIII", 2051, n, 28, 28)


def test_gzip_bomb_is_rejected_from_its_header_without_decompressing(tmp_path):
    import tracemalloc

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    # Declares a billion images (784 GB); the body is 50 MB of zeros (~50 KB compressed).
    bomb.write_bytes(gzip.compress(_idx_header(10**9) + bytes(50_000_000), compresslevel=9))
    tracemalloc.start()
    with pytest.raises(DataError, match="declares 784,000,000,016 bytes.*not decompressed"):
        data.read_idx_file(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000, peak


def test_gzip_with_far_more_data_than_its_header_declares_stops_early(tmp_path):
    import tracemalloc

    bomb = tmp_path / "t10k-images-idx3-ubyte.gz"
    # A plausible header (1,000 images = 784 KB) followed by 200 MB of zeros.
    bomb.write_bytes(gzip.compress(_idx_header(1000) + bytes(200_000_000), compresslevel=9))
    tracemalloc.start()
    with pytest.raises(DataError, match="trailing bytes"):
        data.read_idx_file(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000_000, peak  # the 784 KB it declares, not the 200 MB it holds


def test_npz_declaring_a_huge_shape_is_rejected_before_allocating(tmp_path):
    import zipfile

    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, shape in (("x_train", (10**12, 28, 28)), ("y_train", (60000,)), ("x_test", (10000, 28, 28)),
                           ("y_test", (10000,))):
            with archive.open(key + ".npy", "w") as fh:
                np.lib.format.write_array_header_2_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
                fh.write(b"\0" * 64)
    with pytest.raises(DataError, match=r"x_train: declares shape \(1000000000000, 28, 28\)"):
        data.load_mnist_data(path)


def test_raw_file_larger_than_any_digit_set_is_not_read(tmp_path):
    big = tmp_path / "train-images-idx3-ubyte"
    with open(big, "wb") as fh:  # sparse: takes no disk space
        fh.truncate(data.MAX_DATA_BYTES + 1)
    with pytest.raises(DataError, match="more than the 1,073,741,824-byte limit"):
        data.read_idx_file(big)
