"""Data sets beyond MNIST (`digitlab.datasets`): every source, every check, every rejection.

Fixtures are made here: small IDX/npz files from MNIST *test* digits, a checksum-table
entry for them (so verification is exercised without the real Fashion-MNIST files), an
EMNIST-style archive, and image folders of user-style pictures. Nothing needs the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digitlab import data as datasets
from digitlab import preprocess as pp
from digitlab.config.classes import class_names_problem, class_sort_key, read_classes_file
from digitlab.data import DIGITS, Dataset, known, load_dataset, parse_spec
from digitlab.data import mnist as mnist_data
from digitlab.errors import DataError

N_TRAIN, N_TEST = 50, 20


# --------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    magic = magic if magic is not None else (2051 if arr.ndim == 3 else 2049)
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@pytest.fixture(scope="module")
def digits(mnist):
    """Small train/test arrays taken from the MNIST *test* set: 5 and 2 of each digit, shuffled."""
    rng = np.random.default_rng(0)
    train = rng.permutation(np.concatenate([np.flatnonzero(mnist.y_test == c)[:5] for c in range(10)]))
    test = rng.permutation(np.concatenate([np.flatnonzero(mnist.y_test == c)[5:7] for c in range(10)]))
    return {"x_train": mnist.x_test[train], "y_train": mnist.y_test[train],
            "x_test": mnist.x_test[test], "y_test": mnist.y_test[test]}


STANDARD = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
            "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
ROLE = {"x_train": ("train", "images"), "y_train": ("train", "labels"), "x_test": ("test", "images"),
        "y_test": ("test", "labels")}


def write_idx_set(folder: Path, arrays: dict, names: dict | None = None, compress: bool = True) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, name in (names or STANDARD).items():
        raw = idx_bytes(arrays[key])
        path = folder / (name + (".gz" if compress else ""))
        path.write_bytes(gz(raw) if compress else raw)
        out[key] = path
    return out


def register_set(monkeypatch, name: str, files: dict[str, Path], *, classes=tuple("abcdefghij"), counts=(N_TRAIN, N_TEST),
                 mirrors=(), file_prefix="") -> known.KnownSet:
    """A checksum-table entry for fixture files, as the real table has for Fashion-MNIST."""
    entries = tuple(known.KnownFile(p.name, hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, *ROLE[k])
                    for k, p in files.items())
    ks = known.KnownSet(name=name, title=name.title(), classes=classes, counts=counts, files=entries,
                        mirrors=mirrors, file_prefix=file_prefix)
    monkeypatch.setitem(known.KNOWN_SETS, name, ks)
    return ks


@pytest.fixture
def fixture_set(tmp_path, monkeypatch, digits):
    """IDX .gz files under the standard names, with their checksums registered as set 'testset'."""
    files = write_idx_set(tmp_path / "published", digits)
    ks = register_set(monkeypatch, "testset", files)
    return tmp_path / "published", ks


def user_png(digit28: np.ndarray, size: int = 96, fmt: str = "PNG") -> bytes:
    """An MNIST digit as a person would photograph it: dark ink on white paper, enlarged."""
    from PIL import Image

    img = Image.fromarray(255 - np.asarray(digit28, dtype=np.uint8)).resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.convert("RGB" if fmt == "JPEG" else "L").save(buf, fmt)
    return buf.getvalue()


def blank_png(size: int = 64) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (size, size), 255).save(buf, "PNG")
    return buf.getvalue()


def make_folder(root: Path, x: np.ndarray, y: np.ndarray, names=DIGITS, start: int = 0) -> list[Path]:
    paths = []
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        path = root / names[int(label)] / f"img{start + i:04d}.{'jpg' if i % 5 == 0 else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(user_png(img, fmt="JPEG" if i % 5 == 0 else "PNG"))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- MNIST stays the default and verified


def test_default_and_mnist_spec_are_the_verified_packaged_mnist(mnist):
    for spec in (None, "", "mnist"):
        d = load_dataset(spec)
        assert d.name == "mnist" and d.verified and d.classes == DIGITS
        assert np.array_equal(d.x_train, mnist.x_train) and np.array_equal(d.y_test, mnist.y_test)
        assert "sha256 verified" in d.source
    assert d.class_counts("test") == list(mnist_data.LABEL_COUNTS["test"])


def test_mnist_files_in_a_folder_are_recognised_by_their_checksums(tmp_path, mnist):
    d = load_dataset(str(mnist_data.packaged_dir()))
    assert d.name == "mnist" and d.verified and "sha256 verified against the MNIST checksums" in d.source
    # mnist:DIR goes through digitlab.data, which refuses a damaged MNIST file by name.
    bad = tmp_path / "mnist"
    bad.mkdir()
    for f in mnist_data.FILES:
        (bad / (f.name + ".gz")).write_bytes((Path(str(mnist_data.packaged_dir())) / (f.name + ".gz")).read_bytes())
    raw = bytearray(gzip.decompress((bad / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(bytes(raw)))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset(f"mnist:{bad}")


def test_a_damaged_mnist_file_among_mnist_files_is_named(tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    packaged = Path(str(mnist_data.packaged_dir()))
    for f in mnist_data.FILES:
        (folder / f"my-{f.name}").write_bytes(gzip.decompress((packaged / (f.name + ".gz")).read_bytes()))
    assert load_dataset(folder).name == "mnist"  # recognised by content, whatever the names
    raw = bytearray((folder / "my-train-labels-idx1-ubyte").read_bytes())
    raw[-1] = (raw[-1] + 1) % 10
    (folder / "my-train-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="my-train-labels-idx1-ubyte: checksum mismatch.*the other files are MNIST's"):
        load_dataset(folder)


def test_mnist_as_a_keras_npz_is_verified(tmp_path, mnist):
    path = tmp_path / "copy.npz"
    np.savez(path, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    d = load_dataset(path)
    assert d.name == "mnist" and d.verified and d.classes == DIGITS


@pytest.mark.parametrize("spec, kind, path", [
    (None, "mnist", None), ("mnist", "mnist", None), ("fashion-mnist", "fashion-mnist", None),
    ("kmnist:/data/k", "kmnist", "/data/k"), ("idx:/data/own", "unverified", "/data/own"),
    ("npz:own.npz", "unverified", "own.npz"), ("my_digits/", "auto", "my_digits"),
    ("C:/data", "auto", "C:/data"), ("emnist-digits:gzip.zip", "emnist-digits", "gzip.zip"),
])
def test_parse_spec(spec, kind, path):
    parsed = parse_spec(spec)
    assert parsed.kind == kind
    assert (parsed.path is None) if path is None else parsed.path == Path(path)


def test_unknown_path_lists_what_data_can_be():
    with pytest.raises(DataError, match="no such file or folder.*fashion-mnist, kmnist, emnist-digits"):
        load_dataset("/no/such/folder")


# --------------------------------------------------------------------------- the checksum table


def test_known_table_entries_are_well_formed():
    for ks in known.KNOWN_SETS.values():
        assert datasets.class_names_problem(ks.classes) is None and len(ks.classes) == 10
        digests = [f.sha256 for f in ks.files] + ([ks.archive.sha256] if ks.archive else [])
        assert digests and all(len(d) == 64 and int(d, 16) >= 0 for d in digests)
        assert (len(ks.files) == 4 and {(f.split, f.kind) for f in ks.files} == set(known.ROLES)) or ks.archive
    all_digests = [f.sha256 for ks in known.KNOWN_SETS.values() for f in ks.files]
    assert len(set(all_digests)) == len(all_digests)
    assert known.FASHION_MNIST.classes[0] == "T-shirt/top" and known.KMNIST.classes[0] == "お"
    assert known.EMNIST_DIGITS.transposed and known.EMNIST_DIGITS.counts == (240000, 40000)


def test_a_known_set_is_identified_by_its_published_checksums(fixture_set, digits):
    folder, ks = fixture_set
    d = load_dataset(folder)
    assert d.name == "testset" and d.verified and d.classes == ks.classes
    assert "sha256 verified against the published Testset checksums" in d.source
    assert str(folder.parent) not in d.source  # shareable: no local paths
    assert d.location == str(folder)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(d, key), digits[key])
    named = load_dataset(f"testset:{folder}")
    assert named.verified and np.array_equal(named.x_test, digits["x_test"])


def test_a_damaged_known_file_is_refused(fixture_set, digits):
    folder, ks = fixture_set
    x = digits["x_train"].copy()
    x[3, 10, 10] ^= 0xFF
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gz(idx_bytes(x)))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: checksum mismatch \(sha256 [0-9a-f]{64}, "
                                        r"expected [0-9a-f]{64}\): not the published Testset"):
        load_dataset(f"testset:{folder}")
    # Unnamed: the other three files say which set this is, so the damaged one is named the same way.
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: checksum mismatch.*not the published Testset"):
        load_dataset(folder)
    # ... unless the user says they are their own.
    own = load_dataset(f"idx:{folder}")
    assert own.name == "idx" and not own.verified and own.classes == DIGITS
    assert "no checksum to verify" in own.source


def test_an_unpacked_copy_of_a_known_set_loads_unverified_only_when_named(tmp_path, fixture_set, digits):
    _, ks = fixture_set
    raw = tmp_path / "raw"
    write_idx_set(raw, digits, compress=False)
    with pytest.raises(DataError, match="standard MNIST file names"):
        load_dataset(raw)
    d = load_dataset(f"testset:{raw}")
    assert d.name == "testset" and not d.verified and d.classes == ks.classes
    assert "NOT checksum-verified" in d.source and "published only for the files as distributed" in d.source
    assert any("not checksum-verified" in n for n in d.notes)


def test_files_of_two_sets_do_not_make_one(tmp_path, monkeypatch, digits):
    a = write_idx_set(tmp_path / "a", digits)
    other = {k: (v[::-1].copy()) for k, v in digits.items()}
    b = write_idx_set(tmp_path / "b", other)
    register_set(monkeypatch, "seta", a)
    register_set(monkeypatch, "setb", b)
    (tmp_path / "a" / "t10k-labels-idx1-ubyte.gz").write_bytes(b["y_test"].read_bytes())
    with pytest.raises(DataError, match="not one set's.*t10k-labels-idx1-ubyte.gz is Setb's test labels"):
        load_dataset(tmp_path / "a")


def test_a_known_set_with_the_wrong_counts_is_refused(tmp_path, monkeypatch, digits):
    files = write_idx_set(tmp_path / "s", digits, compress=False)
    register_set(monkeypatch, "countset", {k: p for k, p in files.items()}, counts=(N_TRAIN + 1, N_TEST))
    with pytest.raises(DataError, match=f"holds {N_TRAIN} images; the Countset train set has {N_TRAIN + 1}"):
        load_dataset(f"countset:{tmp_path / 's'}")


def test_emnist_digits_files_are_transposed_and_count_checked(tmp_path, digits):
    names = {k: "emnist-digits-" + v.replace("t10k", "test") for k, v in STANDARD.items()}
    write_idx_set(tmp_path / "emnist", digits, names)
    with pytest.raises(DataError, match="the EMNIST Digits train set has 240,000"):
        load_dataset(tmp_path / "emnist")  # recognised by name; counts are its structure check


# --------------------------------------------------------------------------- download (a file:// mirror)


def test_download_into_the_cache_then_load_by_name(tmp_path, monkeypatch, digits):
    mirror = tmp_path / "mirror"
    files = write_idx_set(mirror, digits)
    register_set(monkeypatch, "dlset", files, mirrors=(mirror.as_uri() + "/",))
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"Dlset is not in the cache .*run with --download"):
        load_dataset("dlset")
    d = load_dataset("dlset", download=True)
    assert d.verified and (tmp_path / "cache" / "dlset" / "train-images-idx3-ubyte.gz").is_file()
    assert np.array_equal(load_dataset("dlset").y_train, digits["y_train"])  # now offline, from the cache
    with pytest.raises(DataError, match="either files or --download"):
        load_dataset(f"dlset:{mirror}", download=True)


def test_download_refuses_a_mirror_serving_other_bytes(tmp_path, monkeypatch, digits):
    mirror = tmp_path / "mirror"
    files = write_idx_set(mirror, digits)
    register_set(monkeypatch, "dlset", files, mirrors=(mirror.as_uri(),))
    files["y_test"].write_bytes(gz(idx_bytes(digits["y_test"][::-1])))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        known.download("dlset", tmp_path / "cache")
    assert not (tmp_path / "cache" / "t10k-labels-idx1-ubyte.gz").exists()


def test_emnist_is_not_downloaded_but_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"one 562 MB archive \(https://www.itl.nist.gov/.*gzip.zip\)"):
        load_dataset("emnist-digits", download=True)
    with pytest.raises(DataError, match="not in the cache.*--data emnist-digits:PATH/gzip.zip"):
        load_dataset("emnist-digits")


# --------------------------------------------------------------------------- EMNIST-style archive


def make_archive(path: Path, arrays: dict, extra: dict | None = None) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for key, name in STANDARD.items():
            member = "gzip/emnist-digits-" + name.replace("t10k", "test") + ".gz"
            z.writestr(member, gz(idx_bytes(arrays[key])))
        for member, content in (extra or {}).items():
            z.writestr(member, content)


@pytest.fixture
def archive_set(tmp_path, monkeypatch, digits):
    path = tmp_path / "gzip.zip"
    # Stored transposed, as EMNIST stores its images.
    make_archive(path, {**digits, "x_train": digits["x_train"].transpose(0, 2, 1),
                        "x_test": digits["x_test"].transpose(0, 2, 1)}, {"gzip/emnist-letters-mapping.txt": "1 65 97\n"})
    ks = known.KnownSet(name="archiveset", title="Archive Set", classes=DIGITS, counts=(N_TRAIN, N_TEST),
                        archive=known.KnownFile("gzip.zip", hashlib.sha256(path.read_bytes()).hexdigest(),
                                                path.stat().st_size),
                        members=known.EMNIST_DIGITS.members, file_prefix="emnist-digits-", transposed=True)
    monkeypatch.setitem(known.KNOWN_SETS, "archiveset", ks)
    return path


def test_a_published_archive_is_verified_and_read(archive_set, digits):
    for spec in (archive_set, f"archiveset:{archive_set}", f"archiveset:{archive_set.parent}"):
        d = load_dataset(spec)
        assert d.name == "archiveset" and d.verified and "gzip.zip, sha256 verified" in d.source
        assert np.array_equal(d.x_train, digits["x_train"])  # transposed back
        assert np.array_equal(d.y_test, digits["y_test"])


def test_a_damaged_archive_is_refused(archive_set):
    raw = bytearray(archive_set.read_bytes())
    raw[200] ^= 0x01  # same size, other bytes
    archive_set.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum mismatch.*not the published Archive Set archive gzip.zip"):
        load_dataset(archive_set)
    other = archive_set.with_name("other.zip")
    other.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(DataError, match="a .zip archive that is no known set's"):
        load_dataset(other)


# --------------------------------------------------------------------------- files of one's own


def test_own_idx_files_get_digit_or_numbered_class_names(tmp_path, digits):
    names = {k: "mine-" + v for k, v in STANDARD.items()}
    write_idx_set(tmp_path / "own", digits, names, compress=False)
    d = load_dataset(tmp_path / "own")
    assert d.name == "idx" and not d.verified and d.classes == DIGITS
    assert d.source.startswith("own data 'own': 4 IDX files, structure checked")
    assert any("no classes.txt" in n for n in d.notes)
    many = {**digits, "y_train": digits["y_train"].copy()}
    many["y_train"][0] = 11
    write_idx_set(tmp_path / "twelve", many, names)
    d12 = load_dataset(tmp_path / "twelve")
    assert d12.classes == tuple(str(i) for i in range(12))
    assert any("no training examples for class(es) 10" in n for n in d12.notes)


def test_own_idx_files_take_class_names_from_classes_txt(tmp_path, digits):
    names = {k: "mine-" + v for k, v in STANDARD.items()}
    write_idx_set(tmp_path / "own", digits, names)
    (tmp_path / "own" / "classes.txt").write_text("\ufeff" + "\n".join(f"class {c}" for c in "ABCDEFGHIJ") + "\n",
                                                  encoding="utf-8")
    d = load_dataset(tmp_path / "own")
    assert d.classes[0] == "class A" and len(d.classes) == 10
    (tmp_path / "own" / "classes.txt").write_text("zero\none\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"label \d is outside the 2 classes of this data set \(labels must be 0-1\)"):
        load_dataset(tmp_path / "own")


def test_emnist_named_own_files_are_transposed(tmp_path, digits):
    names = {k: "emnist-letters-" + v.replace("t10k", "test") for k, v in STANDARD.items()}
    stored = {**digits, "x_train": digits["x_train"].transpose(0, 2, 1), "x_test": digits["x_test"].transpose(0, 2, 1)}
    write_idx_set(tmp_path / "letters", stored, names)
    d = load_dataset(tmp_path / "letters")
    assert np.array_equal(d.x_train, digits["x_train"])
    assert any("transposed" in n for n in d.notes)


def test_a_folder_with_several_sets_needs_the_set_named(tmp_path, digits):
    folder = tmp_path / "gzip"
    for split in ("digits", "letters"):
        write_idx_set(folder, digits, {k: f"emnist-{split}-" + v.replace("t10k", "test") for k, v in STANDARD.items()})
    with pytest.raises(DataError, match=r"several IDX files for the \w+ images.*--data emnist-digits:DIR"):
        load_dataset(folder)
    with pytest.raises(DataError, match="the EMNIST Digits train set has 240,000"):  # picks its own four files
        load_dataset(f"emnist-digits:{folder}")


def _corrupt(kind: str, digits: dict) -> bytes:
    x = digits["x_train"]
    good = idx_bytes(x)
    return {
        "magic": idx_bytes(x, magic=2049),
        "gzip-inside": gz(gz(good)),
        "truncated": good[:-100],
        "trailing": good + b"\0\0\0",
        "32x32": idx_bytes(np.zeros((N_TRAIN, 32, 32), np.uint8)),
        "count": idx_bytes(x[:-1]),
        "int32": struct.pack(">I", 0x00000C03) + struct.pack(">III", N_TRAIN, 28, 28) + bytes(4 * N_TRAIN * 784),
        "bomb": gz(struct.pack(">IIII", 2051, 10**9, 28, 28) + bytes(2_000_000)),
        "empty": idx_bytes(np.zeros((0, 28, 28), np.uint8)),
    }[kind]


@pytest.mark.parametrize("kind, message", [
    ("magic", r"wrong magic number 2049 \(expected 2051 for an IDX image file\)"),
    ("gzip-inside", "the data is still gzip-compressed"),
    ("truncated", "truncated: expected 39200 bytes of pixel data, found 39100"),
    ("trailing", "3 trailing bytes"),
    ("32x32", "images are 32x32 pixels, expected 28x28"),
    ("count", f"holds {N_TRAIN - 1:,} images but .*holds {N_TRAIN:,} labels"),
    ("int32", r"unsupported data type byte 0x0c \(int32\)"),
    ("bomb", "declares 784,000,000,016 bytes.*not decompressed"),
    ("empty", "holds 0 images but"),
])
def test_structurally_broken_idx_files_are_refused(tmp_path, digits, kind, message):
    names = {k: "own-" + v for k, v in STANDARD.items()}
    files = write_idx_set(tmp_path / "bad", digits, names, compress=False)
    files["x_train"].write_bytes(_corrupt(kind, digits))
    with pytest.raises(DataError, match=message):
        load_dataset(f"idx:{tmp_path / 'bad'}")


def test_missing_files_and_lone_files_are_refused_clearly(tmp_path, digits):
    files = write_idx_set(tmp_path / "three", digits, {k: "own-" + v for k, v in STANDARD.items()})
    files["y_test"].unlink()
    with pytest.raises(DataError, match="no IDX file for the test labels.*four files"):
        load_dataset(tmp_path / "three")
    with pytest.raises(DataError, match="give the folder that holds the data files"):
        load_dataset(files["x_train"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no IDX or npz files here"):
        load_dataset(f"idx:{tmp_path / 'empty'}")


# --------------------------------------------------------------------------- npz


def test_keras_style_npz_with_class_names(tmp_path, digits):
    path = tmp_path / "letters.npz"
    np.savez_compressed(path, **digits, classes=np.array(list("ABCDEFGHIJ")))
    d = load_dataset(path)
    assert d.name == "npz" and d.classes == tuple("ABCDEFGHIJ") and not d.verified
    assert np.array_equal(d.x_test, digits["x_test"])
    np.savez(path, **{**digits, "x_train": digits["x_train"][..., None]})  # (N, 28, 28, 1) is fine too
    assert load_dataset(path).x_train.shape == (N_TRAIN, 28, 28)


def test_a_named_set_picks_its_own_files_by_published_name_or_prefix(tmp_path, monkeypatch, digits):
    """KMNIST publishes IDX files under MNIST's names and npz files as kmnist-*.npz: both are its own."""
    files = write_idx_set(tmp_path / "mixed", digits)
    register_set(monkeypatch, "prefixset", files, file_prefix="prefixset-")
    np.savez(tmp_path / "mixed" / "other-train-imgs.npz", digits["x_train"])
    d = load_dataset(f"prefixset:{tmp_path / 'mixed'}")
    assert d.name == "prefixset" and d.verified
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "mixed").rename(tmp_path / "cache" / "prefixset")
    assert load_dataset("prefixset").verified  # from the cache, by name


