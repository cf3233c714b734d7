"""Calibrated confidence: temperature scaling, and how calibration is measured.

A network's softmax output is not a probability in the frequentist sense:
trained to zero loss it is over-confident, trained with label smoothing
under-confident. Temperature scaling (Guo et al. 2017, "On Calibration of
Modern Neural Networks") fixes that with one number fitted on held-out data:
p_T = softmax(log p / T). It never changes which digit wins (the order of
the probabilities is kept), only how sure the answer reads.

Measures (all on numpy arrays, no TensorFlow):

    nll                   mean -log p(true class): the score temperature scaling minimises
    expected_calibration_error   ECE over 15 equal-width confidence bins (Guo et al.'s definition)
    reliability           per-bin confidence, accuracy and count (the reliability diagram)
    risk_coverage         accuracy of the most confident answers, for every coverage
    accuracy_at_coverage  one point of that curve (e.g. the 95% most confident answers)

`TemperatureLayer` bakes T into a saved model (see `with_temperature` for why).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

ECE_BINS = 15  # the customary bin count (Guo et al. 2017), so numbers compare with the literature
COVERAGES = (0.95, 0.98, 0.99)  # the points of the risk-coverage curve reported in metrics.json
# Probabilities are clipped here before the log: the smallest float32 *normal* number is 1.2e-38, so
# every runtime (whether it flushes denormals to zero or not) sees the same value, and log stays finite.
PROB_FLOOR = 1e-30
T_RANGE = (0.05, 20.0)  # fitted temperatures are kept inside this: beyond it the model is broken, not miscalibrated


# --------------------------------------------------------------------------- numpy


def _probs(probs: Any) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape (N, classes), got {p.shape}")
    return p


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} rows of probabilities")
    return y


def log_probs(probs: Any) -> np.ndarray:
    """log p, float64, with p clipped at PROB_FLOOR (as the layer does)."""
    return np.log(np.maximum(_probs(probs), PROB_FLOOR))


def apply_temperature(probs: Any, temperature: float) -> np.ndarray:
    """softmax(log p / T) row by row: what `TemperatureLayer` computes, in float64."""
    z = log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood of the true class (natural log)."""
    p = _probs(probs)
    y = _labels(labels, len(p))
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(p)), y], PROB_FLOOR))))


