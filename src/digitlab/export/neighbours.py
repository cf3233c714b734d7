"""The nearest-training-example index of a model (`digitlab neighbours MODEL`): what the model
thinks a 7 looks like, as the training images closest to an input in its own embedding.

The embedding is the model's penultimate layer: the input of its last Dense layer (the class
scores). Building writes two files beside the model (names in `files.layout`):

    embedding.onnx   the model up to that layer, as ONNX (input "image", output "embedding")
    neighbours.npz   every training image's embedding, L2-normalised, float16; their labels,
                     their indices in the training split, the 28x28 images themselves, the
                     id of the model.keras it was built from and the sha256 of embedding.onnx

Why a separate ONNX model rather than a second output of model.onnx: model.onnx and every
runner keep their one-output contract (and exports made before this keep working), the
embedding model is only loaded when neighbours are asked for, and queries and the index
are computed by the same ONNX graph, so they are comparable by construction (the build
checks the graph against Keras). Serving on ONNX Runtime then needs no TensorFlow; only
building does (like `digitlab export`).

Why the images are in the index: the index is then all a query needs, for any `--data`
(an image folder need not be read again) and in the slim serving image. MNIST's 60,000
images are 47 MB raw, about 10 MB compressed.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError
from ..files.atomic import atomic_path, atomic_write_bytes, read_json, sha256_file
from ..files.layout import EMBEDDING_FILE, MODEL_FILE, NEIGHBOURS_FILE, ONNX_FILE, metadata_path

Log = Callable[[str], None]
FORMAT = 1  # neighbours.npz layout version: a reader refuses other versions (rebuild)
EMBEDDING_OUTPUT = "embedding"
CHUNK = 1024  # images per embedding call while building
PARITY_IMAGES = 200  # images on which the ONNX embedding is checked against Keras
PARITY_TOLERANCE = 1e-3  # max |difference| of the normalised embeddings (float32 graphs agree to ~1e-6)


def source_id(model_dir: Path) -> str | None:
    """The id of the model an index belongs to: model.keras's sha256[:12], else (an ONNX-only
    folder) the source sha256 recorded in model.onnx's export metadata."""
    keras_file = model_dir / MODEL_FILE
    if keras_file.is_file():
        return sha256_file(keras_file)[:12]
    try:
        side = read_json(metadata_path(model_dir / ONNX_FILE), missing={})
        return str(side["source_model"]["sha256"])[:12]
    except (ModelError, KeyError, TypeError):
        return None


def model_folder(model: str | os.PathLike | None, out: str | os.PathLike | None = None) -> Path:
    """The folder holding the model (see `runs.artifacts.resolve_model`); an index lives there."""
    from ..runs.artifacts import resolve_model

    path = resolve_model(model, out)
    return path if path.is_dir() else path.parent


def embedding_model(model: Any) -> Any:
    """`model` cut before its last Dense layer: image -> penultimate features (ModelError if none)."""
    from ..models import backend

    keras = backend.keras()
    heads = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not heads and members:
        # An ensemble: its members' features side by side, each scaled to unit length, so that the
        # index's cosine similarity is the mean of the members' (each counts the same, whatever the
        # scale of its features).
        image = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name="image")
        features = [keras.layers.UnitNormalization(name=f"member_{i}_unit")(embedding_model(m)(image))
                    for i, m in enumerate(members)]
        return keras.Model(image, keras.layers.Concatenate(name="features")(features), name=f"{model.name}_embedding")
    if not heads:
        raise ModelError(f"model {model.name!r} has no Dense class layer of its own; neighbours need a "
                         f"penultimate layer to compare images in")
    # One input tensor, not the list: called with an array, the sub-model then matches its structure.
    return keras.Model(model.inputs[0], heads[-1].input, name=f"{model.name}_embedding")


def _normalised(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float32).reshape(len(e), -1)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def pick(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first `per_class` images of each class in file order (all when None)."""
    if per_class is None:
        return np.arange(len(labels))
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1 (got {per_class})")
    keep = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def build_index(model: str | os.PathLike | None = None, *, per_class: int | None = None,
                out: str | os.PathLike | None = None, log: Log | None = None) -> Path:
    """Build embedding.onnx and neighbours.npz beside `model` (default: the shipped one); returns
    the npz path. `per_class` keeps only the first N training images of each class (a smaller file)."""
    from ..export.converters import INPUT_NAME, quiet, to_onnx_bytes
    from ..export.runtimes import default_threads
    from ..models.architectures import load_model
    from ..preprocess import to_model_input
    from ..runs.rundata import load_data

    say = log or (lambda _msg: None)
    folder = model_folder(model, out)
    keras_file = folder / MODEL_FILE
    if not keras_file.is_file():
        raise ModelError(f"building a neighbour index needs the {MODEL_FILE} in {folder} (the embedding is cut "
                         f"from it); an exported model alone cannot be cut")
    keras_model, config = load_model(keras_file)
    embed = embedding_model(keras_model)
    data = load_data(config, log=say)
    chosen = pick(np.asarray(data.y_train), per_class)
    say(f"building the neighbour index of {folder.name}: {len(chosen):,} training images, "
        f"{int(np.prod(embed.output.shape[1:]))} dimensions")
    with quiet():
        onnx_bytes = to_onnx_bytes(embed, config.image_size, output=EMBEDDING_OUTPUT)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = default_threads()
    session = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    images = np.asarray(data.x_train)[chosen]

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT_NAME: to_model_input(x, scale=config.scale)})[0]

    probe = images[:PARITY_IMAGES]
    want = _normalised(np.asarray(embed(to_model_input(probe, scale=config.scale), training=False)))
    diff = float(np.abs(_normalised(run(probe)) - want).max()) if len(probe) else 0.0
    if diff > PARITY_TOLERANCE:
        raise ModelError(f"the ONNX embedding differs from Keras by {diff:.1e} (> {PARITY_TOLERANCE}); not written")
    vectors = np.concatenate([_normalised(run(images[i:i + CHUNK])) for i in range(0, len(images), CHUNK)])
    atomic_write_bytes(folder / EMBEDDING_FILE, onnx_bytes)
    target = folder / NEIGHBOURS_FILE
    with atomic_path(target) as tmp:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, format=np.int32(FORMAT), model_id=np.str_(source_id(folder) or ""),
            embedding_sha256=np.str_(sha256_file(folder / EMBEDDING_FILE)),
            embeddings=vectors.astype(np.float16), labels=np.asarray(data.y_train)[chosen].astype(np.int32),
            indices=chosen.astype(np.int32), images=images.astype(np.uint8),
            classes=np.asarray(list(config.classes), dtype=np.str_), data_source=np.str_(data.source),
            per_class=np.int32(per_class or 0), scale=np.float32(config.scale))
        Path(tmp).write_bytes(buffer.getvalue())
    say(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) and {EMBEDDING_FILE}")
    return target