def test_kmnist_style_npz_files_are_a_known_set_unverified(tmp_path, monkeypatch, digits):
    files = write_idx_set(tmp_path / "idx", digits)
    register_set(monkeypatch, "npzset", files, file_prefix="npzset-")
    folder = tmp_path / "npz"
    folder.mkdir()
    for key, stem in (("x_train", "train-imgs"), ("y_train", "train-labels"), ("x_test", "test-imgs"),
                      ("y_test", "test-labels")):
        np.savez_compressed(folder / f"npzset-{stem}.npz", digits[key])
    d = load_dataset(folder)
    assert d.name == "npzset" and not d.verified and d.classes == tuple("abcdefghij")
    assert "no checksums are published for Npzset in NumPy format" in d.source


def _npz_with(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("change, message", [
    ({"y_test": None}, "missing key.*y_test"),
    ({"x_train": np.zeros((N_TRAIN, 28, 27), np.uint8)}, r"x_train: shape \(50, 28, 27\), expected \(N, 28, 28\)"),
    ({"x_train": np.full((N_TRAIN, 28, 28), 0.5)}, "not integers in 0-255"),
    ({"y_train": np.full(N_TRAIN, -1)}, "not integers in 0-255"),
    ({"y_test": np.zeros(N_TEST + 1, np.uint8)}, "holds 20 images but .*y_test holds 21 labels"),
    ({"classes": np.array(["a", "a"] + list("bcdefghi"))}, "class name 'a' appears twice"),
    ({"classes": np.array(list("ab"))}, r"label \d is outside the 2 classes"),
])
def test_broken_npz_files_are_refused(tmp_path, digits, change, message):
    arrays = {k: v for k, v in {**digits, **change}.items() if v is not None}
    with pytest.raises(DataError, match=message):
        load_dataset(_npz_with(tmp_path / "bad.npz", **arrays))


def test_npz_holding_objects_or_declaring_huge_arrays_is_refused_before_loading(tmp_path, digits):
    objs = tmp_path / "objects.npz"
    with zipfile.ZipFile(objs, "w") as z:
        for key, value in digits.items():
            buf = io.BytesIO()
            np.save(buf, value.astype(object) if key == "x_train" else value, allow_pickle=True)
            z.writestr(key + ".npy", buf.getvalue())
    with pytest.raises(DataError, match="holds Python objects"):
        load_dataset(objs)
    huge = tmp_path / "huge.npz"
    with zipfile.ZipFile(huge, "w") as z:
        for key, value in digits.items():
            with z.open(key + ".npy", "w") as fh:
                shape = (10**10, 28, 28) if key == "x_train" else value.shape
                np.lib.format.write_array_header_2_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
                fh.write(b"\0" * 64)
    with pytest.raises(DataError, match=r"declares shape \(10000000000, 28, 28\).*limit"):
        load_dataset(huge)


# --------------------------------------------------------------------------- image folders


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, mnist):
    """60 user-style pictures of MNIST test digits (PNG and JPEG), 6 per class, plus a blank
    picture, a broken file and a note that is not an image."""
    root = tmp_path_factory.mktemp("folder") / "my digits"
    x, y = [], []
    for c in range(10):
        idx = np.flatnonzero(mnist.y_test == c)[100:106]  # not the digits the preprocessing was tuned on
        x.extend(mnist.x_test[idx])
        y.extend([c] * 6)
    paths = make_folder(root, np.array(x), np.array(y))
    (root / "3" / "blank.png").write_bytes(blank_png())
    (root / "5" / "broken.png").write_bytes(user_png(x[0])[:60])
    (root / "7" / "notes.txt").write_text("not an image")
    (root / "7" / ".hidden.png").write_bytes(b"ignored")
    return root, paths, np.array(y)


