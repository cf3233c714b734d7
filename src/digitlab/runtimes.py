"""Inference runtimes: one small interface, several engines.

A runner maps model input (float32 (N, 28, 28, 1), as made by
`preprocess.to_model_input`) to class probabilities (float32 (N, 10)). The
Predictor only ever talks to a runner, so serving and the CLI work the same
on every engine.

    keras   model.keras through one tf.function (imports TensorFlow: slow start, ~1 GB)
    onnx    model.onnx on ONNX Runtime (CPU): no TensorFlow, fastest start and latency
    litert  model.tflite on the standalone ai-edge-litert interpreter: no TensorFlow

Serving never uses `model.predict()`: it costs ~40 ms per call in TensorFlow
against ~4.5 ms for a direct call. The Keras runner wraps the model in one
`tf.function` with a fixed input signature (batch size left open), so every
batch size reuses the same traced graph.

`open_runner(path, "auto")` picks ONNX Runtime when `model.onnx` is present,
importable and exported from the model.keras beside it (its metadata records
the source hash), else LiteRT for a lone model.tflite, else Keras. Only the
Keras runner imports TensorFlow, and only when it is chosen.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from .errors import ModelError
from .runs import sha256_file

RUNTIMES = ("keras", "onnx", "litert")
ONNX_FILE = "model.onnx"  # same names as export.py (not imported: it is heavier)
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"
_SUFFIX_RUNTIME = {".keras": "keras", ".onnx": "onnx", ".tflite": "litert"}
_RUNTIME_FILE = {"keras": KERAS_FILE, "onnx": ONNX_FILE, "litert": TFLITE_FILE}
_RUNTIME_MODULE = {"onnx": "onnxruntime", "litert": "ai_edge_litert"}
THREADS_ENV = "DIGITLAB_THREADS"  # override the number of intra-op threads


class Runner(Protocol):
    """Anything that turns model input into probabilities."""

    name: str  # "keras", "onnx", ...

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28, 1) -> float32 (N, 10) probabilities."""
        ...


class KerasRunner:
    """Runs a .keras model through a compiled `tf.function` (not `predict`)."""

    name = "keras"

    def __init__(self, model_file: str | Path):
        from . import backend
        from .models import load_model

        tf = backend.tensorflow()
        self.path = Path(model_file)
        self.model, self.config = load_model(model_file)
        size = self.config.image_size
        model = self.model

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32)], reduce_retracing=True)
        def _infer(x):  # noqa: ANN001
            return model(x, training=False)

        self._infer = _infer
        self._infer(np.zeros((1, size, size, 1), np.float32))  # trace now, not on the first request

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._infer(np.ascontiguousarray(x, dtype=np.float32)).numpy()


