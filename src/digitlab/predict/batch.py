"""Batch recognition into a file: any number of images, all cores, resumable.

    from digitlab.predict.batch import predict_to_file
    summary = predict_to_file("scans/", "results.jsonl", workers=8)   # or .csv, .parquet
    print(summary.line())

The inputs are listed lazily (`inputs.iter_inputs`: folders, globs, @list
files, tar / zip archives), decoded and preprocessed in worker processes
(`predictor.prepare_image`, the same first half as `Predictor.predict_stream`),
and classified in batches in this process (`Predictor.classify`, the same
second half), so the answers are those of `digitlab predict` image for image.
Rows go to a resumable sink (`sinks`) a batch at a time; re-running the same
call skips what the file already holds. Memory is flat: at most
MAX_IN_FLIGHT tasks of TASK_IMAGES images are out at once, one batch of
results is held, and the done inputs cost 8 bytes each.

Engines: ENGINES maps a name to a function `(predictor, items, *, mode,
workers, chunk) -> Iterator[list[Outcome]]` that turns the `InputItem`s into
batches of Outcomes (any order, each item once). "local" is this module's;
another engine (a cluster) registers itself there and gets the same listing,
sink, progress and summary.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DigitlabError, ImageError
from .inputs import InputItem, count_inputs, iter_inputs
from .predictor import CHUNK, Predictor, prepare_image, strip_label
from .present import KINDS, kind_of
from .results import Outcome
from .sinks import open_sink, output_format

TASK_IMAGES = 32  # images per worker task: pickling overhead amortised, little left to redo
TASK_BYTES = 8 * 2**20  # archive members' bytes per task: a task of big images stays small in memory
IN_FLIGHT_PER_WORKER = 2  # tasks queued per worker: one running, one ready, so no worker waits
PLAIN_EVERY_S = 10.0  # a progress line this often when stderr is not a terminal (a log, CI)
PARENT_POLL_S = 0.5  # how soon an orphaned worker (parent killed with -9) notices and exits
ERRORS_SHOWN = 20  # error lines on stderr; the rest are only in the output (a million bad files must not flood it)


@dataclass
class Summary:
    """What a `predict_to_file` run did: counts of this run by kind (KINDS), and the rows that
    were already in the file (`resumed`, of which `resumed_errors` errors)."""

    out: Path
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    resumed: int = 0
    resumed_errors: int = 0
    seconds: float = 0.0
    workers: int = 0
    engine: str = "local"

    @property
    def images(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Images per second of this run."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> int:
        """Inputs in the file that gave an error (this run's and earlier ones')."""
        return self.counts["error"] + self.resumed_errors

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            self.counts[kind_of(outcome)] += 1

    def line(self) -> str:
        """One line for people: where, how many, how fast, of which kinds."""
        c = self.counts
        text = (f"{self.out}: {self.images:,} images in {self.seconds:.1f} s ({self.rate:,.0f} images/s, "
                f"{self.workers} worker{'s' if self.workers != 1 else ''}): {c['digit']:,} digits, "
                f"{c['uncertain']:,} uncertain, {c['not_digit']:,} not a digit, {c['no_digit']:,} no digit, "
                f"{c['error']:,} errors")
        if self.resumed:
            text += f"; {self.resumed:,} already there ({self.resumed_errors:,} errors), skipped"
        return text


# --------------------------------------------------------------------------- the local engine


def local_engine(predictor: Predictor, items: Iterable[InputItem], *, mode: str, workers: int,
                 chunk: int = CHUNK) -> Iterator[list[Outcome]]:
    """Batches of `chunk` Outcomes, in input order: preprocessing in `workers` processes (0: in
    this one), one model call per batch here."""
    pending: list[tuple[str | None, Any]] = []
    for pair in _prepared(items, mode, workers):
        pending.append(pair)
        if len(pending) >= chunk:
            yield list(predictor.classify(pending))
            pending = []
    if pending:
        yield list(predictor.classify(pending))


def _prepared(items: Iterable[InputItem], mode: str, workers: int) -> Iterator[tuple[str, Any]]:
    """(label, prepared image or error text) for each item, in order."""
    if workers == 0:
        for item in items:
            yield prepare_item(item, mode)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: this process has threads (ONNX Runtime's, the progress bar's) that a
    # fork would copy mid-state; a worker imports only numpy, Pillow and digitlab.predict.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(),))
    in_flight: deque[Any] = deque()
    try:
        for task in _tasks(items):
            in_flight.append(pool.submit(prepare_task, task, mode))
            if len(in_flight) >= IN_FLIGHT_PER_WORKER * workers + 1:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()
    except BrokenProcessPool:
        raise DigitlabError("a worker process died (out of memory, or killed); the results so far are kept: "
                            "run the same command again to go on") from None
    finally:
        # Also on Ctrl-C or an early stop: queued tasks are dropped, running ones (a few images) end.
        pool.shutdown(wait=True, cancel_futures=True)


def _tasks(items: Iterable[InputItem]) -> Iterator[list[InputItem]]:
    task: list[InputItem] = []
    size = 0
    for item in items:
        task.append(item)
        size += len(item.source) if isinstance(item.source, bytes) else 0
        if len(task) >= TASK_IMAGES or size >= TASK_BYTES:
            yield task
            task, size = [], 0
    if task:
        yield task


def prepare_item(item: InputItem, mode: str) -> tuple[str, Any]:
    """One input -> (label, `prepare_image`'s result or the error text); never raises for an image."""
    if item.error is not None:
        return item.label, item.error
    try:
        return item.label, prepare_image(item.source, mode=mode, source=item.label)
    except ImageError as exc:
        return item.label, strip_label(str(exc), item.label)
    except Exception as exc:  # noqa: BLE001 - a decoder's bug on one file costs its row, not the run
        return item.label, f"cannot process this image ({type(exc).__name__}: {exc})"


def prepare_task(task: Sequence[InputItem], mode: str) -> list[tuple[str, Any]]:
    """A worker's task: `prepare_item` for each of a few inputs."""
    return [prepare_item(item, mode) for item in task]


def _worker_init(parent: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (kill -9 leaves no one to stop the pool; its queue never closes)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


ENGINES: dict[str, Callable[..., Iterator[list[Outcome]]]] = {"local": local_engine}


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar (rate, ETA) on a terminal; else a plain line every PLAIN_EVERY_S."""

    def __init__(self, enabled: bool | None, err: Any, resumed: int):
        self.err, self.resumed = err, resumed
        self.done = self.errors = self.shown = 0
        self.total: int | None = None
        self.t0 = self.last = time.perf_counter()
        tty = _isatty(err)
        enabled = True if enabled is None else enabled
        self.bar: Any = None
        self.plain = enabled and not tty
        if enabled and tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), console=Console(file=err), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("predict", total=None, completed=resumed, rate="")

    def set_total(self, total: int | None) -> None:
        """From the counting thread: the number of inputs, done ones included."""
        self.total = total
        if self.bar is not None and total is not None:
            self.bar.update(self.task, total=max(total, self.resumed + self.done))

    def advance(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            if o.result is None:
                self.errors += 1
                if self.errors <= ERRORS_SHOWN:
                    self._line(f"error: {o.source}: {o.error}")
                elif self.errors == ERRORS_SHOWN + 1:
                    self._line("error: ... (further errors only in the output file)")
        self.done += len(outcomes)
        now = time.perf_counter()
        rate = self.done / max(now - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, advance=len(outcomes), rate=f"{rate:,.0f} img/s")
        elif self.plain and now - self.last >= PLAIN_EVERY_S:
            self.last = now
            of = f"/{self.total:,}" if self.total is not None else ""
            left = None if self.total is None else self.total - self.resumed - self.done
            eta = f", ETA {_clock(left / rate)}" if left is not None and left >= 0 and rate > 0 else ""
            self._line(f"predicted {self.resumed + self.done:,}{of} ({rate:,.0f} images/s{eta}), "
                       f"{self.errors:,} errors")

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.err, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------- the API


def default_workers() -> int:
    """The cores this process may use (its CPU affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def predict_to_file(source: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike, *,
                    model: str | os.PathLike | None = None, runtime: str = "auto", workers: int | None = None,
                    mode: str = "auto", threshold: float | None = None, runs_dir: str | os.PathLike | None = None,
                    engine: str = "local", progress: bool | None = None, chunk: int = CHUNK,
                    err: Any = None) -> Summary:
    """Predict every image of `source` into `out` (.jsonl, .csv or .parquet), resumably.

    `source`: one or more folders, globs, `@list` files, tar / zip archives or files (see
    `inputs.iter_inputs`). Rows already in `out` are kept and their inputs skipped.
    `workers`: preprocessing processes (default: the usable cores; 0: none, all in this
    process). `mode`: "auto" (a digit, or a number when several digits are found),
    "digit" or "number". `progress`: None/True a bar on a terminal, else plain lines on
    `err` (stderr); False: none. Returns the `Summary`; bad inputs are error rows, never a stop.
    """
    paths = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(s) for s in source]
    if not paths:
        raise ConfigError("no inputs: give folders, glob patterns, @list files, archives or image files")
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise ConfigError(f"--workers must be 0 or more (got {workers})")
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1 (got {chunk})")
    output_format(out)  # a bad suffix or a missing pyarrow is said before the slow model load
    # With workers the cores are theirs; one inference thread keeps up (a batch is ~1 ms a core).
    predictor = Predictor.load(model, runtime=runtime, threshold=threshold, out=runs_dir,
                               threads=1 if workers else None)
    mode = predictor.resolve_mode(mode)
    err = err if err is not None else sys.stderr
    with open_sink(out, predictor.classes) as sink:
        summary = Summary(Path(out), resumed=sink.resumed, resumed_errors=sink.resumed_errors, workers=workers,
                          engine=engine)
        bar = _Progress(progress, err, sink.resumed)
        if bar.bar is not None or bar.plain:
            threading.Thread(target=lambda: bar.set_total(count_inputs(paths)), daemon=True).start()
        items = iter_inputs(paths, skip=sink.done.__contains__)
        t0 = time.perf_counter()
        try:
            for outcomes in ENGINES[engine](predictor, items, mode=mode, workers=workers, chunk=chunk):
                sink.write(outcomes)
                summary.add(outcomes)
                bar.advance(outcomes)
        except KeyboardInterrupt:
            bar.close()
            print(f"stopped: the results so far are in {out}; the same command goes on from there",
                  file=err, flush=True)
            raise
        finally:
            summary.seconds = time.perf_counter() - t0
            bar.close()
    return summary