def test_an_image_folder_goes_through_the_prediction_preprocessing(image_folder):
    root, paths, y = image_folder
    seen = []
    d = load_dataset(root, progress=lambda done, total: seen.append((done, total)))
    assert d.name == "images" and d.classes == DIGITS and not d.verified
    assert seen[-1] == (62, 62) and len(seen) == 62
    # Stratified 80/20: 6 images per class -> 5 train, 1 test (round(1.2) = 1).
    assert d.class_counts("train") == [5] * 10 and d.class_counts("test") == [1] * 10
    assert len(set(d.y_train[:10].tolist())) >= 5  # shuffled: the first images are not all of one class
    # Exactly what `digitlab predict` gives the model for each file.
    expected = {p.relative_to(root).as_posix(): pp.find_digit(pp.load_image(p))[1] for p in paths}
    both = np.concatenate([d.x_train, d.x_test])
    labels = np.concatenate([d.y_train, d.y_test])
    for rel, arr in expected.items():
        hits = [i for i in range(len(both)) if np.array_equal(both[i], arr)]
        assert hits and labels[hits[0]] == int(rel.split("/")[0])
    assert {(s.path, s.reason.split(" (")[0].split(";")[0]) for s in d.skipped} == {
        ("3/blank.png", "no ink"), ("5/broken.png", "cannot decode image")}
    assert any("2 image(s) skipped (1 without ink, 1 unreadable)" in n for n in d.notes)
    assert any("1 file(s) ignored" in n for n in d.notes)
    assert "image folder 'my digits' (60 images in 10 classes, a seeded, stratified 80/20 split" in d.source
    assert str(root.parent) not in d.source


