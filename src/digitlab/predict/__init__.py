"""Prediction: images in, digits out, for the CLI, the server and the Python API.

Modules: `predictor` (Predictor: load a model once, decide digit / uncertain / not a digit /
no digit), `results` (the answer types), `inputs` (files, folders, globs, stdin, @lists,
archives), `present` (tables, JSON/CSV rows, annotated images), `batch` (`predict_to_file`:
any number of images into a file on all cores, resumable) and `sinks` (its JSONL/CSV/Parquet files).

Layer: imports everything below `report` (preprocess, models, runs, export for the runtimes);
with the ONNX runtime nothing here imports TensorFlow.
"""

from __future__ import annotations

from .predictor import Predictor
from .results import DigitPrediction, NumberPrediction, Outcome

__all__ = ["DigitPrediction", "NumberPrediction", "Outcome", "Predictor"]
