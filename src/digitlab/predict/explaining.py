"""Explaining a Predictor's answers: which pixels drove them (`models.explain` has the math).

The default method is occlusion (`models.attribution`): on 500 MNIST test digits it is the
most faithful of the three by both the deletion and the insertion score, and it runs on
the Predictor's own runner, so ONNX and LiteRT explain as they predict, with no TensorFlow
(see BENCHMARKS.md, "Explanations"). Integrated gradients and Grad-CAM need the Keras
model: the Predictor's own when it runs on Keras, else the model.keras beside its model
file, loaded on first use (TensorFlow: seconds and ~1 GB, so never on the serving path).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError
from ..files.layout import MODEL_FILE
from ..models.explain import BASELINES, GRADIENT_METHODS, METHODS, normalized
from .results import DigitPrediction

DEFAULT_METHOD = "occlusion"  # the most faithful, and ~20 ms an image on ONNX (BENCHMARKS.md)
TARGETS = {"occlusion": "log-odds"}  # the gradient methods explain the logit (or log p: GradientExplainer.target)
DECIMALS = 3  # heatmap values in JSON: a 28x28 map in ~4 kB, finer than any colour map shows


@dataclass(frozen=True)
class Explanation:
    """One digit's heatmap: (28, 28) float32 in [-1, 1] (1 = the strongest evidence for `label`)."""

    method: str
    target: str  # the score explained: "log-odds", "logit" or "log-probability" of `label`
    label: int
    heatmap: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "target": self.target, "label": int(self.label),
                "heatmap": np.round(self.heatmap.astype(np.float64), DECIMALS).tolist()}


def check_method(method: str, baseline: str = "black") -> None:
    """A ConfigError naming the choices when `method` or `baseline` is not one of them."""
    if method not in METHODS:
        raise ConfigError(f"explanation method must be one of {', '.join(METHODS)} (got {method!r})")
    if baseline not in BASELINES:
        raise ConfigError(f"baseline must be one of {', '.join(BASELINES)} (got {baseline!r})")


class Explainer:
    """Heatmaps for a Predictor's digits by one method; thread-safe, made once and reused."""

    def __init__(self, predictor: Any, method: str = DEFAULT_METHOD, *, baseline: str = "black"):
        check_method(method, baseline)
        self.predictor, self.method, self.baseline = predictor, method, baseline
        self._gradients: Any = None
        self._lock = threading.Lock()

    def _gradient_explainer(self) -> Any:
        with self._lock:  # one TensorFlow load, however many threads ask at once
            if self._gradients is None:
                from ..models.explain import GradientExplainer

                self._gradients = GradientExplainer(self._keras_model())
            return self._gradients

    def _keras_model(self) -> Any:
        engine = getattr(self.predictor.runner, "engine", self.predictor.runner)
        model = getattr(engine, "model", None)  # a KerasRunner's
        if model is not None:
            return model
        path = getattr(self.predictor, "model_path", None)
        keras_file = Path(path).with_name(MODEL_FILE) if path is not None else None
        if keras_file is None or not keras_file.is_file():
            raise ModelError(f"{self.method} needs the Keras model ({MODEL_FILE}) beside the model file; "
                             f"use --explain-method occlusion, which works on any runtime")
        from ..models.architectures import load_model

        return load_model(keras_file)[0]

    def heatmaps(self, digits28: np.ndarray, labels: Any) -> tuple[np.ndarray, str]:
        """uint8 digits (N, 28, 28) and a class each -> raw heatmaps (N, 28, 28) and the target's name."""
        from ..preprocess import to_model_input

        x = to_model_input(np.asarray(digits28), scale=self.predictor.scale)
        labels = np.asarray(labels, dtype=np.int32)
        if self.method in GRADIENT_METHODS:
            gradients = self._gradient_explainer()
            return gradients.explain(self.method, x, labels, baseline=self.baseline), gradients.target.score
        from ..models.attribution import occlusion

        return occlusion(self.predictor.runner, x, labels), TARGETS["occlusion"]

    def explain(self, digits: list[DigitPrediction], labels: list[int] | None = None) -> list[Explanation | None]:
        """One Explanation per digit (of its predicted class, or of `labels[i]`); None where there is no digit."""
        wanted = [k for k, d in enumerate(digits) if not d.no_digit and d.model_input is not None]
        out: list[Explanation | None] = [None] * len(digits)
        if not wanted:
            return out
        classes = [int(labels[k]) if labels is not None else int(digits[k].label) for k in wanted]  # type: ignore[arg-type]
        heat, target = self.heatmaps(np.stack([digits[k].model_input for k in wanted]), classes)
        for k, label, h in zip(wanted, classes, normalized(heat)):
            out[k] = Explanation(self.method, target, label, h)
        return out


def overlay_picture(model_input: np.ndarray, heatmap: np.ndarray, zoom: int = 8) -> Any:
    """The 28x28 input in grey with the heatmap over it (red: for the class, blue: against), enlarged."""
    from PIL import Image

    grey = np.asarray(model_input, np.float32) / 255.0 * 0.6  # dimmed, so the colours read over it
    h = np.clip(np.asarray(heatmap, np.float32), -1.0, 1.0)
    pos, neg = np.maximum(h, 0.0), np.maximum(-h, 0.0)
    rgb = np.stack([grey + pos * (1 - grey), grey * (1 - pos) * (1 - neg) + 0.3 * pos,
                    grey + neg * (1 - grey)], axis=-1)
    img = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return img.resize((28 * zoom, 28 * zoom), Image.Resampling.NEAREST)


def explain_picture(result: Any, explainer: Explainer, zoom: int = 8) -> Any:
    """Every digit of `result` with its heatmap over it, side by side (the layout of
    `present.input_picture`: a 1-pixel grey gap between digits), enlarged `zoom` times."""
    from PIL import Image

    from .results import NumberPrediction

    digits = list(result.digits) if isinstance(result, NumberPrediction) else [result]
    explanations = explainer.explain(digits)
    tiles = [overlay_picture(d.model_input, e.heatmap, zoom) for d, e in zip(digits, explanations) if e is not None]
    if not tiles:
        return Image.new("RGB", (28 * zoom, 28 * zoom))
    width = sum(t.width for t in tiles) + zoom * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, 28 * zoom), (96, 96, 96))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + zoom
    return canvas