def test_the_folder_split_is_seeded(image_folder):
    root = image_folder[0]
    a, b, c = load_dataset(root, seed=1), load_dataset(root, seed=1), load_dataset(root, seed=2)
    assert np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)


def test_a_given_train_test_split_is_kept(tmp_path, mnist):
    train = np.concatenate([np.flatnonzero(mnist.y_test == c)[:2] for c in range(5)])
    test = np.concatenate([np.flatnonzero(mnist.y_test == c)[2:3] for c in range(4)])
    make_folder(tmp_path / "d" / "train", mnist.x_test[train], mnist.y_test[train])
    make_folder(tmp_path / "d" / "test", mnist.x_test[test], mnist.y_test[test], start=100)
    d = load_dataset(tmp_path / "d")
    assert d.classes == ("0", "1", "2", "3", "4")
    assert d.class_counts("train") == [2] * 5 and d.class_counts("test") == [1, 1, 1, 1, 0]
    assert any("no test images for class(es) 4" in n for n in d.notes)
    assert "train/ and test/ as given" in d.source


def test_class_folders_sort_numbers_numerically(tmp_path, mnist):
    names = {0: "10", 1: "2", 2: "b", 3: "A"}
    x, y = mnist.x_test[:8], np.array([0, 0, 1, 1, 2, 2, 3, 3])
    make_folder(tmp_path / "d", x, y, names=names)
    assert load_dataset(tmp_path / "d").classes == ("2", "10", "A", "b")
    assert sorted(["10", "9", "x", "1"], key=class_sort_key) == ["1", "9", "10", "x"]


