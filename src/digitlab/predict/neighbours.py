"""The training images nearest to an input, per class, in the model's own embedding.

    index = NeighbourIndex.open(model_dir)         # neighbours.npz + embedding.onnx (no TensorFlow)
    index.for_prediction(prediction, k=5)          # one `Neighbours` per top-3 class
    ensure_index(model, log=print)                 # build it first if missing or stale (TensorFlow)

Exact search: the embeddings are L2-normalised, so the nearest are those of the largest dot
product; each class's rows are one contiguous float32 matrix, and a query is one matrix-vector
product per asked class plus a partial sort (BENCHMARKS.md: ms per query). The index is built by
`export.neighbours`; it belongs to one model (the id of its model.keras) and is refused for any
other, so a retrained model never shows another model's neighbours.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..export.neighbours import EMBEDDING_OUTPUT, FORMAT, model_folder, source_id
from ..files.atomic import sha256_file
from ..files.layout import EMBEDDING_FILE, NEIGHBOURS_FILE

K = 5  # neighbours per class: one row of the page, small enough to send as PNGs (~5 KB for 3 rows)


@dataclass(frozen=True)
class Neighbours:
    """The `k` training images of one class nearest to an input."""

    label: int
    name: str
    indices: tuple[int, ...]  # positions in the training split (for MNIST: in the training file)
    similarity: tuple[float, ...]  # cosine similarity to the input, falling
    images: np.ndarray  # uint8 (k, 28, 28), white on black

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the images as base64 PNGs (28x28 grey, about 300 bytes each)."""
        return {"label": self.label, "name": self.name, "indices": list(self.indices),
                "similarity": [round(s, 4) for s in self.similarity], "images": [png_base64(im) for im in self.images]}


def png_base64(image: np.ndarray) -> str:
    """A uint8 2-D image as a base64 PNG string."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def index_problem(folder: Path) -> str | None:
    """Why `folder`'s neighbour index cannot be used with its model (None: it can)."""
    path, onnx = folder / NEIGHBOURS_FILE, folder / EMBEDDING_FILE
    if not path.is_file() or not onnx.is_file():
        return f"no neighbour index in {folder.name}"
    try:
        with np.load(path, allow_pickle=False) as z:
            fmt, built_for, sha = int(z["format"]), str(z["model_id"]), str(z["embedding_sha256"])
    except (OSError, KeyError, ValueError) as exc:
        return f"{path.name} is unreadable ({str(exc)[:100]})"
    if fmt != FORMAT:
        return f"{path.name} has format {fmt}, this digitlab reads {FORMAT}"
    current = source_id(folder)
    if built_for != current:
        return f"{path.name} was built for model {built_for or '?'}, the model here is {current or '?'}"
    if sha256_file(onnx) != sha:
        return f"{EMBEDDING_FILE} is not the one {path.name} was built with"
    return None