def fit_temperature(probs: Any, labels: Any) -> float:
    """The T that minimises the NLL of softmax(log p / T) on (probs, labels).

    With z = log p and b = 1/T, NLL(b) = mean(logsumexp(b z) - b z_y) is convex in b
    and its derivative, mean(E_softmax(bz)[z] - z_y), increases with b; so the
    optimum is the root of the derivative, found by bisection on log b to
    machine precision (no optimiser settings to tune, no local minima).
    """
    z = log_probs(probs)
    y = _labels(labels, len(z))
    if len(z) == 0:
        raise ValueError("cannot fit a temperature on no data")
    z_true = z[np.arange(len(z)), y]

    def slope(b: float) -> float:
        s = b * z
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return float(np.mean((e * z).sum(axis=1) / e.sum(axis=1) - z_true))

    lo, hi = math.log(1.0 / T_RANGE[1]), math.log(1.0 / T_RANGE[0])
    if slope(math.exp(lo)) >= 0:
        return T_RANGE[1]
    if slope(math.exp(hi)) <= 0:  # every answer right and separable: sharper is always better
        return T_RANGE[0]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if slope(math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
    return float(1.0 / math.exp(0.5 * (lo + hi)))


def reliability(probs: Any, labels: Any, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per confidence bin ((k/bins, (k+1)/bins], k = 0..bins-1): count, mean confidence, accuracy.

    Confidence is the top probability; empty bins have confidence and accuracy NaN.
    """
    p = _probs(probs)
    y = _labels(labels, len(p))
    conf = p.max(axis=1)
    right = (p.argmax(axis=1) == y).astype(np.float64)
    # Bin k holds (k/bins, (k+1)/bins]; a confidence of exactly 0 cannot occur for a softmax.
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / count
        accuracy = np.bincount(idx, weights=right, minlength=bins) / count
    return {"count": count.tolist(), "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(),
            "edges": np.linspace(0.0, 1.0, bins + 1).tolist()}


def expected_calibration_error(probs: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (share of answers in the bin) * |accuracy - mean confidence|."""
    r = reliability(probs, labels, bins)
    count = np.asarray(r["count"])
    if count.sum() == 0:
        return 0.0
    gap = np.nan_to_num(np.abs(np.asarray(r["accuracy"]) - np.asarray(r["confidence"])))
    return float((count * gap).sum() / count.sum())


def risk_coverage(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coverage, accuracy, confidence) after keeping the k most confident answers, k = 1..N.

    Answers are taken in order of falling confidence (ties in input order);
    coverage[k-1] = k / N, accuracy[k-1] = their share of right answers, and
    confidence[k-1] the k-th highest confidence (the threshold that keeps them).
    """
    p = _probs(probs)
    y = _labels(labels, len(p))
    conf = p.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    right = (p.argmax(axis=1) == y)[order]
    k = np.arange(1, len(p) + 1)
    return k / len(p), np.cumsum(right) / k, conf[order]


def accuracy_at_coverage(probs: Any, labels: Any, coverage: float) -> float:
    """Accuracy of the ceil(coverage * N) most confident answers."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1] (got {coverage})")
    cov, acc, _ = risk_coverage(probs, labels)
    if len(cov) == 0:
        return float("nan")
    k = max(1, math.ceil(round(coverage * len(cov), 9)))
    return float(acc[k - 1])


def area_under_risk_coverage(probs: Any, labels: Any) -> float:
    """AURC: the mean error rate over all coverages (lower is better; a perfect ranking of the
    errors after every right answer gives the minimum possible for the model's accuracy)."""
    _, acc, _ = risk_coverage(probs, labels)
    return float(np.mean(1.0 - acc)) if len(acc) else float("nan")


def calibration_metrics(probs: Any, labels: Any) -> dict[str, Any]:
    """ECE, NLL, AURC and the accuracy at COVERAGES: the JSON-ready summary for metrics.json."""
    return {
        "ece": expected_calibration_error(probs, labels),
        "ece_bins": ECE_BINS,
        "nll": nll(probs, labels),
        "aurc": area_under_risk_coverage(probs, labels),
        "accuracy_at_coverage": {f"{c:g}": accuracy_at_coverage(probs, labels, c) for c in COVERAGES},
    }


# --------------------------------------------------------------------------- the saved model


@functools.cache
def temperature_layer() -> type:
    """The registered Keras layer `digitlab>TemperatureLayer` (defined on first use: no Keras at import)."""
    from . import backend

    keras = backend.keras()

    @keras.saving.register_keras_serializable(package="digitlab", name="TemperatureLayer")
    class TemperatureLayer(keras.layers.Layer):
        """Calibrated probabilities, no weights: softmax(z / T) of the logits z before it
        (`source="logits"`), or softmax(log(max(p, PROB_FLOOR)) / T) of probabilities p."""

        def __init__(self, temperature: float = 1.0, source: str = "probabilities", **kwargs: Any):
            super().__init__(**kwargs)
            if source not in ("logits", "probabilities"):
                raise ValueError(f"source must be 'logits' or 'probabilities' (got {source!r})")
            self.temperature = float(temperature)
            self.source = source

        def call(self, x: Any) -> Any:
            ops = keras.ops
            z = x if self.source == "logits" else ops.log(ops.maximum(x, PROB_FLOOR))
            return ops.softmax(z * (1.0 / self.temperature), axis=-1)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "temperature": self.temperature, "source": self.source}

    return TemperatureLayer


def custom_objects() -> dict[str, type]:
    """What `keras.models.load_model` needs to read a calibrated model."""
    return {"TemperatureLayer": temperature_layer()}


def model_temperature(model: Any) -> float | None:
    """The temperature baked into `model` (None if it ends in no TemperatureLayer)."""
    last = model.layers[-1] if model.layers else None
    return last.temperature if isinstance(last, temperature_layer()) else None


def without_temperature(model: Any) -> Any:
    """`model`'s probabilities as trained: a calibrated model with its temperature set to 1."""
    return model if model_temperature(model) is None else with_temperature(model, 1.0)