def test_a_folder_of_some_digits_maps_onto_the_model_classes(tmp_path, mnist):
    fours, sevens = np.flatnonzero(mnist.y_test == 4)[:3], np.flatnonzero(mnist.y_test == 7)[:3]
    idx = np.concatenate([fours, sevens])
    make_folder(tmp_path / "corrections", mnist.x_test[idx], mnist.y_test[idx])
    own = load_dataset(tmp_path / "corrections")
    assert own.classes == ("4", "7") and set(own.y_train.tolist()) == {0, 1}
    d = load_dataset(tmp_path / "corrections", classes=DIGITS)
    assert d.classes == DIGITS and set(d.y_train.tolist()) | set(d.y_test.tolist()) == {4, 7}
    sevens_only = tmp_path / "sevens"
    make_folder(sevens_only, mnist.x_test[sevens], mnist.y_test[sevens])
    with pytest.raises(DataError, match="one class only \\('7'\\); a model needs at least 2"):
        load_dataset(sevens_only)
    assert set(load_dataset(sevens_only, classes=DIGITS).y_train.tolist()) == {7}
    (tmp_path / "corrections" / "x").mkdir()
    (tmp_path / "corrections" / "x" / "a.png").write_bytes(user_png(mnist.x_test[0]))
    with pytest.raises(DataError, match=r"class\(es\) 'x' that the model does not know"):
        load_dataset(tmp_path / "corrections", classes=DIGITS)