def default_threads() -> int:
    """Intra-op threads: $DIGITLAB_THREADS, else half the usable cores, at least 1, at most 4.

    This model is small: past 4 threads the split costs more than it saves,
    and one request rarely needs more than one core. Half the cores, because
    the callers bring their own parallelism (the web server runs requests on
    a thread pool; the CLI decodes and preprocesses on the same cores), and a
    split of a tiny input only adds synchronisation. Measured on 2 cores:
    one image 0.05 ms with 1 thread against 0.08-0.13 ms with 2-4; 256 images
    15 ms against 31-37 ms.
    """
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ModelError(f"{THREADS_ENV} must be a whole number (got {env!r})") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def _load_config(model_file: Path):  # noqa: ANN202 - returns config.Config
    """config.json beside the file, else the config embedded in the export metadata."""
    from .config import CONFIG_FILE, Config

    if (model_file.parent / CONFIG_FILE).is_file():
        return Config.load(model_file.parent)
    side = model_file.with_name(model_file.name + ".json")
    try:
        return Config.from_dict(json.loads(side.read_text(encoding="utf-8"))["config"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if model_file.suffix == ".onnx":
        return None  # OnnxRunner reads its embedded metadata instead
    raise ModelError(f"{model_file}: no {CONFIG_FILE} beside it (it says how inputs are prepared)")


def _check_file(path: Path) -> None:
    """Missing, empty, or not the file its export metadata describes -> ModelError.

    The sidecar `<file>.json` written by `digitlab export` records the file's
    size and sha256; checking them (about 1 ms) catches truncated copies and
    flipped bytes that the format's own parser would accept.
    """
    if not path.is_file():
        raise ModelError(f"no model found at {path}")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path}: empty file (truncated download or interrupted copy?)")
    side = path.with_name(path.name + ".json")
    try:
        recorded = json.loads(side.read_text(encoding="utf-8"))["file"]
        want_size, want_sha = int(recorded["bytes"]), str(recorded["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no (usable) sidecar: the parser's own checks must do
    if size != want_size:
        raise ModelError(f"{path}: {size} bytes, but its export metadata says {want_size} "
                         f"(truncated or replaced? re-export it with `digitlab export`)")
    if sha256_file(path) != want_sha:
        raise ModelError(f"{path}: contents do not match the sha256 in {side.name} "
                         f"(corrupted or replaced? re-export it with `digitlab export`)")


class OnnxRunner:
    """Runs model.onnx on ONNX Runtime's CPU provider; imports no TensorFlow."""

    name = "onnx"

    def __init__(self, model_file: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("the onnx runtime needs onnxruntime: pip install onnxruntime") from None
        path = self.path = Path(model_file)
        _check_file(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only
        # Idle worker threads would otherwise spin for a while after each call,
        # stealing a core from whatever else runs (the web server, other users).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - InvalidProtobuf, Fail, RuntimeException...
            raise ModelError(f"{path}: not a loadable ONNX model ({_short(exc)})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1 or list(inputs[0].shape[1:]) != [28, 28, 1] \
                or inputs[0].type != "tensor(float)" or list(outputs[0].shape[1:]) != [10]:
            raise ModelError(f"{path}: expected one float input (N, 28, 28, 1) and output (N, 10), got "
                             f"{[(i.name, i.shape, i.type) for i in inputs]} -> {[(o.name, o.shape) for o in outputs]}")
        self._input = inputs[0].name
        self._output = [outputs[0].name]
        self.metadata = self._metadata()
        config = _load_config(path)
        if config is None:
            from .config import Config

            try:
                config = Config.from_dict(self.metadata["config"])
            except Exception:  # noqa: BLE001 - KeyError, ConfigError, TypeError
                raise ModelError(f"{path}: no config.json beside it and no digitlab metadata inside") from None
        self.config = config

    def _metadata(self) -> dict:
        out = {}
        for key, value in self.session.get_modelmeta().custom_metadata_map.items():
            if key.startswith("digitlab."):
                try:
                    out[key[len("digitlab."):]] = json.loads(value)
                except ValueError:
                    out[key[len("digitlab."):]] = value
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(self._output, {self._input: x})[0]


class LiteRTRunner:
    """Runs model.tflite on the standalone LiteRT interpreter (ai-edge-litert); no TensorFlow.

    An interpreter has fixed tensor shapes, and resizing one re-plans it
    (measured: ~3.5 ms to switch between batch 1 and 256, against 0.03 ms to
    run one image). So single images get their own interpreter, fixed at
    batch 1, and batches a second one (made on first use) that is resized only
    when the batch size changes; large inputs go through in chunks of
    `max_batch` so memory stays flat. Feeding a batch one image at a time
    instead would be 2x slower (23 ms against 11 ms for 256 images).
    Interpreters are not thread-safe: calls take turns on a lock (ONNX
    Runtime sessions and the Keras tf.function need none).
    """

    name = "litert"
    max_batch = 256

    def __init__(self, model_file: str | Path, threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError("the litert runtime needs ai-edge-litert: pip install ai-edge-litert") from None
        path = self.path = Path(model_file)
        _check_file(path)
        self._content = path.read_bytes()  # from bytes: the interpreter keeps no handle on the file
        self._threads = threads or default_threads()
        self._make = Interpreter
        try:
            self._single = self._new_interpreter(1)
            inp = self._single.get_input_details()
            outp = self._single.get_output_details()
        except Exception as exc:  # noqa: BLE001 - ValueError/RuntimeError from the C++ side
            raise ModelError(f"{path}: not a loadable LiteRT (.tflite) model ({_short(exc)})") from None
        if len(inp) != 1 or list(inp[0]["shape"][1:]) != [28, 28, 1] or inp[0]["dtype"] != np.float32 \
                or len(outp) != 1 or list(outp[0]["shape"][1:]) != [10]:
            raise ModelError(f"{path}: expected one float32 input (N, 28, 28, 1) and output (N, 10)")
        self._in, self._out = inp[0]["index"], outp[0]["index"]
        self._multi = None  # the batch interpreter, made on first use
        self._multi_batch = -1
        self._lock = threading.Lock()
        self.config = _load_config(path)

    @property
    def interpreter(self):  # noqa: ANN201 - the batch-1 interpreter, for inspection
        return self._single

    def _new_interpreter(self, batch: int):  # noqa: ANN202
        with _quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            it = self._make(model_content=self._content, num_threads=self._threads)
            index = it.get_input_details()[0]["index"]
            it.resize_tensor_input(index, [batch, 28, 28, 1], strict=False)
            it.allocate_tensors()
        return it

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n == 1:
            it = self._single
        else:
            if self._multi is None:
                self._multi, self._multi_batch = self._new_interpreter(n), n
            elif n != self._multi_batch:
                self._multi.resize_tensor_input(self._in, [n, 28, 28, 1], strict=False)
                self._multi.allocate_tensors()
                self._multi_batch = n
            it = self._multi
        it.set_tensor(self._in, x)
        it.invoke()
        return it.get_tensor(self._out).copy()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            if len(x) <= self.max_batch:
                return self._run(x)
            return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null (C++ INFO lines), unless DIGITLAB_VERBOSE is set."""
    if os.environ.get("DIGITLAB_VERBOSE", "") not in ("", "0", "false", "no"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def available(runtime: str) -> bool:
    """Whether the engine for `runtime` can be imported (without importing it)."""
    if runtime == "keras":
        return importlib.util.find_spec("tensorflow") is not None
    try:
        return importlib.util.find_spec(_RUNTIME_MODULE[runtime]) is not None
    except (ImportError, ValueError):
        return False


def _onnx_is_current(onnx_file: Path) -> bool:
    """False when model.onnx was exported from another model.keras than the one beside it."""
    keras_file = onnx_file.with_name(KERAS_FILE)
    side = onnx_file.with_name(onnx_file.name + ".json")
    if not keras_file.is_file() or not side.is_file():
        return True
    try:
        expected = json.loads(side.read_text(encoding="utf-8"))["source_model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return sha256_file(keras_file) == expected


def choose_runtime(model_path: str | Path) -> str:
    """The runtime "auto" picks for `model_path` (a file decides by its suffix)."""
    path = Path(model_path)
    if path.is_file() or path.suffix in _SUFFIX_RUNTIME:
        return _SUFFIX_RUNTIME.get(path.suffix, "keras")
    onnx_file = path / ONNX_FILE
    if onnx_file.is_file() and available("onnx") and _onnx_is_current(onnx_file):
        return "onnx"
    if not (path / KERAS_FILE).is_file() and (path / TFLITE_FILE).is_file() and available("litert"):
        return "litert"
    return "keras"


def open_runner(model_path: str | Path, runtime: str = "auto", *, threads: int | None = None) -> Runner:
    """Open the model at `model_path` (a model directory or file) on `runtime`.

    `runtime` is "auto", "keras", "onnx" or "litert". A directory is looked
    into for model.keras / model.onnx / model.tflite; a file must match its
    runtime (.keras, .onnx, .tflite). "auto" picks the fastest runtime
    available for what is on disk (see the module doc).
    """
    path = Path(model_path)
    if runtime not in ("auto", *RUNTIMES):
        raise ModelError(f"unknown runtime {runtime!r}; choose from: auto, {', '.join(RUNTIMES)}")
    if not path.exists():
        raise ModelError(f"no model found at {path}")
    if runtime == "auto":
        runtime = choose_runtime(path)
    if path.is_dir():
        model_file = path / _RUNTIME_FILE[runtime]
        if not model_file.is_file():
            hint = "" if runtime == "keras" else f"; create it with `digitlab export {path} --format {runtime}`"
            raise ModelError(f"no {model_file.name} in {path} for the {runtime} runtime{hint}")
    else:
        model_file = path
        want = _SUFFIX_RUNTIME.get(path.suffix)
        if want is not None and want != runtime:
            raise ModelError(f"{path} is a {want} model ({path.suffix}); it cannot run on the {runtime} runtime")
    if runtime == "onnx":
        return OnnxRunner(model_file, threads=threads)
    if runtime == "litert":
        return LiteRTRunner(model_file, threads=threads)
    return KerasRunner(model_file)