def with_temperature(model: Any, temperature: float) -> Any:
    """`model` (calibrated or not) ending in exactly one TemperatureLayer(temperature).

    Why bake T into the model rather than apply it at prediction time: the
    saved model.keras, every export (ONNX, LiteRT, SavedModel) and so every
    runtime then give calibrated probabilities by construction, including
    ONNX/LiteRT files used outside digitlab; no reader of a config can forget
    T or apply it twice, and a second calibration replaces the layer's T
    instead of stacking another layer.

    Where the model ends in a softmax Dense layer (every preset but the
    ensemble), that layer is split into its logits (the same weights, no
    activation) and the TemperatureLayer, which computes softmax(z / T): one
    multiply more than the trained model, and an int8 export quantizes it as
    well as the original (a log of int8-quantized probabilities, the general
    form used for other models such as the ensemble's average, loses about
    2 points of agreement with the float model on a weak model).
    """
    keras = _keras()
    layer_cls = temperature_layer()
    last = model.layers[-1]
    if isinstance(last, layer_cls):  # calibrated already: the same graph, a new T
        source, before = last.source, last.input
    elif isinstance(last, keras.layers.Dense) and keras.activations.serialize(last.activation) == "softmax":
        cfg = {**last.get_config(), "activation": "linear", "name": "logits"}
        logits = keras.layers.Dense.from_config(cfg)
        source, before = "logits", logits(last.input)
        logits.set_weights(last.get_weights())
    else:
        source, before = "probabilities", model.outputs[0]
    out = layer_cls(temperature, source=source, name="temperature")(before)
    calibrated = keras.Model(_input(model), out, name=model.name)
    calibrated.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Built now, so the saved file holds a complete (unused) optimizer and loading it warns about nothing.
    calibrated.optimizer.build(calibrated.trainable_variables)
    return calibrated


def _input(model: Any) -> Any:
    # One input tensor, not a list of one: Keras warns when a model is later called with a bare array.
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _keras() -> Any:
    from . import backend

    return backend.keras()


# --------------------------------------------------------------------------- the calibration step


def predict(model: Any, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """float32 probabilities of a Keras model on model input `x` (batched direct calls)."""
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False), dtype=np.float32)
                           for i in range(0, len(x), batch)]) if len(x) else np.zeros((0, 10), np.float32)


def calibrate_model(model: Any, config: Any, x_val: np.ndarray, y_val: np.ndarray) -> tuple[Any, Any, dict[str, Any]]:
    """Fit the temperature on the validation split and choose the model's own thresholds.

    Returns the calibrated model (ending in one TemperatureLayer), the config
    with `temperature`, `uncertain_below` and `not_digit_above` filled in, and
    a JSON-ready summary (validation NLL and ECE before and after, the share of
    validation digits each threshold flags). The thresholds are read off the
    calibrated model's own float32 output, as every runtime will give it. Each
    threshold holds for the validation digits both as MNIST arrays and as
    users' files read back through preprocessing (`ood.rendered_digits`, which
    preprocessing makes a little harder): the uncertain threshold keeps
    UNCERTAIN_COVERAGE of both answered (the lower of the two), the
    not-a-digit threshold flags at most NOT_DIGIT_FPR of either (the higher).
    """
    from ..preprocess import to_model_input, to_pixels
    from .ood import RENDERED_DIGITS, not_digit_score, not_digit_threshold, rendered_digits, uncertain_threshold

    y = np.asarray(y_val)
    base = without_temperature(model)
    raw = predict(base, x_val)
    temperature = fit_temperature(raw, y)
    calibrated = with_temperature(base, temperature)
    probs = predict(calibrated, x_val)
    pixels = to_pixels(x_val, scale=config.scale)
    as_files = predict(calibrated, to_model_input(rendered_digits(pixels, RENDERED_DIGITS, seed=config.seed),
                                                  scale=config.scale))
    unsure = min(uncertain_threshold(probs), uncertain_threshold(as_files))
    not_digit = max(not_digit_threshold(probs), not_digit_threshold(as_files))
    config = config.replace(temperature=temperature, uncertain_below=unsure, not_digit_above=not_digit)

    def flagged(p: np.ndarray) -> dict[str, float]:
        a, b = p.max(axis=1) < unsure, not_digit_score(p) > not_digit
        return {"flagged_uncertain": float(a.mean()), "flagged_not_digit": float(b.mean()), "flagged": float((a | b).mean())}

    summary = {
        "temperature": temperature,
        "uncertain_below": unsure,
        "not_digit_above": not_digit,
        "n_val": int(len(y)),
        "validation": {
            "nll_before": nll(raw, y), "nll_after": nll(probs, y),
            "ece_before": expected_calibration_error(raw, y), "ece_after": expected_calibration_error(probs, y),
            **flagged(probs),
        },
        "validation_as_files": {"n": int(len(as_files)), **flagged(as_files)},
    }
    return calibrated, config, summary