def test_folder_rejections(tmp_path, mnist, monkeypatch):
    x, y = mnist.x_test[:4], np.array([0, 0, 1, 1])
    make_folder(tmp_path / "blank", x, y)
    for p in (tmp_path / "blank" / "1").iterdir():
        p.write_bytes(blank_png())
    with pytest.raises(DataError, match=r"class '1' has no usable image: all 2 were skipped \(1/img0002.*no ink"):
        load_dataset(tmp_path / "blank")

    (tmp_path / "emptyclass" / "0").mkdir(parents=True)
    make_folder(tmp_path / "emptyclass", x[2:], y[2:])
    with pytest.raises(DataError, match="class folder 0/ holds no images"):
        load_dataset(tmp_path / "emptyclass")

    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(user_png(x[0]))
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(tmp_path / "flat")

    make_folder(tmp_path / "halfsplit" / "train", x, y)
    with pytest.raises(DataError, match="has train/ but no test/"):
        load_dataset(tmp_path / "halfsplit")

    make_folder(tmp_path / "split" / "train", x[:2], y[:2])
    make_folder(tmp_path / "split" / "test", x[2:], y[2:])
    with pytest.raises(DataError, match=r"class folder\(s\) 1 have no counterpart"):
        load_dataset(tmp_path / "split")

    make_folder(tmp_path / "big", x, y)
    monkeypatch.setattr("digitlab.data.folder._decode", lambda *a: pytest.fail("decoded before counting"))
    with pytest.raises(DataError, match="4 images, more than the limit of 3"):
        load_dataset(tmp_path / "big", max_images=3)


