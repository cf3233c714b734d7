"""Result files that grow as results come and survive any interruption: JSONL, CSV, Parquet.

`open_sink(path, classes)` picks the format by the suffix and, when the file is
already there, reads it to resume: `sink.done` holds the inputs it has rows
for, so a re-run of the same command skips them. The rows are THE row format
of `present` (`record` for JSONL, `csv_header` / `csv_row` for CSV and Parquet).

Durability, per format:

- JSONL and CSV are appended one batch at a time, each batch flushed and
  fsync'ed, so a Ctrl-C (handled between batches) never leaves a partial row.
  A kill -9 or a power cut during a write can leave a partial LAST row; the
  next run truncates the file to its last complete row before appending, and
  every complete row is a valid result whatever happened.
- Parquet cannot be appended to, so `results.parquet` is a directory of part
  files (a Parquet dataset: `pandas.read_parquet("results.parquet")`,
  `pyarrow.dataset`, DuckDB read it whole), each written atomically. Rows are
  buffered up to PART_ROWS per part: an interruption loses at most that many
  results, which the re-run computes again; every part on disk is complete.

Memory: resuming keeps an 8-byte hash per done row (`DoneSet`), not the rows.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import signal
import threading
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StorageError
from .present import csv_header, csv_row, record
from .results import Outcome

FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PART_ROWS = 10_000  # rows per Parquet part: big enough for efficient column chunks, small enough to redo
PART_NAME = re.compile(r"part-(\d{6})\.parquet")
_ENCODING = ("utf-8", "surrogateescape")  # file names that are not UTF-8 round-trip unchanged


def output_format(path: str | os.PathLike) -> str:
    """"jsonl", "csv" or "parquet" for an output file name; a ConfigError for anything else."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {path}: the format follows the suffix; use .jsonl, .csv or .parquet")
    if fmt == "parquet":
        _pyarrow()
    return fmt


class DoneSet:
    """The labels a result file already holds, as sorted 64-bit hashes (8 bytes a label; the
    chance that one of a million new labels collides with a million done ones is ~1e-7)."""

    def __init__(self) -> None:
        self._new = array("Q")  # added since the last freeze()
        self._sorted = np.zeros(0, np.uint64)

    def add(self, label: str) -> None:
        self._new.append(_hash(label))

    def freeze(self) -> DoneSet:
        self._sorted = np.unique(np.concatenate([self._sorted, np.frombuffer(self._new, np.uint64)]))
        self._new = array("Q")
        return self

    def __len__(self) -> int:
        return len(self._sorted) + len(self._new)

    def __contains__(self, label: str) -> bool:
        h = np.uint64(_hash(label))
        i = int(np.searchsorted(self._sorted, h))
        return i < len(self._sorted) and self._sorted[i] == h


def _hash(label: str) -> int:
    return int.from_bytes(hashlib.blake2b(label.encode(*_ENCODING), digest_size=8).digest(), "little")


