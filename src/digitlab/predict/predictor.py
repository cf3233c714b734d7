"""Recognise digits and whole numbers in people's own images.

`Predictor` is the Python API behind `digitlab predict` and the web server:

    from digitlab import Predictor
    p = Predictor.load()                      # the shipped pretrained model
    p.predict("my_seven.jpg").label           # -> 7
    p.predict_number("house.png").text        # -> "2024"
    for outcome in p.predict_stream(paths):   # many files, bounded memory, per-file errors
        print(outcome.source, outcome.result or outcome.error)

Every image goes through `preprocess` (the only path from pixels to model
input); the model is reached only through `runtimes.open_runner`, so with an
ONNX/LiteRT runtime nothing here imports TensorFlow. A Predictor holds no
mutable state after loading: it may be shared by threads. How results are
shown (tables, CSV, annotated pictures) is `present.py`'s business.

Three flags qualify an answer, all decided in one place (`_digit`), whatever
produced the model input, from the model's (calibrated) probabilities:
`no_digit` (a near-empty input: `ood.near_empty`), `not_digit` (ink that
is not a digit: `ood.not_digit_score` above the model's own threshold), and
`uncertain` (confidence below the threshold, or either of the other two).
The thresholds come with the model (its config) unless given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .. import preprocess as pp
from ..config.classes import DIGITS, is_digit_classes
from ..errors import ConfigError, DigitlabError, ImageError, ModelError
from ..files.atomic import read_json
from ..files.layout import METRICS_FILE
from ..models.ood import near_empty, not_digit_score
from ..runs.artifacts import model_id, pretrained_dir, resolve_model
from .neighbours import LazyIndex
from .reading import Lattice, chosen, whole
from .results import DigitPrediction, NumberPrediction, Outcome, no_digit, number_of

DEFAULT_THRESHOLD = 0.6  # for models without a calibrated threshold of their own (config.uncertain_below)
MODES = ("digit", "number", "auto")
CHUNK = 256  # images per model call in predict_stream: one call amortises its overhead, memory stays flat
MODEL_BATCH = 256  # inputs per runtime call: bigger batches are slower per input on CPU (ONNX Runtime, shipped
# model: 256 a call 258 us an input, 1024 338 us, 6144 376 us) and their activations grow without bound
DISPLAY_SIDE = 2048  # kept copies for annotation are at most this big: 16 x 25 MP inputs must not pile up


@dataclass(frozen=True)
class _Prepared:
    """One image after preprocessing, before the model: its digits' inputs."""

    source: str | None
    number: bool  # answer as a number (several digits)
    auto: bool  # the number mode was chosen automatically
    boxes: tuple[tuple[int, int, int, int], ...]
    inputs: tuple[np.ndarray, ...]  # uint8 (28, 28) each
    image: Any = None  # a display-size copy of the input, kept only when asked (annotation)
    image_scale: float = 1.0  # its pixels per input pixel (boxes are in input pixels)
    # number mode with touching digits: `inputs` holds every candidate digit, and the model's
    # probabilities choose which are the number's (`reading.chosen`); None: every input is a digit
    reading: tuple[Lattice, ...] | None = None
    # number mode before the model: the groups (`inputs`, one each) whose candidate cuts are yet to
    # be made (`preprocess.NumberGroups`); `finish` cuts only those the model is unsure of whole
    cuts: Any = None


