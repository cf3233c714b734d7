"""Why the model answered: a 28x28 heatmap of the pixels that drove one class's score.

Three methods, one contract: model input float32 (N, 28, 28, 1) and a class per image in,
float32 (N, 28, 28) heatmaps out (positive = evidence for the class), in bounded time and memory.

    integrated_gradients  (Sundararajan et al. 2017) from a black baseline (no ink, what the
                          model input means by "nothing") or a blurred copy of the digit; a
                          fixed number of steps (IG_STEPS), trapezoid rule, so that the
                          attributions sum to score(x) - score(baseline) (completeness)
    gradcam               (Selvaraju et al. 2017) on the last convolution block's rectified
                          maps, non-negative, upsampled bilinearly to 28x28 (an ensemble: the
                          mean of its members')
    occlusion             (`occlusion.py`) needs only probabilities: any runtime (ONNX)

The gradient methods run on the Keras model through `tf.GradientTape` in one `tf.function`
per method (no `model.predict`), batched: at most MAX_ROWS images (IG: images x steps) per call.

What is explained is the class's LOGIT (the input of the model's TemperatureLayer), not its
probability. A confident answer's probability saturates (0.9999 moves by 1e-5 when a stroke is
erased), so its gradient is ~0 at the digit and a heatmap of it is noise, while the logit still
moves; the probability also mixes in the evidence against every other class. Temperature
scaling divides all logits by T, so it would scale a heatmap uniformly: explaining the logit
makes the heatmap the same for a model before and after calibration. A model with no logits
in its graph (the ensemble's averaged probabilities) is explained by log(probability).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError

METHODS = ("integrated_gradients", "gradcam", "occlusion")
GRADIENT_METHODS = METHODS[:2]
BASELINES = ("black", "blur")
# 32 steps keep IG's completeness gap under ~1% of score(x) - score(baseline) on the shipped
# model (tests/test_explain.py checks it) at 33 forward+backward passes an image.
IG_STEPS = 32
# Rows (images x path points) per gradient call: bounds memory (~0.7 MB of activations a row
# for the `strong` net, so ~0.7 GB at most) and keeps one call under a second on 2 cores.
MAX_ROWS = 1024
# The blurred baseline's Gaussian sigma in pixels: wide enough to wipe out strokes (2-3 px
# wide in MNIST), narrow enough to keep where the ink is (Sturmfels et al. 2020).
BLUR_SIGMA = 4.0
PROB_FLOOR = 1e-7  # log(probability) for a model without logits: log(0) would be -inf


@dataclass(frozen=True)
class Target:
    """What a heatmap explains: the score's name ("logit", "log-probability", "log-odds")."""

    score: str


def check_inputs(x: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Model input (N, 28, 28, 1) float32 and labels (N,) int32, or a ValueError saying why not."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (28, 28, 1):
        raise ValueError(f"model input must be (N, 28, 28, 1) (got {x.shape})")
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"one label per image needed ({len(labels)} labels for {len(x)} images)")
    return x, labels


