"""Digit-set file formats, read strictly and within bounds: IDX (raw or gzip) and NumPy npz.

Shared by the MNIST loader (`data`) and every other array data set
(`datasets.arrays`). Every reader checks structure (magic numbers,
dimensions, byte counts, dtypes) and size before it decompresses or
allocates: a gzip bomb or an npz header declaring terabytes costs nothing.
Problems raise `DataError` starting with the file's name.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

Kind = Literal["images", "labels"]

IMAGE_SIZE = 28
GZIP_MAGIC = b"\x1f\x8b"
# Far above any digit data set (MNIST's largest file is 47 MB uncompressed, EMNIST's ~190 MB),
# far below what would hurt a machine: decompression and array headers are checked against it
# before anything is decompressed or allocated.
MAX_DATA_BYTES = 1 << 30

_MAGIC = {"images": 2051, "labels": 2049}
_NDIM = {"images": 3, "labels": 1}
_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
              0x0D: "float32", 0x0E: "float64"}
_IDX_ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


# --------------------------------------------------------------------------- IDX


def parse_idx(data: bytes, name: str, *, kind: Kind) -> np.ndarray:
    """Parse an uncompressed IDX file strictly; uint8 (N, 28, 28) images or (N,) labels.

    `name` starts every error message. The result owns its memory (writeable).
    """
    if kind not in _MAGIC:
        raise ValueError(f"kind must be 'images' or 'labels', not {kind!r}")
    what = "an IDX image file" if kind == "images" else "an IDX label file"
    expected_magic = _MAGIC[kind]
    if len(data) < 4:
        raise DataError(f"{name}: file is too short to be {what} ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    dtype_byte, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or dtype_byte not in _IDX_TYPES:
        hint = "; the data is still gzip-compressed" if data[:2] == GZIP_MAGIC else ""
        raise DataError(f"{name}: wrong magic number {magic} (expected {expected_magic} for {what}){hint}")
    if dtype_byte != 0x08:
        raise DataError(f"{name}: unsupported data type byte 0x{dtype_byte:02x} ({_IDX_TYPES[dtype_byte]}); "
                        f"MNIST files hold unsigned bytes (0x08)")
    if ndim != _NDIM[kind]:
        other = "a label file" if kind == "images" else "an image file"
        hint = f"; it looks like {other}" if ndim == _NDIM["labels" if kind == "images" else "images"] else ""
        raise DataError(f"{name}: wrong magic number {magic} (expected {expected_magic} for {what}){hint}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated header: expected {header} bytes, found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if kind == "images" and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{name}: images are {dims[1]}x{dims[2]} pixels, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    expected = int(np.prod(dims, dtype=np.int64))
    found = len(data) - header
    unit = "pixel data" if kind == "images" else "label data"
    if found < expected:
        raise DataError(f"{name}: truncated: expected {expected} bytes of {unit}, found {found}")
    if found > expected:
        raise DataError(f"{name}: {found - expected} trailing bytes after the {expected} bytes of {unit}")
    # copy(): frombuffer would give a read-only view pinning the whole input.
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims).copy()


def idx_sha256(arr: np.ndarray, kind: Kind) -> str:
    """SHA-256 of the IDX file these uint8 values would make: exact, since IDX has one encoding."""
    h = hashlib.sha256(struct.pack(f">I{arr.ndim}I", _MAGIC[kind], *arr.shape))
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


def _idx_size(header: bytes) -> int | None:
    """Total bytes (header + data) an IDX header declares; None if it is not an IDX header yet."""
    if len(header) < 4 or header[:2] != b"\x00\x00" or header[2] not in _IDX_ITEMSIZE:
        return None
    ndim = header[3]
    if len(header) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", header[4:4 + 4 * ndim])
    return 4 + 4 * ndim + int(np.prod(dims, dtype=object)) * _IDX_ITEMSIZE[header[2]]


def gunzip(raw: bytes, name: str) -> bytes:
    """Gunzip `raw` if it is gzip data (by magic bytes, whatever the file name).

    The IDX header is decompressed first and the size it declares is checked
    against MAX_DATA_BYTES before the rest is, and never more than that size
    (plus one byte, to notice trailing data) is produced: a gzip bomb costs
    nothing, and memory is bounded by what a real file of that shape needs.
    """
    if raw[:2] != GZIP_MAGIC:
        return raw
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = raw
    out = bytearray()

    def take(n: int) -> None:
        nonlocal pending
        while len(out) < n and (pending or not inflater.eof):
            chunk = inflater.decompress(pending, n - len(out))
            pending = inflater.unconsumed_tail
            out.extend(chunk)
            if not chunk and not pending:
                break

    try:
        take(4)
        if len(out) >= 4 and out[:2] == b"\x00\x00" and out[3] <= 4:
            take(4 + 4 * out[3])
        declared = _idx_size(bytes(out))
        if declared is not None and declared > MAX_DATA_BYTES:
            raise DataError(f"{name}: its header declares {declared:,} bytes of data, more than the "
                            f"{MAX_DATA_BYTES:,}-byte limit for a digit data set (not decompressed)")
        take((declared if declared is not None else MAX_DATA_BYTES) + 1)
        if declared is not None and len(out) > declared:
            # More data than the header declares: read on (discarding it, bounded) to tell a corrupt
            # stream (CRC error) from a well-formed file with trailing bytes; the parser reports the latter.
            seen = len(out)
            while not inflater.eof and pending and seen <= MAX_DATA_BYTES:
                seen += len(inflater.decompress(pending, 1 << 20))
                pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise DataError(f"{name}: corrupt or truncated gzip data ({exc})") from None
    if declared is None and len(out) > MAX_DATA_BYTES:
        raise DataError(f"{name}: more than {MAX_DATA_BYTES:,} bytes after decompression; not a digit data set")
    if not inflater.eof and (declared is None or len(out) <= declared):
        raise DataError(f"{name}: corrupt or truncated gzip data (the stream ends early)")
    return bytes(out)


def read_bytes(src: Path | Traversable, name: str) -> bytes:
    """A whole file, refused (before reading) when larger than MAX_DATA_BYTES."""
    try:
        size = src.stat().st_size if isinstance(src, Path) else None
        if size is not None and size > MAX_DATA_BYTES:
            raise DataError(f"{name}: {size:,} bytes, more than the {MAX_DATA_BYTES:,}-byte limit for a digit data set")
        return src.read_bytes()
    except OSError as exc:
        raise DataError(f"{name}: cannot read file ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- npz


def is_zip(path: Path) -> bool:
    """Whether the file starts like a zip archive (an npz is one), whatever its name."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def open_npz(path: Path, what: str = "an npz archive") -> np.lib.npyio.NpzFile:
    """Open an npz archive without pickles; a single .npy or a broken file is a DataError."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable npz archive ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not {what}")
    return npz


def check_npy_header(path: Path, key: str, label: str) -> None:
    """Read the shape and dtype an npz member declares, before numpy allocates an array for it."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(key + ".npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{label}: cannot read array header ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{label}: holds Python objects, not numbers")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > MAX_DATA_BYTES:
        raise DataError(f"{label}: declares shape {tuple(shape)} ({nbytes:,} bytes), more than the "
                        f"{MAX_DATA_BYTES:,}-byte limit for a digit data set")


def npz_array(path: Path, key: str, label: str, kind: Kind, npz: np.lib.npyio.NpzFile) -> np.ndarray:
    """One member as uint8 (N, 28, 28) images or (N,) labels: header checked first, shape and values after.

    (N, 28, 28, 1) images are accepted, as Keras-ready copies are often saved.
    """
    check_npy_header(path, key, label)
    try:
        arr = npz[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{label}: cannot read array ({exc})") from None
    if kind == "images" and arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    ok = arr.ndim == 3 and arr.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE) if kind == "images" else arr.ndim == 1
    if not ok:
        raise DataError(f"{label}: shape {arr.shape}, expected {'(N, 28, 28)' if kind == 'images' else '(N,)'}")
    return coerce_uint8(arr, label)


def coerce_uint8(arr: np.ndarray, label: str) -> np.ndarray:
    """`arr` as uint8, accepting other numeric encodings only when the conversion loses nothing."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{label}: dtype {arr.dtype} is not numeric; expected uint8")
    if arr.size:
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255 or (
                arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr))):
            raise DataError(f"{label}: dtype {arr.dtype} with values that are not integers in 0-255; "
                            f"expected uint8")
    return arr.astype(np.uint8)
