"""Recognise digits and whole numbers in people's own images.

`Predictor` is the Python API behind `digitlab predict` and the web server:

    from digitlab.predict import Predictor
    p = Predictor.load()                      # the shipped pretrained model
    p.predict("my_seven.jpg").label           # -> 7
    p.predict_number("house.png").text        # -> "2024"

Every image goes through `preprocess` (the only path from pixels to model
input); the model is reached only through `runtimes.open_runner`, so with an
ONNX/LiteRT runtime nothing here imports TensorFlow. A Predictor holds no
mutable state after loading: it may be shared by threads.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import __version__
from . import preprocess as pp
from .errors import ConfigError, DigitlabError, ImageError, ModelError
from .runs import sha256_file

DEFAULT_THRESHOLD = 0.6
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MODES = ("digit", "number", "auto")


@dataclass(frozen=True)
class DigitPrediction:
    """The model's answer for one digit."""

    label: int | None  # None when no digit was found
    confidence: float  # probability of `label` (0.0 when no digit)
    probabilities: tuple[float, ...]  # 10 values (empty when no digit)
    top3: tuple[tuple[int, float], ...]
    uncertain: bool  # confidence < threshold, or no digit
    no_digit: bool
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) of the ink, pixels of the (EXIF-rotated) image
    model_input: np.ndarray | None = field(repr=False, compare=False)  # uint8 (28, 28) white on black
    source: str | None = None  # file name, "<stdin>" or None

    def to_dict(self, *, include_input: bool = False) -> dict[str, Any]:
        """JSON-ready: top3 as [[digit, probability], ...], box as [x0, y0, x1, y1] or null."""
        d: dict[str, Any] = {
            "source": self.source,
            "label": self.label,
            "confidence": float(self.confidence),
            "uncertain": bool(self.uncertain),
            "no_digit": bool(self.no_digit),
            "top3": [[int(k), float(v)] for k, v in self.top3],
            "probabilities": [float(v) for v in self.probabilities],
            "box": None if self.box is None else [int(v) for v in self.box],
        }
        if include_input:
            d["model_input"] = None if self.model_input is None else np.asarray(self.model_input).astype(int).tolist()
        return d


@dataclass(frozen=True)
class NumberPrediction:
    """A whole number: its digits from left to right."""

    text: str  # e.g. "2024"; "" when no digit
    digits: tuple[DigitPrediction, ...]
    confidence: float  # the lowest digit confidence (0 when none)
    uncertain: bool  # any digit uncertain, or no digit
    no_digit: bool
    source: str | None = None

    def to_dict(self, *, include_input: bool = False) -> dict[str, Any]:
        return {
            "source": self.source,
            "text": self.text,
            "confidence": float(self.confidence),
            "uncertain": bool(self.uncertain),
            "no_digit": bool(self.no_digit),
            "digits": [dp.to_dict(include_input=include_input) for dp in self.digits],
        }


def no_digit(source: str | None = None) -> DigitPrediction:
    return DigitPrediction(None, 0.0, (), (), True, True, None, None, source)


def pretrained_dir() -> Path:
    """Where the shipped pretrained model lives (inside the installed package)."""
    return Path(str(importlib.resources.files("digitlab") / "pretrained"))


def resolve_model(model: str | os.PathLike | None = None, out: str | os.PathLike = "runs") -> Path:
    """The model to use: a path (run dir, model dir or model file), "latest"
    (the latest run under `out`), a run name under `out`, or None for the
    shipped pretrained model."""
    from .runs import LATEST, resolve_run

    if model is None:
        path = pretrained_dir()
        if not (path / MODEL_FILE).is_file() and not any(path.glob("model.*")):
            raise ModelError(f"the shipped pretrained model is missing ({path}); "
                             "give one with --model PATH or --model latest")
        return path
    if str(model) == LATEST:
        return resolve_run(None, out)
    path = Path(model)
    if path.exists():
        return path.resolve()
    if os.sep not in str(model) and (Path(out) / str(model)).is_dir():
        return resolve_run(str(model), out)
    raise ModelError(f"model {str(model)!r} not found (expected a run directory, a model directory or a model file)")


def _sha12(path: Path) -> str | None:
    try:
        return sha256_file(path)[:12]
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class _Prepared:
    """One image after preprocessing, before the model: its digits' inputs."""

    source: str | None
    number: bool  # answer as a number (several digits)
    auto: bool  # the number mode was chosen automatically
    boxes: tuple[tuple[int, int, int, int], ...]
    inputs: tuple[np.ndarray, ...]  # uint8 (28, 28) each
    image: Any = None  # the decoded PIL image, kept only when asked (annotation)


