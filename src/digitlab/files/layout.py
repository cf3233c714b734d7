"""Names of the files digitlab writes: a run directory and the artifacts beside a model.

Every module that reads or writes one of these files takes its name from
here, so a name is defined once. A run directory looks like:

    runs/<name>/
      config.json        the resolved Config (what a loaded model needs to know)
      model.keras        final model;  best.keras: best validation accuracy
      history.json/.csv  loss and accuracy per epoch
      metrics.json       test metrics;  summary.txt: the Keras model summary
      timings.json       seconds per phase
      figures/*.png      the figures;  report.html: everything in one page
      members/<i>/       ensemble members, each a run directory of its own
      model.onnx (+ model.onnx.json)   exports, each with its metadata sidecar
      neighbours.npz     the nearest-training-example index (+ embedding.onnx: the embedding model)

`digitlab compare A B --out DIR` writes compare.html, compare.json and the disagreement figure.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
BEST_FILE = "best.keras"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.txt"
TIMINGS_FILE = "timings.json"
FIGURES_DIR = "figures"
REPORT_FILE = "report.html"
MEMBERS_DIR = "members"
LATEST = "latest"  # symlink (or latest.txt pointer) to the newest run under the runs directory

ONNX_FILE = "model.onnx"
TFLITE_FILE = "model.tflite"
SAVEDMODEL_DIR = "savedmodel"
METADATA_SUFFIX = ".json"  # model.onnx -> model.onnx.json

# The nearest-training-example index beside a model (`digitlab neighbours`): embeddings,
# labels, training indices and images; and the penultimate layer as its own ONNX model, so
# serving on ONNX Runtime finds neighbours without TensorFlow.
NEIGHBOURS_FILE = "neighbours.npz"
EMBEDDING_FILE = "embedding.onnx"

COMPARE_HTML = "compare.html"
COMPARE_JSON = "compare.json"
COMPARE_FIGURE = "disagreements.png"

RUNS_ENV = "DIGITLAB_RUNS"  # where run directories go when --out is not given
DEFAULT_RUNS = "runs"


def default_runs_dir() -> str:
    """`$DIGITLAB_RUNS` if set, else `runs` (relative to the working directory)."""
    return os.environ.get(RUNS_ENV) or DEFAULT_RUNS


def metadata_path(artifact: str | os.PathLike) -> Path:
    """The metadata sidecar of an exported artifact (`model.onnx` -> `model.onnx.json`)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + METADATA_SUFFIX)