def test_the_pixel_cap_applies_to_each_image(tmp_path, mnist):
    make_folder(tmp_path / "d", mnist.x_test[:6], np.array([0, 0, 0, 1, 1, 1]))
    with pytest.raises(DataError, match=r"class '0' has no usable image.*image too large \(96x96 = 9,216 pixels"):
        load_dataset(tmp_path / "d", max_pixels=5000)


# --------------------------------------------------------------------------- class names


@pytest.mark.parametrize("names, problem", [
    (DIGITS, None), (("お", "き"), None), (("T-shirt/top", "Trouser"), None),
    (("a",), "between 2 and 256 classes"), ("ab", "not one string"), (("a", "a"), "appears twice"),
    (("a", " b"), "leading/trailing spaces"), (("a", ""), "empty"), (("a", "b\nc"), "control characters"),
    (("a", "x" * 65), "longer than 64"), (("a", 3), "must be a string"),
    (tuple(str(i) for i in range(257)), "between 2 and 256"),
])
def test_class_name_rules(names, problem):
    got = class_names_problem(names)
    assert got is None if problem is None else problem in got


def test_classes_file_rules(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is empty"):
        read_classes_file(f)
    f.write_bytes(b"\xff\xfe a")
    with pytest.raises(DataError, match="not UTF-8"):
        read_classes_file(f)
    f.write_bytes(b"a\n" * 40_000)
    with pytest.raises(DataError, match="a class list is at most"):
        read_classes_file(f)
    f.write_text("a\r\nb\r\n\r\n", encoding="utf-8")
    assert read_classes_file(f) == ("a", "b")


def test_dataset_conform_keeps_arrays_and_renumbers_labels(digits):
    d = Dataset(digits["x_train"], digits["y_train"], digits["x_test"], digits["y_test"], DIGITS, "idx", "s")
    reversed_classes = DIGITS[::-1]
    r = datasets.conform(d, reversed_classes)
    assert r.classes == reversed_classes and np.array_equal(r.y_train, 9 - digits["y_train"])
    assert r.x_train is d.x_train