class Predictor:
    """A loaded model plus the MNIST preprocessing: images in, digits out."""

    def __init__(self, runner: Any, *, threshold: float = DEFAULT_THRESHOLD, scale: float = pp.MNIST_SCALE,
                 info: dict[str, Any] | None = None):
        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold must be between 0 and 1 (got {threshold!r})")
        self.runner = runner
        self.threshold = float(threshold)
        self.scale = float(scale)
        self.info = dict(info or {})
        self.info.setdefault("threshold", self.threshold)
        self.info.setdefault("runtime", getattr(runner, "name", None))

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, *, runtime: str = "auto",
             threshold: float = DEFAULT_THRESHOLD, out: str | os.PathLike = "runs") -> "Predictor":
        """Open `model` (see `resolve_model`; default: the shipped pretrained model) on `runtime`."""
        from .runtimes import open_runner

        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold must be between 0 and 1 (got {threshold!r})")
        path = resolve_model(model, out)
        runner = open_runner(path, runtime)
        model_dir = path if path.is_dir() else path.parent
        model_file = getattr(runner, "model_file", None) or getattr(runner, "path", None)
        if model_file is None:
            model_file = path / MODEL_FILE if path.is_dir() else path
        config = _read_json(model_dir / CONFIG_FILE)
        metrics = _read_json(model_dir / METRICS_FILE)
        scale = config.get("scale", pp.MNIST_SCALE)
        info = {
            "model_path": str(model_file),
            "model_id": _sha12(Path(model_file)),
            "preset": config.get("preset"),
            "test_accuracy": metrics.get("test_accuracy"),
            "runtime": getattr(runner, "name", runtime),
            "digitlab_version": __version__,
            "threshold": float(threshold),
        }
        return cls(runner, threshold=threshold, scale=float(scale), info=info)

    # ----------------------------------------------------------------- model

    def probabilities(self, digits28: np.ndarray) -> np.ndarray:
        """uint8 MNIST-format digits (N, 28, 28) -> float32 probabilities (N, 10)."""
        x = pp.to_model_input(np.asarray(digits28), scale=self.scale)
        if len(x) == 0:
            return np.zeros((0, 10), np.float32)
        return np.asarray(self.runner(x), dtype=np.float32)

    # ----------------------------------------------------------------- the steps

    def prepare(self, image: Any, *, mode: str = "digit", source: str | None = None,
                keep_image: bool = False) -> _Prepared:
        """Decode and preprocess one image (raises ImageError); no model call."""
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        if source is None and isinstance(image, (str, os.PathLike)):
            source = str(image)
        img = pp.load_image(image, name=source)
        if mode == "digit":
            found = pp.find_digit(img)
            boxes, inputs = ((), ()) if found is None else ((found[0],), (found[1],))
            number = auto = False
        else:
            segs = pp.segment_digits(img)
            boxes, inputs = tuple(b for b, _ in segs), tuple(a for _, a in segs)
            # In auto mode one group holds all the ink (what find_digit would give): a single digit.
            number = mode == "number" or len(segs) >= 2
            auto = number and mode == "auto"
        return _Prepared(source, number, auto, boxes, inputs, img if keep_image else None)

    def _digit(self, probs: np.ndarray, box: Any, inp: np.ndarray, source: str | None) -> DigitPrediction:
        values = probs.tolist()  # Python floats, as float(v) gives them
        top = np.argsort(-probs, kind="stable")[:3].tolist()
        label = top[0]
        conf = values[label]
        return DigitPrediction(
            label=label, confidence=conf, probabilities=tuple(values),
            top3=tuple((k, values[k]) for k in top),
            uncertain=conf < self.threshold, no_digit=False, box=tuple(int(v) for v in box),
            model_input=inp, source=source)

    def finish(self, prepared: Sequence[_Prepared], probs: np.ndarray | None = None
               ) -> list[DigitPrediction | NumberPrediction]:
        """Run the model once on all digits of `prepared` and build the answers."""
        inputs = [a for p in prepared for a in p.inputs]
        if probs is None:
            probs = self.probabilities(np.stack(inputs)) if inputs else np.zeros((0, 10), np.float32)
        results: list[DigitPrediction | NumberPrediction] = []
        i = 0
        for p in prepared:
            digits = tuple(self._digit(probs[i + k], p.boxes[k], p.inputs[k], p.source) for k in range(len(p.inputs)))
            i += len(p.inputs)
            if p.number:
                results.append(_number(digits, p.source))
            else:
                results.append(digits[0] if digits else no_digit(p.source))
        return results

    # ----------------------------------------------------------------- the API

    def predict(self, image: Any, *, source: str | None = None) -> DigitPrediction:
        """One digit from a path, bytes, a PIL image or a numpy array."""
        return self.finish([self.prepare(image, mode="digit", source=source)])[0]  # type: ignore[return-value]

    def predict_batch(self, images: Iterable[Any], *, sources: Sequence[str | None] | None = None
                      ) -> list[DigitPrediction]:
        """Many single digits with ONE model call (raises ImageError on the first bad image)."""
        images = list(images)
        srcs = list(sources) if sources is not None else [None] * len(images)
        prepared = [self.prepare(im, mode="digit", source=s) for im, s in zip(images, srcs)]
        return self.finish(prepared)  # type: ignore[return-value]

    def predict_number(self, image: Any, *, source: str | None = None) -> NumberPrediction:
        """A whole number (digits in a row, left to right)."""
        return self.finish([self.prepare(image, mode="number", source=source)])[0]  # type: ignore[return-value]

    def predict_many(self, images: Iterable[Any], *, mode: str = "digit",
                     sources: Sequence[str | None] | None = None
                     ) -> list[DigitPrediction | NumberPrediction | ImageError]:
        """Like `predict_batch` for any mode, but a bad image gives its ImageError
        in its place instead of stopping the others. One model call in all."""
        images = list(images)
        srcs = list(sources) if sources is not None else [None] * len(images)
        prepared: list[_Prepared | ImageError] = []
        for im, s in zip(images, srcs):
            try:
                prepared.append(self.prepare(im, mode=mode, source=s))
            except ImageError as exc:
                prepared.append(exc)
        good = self.finish([p for p in prepared if isinstance(p, _Prepared)])
        it = iter(good)
        return [p if isinstance(p, ImageError) else next(it) for p in prepared]


