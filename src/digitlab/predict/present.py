"""Showing predictions: a table, CSV or JSON, pictures, and a progress bar.

`Printer` takes the `Outcome`s of `Predictor.predict_stream` one by one and
writes them in the chosen format; `digitlab predict` is a loop over it. The
table and the progress bar are drawn with rich (a dependency of Typer). CSV
rows stream out as results arrive; the table and JSON are printed at the end.
Errors go to stderr as `error: <file>: <why>` (JSON records carry them).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import STDIN_LABEL
from .results import DigitPrediction, NumberPrediction, Outcome

FORMATS = ("table", "json", "csv")
PROGRESS_FROM = 50  # a progress bar is worth drawing from this many inputs on (on a terminal)


def csv_header(n_classes: int = 10) -> tuple[str, ...]:
    """The CSV columns: one probability column p0, p1, ... per class of the model (10 for digits)."""
    return ("file", "kind", "prediction", "confidence", "uncertain", "no_digit", "not_digit", "top3", "digits",
            "box", *(f"p{k}" for k in range(n_classes)), "error")


CSV_HEADER = csv_header()  # a digit model's
TABLE_HEADER = ("file", "prediction", "confidence", "top-3 / digits", "flags")


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _digits_of(result: DigitPrediction | NumberPrediction) -> tuple[DigitPrediction, ...]:
    if isinstance(result, NumberPrediction):
        return result.digits
    return () if result.no_digit else (result,)


def flags(result: DigitPrediction | NumberPrediction) -> str:
    """What a reader should know besides the answer: number mode, no digit, not a digit, uncertain."""
    out = []
    if isinstance(result, NumberPrediction):
        out.append("number (auto: several digits found)" if result.auto else "number")
    if result.no_digit:
        out.append("no digit")
    elif result.not_digit:
        out.append("not a digit")
    elif result.uncertain:
        out.append("uncertain")
    return ", ".join(out)


KINDS = ("digit", "uncertain", "not_digit", "no_digit", "error")  # what a summary counts, one kind an input


def kind_of(outcome: Outcome) -> str:
    """The one KINDS entry of an outcome, by the precedence `flags` shows them in
    (a confident number counts as "digit")."""
    result = outcome.result
    if result is None:
        return "error"
    return "no_digit" if result.no_digit else "not_digit" if result.not_digit else \
        "uncertain" if result.uncertain else "digit"


def table_row(label: str, result: DigitPrediction | NumberPrediction,
              classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """One row of the table; `classes` names the top-3 (default: their numbers, which are the digits)."""
    if result.no_digit:
        return (label, "-", "-", "", flags(result))
    if isinstance(result, NumberPrediction):
        detail = "  ".join(f"{d.name or d.label}:{_pct(d.confidence)}" for d in result.digits)
        return (label, result.text, _pct(result.confidence), detail, flags(result))
    names = classes or ()
    top = ", ".join(f"{names[k] if k < len(names) else k} {_pct(v)}" for k, v in result.top3)
    return (label, result.name or str(result.label), _pct(result.confidence), top, flags(result))


def record(outcome: Outcome) -> dict[str, Any]:
    """One JSON object for `--json`."""
    label = outcome.source or "<input>"
    if outcome.result is None:
        return {"file": label, "error": outcome.error}
    result = outcome.result
    d: dict[str, Any] = {"file": label, "kind": "number" if isinstance(result, NumberPrediction) else "digit"}
    if isinstance(result, NumberPrediction):
        d["number_mode"] = "auto" if result.auto else "requested"
    body = result.to_dict()
    body.pop("source", None)
    d.update(body)
    return d


def csv_row(outcome: Outcome, n_classes: int = 10) -> list[Any]:
    """One CSV row (see `csv_header`): the prediction is the class name (the digit, for a digit
    model), top3 gives class numbers (indices of the p columns)."""
    label, result = outcome.source or "<input>", outcome.result
    empty10 = [""] * n_classes
    if result is None:
        return [label, "", "", "", "", "", "", "", "", "", *empty10, outcome.error]
    if isinstance(result, NumberPrediction):
        digits = ";".join(f"{d.name or d.label}:{d.confidence:.6f}:{'/'.join(map(str, d.box or ()))}" for d in result.digits)
        return [label, "number-auto" if result.auto else "number", result.text, f"{result.confidence:.6f}",
                int(result.uncertain), int(result.no_digit), int(result.not_digit), "", digits, "", *empty10, ""]
    if result.no_digit:
        return [label, "digit", "", "0", 1, 1, 0, "", "", "", *empty10, ""]
    top = ";".join(f"{k}:{v:.6f}" for k, v in result.top3)
    return [label, "digit", result.name or result.label, f"{result.confidence:.6f}", int(result.uncertain), 0,
            int(result.not_digit),
            top, "", "/".join(map(str, result.box or ())), *(repr(float(p)) for p in result.probabilities), ""]


# --------------------------------------------------------------------------- pictures


def output_name(label: str, used: set[str], suffix: str = ".png") -> str:
    """A file name for `label`'s picture, unique within `used`."""
    stem = "stdin" if label == STDIN_LABEL else Path(label).stem or "image"
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)[:100] or "image"
    name, k = stem + suffix, 2
    while name in used:
        name, k = f"{stem}-{k}{suffix}", k + 1
    used.add(name)
    return name


