"""Export a trained model to portable formats: ONNX, LiteRT (.tflite), SavedModel, Keras.

    export_model(source, fmt, out=None, quantize="none") -> Path

`source` is a run directory or run name (under runs/), a model directory (one
holding model.keras + config.json) or a .keras file; None means the latest run.

Default output, inside the source model's directory:

    onnx        model.onnx             (model.int8.onnx, model.float16.onnx when quantized)
    litert      model.tflite           (model.int8.tflite, model.float16.tflite)
    savedmodel  savedmodel/            (a TensorFlow SavedModel directory)
    keras       --out is required      (an inference-only .keras: no optimizer state)

`out` may be a file name (or a directory name for savedmodel) or an existing
directory, which then receives the default file name. Every artifact gets:

- a metadata sidecar `<artifact>.json` (preset, labels, preprocessing contract,
  test accuracy from metrics.json when present, source model sha256, digitlab
  version, format, quantization, the artifact's own size and sha256, and the
  full config the model was trained with: each export carries its own, so
  two exports in one folder never mix up their configs);
- for ONNX, the same metadata inside the model as `metadata_props` (JSON
  values under `digitlab.*` keys).

The destination is checked (its folder exists and is writable) before any
conversion work starts; no folders are created for it.

Every model is traced once as `tf.function(image: float32[None, 28, 28, 1])`
calling the model with `training=False`, which is the explicit input signature
the converters need and drops augmentation/dropout layers (inactive at
inference); Sequential models have such layers stripped outright. After an
export the artifact is run on 200 MNIST test images and compared with Keras
(recorded as `export_check`); for float formats a probability difference
above 1e-4 aborts the export (the file is not kept).

Ensembles (`--preset ensemble`, `--members N`) are saved as ONE functional
Keras model that averages its members (`models.average_model`), so they export
as a single averaged graph like any other model.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ConfigError, ModelError
from ..files.atomic import check_output_path, read_json, sha256_file
from ..files.layout import METRICS_FILE, MODEL_FILE, ONNX_FILE, SAVEDMODEL_DIR, TFLITE_FILE, metadata_path
from ..models import backend
from ..runs.artifacts import META_PREFIX, read_metadata, read_onnx_metadata  # noqa: F401 - part of this API
from . import converters
from .converters import INPUT_NAME, OUTPUT_NAME

FORMATS = ("onnx", "litert", "savedmodel", "keras")
QUANTIZATIONS = ("none", "float16", "int8")
PARITY_TOLERANCE = 1e-4  # max |p_exported - p_keras| for float32 exports
REPRESENTATIVE_IMAGES = 200  # MNIST training images used to calibrate int8

# Layers that are identity at inference time (training=False) and only get in
# the way of converters: augmentation, noise and dropout.
_INFERENCE_NOOP_PREFIXES = ("Random", "Gaussian", "Dropout", "SpatialDropout", "AlphaDropout")


# --------------------------------------------------------------------------- helpers


def resolve_source(source: str | os.PathLike | None, runs_dir: str | os.PathLike = "runs") -> Path:
    """The .keras file to export: from a run name/dir, a model dir, a .keras file or None (latest run)."""
    from ..runs.directories import resolve_run

    if source is not None:
        p = Path(source)
        if p.is_file():
            if p.suffix != ".keras":
                raise ModelError(f"{p}: export needs a .keras model (or a run/model directory), got a {p.suffix or 'plain'} file")
            return p
        if p.is_dir():
            if not (p / MODEL_FILE).is_file():
                raise ModelError(f"{p}: no {MODEL_FILE} in this directory")
            return p / MODEL_FILE
    run_dir = resolve_run(source, runs_dir)
    model_file = run_dir / MODEL_FILE
    if not model_file.is_file():
        raise ModelError(f"{run_dir}: no {MODEL_FILE} in this run (was it interrupted before the first epoch?)")
    return model_file


def default_name(fmt: str, quantize: str) -> str:
    """model.onnx, model.int8.onnx, model.tflite, savedmodel, model.keras ..."""
    base = {"onnx": ONNX_FILE, "litert": TFLITE_FILE, "savedmodel": SAVEDMODEL_DIR, "keras": MODEL_FILE}[fmt]
    if quantize == "none" or "." not in base:
        return base
    stem, suffix = base.rsplit(".", 1)
    return f"{stem}.{quantize}.{suffix}"


def _output_path(model_file: Path, fmt: str, quantize: str, out: str | os.PathLike | None) -> Path:
    name = default_name(fmt, quantize)
    if out is None:
        if fmt == "keras":
            raise ConfigError("--out is required for --format keras (the source already is a .keras file)")
        return model_file.parent / name
    out = Path(out)
    if fmt != "savedmodel" and out.is_dir():
        return out / name
    if fmt == "savedmodel" and out.is_dir() and not (out / "saved_model.pb").is_file() and any(out.iterdir()):
        # An existing non-empty directory that is not a SavedModel: put ours inside it.
        return out / name
    suffix = {"onnx": ".onnx", "litert": ".tflite", "keras": ".keras"}.get(fmt)
    if suffix and out.suffix != suffix:
        raise ConfigError(f"--out {out}: a {fmt} file must end in {suffix} (or name an existing directory)")
    return out


# --------------------------------------------------------------------------- model preparation


def _noop_at_inference(layer: Any) -> bool:
    return type(layer).__name__.startswith(_INFERENCE_NOOP_PREFIXES)


def inference_model(model: Any) -> Any:
    """`model` without layers that do nothing at inference (augmentation, dropout, noise).

    Sequential models are rebuilt from their remaining layers (weights are
    shared, not copied). Other models are returned as they are: tracing with
    training=False already leaves those layers out of the graph.
    """
    keras = backend.keras()
    if isinstance(model, keras.Sequential) and any(_noop_at_inference(layer) for layer in model.layers):
        kept = [layer for layer in model.layers if not _noop_at_inference(layer)]
        shape = tuple(model.input_shape[1:])
        stripped = keras.Sequential([keras.Input(shape=shape, name=INPUT_NAME), *kept], name=model.name)
        return stripped
    return model


def _check_io(model: Any, config: Any) -> None:
    size = config.image_size
    k = len(config.classes)
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    if in_shape[1:] != (size, size, 1) or out_shape[1:] != (k,):
        raise ModelError(f"export supports models mapping (N, {size}, {size}, 1) to (N, {k}) (one output per class "
                         f"in its config); this one maps {in_shape} to {out_shape}")


def calibration_images(config: Any, n: int = REPRESENTATIVE_IMAGES, seed: int = 0) -> np.ndarray:
    """`n` training images (seeded choice) as model input, for int8 calibration: MNIST's for a
    digit model, else the model's own data's (`config.data`, which must be on this machine)."""
    from ..data import is_digit_classes, load_dataset
    from ..preprocess import to_model_input

    # A digit model: the packaged copy, always there, and what (or what looks like what) every
    # digit model was trained on (a run's own data may not exist on the machine that exports it).
    data = load_dataset(None if is_digit_classes(config.classes) else config.data, seed=config.seed)
    n = min(n, len(data.x_train))
    idx = np.random.default_rng(seed).choice(len(data.x_train), size=n, replace=False)
    return to_model_input(data.x_train[np.sort(idx)], scale=config.scale)


# --------------------------------------------------------------------------- metadata


def build_metadata(config: Any, model_file: Path, fmt: str, quantize: str, n_params: int) -> dict[str, Any]:
    try:
        metrics = read_json(model_file.parent / METRICS_FILE, missing={})
    except ModelError:
        metrics = {}  # a damaged metrics.json only costs the accuracy field of the metadata
    size = config.image_size
    k = len(config.classes)
    return {
        "format": fmt,
        "quantization": quantize,
        "digitlab_version": __version__,
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "preset": config.preset,
        # The class names, in output order (what the probabilities' indices mean).
        "labels": list(config.classes),
        "input": {"name": INPUT_NAME, "shape": [None, size, size, 1], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": [None, k], "dtype": "float32",
                   "meaning": "class probabilities (softmax), index i = class labels[i]"
                              + (", calibrated (temperature included)" if getattr(config, "temperature", None)
                                 else "")},
        "preprocessing": {"image_size": size, "scale": config.scale, "polarity": config.polarity,
                          "value_range": [0.0, 1.0],
                          "recipe": "uint8 28x28 grayscale, white digit on black; x = pixels * scale; "
                                    "shape (N, 28, 28, 1) float32"},
        "test_accuracy": metrics.get("test_accuracy"),
        # The output is already calibrated (the temperature is the model's last layer); the
        # thresholds are what digitlab's Predictor decides with (see digitlab.models.ood).
        "calibration": {"temperature": getattr(config, "temperature", None),
                        "uncertain_below": getattr(config, "uncertain_below", None),
                        "not_digit_above": getattr(config, "not_digit_above", None),
                        "not_digit_score": f"entropy of the probabilities / log({k})"},
        "parameters": n_params,
        "source_model": {"file": model_file.name, "sha256": sha256_file(model_file)},
        "config": config.to_dict(),
    }


# --------------------------------------------------------------------------- parity check


def _check_inputs(config: Any, n: int) -> tuple[np.ndarray, str]:
    """The first `n` MNIST test images as model input; synthetic ones if MNIST cannot be read."""
    from ..errors import DigitlabError
    from ..preprocess import to_model_input

    try:
        from ..data.mnist import load_mnist_data

        return to_model_input(load_mnist_data().x_test[:n], scale=config.scale), "MNIST test images"
    except (DigitlabError, OSError):
        rng = np.random.default_rng(0)
        # Sparse bright strokes on black, like MNIST, rather than uniform noise.
        return (rng.random((n, 28, 28, 1)) ** 6).astype(np.float32), "synthetic inputs"


def parity_check(artifact: Path, model: Any, fmt: str, config: Any, n: int = 200) -> dict[str, Any]:
    """Run `artifact` on `n` MNIST test images and compare with the Keras model."""
    x, what = _check_inputs(config, n)
    ref = np.asarray(model(x, training=False), dtype=np.float32)
    if fmt == "onnx":
        from .runtimes import OnnxRunner

        got = OnnxRunner(artifact, threads=1)(x)
    elif fmt == "litert":
        from .runtimes import LiteRTRunner

        got = LiteRTRunner(artifact, threads=1)(x)
    elif fmt == "savedmodel":
        tf = backend.tensorflow()
        loaded = tf.saved_model.load(str(artifact))
        got = loaded.signatures["serving_default"](**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME].numpy()
    else:
        from ..models.calibration import custom_objects

        reloaded = backend.keras().models.load_model(artifact, compile=False, custom_objects=custom_objects())
        got = np.asarray(reloaded(x, training=False))
    return {"max_abs_diff": float(np.abs(got - ref).max()),
            "argmax_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
            "images": int(len(x)), "inputs": what}


# --------------------------------------------------------------------------- the API


def export_model(source: str | os.PathLike | None, fmt: str = "onnx", out: str | os.PathLike | None = None,
                 quantize: str = "none", *, runs_dir: str | os.PathLike = "runs",
                 check: bool = True) -> Path:
    """Export the model at `source` as `fmt`; return the artifact's path (see module doc)."""
    from ..files.atomic import atomic_path, atomic_write_bytes, atomic_write_json
    from ..models.architectures import load_model

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from: {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantize!r}; choose from: {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and fmt not in ("onnx", "litert"):
        raise ConfigError(f"--quantize {quantize} is available for onnx and litert, not {fmt}")

    model_file = resolve_source(source, runs_dir)
    dest = _output_path(model_file, fmt, quantize, out)
    if dest.resolve() == model_file.resolve():
        raise ConfigError(f"--out {dest} is the source model itself; choose another path")
    check_output_path(dest)  # before the conversion work, not after it
    model, config = load_model(model_file)
    _check_io(model, config)
    model = inference_model(model)
    size = config.image_size
    meta = build_metadata(config, model_file, fmt, quantize, int(model.count_params()))
    calibration = calibration_images(config) if quantize == "int8" else None
    # A sidecar from an earlier export describes the old file (runners check
    # its sha256): drop it now; the new one is written after the check.
    metadata_path(dest).unlink(missing_ok=True)

    if fmt == "onnx":
        with converters.quiet():
            data = converters.to_onnx_bytes(model, size)
            if quantize == "float16":
                data = converters.onnx_float16(data)
            elif quantize == "int8":
                data = converters.onnx_int8(data, calibration)
        atomic_write_bytes(dest, converters.embed_onnx_metadata(data, meta))
    elif fmt == "litert":
        with converters.quiet():
            data = converters.to_tflite_bytes(model, size, quantize, calibration)
        atomic_write_bytes(dest, data)
    elif fmt == "savedmodel":
        with converters.quiet():
            converters.write_dir_atomically(dest, lambda p: converters.write_savedmodel(model, size, p))
    else:  # keras: an inference-only copy (no optimizer state, no training-only layers)
        with atomic_path(dest) as tmp:
            # from_config builds an uncompiled twin (clone_model would carry
            # the optimizer and its two slots per weight: 3x the file size).
            clean = type(model).from_config(model.get_config())
            clean.set_weights(model.get_weights())
            clean.save(tmp)

    # The artifact's config lives in its own metadata (not in a config.json beside it, which a
    # second export into the same folder would overwrite); the runners of the check read it.
    atomic_write_json(metadata_path(dest), meta)
    if check:
        result = parity_check(dest, model, fmt, config)
        meta["export_check"] = result
        if quantize == "none" and result["max_abs_diff"] > PARITY_TOLERANCE:
            _remove(dest)
            metadata_path(dest).unlink(missing_ok=True)
            raise ModelError(f"exported {fmt} model disagrees with Keras (max |dp| = {result['max_abs_diff']:.2e} "
                             f"> {PARITY_TOLERANCE:g}); nothing was written")

    meta["file"] = _artifact_info(dest)
    atomic_write_json(metadata_path(dest), meta)
    return dest


def _artifact_info(path: Path) -> dict[str, Any]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"name": path.name, "bytes": sum(p.stat().st_size for p in files)}
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