def _number(digits: tuple[DigitPrediction, ...], source: str | None) -> NumberPrediction:
    if not digits:
        return NumberPrediction("", (), 0.0, True, True, source)
    return NumberPrediction(
        text="".join(str(d.label) for d in digits), digits=digits,
        confidence=min(d.confidence for d in digits), uncertain=any(d.uncertain for d in digits),
        no_digit=False, source=source)


__all__ = ["DigitPrediction", "NumberPrediction", "Predictor", "resolve_model", "pretrained_dir",
           "DigitlabError"]


# =========================================================================== CLI helpers
# Used by `digitlab predict` (cli.py); kept here so the command stays a thin
# layer and the server can reuse the pictures.

STDIN = "-"
STDIN_LABEL = "<stdin>"
CHUNK = 256  # images per model call in the CLI


@dataclass(frozen=True)
class InputItem:
    """One input of `digitlab predict`: its label, a path or bytes, or an error."""

    label: str
    source: str | bytes | None
    error: str | None = None


def expand_inputs(paths: Sequence[str], *, stdin: Any = None) -> list[InputItem]:
    """Files, directories (recursive, image extensions only), glob patterns and "-" (stdin bytes)."""
    import glob

    items: list[InputItem] = []
    for raw in paths:
        if raw == STDIN:
            stream = stdin if stdin is not None else _stdin_buffer()
            try:
                data = stream.read(pp.MAX_BYTES + 1)
            except OSError as exc:
                items.append(InputItem(STDIN_LABEL, None, f"cannot read standard input ({exc})"))
                continue
            items.append(InputItem(STDIN_LABEL, bytes(data)))
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in pp.IMAGE_EXTENSIONS)
            if not found:
                items.append(InputItem(raw, None, "no image files in this directory "
                                                  f"({', '.join(e[1:] for e in pp.IMAGE_EXTENSIONS)})"))
            items.extend(InputItem(str(p), str(p)) for p in found)
        elif path.exists() or path.is_symlink():
            items.append(InputItem(raw, raw))
        elif any(ch in raw for ch in "*?["):
            matches = sorted(m for m in glob.glob(raw, recursive=True) if Path(m).is_file())
            if not matches:
                items.append(InputItem(raw, None, "no files match this pattern"))
            items.extend(InputItem(m, m) for m in matches)
        else:
            items.append(InputItem(raw, None, "no such file or directory"))
    return items


def _stdin_buffer() -> Any:
    import sys

    return getattr(sys.stdin, "buffer", sys.stdin)


def output_name(label: str, used: set[str], suffix: str = ".png") -> str:
    """A file name for `label`'s picture, unique within `used`."""
    stem = "stdin" if label == STDIN_LABEL else Path(label).stem or "image"
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)[:100] or "image"
    name, k = stem + suffix, 2
    while name in used:
        name, k = f"{stem}-{k}{suffix}", k + 1
    used.add(name)
    return name