class NeighbourIndex:
    """A loaded neighbours.npz and its embedding model; read-only after loading (thread-safe)."""

    def __init__(self, folder: Path):
        import onnxruntime as ort

        from ..export.runtimes import default_threads

        problem = index_problem(folder)
        if problem is not None:
            raise ModelError(f"{problem}; build it with `digitlab neighbours {folder}`")
        with np.load(folder / NEIGHBOURS_FILE, allow_pickle=False) as z:
            vectors = z["embeddings"].astype(np.float32)
            labels, self.indices, self.images = z["labels"], z["indices"], z["images"]
            self.classes = tuple(str(c) for c in z["classes"])
            self.scale = float(z["scale"])
            self.per_class = int(z["per_class"]) or None
            self.data_source = str(z["data_source"])
        self.folder = folder
        self.size, self.dims = vectors.shape
        # Rows of each class together: a query touches only the classes it asks for.
        self._rows = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        self._vectors = {c: np.ascontiguousarray(vectors[rows]) for c, rows in self._rows.items()}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = default_threads()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the model's runner
        self._session = ort.InferenceSession(str(folder / EMBEDDING_FILE), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        if [o.name for o in self._session.get_outputs()] != [EMBEDDING_OUTPUT]:
            raise ModelError(f"{folder / EMBEDDING_FILE}: expected one output {EMBEDDING_OUTPUT!r}")

    @classmethod
    def open(cls, model: str | os.PathLike | None = None, *, out: str | os.PathLike | None = None) -> NeighbourIndex:
        """The index beside `model` (see `runs.artifacts.resolve_model`); ModelError if missing or stale."""
        return cls(model_folder(model, out))

    def embed(self, digits28: np.ndarray) -> np.ndarray:
        """uint8 MNIST-format digits (N, 28, 28) -> L2-normalised embeddings (N, dims)."""
        from ..preprocess import to_model_input

        x = to_model_input(np.asarray(digits28), scale=self.scale)
        e = np.asarray(self._session.run(None, {self._input: x})[0], dtype=np.float32).reshape(len(x), -1)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    def nearest(self, embedding: np.ndarray, label: int, k: int = K) -> Neighbours:
        """The `k` training images of class `label` nearest to one normalised `embedding`."""
        rows = self._rows.get(int(label))
        name = self.classes[label] if 0 <= label < len(self.classes) else str(label)
        if rows is None or k < 1:
            return Neighbours(int(label), name, (), (), np.zeros((0, 28, 28), np.uint8))
        sims = self._vectors[int(label)] @ np.asarray(embedding, dtype=np.float32)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        picked = rows[top]
        return Neighbours(int(label), name, tuple(int(i) for i in self.indices[picked]),
                          tuple(float(s) for s in sims[top]), self.images[picked])

    def for_input(self, digit28: np.ndarray, labels: list[int], k: int = K) -> list[Neighbours]:
        """For one 28x28 model input, the nearest `k` of each class in `labels`."""
        e = self.embed(np.asarray(digit28)[None])[0]
        return [self.nearest(e, c, k) for c in labels]

    def for_prediction(self, prediction: Any, k: int = K) -> list[Neighbours]:
        """One `Neighbours` per top-3 class of a DigitPrediction ([] when there is no digit)."""
        if prediction.no_digit or prediction.model_input is None or not prediction.top3:
            return []
        return self.for_input(prediction.model_input, [c for c, _ in prediction.top3], k)


class LazyIndex:
    """A NeighbourIndex loaded on first use (once, under a lock): a Predictor carries one, so that
    predictions that never ask for neighbours never pay for loading them (~0.5 s, tens of MB)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._index: NeighbourIndex | None = None
        self._lock = threading.Lock()

    def get(self) -> NeighbourIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    if self.folder is None:
                        raise ModelError("this model has no folder to hold a neighbour index")
                    self._index = NeighbourIndex(self.folder)
        return self._index


def ensure_index(model: str | os.PathLike | None = None, *, out: str | os.PathLike | None = None,
                 per_class: int | None = None, rebuild: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """The neighbour index beside `model`, built first when missing, stale (another model) or
    `rebuild`; building needs TensorFlow and the model.keras. Returns the npz path."""
    from ..export.neighbours import build_index

    say = log or (lambda _msg: None)
    folder = model_folder(model, out)
    problem = None if not rebuild else "rebuild asked for"
    problem = problem or index_problem(folder)
    if problem is None:
        return folder / NEIGHBOURS_FILE
    say(f"{problem}: building the neighbour index (once per model)")
    return build_index(folder, per_class=per_class, log=say)


def strip_picture(prediction: Any, found: list[Neighbours], zoom: int = 3) -> Any:
    """One PIL picture: per top-3 class a row "class (probability)", the input, then its nearest
    training images (what the model thinks that class looks like)."""
    from PIL import Image, ImageDraw

    side, gap, margin = 28 * zoom, 4, 96
    cols = 1 + max((len(n.indices) for n in found), default=0)
    rows = max(len(found), 1)
    canvas = Image.new("L", (margin + cols * (side + gap), rows * (side + gap) + gap), 255)
    draw = ImageDraw.Draw(canvas)
    probs = dict(prediction.top3)
    big = Image.Resampling.NEAREST
    source = np.asarray(prediction.model_input if prediction.model_input is not None else np.zeros((28, 28)), np.uint8)
    for r, n in enumerate(found):
        y = gap + r * (side + gap)
        draw.text((6, y + side // 2 - 6), f"{n.name} ({100 * probs.get(n.label, 0.0):.1f}%)", fill=0)
        canvas.paste(Image.fromarray(source).resize((side, side), big), (margin, y))
        for c, image in enumerate(n.images, start=1):
            canvas.paste(Image.fromarray(np.asarray(image, np.uint8)).resize((side, side), big),
                         (margin + c * (side + gap) + gap, y))
    return canvas
