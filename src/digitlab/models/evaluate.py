"""Evaluation on the test set: Keras' own numbers and scikit-learn's, side by side, and how
well the confidence is calibrated (ECE, NLL, risk-coverage: `calibration.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..preprocess import to_model_input

if TYPE_CHECKING:  # pragma: no cover
    import keras

# Large batches: evaluation has no gradients, so memory is small and bigger
# batches amortise per-call overhead (10,000 images in 10 calls).
EVAL_BATCH = 1024


@dataclass
class Evaluation:
    """Metrics (JSON-ready) plus the arrays the figures need."""

    metrics: dict[str, Any]
    probs: np.ndarray  # (N, classes) softmax outputs
    y_true: np.ndarray
    y_pred: np.ndarray


def predict_proba(model: keras.Model, images: np.ndarray, *, scale: float = 1.0 / 255.0) -> np.ndarray:
    """Class probabilities for uint8 MNIST-format images (batch use, not serving)."""
    x = to_model_input(images, scale=scale)
    return np.asarray(model.predict(x, batch_size=EVAL_BATCH, verbose=0), dtype=np.float32)


def evaluate_model(model: keras.Model, x_test: np.ndarray, y_test: np.ndarray, *, scale: float = 1.0 / 255.0,
                   classes: tuple[str, ...] | None = None, uncertain_below: float | None = None,
                   not_digit_above: float | None = None) -> Evaluation:
    """Test loss/accuracy from `model.evaluate` and `accuracy_score`, per-class scores (keyed by class
    name; default: the model's outputs numbered 0, 1, ...), confusion matrix (rows and columns in
    class order), and calibration; with the model's thresholds, what share of the test digits each one flags."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    from .calibration import calibration_metrics

    x = to_model_input(x_test, scale=scale)
    y = np.asarray(y_test, dtype=np.int32)
    loss, keras_acc = model.evaluate(x, y, batch_size=EVAL_BATCH, verbose=0)
    probs = np.asarray(model.predict(x, batch_size=EVAL_BATCH, verbose=0), dtype=np.float32)
    y_pred = probs.argmax(axis=1).astype(np.int32)
    sk_acc = float(accuracy_score(y, y_pred))
    n_classes = probs.shape[1]
    names = [str(c) for c in range(n_classes)] if classes is None else list(classes)
    if len(names) != n_classes:
        raise ValueError(f"the model has {n_classes} outputs but {len(names)} class names")
    labels = list(range(n_classes))
    # Keyed by label number here (a class could be named "accuracy"); by name in the metrics.
    report = classification_report(y, y_pred, labels=labels, output_dict=True, zero_division=0)
    cm = confusion_matrix(y, y_pred, labels=labels)
    row_sums = cm.sum(axis=1, keepdims=True)
    cm_norm = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=float), where=row_sums > 0)

    def scores(d: dict[str, float]) -> dict[str, float]:
        return {"precision": float(d["precision"]), "recall": float(d["recall"]),
                "f1": float(d["f1-score"]), "support": int(d["support"])}

    metrics = {
        "test_loss": float(loss),
        "test_accuracy": float(keras_acc),
        "accuracy_score": sk_acc,
        # Keras accumulates accuracy in float32; both count the same argmax
        # hits, so they may differ only by float rounding, far below one image.
        "accuracies_agree": bool(abs(float(keras_acc) - sk_acc) < 0.5 / max(len(y), 1)),
        "n_test": int(len(y)),
        "errors": int((y_pred != y).sum()),
        "per_class": {names[c]: scores(report[str(c)]) for c in labels},
        "macro_avg": scores(report["macro avg"]),
        "weighted_avg": scores(report["weighted avg"]),
        "confusion_matrix": cm.astype(int).tolist(),
        "confusion_matrix_normalized": np.round(cm_norm, 6).tolist(),
        "calibration": {**calibration_metrics(probs, y),
                        **_flags(probs, y, y_pred, uncertain_below, not_digit_above)},
    }
    return Evaluation(metrics=metrics, probs=probs, y_true=y, y_pred=y_pred)


def _flags(probs: np.ndarray, y: np.ndarray, y_pred: np.ndarray, uncertain_below: float | None,
           not_digit_above: float | None) -> dict[str, Any]:
    """Share of answers of at least 99% confidence; with thresholds, the shares flagged and the
    accuracy of the answers left (what a user of `digitlab predict` gets on MNIST-like digits)."""
    from .ood import not_digit_score

    conf = probs.max(axis=1)
    out: dict[str, Any] = {"share_confidence_at_least_99": float((conf >= 0.99).mean()) if len(conf) else 0.0}
    if uncertain_below is None and not_digit_above is None:
        return out
    unsure = conf < uncertain_below if uncertain_below is not None else np.zeros(len(conf), bool)
    other = not_digit_score(probs) > not_digit_above if not_digit_above is not None else np.zeros(len(conf), bool)
    kept = ~(unsure | other)
    out.update({
        "uncertain_below": uncertain_below, "not_digit_above": not_digit_above,
        "flagged_uncertain": float(unsure.mean()), "flagged_not_digit": float(other.mean()),
        "flagged": float((~kept).mean()),
        "accuracy_not_flagged": float((y_pred[kept] == y[kept]).mean()) if kept.any() else None,
        "errors_flagged": int(((y_pred != y) & ~kept).sum()),
    })
    return out