def input_picture(result: DigitPrediction | NumberPrediction, zoom: int = 8) -> Any:
    """The 28x28 image(s) the model saw, side by side, enlarged `zoom` times (nearest)."""
    from PIL import Image

    digits = [d.model_input for d in _digits_of(result) if d.model_input is not None]
    if not digits:
        digits = [np.zeros((28, 28), np.uint8)]
    gap = np.full((28, 1), 96, np.uint8)
    parts: list[np.ndarray] = []
    for i, a in enumerate(digits):
        if i:
            parts.append(gap)
        parts.append(np.asarray(a, np.uint8))
    strip = np.concatenate(parts, axis=1)
    return Image.fromarray(strip).resize((strip.shape[1] * zoom, 28 * zoom), Image.Resampling.NEAREST)


def _displayable(img: Any) -> Any:
    from PIL import Image

    from ..preprocess import to_grayscale

    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return Image.fromarray(np.round(to_grayscale(img) * 255).astype(np.uint8)).convert("RGB")
    try:
        return img.convert("RGB")
    except Exception:  # noqa: BLE001 - exotic modes
        return Image.fromarray(np.round(to_grayscale(img) * 255).astype(np.uint8)).convert("RGB")


def annotate_image(img: Any, result: DigitPrediction | NumberPrediction, scale: float = 1.0) -> Any:
    """A copy of the (decoded) input with each digit's box and label drawn on it.

    `scale` is the picture's size relative to the input the boxes refer to
    (predict_stream keeps a reduced copy of very large inputs).
    """
    from PIL import ImageDraw, ImageFont

    canvas = _displayable(img).copy()
    w, h = canvas.size
    draw = ImageDraw.Draw(canvas)
    line = max(1, round(max(w, h) / 200))

    def font(size: float) -> Any:
        try:
            return ImageFont.load_default(size=max(10, int(size)))
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()

    digits = _digits_of(result)
    if not digits:
        draw.text((line, line), "no digit", fill=(220, 0, 0), font=font(max(12, h / 8)))
        return canvas
    for d in digits:
        x0, y0, x1, y1 = (round(v * scale) for v in d.box)  # type: ignore[union-attr]
        colour = (220, 0, 0) if d.not_digit else (230, 120, 0) if d.uncertain else (0, 170, 0)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=line)
        size = max(12, (y1 - y0) / 3)
        ty = y0 - size - 2 if y0 - size - 2 >= 0 else min(y1 + 2, max(0, h - size))
        text = "not a digit" if d.not_digit else f"{d.name or d.label} {d.confidence * 100:.0f}%"
        draw.text((x0, ty), text, fill=colour, font=font(size))
    if isinstance(result, NumberPrediction):
        draw.text((line, line), result.text, fill=(0, 0, 220), font=font(max(12, h / 10)))
    return canvas


# --------------------------------------------------------------------------- the printer


