"""Prediction: images in, digits out, for the CLI, the server and the Python API.

Modules: `predictor` (Predictor: load a model once, decide digit / uncertain / not a digit /
no digit), `results` (the answer types), `inputs` (files, folders, globs, stdin), `present`
(tables, JSON/CSV, annotated images).

Layer: imports everything below `report` (preprocess, models, runs, export for the runtimes);
with the ONNX runtime nothing here imports TensorFlow.
"""

from __future__ import annotations

from .predictor import Predictor
from .results import DigitPrediction, NumberPrediction, Outcome

__all__ = ["DigitPrediction", "NumberPrediction", "Outcome", "Predictor"]