class _Sink:
    """What every sink has: the done labels and how many of those rows were errors."""

    fmt = ""

    def __init__(self, path: Path, classes: Sequence[str]):
        self.path, self.n_classes = path, len(classes)
        self.done = DoneSet()
        self.resumed_errors = 0

    @property
    def resumed(self) -> int:
        return len(self.done)

    def _seen(self, label: str, error: bool) -> None:
        self.done.add(label)
        self.resumed_errors += bool(error)

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write(self, outcomes: Sequence[Outcome]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _LineSink(_Sink):
    """JSONL or CSV: rows appended a batch at a time, fsync'ed; a partial last row dropped on open."""

    def __init__(self, path: Path, classes: Sequence[str]):
        super().__init__(path, classes)
        try:
            self._fh = open(path, "a+b")  # held for the whole run, closed in close()
            self._resume()
        except OSError as exc:
            raise StorageError(f"{path}: cannot write the results ({exc.strerror or exc})") from None
        self.done.freeze()

    def _resume(self) -> None:
        fh = self._fh
        fh.seek(0)
        good = 0  # the end of the last complete row
        quotes = 0  # '"' since `good`: a CSV row is complete only at an even count (quoted newlines)
        number = 0
        for line in fh:
            quotes += line.count(b'"') if self.fmt == "csv" else 0
            if not line.endswith(b"\n") or quotes % 2:
                continue
            row = _line_text(fh, good, line)
            number += 1
            self._parse(row, number)
            good, quotes = fh.tell(), 0
        if good < fh.seek(0, os.SEEK_END):
            fh.truncate(good)  # a row cut short by a kill: it is predicted again
            os.fsync(fh.fileno())
        if good == 0 and self.fmt == "csv":
            self._append([self._csv_text(csv_header(self.n_classes))])

    def _parse(self, text: str, number: int) -> None:
        where = f"{self.path}: row {number}"
        if self.fmt == "jsonl":
            try:
                row = json.loads(text)
                label = row["file"]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"{where} is not a result row; not resuming over it "
                                  f"(move the file away to start afresh)") from None
            self._seen(label, "error" in row)
            return
        cells = next(csv.reader([text]), [])
        header = list(csv_header(self.n_classes))
        if number == 1:
            if cells != header:
                raise ConfigError(f"{self.path} has other columns than this model's results "
                                  f"(another model or format?); not resuming over it")
            return
        if len(cells) != len(header):
            raise ConfigError(f"{where} has {len(cells)} columns, not {len(header)}; not resuming over it")
        self._seen(cells[0], bool(cells[-1]))

    def _csv_text(self, row: Sequence[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        return buf.getvalue()

    def _row_text(self, outcome: Outcome) -> str:
        if self.fmt == "jsonl":
            return json.dumps(record(outcome)) + "\n"
        return self._csv_text(csv_row(outcome, self.n_classes))

    def write(self, outcomes: Sequence[Outcome]) -> None:
        """Append the rows of `outcomes`, durably (flushed and fsync'ed) before returning."""
        self._append([self._row_text(o) for o in outcomes])

    def _append(self, texts: list[str]) -> None:
        try:
            with _signals_held():
                self._fh.seek(0, os.SEEK_END)
                self._fh.write("".join(texts).encode(*_ENCODING))
                self._fh.flush()
                os.fsync(self._fh.fileno())
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot write the results ({exc.strerror or exc})") from None

    def close(self) -> None:
        self._fh.close()


class JsonlSink(_LineSink):
    fmt = "jsonl"


class CsvSink(_LineSink):
    fmt = "csv"


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until a batch is written: Python could otherwise raise
    KeyboardInterrupt between two write calls of one batch and leave half a row."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _line_text(fh: Any, start: int, last: bytes) -> str:
    """The row that ends with `last` and starts at byte `start` (one line, or more for a quoted newline)."""
    end = fh.tell()
    if end - len(last) == start:
        return last.decode(*_ENCODING)
    fh.seek(start)
    text = fh.read(end - start).decode(*_ENCODING)
    fh.seek(end)
    return text


class ParquetSink(_Sink):
    """A directory of Parquet parts with the CSV columns, typed (see `_schema`)."""

    fmt = "parquet"

    def __init__(self, path: Path, classes: Sequence[str], part_rows: int | None = None):
        super().__init__(path, classes)
        self.pa, self.pq = _pyarrow()
        self.part_rows = part_rows or PART_ROWS
        self.header = csv_header(self.n_classes)
        self.schema = _schema(self.pa, self.header)
        self._rows: list[list[Any]] = []
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} is a file; Parquet results are a directory of parts (remove it or pick another name)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{path}: cannot write the results ({exc.strerror or exc})") from None
        self._next = 0
        for part in sorted(path.iterdir()):
            match = PART_NAME.fullmatch(part.name)
            if not match:
                continue  # a temporary file of an interrupted write, or the user's own
            self._next = max(self._next, int(match.group(1)) + 1)
            try:
                table = self.pq.read_table(part, columns=["file", "error"])
            except Exception as exc:  # noqa: BLE001 - ArrowInvalid and friends
                raise ConfigError(f"{part}: not a readable Parquet part ({exc}); not resuming over it") from None
            if self.pq.read_schema(part).names != list(self.header):
                raise ConfigError(f"{part} has other columns than this model's results; not resuming over it")
            for label, error in zip(*(table.column(c).to_pylist() for c in ("file", "error"))):
                self._seen(label, bool(error))
        self.done.freeze()

    def write(self, outcomes: Sequence[Outcome]) -> None:
        """Buffer the rows; a part is written once PART_ROWS are there (and at close)."""
        self._rows.extend(csv_row(o, self.n_classes) for o in outcomes)
        if len(self._rows) >= self.part_rows:
            self._flush()

    def _flush(self) -> None:
        from ..files.atomic import atomic_path

        if not self._rows:
            return
        columns = list(zip(*self._rows))
        arrays = [self.pa.array([_typed(v, f.type) for v in col], type=f.type) for col, f in zip(columns, self.schema)]
        with atomic_path(self.path / f"part-{self._next:06d}.parquet") as tmp:
            self.pq.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema), tmp)
        self._next += 1
        self._rows = []

    def close(self) -> None:
        self._flush()


def _schema(pa: Any, header: Sequence[str]) -> Any:
    """The CSV columns with their types: flags are booleans, confidence and p0... floats."""
    def kind(name: str) -> Any:
        if name in ("uncertain", "no_digit", "not_digit"):
            return pa.bool_()
        if name == "confidence" or re.fullmatch(r"p\d+", name):
            return pa.float64()
        return pa.string()

    return pa.schema([(name, kind(name)) for name in header])


def _typed(value: Any, kind: Any) -> Any:
    if value == "" or value is None:
        return None
    if str(kind) == "bool":
        return bool(int(value))
    if str(kind) == "double":
        return float(value)
    return str(value)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet output needs pyarrow: pip install 'digitlab[parquet]' "
                          "(or write .jsonl / .csv)") from None
    return pa, pq


def open_sink(path: str | os.PathLike, classes: Sequence[str]) -> _Sink:
    """The resumable sink for `path`'s format (see the module doc); read it when it exists."""
    path = Path(path)
    fmt = output_format(path)
    if fmt != "parquet" and path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a file name ending in .jsonl or .csv")
    if not path.parent.is_dir():
        raise ConfigError(f"--out {path}: no directory {path.parent}")
    return {"jsonl": JsonlSink, "csv": CsvSink, "parquet": ParquetSink}[fmt](path, classes)