class Printer:
    """Writes outcomes as a table, JSON or CSV, saves pictures, draws a progress bar.

    Use as a context manager; `failed` counts inputs that gave an error.
    """

    def __init__(self, fmt: str = "table", *, total: int = 0, annotate_dir: Path | None = None,
                 input_dir: Path | None = None, out: Any = None, err: Any = None, progress: bool | None = None,
                 classes: Sequence[str] | None = None, explain_dir: Path | None = None, explainer: Any = None):
        """`classes`: the model's class names (default: digits 0-9), for the table and the CSV columns.
        `explain_dir`: where each input's heatmap picture goes, made by `explainer` (predict.explaining)."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        self.fmt, self.total = fmt, total
        self.classes = tuple(classes) if classes is not None else tuple(str(d) for d in range(10))
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.dirs = {name: d for name, d in (("annotate", annotate_dir), ("input", input_dir),
                                             ("explain", explain_dir)) if d is not None}
        self.explainer = explainer
        self.used: dict[str, set[str]] = {name: set() for name in self.dirs}
        self.failed = 0
        self.rows: list[tuple[str, ...]] = []
        self.records: list[dict[str, Any]] = []
        self._csv = csv.writer(self.out, lineterminator="\n") if fmt == "csv" else None
        if progress is None:
            progress = total >= PROGRESS_FROM and _isatty(self.err)
        self._progress: Any = None
        self._task: Any = None
        self._want_progress = progress

    def __enter__(self) -> Printer:
        if self._csv is not None:
            self._csv.writerow(csv_header(len(self.classes)))
        if self._want_progress:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                      console=Console(file=self.err), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("predict", total=self.total, rate="")
        return self

    def add(self, outcome: Outcome) -> None:
        """Show one outcome (and save its pictures)."""
        label = outcome.source or "<input>"
        if outcome.result is None:
            self.failed += 1
            if self.fmt != "json":
                self._error(f"error: {label}: {outcome.error}")
        if self.fmt == "json":
            self.records.append(record(outcome))
        elif self._csv is not None:
            self._csv.writerow(csv_row(outcome, len(self.classes)))
        elif outcome.result is not None:
            self.rows.append(table_row(label, outcome.result, self.classes))
        if outcome.result is not None:
            self._save_pictures(label, outcome)
        if self._progress is not None:
            task = self._progress.tasks[0]
            rate = f"{task.speed:.0f} img/s" if task.speed else ""
            self._progress.update(self._task, advance=1, rate=rate)

    def _save_pictures(self, label: str, outcome: Outcome) -> None:
        from ..files.atomic import atomic_path

        pictures = {"annotate": lambda: annotate_image(outcome.image, outcome.result, outcome.image_scale),
                    "input": lambda: input_picture(outcome.result), "explain": self._explain_picture(outcome)}
        for name, folder in self.dirs.items():
            if name == "annotate" and outcome.image is None:
                continue
            with atomic_path(folder / output_name(label, self.used[name])) as tmp:
                pictures[name]().save(tmp, format="PNG")

    def _explain_picture(self, outcome: Outcome) -> Any:
        from .explaining import explain_picture

        return lambda: explain_picture(outcome.result, self.explainer)

    def _error(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.err, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
        if exc[0] is not None:
            return
        if self.fmt == "json":
            print(json.dumps(self.records, indent=2), file=self.out)
        elif self.fmt == "table" and self.rows:
            print_table(self.rows, file=self.out)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def print_table(rows: Sequence[tuple[str, ...]], *, file: Any = None) -> None:
    """The prediction table (rich): aligned columns, file names never cut."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    file = file or sys.stdout
    terminal = _isatty(file)
    table = Table(box=box.SIMPLE_HEAD if terminal else None, show_edge=False, pad_edge=False,
                  header_style="bold" if terminal else None)
    for i, head in enumerate(TABLE_HEADER):
        table.add_column(head, overflow="fold", no_wrap=i != 0, justify="right" if i == 2 else "left")
    for row in rows:
        table.add_row(*row)
    if terminal:
        Console(file=file, highlight=False).print(table)
        return
    # Off a terminal (a pipe, a file) nothing limits the width: never wrap or cut a row, and
    # leave no padding at the ends of lines for scripts to trip over.
    console = Console(width=10_000, no_color=True, highlight=False, soft_wrap=False)
    with console.capture() as captured:
        console.print(table)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()), file=file)


def print_predictions(paths: Sequence[str] | None, *, model: str | None = None, runtime: str = "auto",
                      number: bool = False, as_json: bool = False, as_csv: bool = False, threshold: float | None = None,
                      annotate: str | None = None, show_input: str | None = None, neighbours_dir: str | None = None,
                      explain: str | None = None, explain_method: str = "occlusion", runs_dir: str | None = None) -> Printer:
    """`digitlab predict`: every input's answer as a table, JSON or CSV on stdout (pictures in
    `annotate` / `show_input`, the nearest training images of the top 3 in `neighbours_dir`,
    heatmaps by `explain_method` in `explain`);
    returns the Printer, whose `failed` says whether an input failed."""
    from ..errors import ConfigError
    from ..files.atomic import check_writable_dir
    from .explaining import Explainer, check_method
    from .inputs import expand_inputs
    from .predictor import Predictor

    check_method(explain_method)
    if as_json and as_csv:
        raise ConfigError("choose one of --json and --csv")
    if not paths:
        raise ConfigError("no inputs: give image files, directories, glob patterns, or - for stdin")
    dirs = [check_writable_dir(d) if d else None for d in (annotate, show_input, neighbours_dir, explain)]
    predictor = Predictor.load(model, runtime=runtime, threshold=threshold, out=runs_dir)
    explainer = Explainer(predictor, explain_method) if explain else None
    if neighbours_dir:
        from .neighbours import ensure_index

        ensure_index(predictor.model_path.parent, log=lambda line: print(line, file=sys.stderr))
    items = expand_inputs(paths)
    used: set[str] = set()
    with Printer("json" if as_json else "csv" if as_csv else "table", total=len(items),
                 annotate_dir=dirs[0], input_dir=dirs[1], classes=predictor.classes,
                 explain_dir=dirs[3], explainer=explainer) as printer:
        for outcome in predictor.predict_stream(items, mode="number" if number else "auto",
                                                keep_image=annotate is not None):
            printer.add(outcome)
            if dirs[2] is not None and outcome.result is not None:
                _neighbour_pictures(predictor, outcome, dirs[2], used)
    return printer


def _neighbour_pictures(predictor: Any, outcome: Outcome, folder: Path, used: set[str]) -> None:
    """`predict --neighbours DIR`: one picture per digit found (a number gives one per digit)."""
    from ..files.atomic import atomic_path
    from .neighbours import strip_picture

    digits = getattr(outcome.result, "digits", None) or (outcome.result,)
    for d in digits:
        if d.no_digit:
            continue
        with atomic_path(folder / output_name(outcome.source or "input", used)) as tmp:
            strip_picture(d, predictor.neighbours(d)).save(tmp, format="PNG")
