"""What a prediction answers: one digit (`DigitPrediction`), a whole number (`NumberPrediction`),
or, per input of a stream, either of them or an error (`Outcome`). Plain frozen dataclasses with
`to_dict` for JSON; `predict.Predictor` makes them, `present` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DigitPrediction:
    """The model's answer for one digit (or, for a model of other classes, one character/item)."""

    label: int | None  # index of the class; None when no digit was found
    confidence: float  # probability of `label` (0.0 when no digit)
    probabilities: tuple[float, ...]  # one per class: 10 for digits (empty when no digit)
    top3: tuple[tuple[int, float], ...]
    uncertain: bool  # confidence < threshold, or no digit, or not a digit
    no_digit: bool  # no ink, or too little for any digit (label None)
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) of the ink, pixels of the (EXIF-rotated) image
    model_input: np.ndarray | None = field(repr=False, compare=False)  # uint8 (28, 28) white on black
    source: str | None = None  # file name, "<stdin>" or None
    not_digit: bool = False  # ink, but not a digit (label: the digit it looks most like)
    name: str | None = None  # the class name of `label` (the model's; "7" for a digit model), None when no digit

    def to_dict(self, *, include_input: bool = False) -> dict[str, Any]:
        """JSON-ready: top3 as [[label, probability], ...], box as [x0, y0, x1, y1] or null."""
        d: dict[str, Any] = {
            "source": self.source,
            "label": self.label,
            "name": self.name,
            "confidence": float(self.confidence),
            "uncertain": bool(self.uncertain),
            "no_digit": bool(self.no_digit),
            "not_digit": bool(self.not_digit),
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
    auto: bool = False  # number mode was chosen automatically (several digits found), not requested
    not_digit: bool = False  # some piece of ink is not a digit

    def to_dict(self, *, include_input: bool = False) -> dict[str, Any]:
        return {
            "source": self.source,
            "text": self.text,
            "confidence": float(self.confidence),
            "uncertain": bool(self.uncertain),
            "no_digit": bool(self.no_digit),
            "not_digit": bool(self.not_digit),
            "digits": [dp.to_dict(include_input=include_input) for dp in self.digits],
        }


def no_digit(source: str | None = None, box: Any = None, model_input: np.ndarray | None = None) -> DigitPrediction:
    """The answer for no digit: no ink, or (with `box` and `model_input`) too little of it."""
    box = None if box is None else tuple(int(v) for v in box)
    return DigitPrediction(None, 0.0, (), (), True, True, box, model_input, source)


@dataclass(frozen=True)
class Outcome:
    """One input of `predict_stream`: its label and either a result or an error message."""

    source: str | None
    result: DigitPrediction | NumberPrediction | None
    error: str | None = None  # why this input could not be read (the label is not repeated)
    image: Any = None  # display-size copy of the input (keep_image=True), for annotation
    image_scale: float = 1.0


def number_of(digits: tuple[DigitPrediction, ...], source: str | None, auto: bool = False) -> NumberPrediction:
    """The number read from `digits`, left to right: the lowest confidence, any doubt is the number's."""
    if not digits:
        return NumberPrediction("", (), 0.0, True, True, source, auto)
    return NumberPrediction(
        text="".join(d.name or str(d.label) for d in digits), digits=digits,
        confidence=min(d.confidence for d in digits), uncertain=any(d.uncertain for d in digits),
        no_digit=False, source=source, auto=auto, not_digit=any(d.not_digit for d in digits))
