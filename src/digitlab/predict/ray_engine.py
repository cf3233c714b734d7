"""Batch recognition on Ray Data: `digitlab predict SOURCE --out DIR --engine ray`.

The same Predictor as everywhere else (so the same preprocessing and model) runs in a
pool of Ray actors, each loading the model once (`_Recognise.__init__`). Ray Data reads
the files (`read_binary_files`: local paths, or any filesystem Ray supports, s3://,
gs://, ...), feeds them to the actors in batches (`map_batches`), and writes the rows
to DIR through a Ray datasink, one file per write task. The rows are THE row format:
`present.record` for JSONL, `present.csv_header` / `csv_row` for CSV and Parquet (the
Parquet file has the CSV's columns, as text, plus `record`, the JSON row).

Ray is an optional extra (`pip install 'digitlab[ray]'`) and is imported only inside
functions. On a cluster (`address`), digitlab must be installed on the workers, and
the inputs and the model must be where the workers can read them (a URI, or a shared
filesystem); the shipped pretrained model travels with the package.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DigitlabError
from ..preprocess import IMAGE_EXTENSIONS
from .predictor import CHUNK
from .present import csv_header, csv_row, record
from .results import Outcome

INSTALL_HINT = "the Ray engine needs Ray: pip install 'digitlab[ray]'"
FORMATS = ("jsonl", "csv", "parquet")
RECORD_COLUMN = "record"  # the JSON row (present.record) beside the CSV columns
# One actor = one process with the model; one CPU each, so the pool grows with the cluster's CPUs
# and ONNX Runtime inside it uses that one core (more threads per actor would fight the other actors).
ACTOR_CPUS = 1
# Reading and writing files is I/O: a quarter of a CPU per task. And that much is kept out of the
# actors' reach (IO_RESERVE): with every CPU held by an actor, no read task could start and the
# pipeline would wait forever (seen with 2 actors on a 2-CPU Ray).
IO_CPUS = 0.25
IO_RESERVE = 0.5
# Images per actor call: the Predictor already batches its model calls by CHUNK; a Ray batch of the
# same size pays Ray's per-call overhead (~ms) once per model call.
BATCH_SIZE = CHUNK


def ray_available() -> bool:
    """Whether Ray Data (the `ray` extra) can be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def format_for(out_dir: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: `fmt`, else from DIR's suffix (results.parquet/ -> parquet), else jsonl."""
    if fmt is None:
        suffix = Path(str(out_dir).rstrip("/")).suffix.lower().lstrip(".")
        fmt = {"json": "jsonl", "jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}.get(suffix, "jsonl")
    if fmt not in FORMATS:
        raise ConfigError(f"the Ray engine writes {', '.join(FORMATS)} (got {fmt!r})")
    return fmt


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("local://")


def _columns(outcomes: Sequence[Outcome], n_classes: int) -> dict[str, list[str]]:
    """The rows as columns of text: the CSV's (csv_header / csv_row) and the JSON row."""
    header = csv_header(n_classes)
    cols: dict[str, list[str]] = {name: [] for name in (*header, RECORD_COLUMN)}
    for outcome in outcomes:
        for name, value in zip(header, csv_row(outcome, n_classes)):
            cols[name].append(str(value))
        cols[RECORD_COLUMN].append(json.dumps(record(outcome)))
    return cols


class _Recognise:
    """The Ray Data actor: one Predictor per actor process, a batch of files in, rows out."""

    def __init__(self, model: str | None, runtime: str, threshold: float | None, mode: str, base: str):
        from ..export.runtimes import THREADS_ENV
        from .predictor import Predictor

        os.environ.setdefault(THREADS_ENV, str(ACTOR_CPUS))  # before the runner starts its thread pool
        self.predictor = Predictor.load(model, runtime=runtime, threshold=threshold)
        self.mode, self.base = mode, base

    def _label(self, path: str) -> str:
        """The file's name as the local engine shows it: relative to the driver's directory when below it."""
        if self.base and path.startswith(self.base + os.sep):
            return path[len(self.base) + 1:]
        return path

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        labels = [self._label(str(p)) for p in batch["path"]]
        images = [bytes(b) for b in batch["bytes"]]
        outcomes = list(self.predictor.predict_stream(images, mode=self.mode, sources=labels))
        return _columns(outcomes, len(self.predictor.classes))


def _datasink(out_dir: str, fmt: str, n_classes: int) -> Any:
    """A Ray file datasink writing `fmt`, each file atomically (a temporary name, then a move),
    that counts the rows and errors it wrote (`rows`, `errors`, on the driver's copy)."""
    from ray.data.datasource import BlockBasedFileDatasink

    header = csv_header(n_classes)

    class ResultSink(BlockBasedFileDatasink):
        def __init__(self) -> None:
            super().__init__(out_dir, file_format=fmt)
            self.rows = self.errors = 0

        def write_block_to_file(self, block: Any, file: Any) -> None:
            table = block.to_arrow()
            if fmt == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(table, file)
                return
            columns = table.to_pydict()
            if fmt == "jsonl":
                file.write("".join(line + "\n" for line in columns[RECORD_COLUMN]).encode())
                return
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(zip(*(columns[name] for name in header)))
            file.write(text.getvalue().encode())

        def write_block(self, block: Any, block_index: int, ctx: Any) -> None:
            import posixpath

            from ray.data._internal.planner.plan_write_op import WRITE_UUID_KWARG_NAME

            name = self.filename_provider.get_filename_for_task(ctx.kwargs[WRITE_UUID_KWARG_NAME], ctx.task_idx)
            final = posixpath.join(self.path, name)
            tmp = posixpath.join(self.path, f".{name}.tmp")
            with self.open_output_stream(tmp) as file:
                self.write_block_to_file(block, file)
            self.filesystem.move(tmp, final)  # readers never see half a file

        def write(self, blocks: Any, ctx: Any) -> int:
            from ray.data._internal.delegating_block_builder import DelegatingBlockBuilder
            from ray.data.block import BlockAccessor

            builder = DelegatingBlockBuilder()
            for b in blocks:
                builder.add_block(b)
            block = BlockAccessor.for_block(builder.build())
            if block.num_rows() == 0:
                return 0
            self.write_block(block, 0, ctx)
            return sum(1 for e in block.to_arrow().column("error").to_pylist() if e)

        def on_write_complete(self, write_result: Any) -> None:
            super().on_write_complete(write_result)
            self.rows = write_result.num_rows
            self.errors = sum(r or 0 for r in write_result.write_returns)

    return ResultSink()


def _check_out_dir(out_dir: str) -> None:
    """A local DIR must be new or empty: rows of an earlier run must not mix with these."""
    if _is_uri(out_dir):
        return
    path = Path(out_dir.removeprefix("local://"))
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"--out {out_dir}: give a new or empty directory (the Ray engine writes several files into it)")


def _pool(ray: Any, actors: int | None) -> tuple[Any, float]:
    """The actor pool and each actor's CPUs: `actors` fixed, else 1 up to what the cluster's CPUs
    allow; either way IO_RESERVE CPUs stay free for the read and write tasks."""
    usable = max(IO_RESERVE, ray.cluster_resources().get("CPU", 1) - IO_RESERVE)
    most = actors or max(1, int(usable // ACTOR_CPUS))
    pool = ray.data.ActorPoolStrategy(size=actors) if actors else ray.data.ActorPoolStrategy(min_size=1, max_size=most)
    return pool, min(ACTOR_CPUS, usable / most)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def start_ray(address: str | None) -> bool:
    """Connect to `address` (ray://host:10001, or "auto"), else start a local Ray; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = None
    if address is None:
        # A local Ray's workers import the very digitlab this process runs (a checkout, say), not
        # whichever one their default path finds first.
        here = str(Path(__file__).resolve().parents[2])
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))}}
    try:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 runtime_env=runtime_env)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or "a local Ray instance"
        raise ConfigError(f"cannot start or reach {where}: {_first_line(exc)}") from None
    return True


def _quiet(ray: Any) -> None:
    """No progress bars or execution plans on stderr (the summary says what happened) unless verbose."""
    import logging

    from ..models.backend import verbose

    if verbose():
        return
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def predict_with_ray(source: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                     model: str | os.PathLike | None = None, runtime: str = "auto", address: str | None = None,
                     fmt: str | None = None, actors: int | None = None, batch_size: int = BATCH_SIZE,
                     mode: str = "auto", threshold: float | None = None) -> dict[str, Any]:
    """Recognise every image in `source` on Ray Data and write the rows to `out_dir`; a summary dict.

    `source`: files, directories, globs (listed as the local engine lists them) or URIs Ray can read.
    `fmt`: jsonl, csv or parquet (None: from out_dir's suffix, else jsonl). `actors`: a fixed pool
    size (None: from 1 up to the cluster's CPUs). `address`: a Ray cluster (None: a local Ray,
    started and stopped here unless one is already running in this process).
    """
    if not ray_available():
        raise ConfigError(INSTALL_HINT)
    from .inputs import STDIN, expand_inputs
    from .predictor import MODES, Predictor

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if actors is not None and actors < 1:
        raise ConfigError(f"actors must be at least 1 (got {actors})")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1 (got {batch_size})")
    out_dir = str(out_dir)
    fmt = format_for(out_dir, fmt)
    _check_out_dir(out_dir)
    sources = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(s) for s in source]
    if not sources:
        raise ConfigError("no inputs: give image files, directories, glob patterns or URIs")
    if STDIN in sources:
        raise ConfigError("the Ray engine reads files, not stdin (-): save the image, or use --engine local")
    # Load once here: a bad --model is one clean line before any Ray start, and the rows need its classes.
    local = Predictor.load(model, runtime=runtime, threshold=threshold)
    model_path = None if model is None else str(local.model_path)
    n_classes = len(local.classes)
    uris = [s for s in sources if _is_uri(s)]
    items = expand_inputs([s for s in sources if not _is_uri(s)])
    files = [os.path.abspath(i.source) for i in items if i.error is None and isinstance(i.source, str)]
    failed = [Outcome(i.label, None, i.error) for i in items if i.error is not None]

    import ray
    import ray.data

    t0 = time.perf_counter()
    started = start_ray(address)
    try:
        _quiet(ray)
        rows = None
        if files or uris:
            ds = ray.data.read_binary_files(files + uris, include_paths=True, num_cpus=IO_CPUS, file_extensions=(
                [e.lstrip(".") for e in IMAGE_EXTENSIONS] if uris else None))  # local files are listed already
            compute, cpus = _pool(ray, actors)
            rows = ds.map_batches(_Recognise, batch_size=batch_size, batch_format="numpy", compute=compute,
                                  num_cpus=cpus, fn_constructor_kwargs=dict(
                                      model=model_path, runtime=runtime, threshold=threshold, mode=mode,
                                      base=os.getcwd()))
        if failed:  # inputs that could not even be listed: their error rows go out with the others
            errors = ray.data.from_items(_rows_of(failed, n_classes))
            rows = errors if rows is None else rows.union(errors)
        sink = _datasink(out_dir, fmt, n_classes)
        try:
            rows.write_datasink(sink, ray_remote_args={"num_cpus": IO_CPUS})
        except ray.exceptions.RayError as exc:  # e.g. a cluster without digitlab, an unreachable bucket
            raise DigitlabError(f"the Ray job failed: {_first_line(exc)}") from None
    finally:
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - t0
    return {"engine": "ray", "out": out_dir, "format": fmt, "images": sink.rows, "errors": sink.errors,
            "seconds": round(seconds, 3), "images_per_s": round(sink.rows / seconds, 1) if seconds > 0 else None,
            "actors": actors, "address": address, "model_id": local.info.get("model_id")}


def _rows_of(outcomes: Sequence[Outcome], n_classes: int) -> list[dict[str, str]]:
    cols = _columns(outcomes, n_classes)
    return [dict(zip(cols, values)) for values in zip(*cols.values())]