class Predictor:
    """A loaded model plus the MNIST preprocessing: images in, digits out."""

    def __init__(self, runner: Any, *, threshold: float | None = None, scale: float = pp.MNIST_SCALE,
                 info: dict[str, Any] | None = None):
        """`threshold`: confidence below which answers are uncertain; None = the model's own
        (its config's `uncertain_below`, chosen when it was calibrated), else DEFAULT_THRESHOLD."""
        config = getattr(runner, "config", None)
        if threshold is None:
            threshold = getattr(config, "uncertain_below", None)
            threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        _check_threshold(threshold)
        self.runner = runner
        self.model_path: Path | None = getattr(runner, "path", None)
        self.threshold = float(threshold)
        # The not-a-digit threshold is the model's own: it is chosen for the model's score distribution.
        not_digit_above = getattr(config, "not_digit_above", None)
        self.not_digit_above: float | None = None if not_digit_above is None else float(not_digit_above)
        self.scale = float(scale)
        # What each output means (Config.classes); a number reads left to right only with digit classes.
        self.classes: tuple[str, ...] = tuple(getattr(config, "classes", None) or DIGITS)
        self.digit_classes = is_digit_classes(self.classes)
        self.info = dict(info or {})
        self.info["classes"] = list(self.classes)
        self.info["threshold"] = self.threshold
        self.info["not_digit_above"] = self.not_digit_above
        self.info.setdefault("temperature", getattr(config, "temperature", None))
        self.info.setdefault("runtime", getattr(runner, "name", None))
        # The nearest training images (neighbours.npz beside the model), loaded on first use only.
        self.neighbour_index = LazyIndex(self.model_path.parent if self.model_path is not None else None)

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, *, runtime: str = "auto",
             threshold: float | None = None, out: str | os.PathLike | None = None,
             threads: int | None = None) -> Predictor:
        """Open `model` (see `resolve_model`; default: the shipped pretrained model) on `runtime`.

        `threshold` None uses the model's own uncertain threshold (see `__init__`); `threads`:
        the runtime's intra-op threads (None: `runtimes.default_threads`)."""
        from ..export.runtimes import open_runner

        if threshold is not None:
            _check_threshold(threshold)  # before the slow model load
        path = resolve_model(model, out)
        runner = open_runner(path, runtime, threads=threads)
        model_file = Path(runner.path)
        try:
            metrics = read_json(model_file.parent / METRICS_FILE, missing={})
        except ModelError:
            metrics = {}  # a damaged metrics.json costs only the accuracy shown in `info`
        accuracy = metrics.get("test_accuracy") if isinstance(metrics, dict) else None
        info = {
            "model_id": model_id(model_file),
            "model_file": model_file.name,  # no directory: info is shown to API clients
            "preset": runner.config.preset,
            "test_accuracy": accuracy if isinstance(accuracy, (int, float)) else None,
            "runtime": runner.name,
            "digitlab_version": __version__,
            "temperature": getattr(runner.config, "temperature", None),
        }
        predictor = cls(runner, threshold=threshold, scale=runner.config.scale, info=info)
        predictor.model_path = model_file
        predictor.neighbour_index.folder = model_file.parent
        return predictor

    # ----------------------------------------------------------------- model

    def probabilities(self, digits28: np.ndarray) -> np.ndarray:
        """uint8 MNIST-format digits (N, 28, 28) -> float32 probabilities (N, classes)."""
        digits28 = np.asarray(digits28)
        if len(digits28) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        # The runtime's activations grow with the batch (a number's candidate cuts make hundreds of
        # inputs an image: 200 touching numbers in one call held 15 GB), so at most MODEL_BATCH a call.
        return np.concatenate([np.asarray(self.runner(pp.to_model_input(digits28[s:s + MODEL_BATCH], scale=self.scale)),
                                          dtype=np.float32) for s in range(0, len(digits28), MODEL_BATCH)])

    def neighbours(self, prediction: DigitPrediction, k: int = 5) -> list[Any]:
        """For each top-3 class of `prediction`, the `k` nearest training images of that class
        (`neighbours.Neighbours`); ModelError when the model has no (current) neighbour index."""
        return self.neighbour_index.get().for_prediction(prediction, k)

    # ----------------------------------------------------------------- the steps

    def resolve_mode(self, mode: str) -> str:
        """The mode `prepare_image` gets for `mode` with this model (raises ConfigError): a model of
        other classes than digits reads one item an image."""
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        if not self.digit_classes:
            # Reading a row of digits as a number needs a digit model; other classes are one item an image.
            if mode == "number":
                raise ConfigError(f"number mode needs a digit model; this one's classes are "
                                  f"{', '.join(self.classes[:5])}{', ...' if len(self.classes) > 5 else ''}")
            mode = "digit"
        return mode

    def prepare(self, image: Any, *, mode: str = "digit", source: str | None = None,
                keep_image: bool = False) -> _Prepared:
        """Decode and preprocess one image (raises ImageError); no model call."""
        return prepare_image(image, mode=self.resolve_mode(mode), source=source, keep_image=keep_image)

    def _digit(self, probs: np.ndarray, box: Any, inp: np.ndarray, source: str | None, *,
               empty: bool, score: float) -> DigitPrediction:
        """One answer and its flags: the only place where no digit / not a digit / uncertain are decided."""
        if empty:
            return no_digit(source, box, inp)
        values = probs.tolist()  # Python floats, as float(v) gives them
        top = np.argsort(-probs, kind="stable")[:3].tolist()
        label = top[0]
        conf = values[label]
        not_digit = self.not_digit_above is not None and score > self.not_digit_above
        return DigitPrediction(
            label=label, confidence=conf, probabilities=tuple(values),
            top3=tuple((k, values[k]) for k in top),
            uncertain=conf < self.threshold or not_digit, no_digit=False, box=tuple(int(v) for v in box),
            model_input=inp, source=source, not_digit=not_digit, name=self.classes[label])

    def finish(self, prepared: Sequence[_Prepared], probs: np.ndarray | None = None
               ) -> list[DigitPrediction | NumberPrediction]:
        """Run the model on all digits of `prepared` (once, and once more on the candidate cuts of
        the numbers' groups it is unsure of) and build the answers."""
        inputs = [a for p in prepared for a in p.inputs]
        if probs is None:
            probs = self.probabilities(np.stack(inputs)) if inputs else np.zeros((0, len(self.classes)), np.float32)
        if any(p.cuts is not None for p in prepared):
            prepared, probs = self._cut(prepared, probs)
            inputs = [a for p in prepared for a in p.inputs]
        stacked = np.stack(inputs) if inputs else np.zeros((0, 28, 28), np.uint8)
        empty = near_empty(stacked).tolist()  # in MNIST's pixels, whatever scale the model takes
        scores = not_digit_score(probs).tolist() if len(probs) else []
        results: list[DigitPrediction | NumberPrediction] = []
        i = 0
        for p in prepared:
            n = len(p.inputs)
            keep = range(n) if p.reading is None else chosen(p.reading, probs[i:i + n])
            digits = tuple(self._digit(probs[i + k], p.boxes[k], p.inputs[k], p.source, empty=empty[i + k],
                                       score=scores[i + k]) for k in keep)
            i += n
            if p.number:
                # A near-empty piece is no digit, so it is no part of the number either.
                results.append(number_of(tuple(d for d in digits if not d.no_digit), p.source, p.auto))
            else:
                results.append(digits[0] if digits else no_digit(p.source))
        return results

    def _cut(self, prepared: Sequence[_Prepared], probs: np.ndarray) -> tuple[list[_Prepared], np.ndarray]:
        """The second stage of number mode: the groups the model did not read whole with confidence
        get their candidate cuts, all images' in one model pass; -> (prepared with the candidates
        and lattices, probabilities of all their inputs)."""
        out: list[_Prepared] = []
        rows: list[int] = []  # each input's row: of `probs` (< len(probs)), or of the new pass
        extra: list[np.ndarray] = []
        i = 0
        for p in prepared:
            n = len(p.inputs)
            if p.cuts is None:
                out.append(p)
                rows.extend(range(i, i + n))
            else:
                groups = [g if whole(g.box, probs[i + k]) else p.cuts.cut(k) for k, g in enumerate(p.cuts.groups)]
                boxes, inputs, reading = _candidates(groups)
                for k, g in enumerate(groups):  # the order of `_candidates`: a group whole, then its stretches
                    rows.append(i + k)
                    for st in g.stretches:
                        rows.append(len(probs) + len(extra))
                        extra.append(st.digit)
                out.append(replace(p, boxes=boxes, inputs=inputs, reading=reading, cuts=None))
            i += n
        more = self.probabilities(np.stack(extra)) if extra else np.zeros((0, probs.shape[1]), np.float32)
        return out, np.concatenate([probs, more])[np.asarray(rows, np.int64)]

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
        in its place instead of stopping the others."""
        images = list(images)
        srcs = list(sources) if sources is not None else [None] * len(images)
        out: list[DigitPrediction | NumberPrediction | ImageError] = []
        for image, outcome in zip(images, self.predict_stream(images, mode=mode, sources=srcs)):
            if outcome.result is not None:
                out.append(outcome.result)
            else:
                label = outcome.source or _default_label(image)
                out.append(ImageError(f"{label}: {outcome.error}"))
        return out

    def predict_stream(self, images: Iterable[Any], *, mode: str = "digit",
                       sources: Iterable[str | None] | None = None, chunk: int = CHUNK,
                       keep_image: bool = False) -> Iterator[Outcome]:
        """Predict any number of inputs, yielding one `Outcome` per input, in order.

        `images` may hold paths, bytes, arrays, PIL images, or `inputs.InputItem`s
        (whose errors are passed through). Inputs are decoded and preprocessed
        one at a time and the decoded image is dropped at once (unless
        `keep_image`, which keeps a copy of at most DISPLAY_SIDE pixels a side);
        the model sees `chunk` digits per call. A bad input gives an Outcome
        with `error` set and never stops the others.
        """
        if chunk < 1:
            raise ConfigError(f"chunk must be >= 1 (got {chunk})")
        srcs = iter(sources) if sources is not None else None
        pending: list[tuple[str | None, _Prepared | str]] = []
        for image in images:
            label = next(srcs, None) if srcs is not None else None
            if label is None and isinstance(image, (str, os.PathLike)):
                label = str(image)
            if hasattr(image, "label") and hasattr(image, "error"):  # an inputs.InputItem
                label, image, error = image.label, image.source, image.error
                if error is not None:
                    pending.append((label, error))
                    continue
            try:
                pending.append((label, self.prepare(image, mode=mode, source=label, keep_image=keep_image)))
            except ImageError as exc:
                pending.append((label, strip_label(str(exc), label)))
            if len(pending) >= chunk:
                yield from self.classify(pending)
                pending = []
        yield from self.classify(pending)

    def classify(self, pending: Sequence[tuple[str | None, _Prepared | str]]) -> Iterator[Outcome]:
        """The second half of `predict_stream`: (label, prepared image or error text) pairs, e.g.
        from `prepare_image` in worker processes, -> their Outcomes, in order, with one model call."""
        results = iter(self.finish([p for _, p in pending if isinstance(p, _Prepared)]))
        for label, p in pending:
            if isinstance(p, _Prepared):
                yield Outcome(label, next(results), None, p.image, p.image_scale)
            else:
                yield Outcome(label, None, p)


def prepare_image(image: Any, *, mode: str = "digit", source: str | None = None,
                  keep_image: bool = False) -> _Prepared:
    """Decode and preprocess one image for a model (raises ImageError): the first half of
    `Predictor.predict_stream`. Needs no model, so worker processes can run it; `mode` is
    "digit", "number" or "auto" (see `Predictor.resolve_mode`)."""
    if source is None and isinstance(image, (str, os.PathLike)):
        source = str(image)
    img = pp.load_image(image, name=source)
    kept, kept_scale = _display_copy(img) if keep_image else (None, 1.0)
    if mode == "digit":
        found = pp.find_digit(img)
        boxes, inputs = ((), ()) if found is None else ((found[0],), (found[1],))
        number = auto = False
        reading = cuts = None
    else:
        found = pp.number_groups(img)
        groups = found.groups
        # In auto mode one group holds all the ink (what find_digit would give): a single digit.
        number = mode == "number" or sum(g.groups for g in groups) >= 2
        auto = number and mode == "auto"
        boxes, inputs = tuple(g.box for g in groups), tuple(g.digit for g in groups)
        # a number's cuts wait for the model's reading of its whole groups (`Predictor.finish`)
        cuts = found if number and groups else None
        reading = None
    return _Prepared(source, number, auto, boxes, inputs, kept, kept_scale, reading, cuts)


def _candidates(groups: Sequence[Any]) -> tuple[tuple, tuple, tuple[Lattice, ...] | None]:
    """A number's groups -> (boxes, inputs, lattices): each group as one digit, then its candidate
    digits; no lattices when no group has candidates (every input is a digit)."""
    boxes: list[Any] = []
    inputs: list[np.ndarray] = []
    lattices = []
    for g in groups:
        x0, y0, x1, y1 = g.box
        steps = [(0, g.nodes - 1, len(inputs), (x1 - x0) / max(1, y1 - y0), 1.0, 1.0)]
        boxes.append(g.box)
        inputs.append(g.digit)
        for st in g.stretches:
            steps.append((st.i, st.j, len(inputs), st.aspect, st.fill, st.mass))
            boxes.append(st.box)
            inputs.append(st.digit)
        lattices.append((g.nodes, tuple(steps)))
    reading = tuple(lattices) if len(inputs) > len(groups) else None
    return tuple(boxes), tuple(inputs), reading


def strip_label(msg: str, label: str | None) -> str:
    """An ImageError's text without its leading "<label>: " (the label is shown separately)."""
    prefixes = ([f"{label}: "] if label else []) + ["<bytes>: ", "<array>: ", "<image>: ", "<stream>: "]
    for prefix in prefixes:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _check_threshold(threshold: Any) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be a number between 0 and 1 (got {threshold!r})")


def _display_copy(img: Any) -> tuple[Any, float]:
    """A copy of a decoded image of at most DISPLAY_SIDE pixels a side, and its scale."""
    w, h = img.size
    scale = min(1.0, DISPLAY_SIDE / max(w, h))
    if scale >= 1.0:
        return img.copy(), 1.0
    small = img.copy()
    small.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    return small, small.size[0] / w


def _default_label(image: Any) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else "<image>"


__all__ = ["DigitPrediction", "NumberPrediction", "Outcome", "Predictor", "resolve_model", "pretrained_dir",
           "model_id", "no_digit", "DigitlabError"]