def blurred(x: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """A Gaussian-blurred copy of model input (N, 28, 28, 1): the "blur" baseline."""
    radius = int(np.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    n, h, w, _ = x.shape
    # Zero padding: the field's border is background (black) by construction of the input.
    p = np.pad(x[..., 0], ((0, 0), (radius, radius), (radius, radius)))
    rows = sum(k[i] * p[:, i:i + h, :] for i in range(len(k)))
    out = sum(k[i] * rows[:, :, i:i + w] for i in range(len(k)))
    return out[..., None].astype(np.float32)


def _score_head(model: Any) -> tuple[Any, Any, str]:
    """(tensor, head, score name): the graph tensor the score is computed from and how.

    TemperatureLayer over logits -> its input (the logits); over probabilities -> log of them;
    an uncalibrated softmax Dense -> the same layer without its softmax; anything else -> log p.
    """
    from . import backend
    from .calibration import temperature_layer

    keras = backend.keras()
    ops = keras.ops
    last = model.layers[-1]

    def log_prob(t: Any) -> Any:
        return ops.log(ops.maximum(t, PROB_FLOOR))

    if isinstance(last, temperature_layer()):
        if last.source == "logits":
            return last.input, (lambda t: t), "logit"
        return last.input, log_prob, "log-probability"
    if isinstance(last, keras.layers.Dense) and keras.activations.serialize(last.activation) == "softmax":
        kernel, bias = last.kernel, last.bias

        def logits(t: Any) -> Any:
            z = ops.matmul(t, kernel)
            return z + bias if bias is not None else z

        return last.input, logits, "logit"
    return model.outputs[0], log_prob, "log-probability"


def _last_conv_block(model: Any) -> Any:
    """The output of the last Conv2D's block (after its BatchNorm/ReLU), as a graph tensor."""
    from . import backend

    layers = backend.keras().layers
    found = None
    elementwise = (layers.BatchNormalization, layers.ReLU, layers.Activation, layers.LeakyReLU)
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            found = layer
        elif found is not None and isinstance(layer, elementwise) and layer.input is found.output:
            found = layer  # the block's rectified maps: what Grad-CAM weighs
    if found is None:
        raise ModelError(f"{model.name}: Grad-CAM needs a Conv2D layer at the top level of the model "
                         f"(none found); use integrated_gradients or occlusion")
    return found.output


class GradientExplainer:
    """Integrated gradients and Grad-CAM for one Keras model (made once, reused per request)."""

    def __init__(self, model: Any, *, steps: int = IG_STEPS):
        from . import backend

        if not 1 <= int(steps) <= 256:
            raise ValueError(f"steps must be between 1 and 256 (got {steps})")
        tf = backend.tensorflow()
        keras = backend.keras()
        self.steps = int(steps)
        tensor, head, score = _score_head(model)
        self.target = Target(score)
        try:
            conv = _last_conv_block(model)
        except ModelError as exc:
            conv, self._no_conv = None, str(exc)
        # An ensemble's convolutions are inside its members, out of reach of its own graph: its
        # Grad-CAM is the mean of its members' (each of its own logit for the class).
        members = [layer for layer in model.layers if isinstance(layer, keras.Model)] if conv is None else []
        self._members = [GradientExplainer(m, steps=steps) for m in members]
        outputs = [tensor] if conv is None else [tensor, conv]
        graph = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, outputs)
        spec = [tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int32)]

        def score_of(x: Any, labels: Any) -> tuple[Any, Any]:
            out = graph(x, training=False)
            out = out if isinstance(out, (list, tuple)) else [out]
            s = tf.gather(head(out[0]), labels, axis=1, batch_dims=1)
            return s, (out[1] if len(out) > 1 else None)

        @tf.function(input_signature=[spec[0], spec[0], spec[1]], reduce_retracing=True)
        def ig(x, base, labels):
            m = self.steps
            alphas = tf.linspace(0.0, 1.0, m + 1)  # trapezoid rule: ends weigh half
            weights = tf.concat([[0.5], tf.ones([m - 1]), [0.5]], 0) / m if m > 1 else tf.constant([0.5, 0.5])
            n = tf.shape(x)[0]
            path = base[None] + alphas[:, None, None, None, None] * (x - base)[None]
            path = tf.reshape(path, [-1, 28, 28, 1])
            with tf.GradientTape() as tape:
                tape.watch(path)
                s, _ = score_of(path, tf.tile(labels, [m + 1]))
            grads = tf.reshape(tape.gradient(s, path), [m + 1, n, 28, 28, 1])
            mean_grad = tf.tensordot(weights, grads, axes=1)
            return ((x - base) * mean_grad)[..., 0]

        @tf.function(input_signature=spec, reduce_retracing=True)
        def cam(x, labels):
            with tf.GradientTape() as tape:
                s, maps = score_of(x, labels)
            grads = tape.gradient(s, maps)
            weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)  # one weight per channel
            heat = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
            return tf.image.resize(heat, [28, 28], method="bilinear")[..., 0]

        @tf.function(input_signature=spec, reduce_retracing=True)
        def scores(x, labels):
            return score_of(x, labels)[0]

        self._ig, self._cam, self._scores = ig, cam, scores
        self._has_conv = conv is not None

    @property
    def members(self) -> int:
        """How many members' Grad-CAMs `gradcam` averages (0: the model's own last convolution)."""
        return len(self._members)

    def scores(self, x: Any, labels: Any) -> np.ndarray:
        """The explained score (see `target`) of class `labels[i]` for each image, float32 (N,)."""
        x, labels = check_inputs(x, labels)
        return _chunked(lambda a, b: self._scores(a, b), x, labels, (0,))

    def integrated_gradients(self, x: Any, labels: Any, *, baseline: str = "black") -> np.ndarray:
        """IG attributions (N, 28, 28), signed; they sum to score(x) - score(baseline)."""
        x, labels = check_inputs(x, labels)
        base = self.baseline(x, baseline)
        per_call = max(1, MAX_ROWS // (self.steps + 1))
        if len(x) == 0:
            return np.zeros((0, 28, 28), np.float32)
        parts = [np.asarray(self._ig(x[i:i + per_call], base[i:i + per_call], labels[i:i + per_call]))
                 for i in range(0, len(x), per_call)]
        return np.concatenate(parts).astype(np.float32)

    @staticmethod
    def baseline(x: np.ndarray, name: str) -> np.ndarray:
        """The IG baseline `name` ("black" or "blur") for model input `x`."""
        if name == "black":
            return np.zeros_like(x)
        if name == "blur":
            return blurred(x)
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)} (got {name!r})")

    def gradcam(self, x: Any, labels: Any) -> np.ndarray:
        """Grad-CAM heatmaps (N, 28, 28), non-negative."""
        if not self._has_conv and self._members:
            return np.mean([m.gradcam(x, labels) for m in self._members], axis=0).astype(np.float32)
        if not self._has_conv:
            raise ModelError(self._no_conv)
        x, labels = check_inputs(x, labels)
        return _chunked(lambda a, b: self._cam(a, b), x, labels, (0, 28, 28))

    def explain(self, method: str, x: Any, labels: Any, *, baseline: str = "black") -> np.ndarray:
        """Heatmaps by `method` (one of GRADIENT_METHODS)."""
        if method == "integrated_gradients":
            return self.integrated_gradients(x, labels, baseline=baseline)
        if method == "gradcam":
            return self.gradcam(x, labels)
        raise ValueError(f"a gradient method must be one of {', '.join(GRADIENT_METHODS)} (got {method!r})")


def _chunked(fn: Any, x: np.ndarray, labels: np.ndarray, empty: tuple[int, ...]) -> np.ndarray:
    """`fn` over chunks of MAX_ROWS images, concatenated (an `empty`-shaped array for no image)."""
    if len(x) == 0:
        return np.zeros(empty, np.float32)
    return np.concatenate([np.asarray(fn(x[i:i + MAX_ROWS], labels[i:i + MAX_ROWS]))
                           for i in range(0, len(x), MAX_ROWS)]).astype(np.float32)


def normalized(heat: np.ndarray) -> np.ndarray:
    """Heatmaps scaled per image to [-1, 1] by their largest magnitude (all-zero stays zero)."""
    heat = np.asarray(heat, dtype=np.float32)
    peak = np.abs(heat).reshape(len(heat), -1).max(axis=1) if len(heat) else np.zeros(0, np.float32)
    scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return heat / scale[:, None, None]