def _digits_of(result: DigitPrediction | NumberPrediction) -> tuple[DigitPrediction, ...]:
    if isinstance(result, NumberPrediction):
        return result.digits
    return () if result.no_digit else (result,)


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
    img = Image.fromarray(strip)
    return img.resize((strip.shape[1] * zoom, 28 * zoom), Image.Resampling.NEAREST)


def _displayable(img: Any) -> Any:
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        g = pp.to_grayscale(img)
        return Image.fromarray(np.round(g * 255).astype(np.uint8)).convert("RGB")
    try:
        return img.convert("RGB")
    except Exception:  # noqa: BLE001
        return Image.fromarray(np.round(pp.to_grayscale(img) * 255).astype(np.uint8)).convert("RGB")


def annotate_image(img: Any, result: DigitPrediction | NumberPrediction) -> Any:
    """A copy of the (decoded) input with each digit's box and label drawn on it."""
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
        x0, y0, x1, y1 = d.box  # type: ignore[misc]
        colour = (230, 120, 0) if d.uncertain else (0, 170, 0)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=line)
        size = max(12, (y1 - y0) / 3)
        text = f"{d.label} {d.confidence * 100:.0f}%"
        ty = y0 - size - 2 if y0 - size - 2 >= 0 else min(y1 + 2, max(0, h - size))
        draw.text((x0, ty), text, fill=colour, font=font(size))
    if isinstance(result, NumberPrediction):
        draw.text((line, line), result.text, fill=(0, 0, 220), font=font(max(12, h / 10)))
    return canvas


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def record(label: str, result: DigitPrediction | NumberPrediction | ImageError, *, auto: bool = False) -> dict[str, Any]:
    """One JSON object for `--json`."""
    if isinstance(result, ImageError):
        return {"file": label, "error": _strip_label(str(result), label)}
    d = {"file": label, "kind": "number" if isinstance(result, NumberPrediction) else "digit"}
    if isinstance(result, NumberPrediction):
        d["number_mode"] = "auto" if auto else "requested"
    body = result.to_dict()
    body.pop("source", None)
    d.update(body)
    return d


def _strip_label(msg: str, label: str) -> str:
    for prefix in (f"{label}: ", "<bytes>: ", f"{STDIN_LABEL}: "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _flags(result: DigitPrediction | NumberPrediction, auto: bool) -> str:
    flags = []
    if isinstance(result, NumberPrediction):
        flags.append("number (auto: several digits found)" if auto else "number")
    if result.no_digit:
        flags.append("no digit")
    elif result.uncertain:
        flags.append("uncertain")
    return ", ".join(flags)


def table_row(label: str, result: DigitPrediction | NumberPrediction, auto: bool = False) -> tuple[str, ...]:
    if result.no_digit:
        return (label, "-", "-", "", _flags(result, auto))
    if isinstance(result, NumberPrediction):
        detail = "  ".join(f"{d.label}:{_pct(d.confidence)}" for d in result.digits)
        return (label, result.text, _pct(result.confidence), detail, _flags(result, auto))
    top = ", ".join(f"{k} {_pct(v)}" for k, v in result.top3)
    return (label, str(result.label), _pct(result.confidence), top, _flags(result, auto))


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    header = ("file", "prediction", "confidence", "top-3 / digits", "flags")
    allrows = [header, *rows]
    widths = [max(len(r[i]) for r in allrows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) if i < len(header) - 1 else c for i, c in enumerate(r)).rstrip()
             for r in allrows]
    return "\n".join(lines)


CSV_HEADER = ("file", "kind", "prediction", "confidence", "uncertain", "no_digit", "top3", "digits", "box",
              *(f"p{k}" for k in range(10)), "error")


def csv_row(label: str, result: DigitPrediction | NumberPrediction | ImageError, auto: bool = False) -> list[Any]:
    empty10 = [""] * 10
    if isinstance(result, ImageError):
        return [label, "", "", "", "", "", "", "", "", *empty10, _strip_label(str(result), label)]
    if isinstance(result, NumberPrediction):
        digits = ";".join(f"{d.label}:{d.confidence:.6f}:{'/'.join(map(str, d.box or ()))}" for d in result.digits)
        return [label, "number-auto" if auto else "number", result.text, f"{result.confidence:.6f}",
                int(result.uncertain), int(result.no_digit), "", digits, "", *empty10, ""]
    if result.no_digit:
        return [label, "digit", "", "0", 1, 1, "", "", "", *empty10, ""]
    top = ";".join(f"{k}:{v:.6f}" for k, v in result.top3)
    return [label, "digit", result.label, f"{result.confidence:.6f}", int(result.uncertain), 0, top, "",
            "/".join(map(str, result.box or ())), *(repr(float(p)) for p in result.probabilities), ""]
