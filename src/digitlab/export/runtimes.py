"""Inference runtimes: one small interface, several engines.

A runner maps model input (float32 (N, 28, 28, 1), as made by
`preprocess.to_model_input`) to class probabilities (float32 (N, classes)).
The Predictor only ever talks to a runner, so serving and the CLI work the
same on every engine.

    keras   model.keras through one tf.function (imports TensorFlow: slow start, ~1 GB)
    onnx    model.onnx on ONNX Runtime (CPU): no TensorFlow, fastest start and latency
    litert  model.tflite on the standalone ai-edge-litert interpreter: no TensorFlow

Serving never uses `model.predict()`: it costs ~40 ms per call in TensorFlow
against ~4.5 ms for a direct call. The Keras runner wraps the model in one
`tf.function` with a fixed input signature (batch size left open), so every
batch size reuses the same traced graph.

`open_runner` checks the contract of every engine in one place
(`CheckedRunner`): on opening, a probe batch must give one row of
probabilities per image (finite, in [0, 1], summing to 1), and every later
call must give finite values. A logits model, a 3-class model, a 32x32 or
two-output model, or a model trained to NaN is a ModelError, never a
confident-looking answer.

`open_runner(path, "auto")` picks ONNX Runtime when `model.onnx` is present,
importable and exported from the model.keras beside it (its metadata records
the source hash), else LiteRT for a lone model.tflite, else Keras. Only the
Keras runner imports TensorFlow, and only when it is chosen.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import DigitlabError, ModelError
from ..files.layout import MODEL_FILE, ONNX_FILE, TFLITE_FILE
from ..models.backend import quiet_stderr
from ..runs.artifacts import check_file, exported_from, load_config, onnx_metadata

RUNTIMES = ("keras", "onnx", "litert")
_SUFFIX_RUNTIME = {".keras": "keras", ".onnx": "onnx", ".tflite": "litert"}
_RUNTIME_FILE = {"keras": MODEL_FILE, "onnx": ONNX_FILE, "litert": TFLITE_FILE}
_RUNTIME_MODULE = {"onnx": "onnxruntime", "litert": "ai_edge_litert"}
THREADS_ENV = "DIGITLAB_THREADS"  # override the number of intra-op threads
INPUT_SHAPE = (28, 28, 1)
N_CLASSES = 10  # MNIST's; a model's own count comes from its config (`Config.classes`)
# float32 softmax rows sum to 1 within ~1e-6, an int8 model's quantized softmax within ~0.02;
# logits (or anything else) miss by far more.
_SUM_TOLERANCE = 0.05


class Runner(Protocol):
    """Anything that turns model input into probabilities."""

    name: str  # "keras", "onnx", ...
    path: Path  # the model file it runs
    config: Any  # the Config the model was trained with

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 28, 28, 1) -> float32 (N, classes) probabilities."""
        ...


class KerasRunner:
    """Runs a .keras model through a compiled `tf.function` (not `predict`)."""

    name = "keras"

    def __init__(self, model_file: str | Path):
        from ..models import backend
        from ..models.architectures import load_model

        tf = backend.tensorflow()
        self.path = Path(model_file)
        self.model, self.config = load_model(model_file)
        model = self.model
        if len(model.outputs) != 1:
            raise ModelError(f"{self.path}: the model has {len(model.outputs)} outputs; "
                             f"expected one (class probabilities)")

        @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32)], reduce_retracing=True)
        def _infer(x):
            return model(x, training=False)

        self._infer = _infer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._infer(np.ascontiguousarray(x, dtype=np.float32)))


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
            threads = int(env)
        except ValueError:
            threads = 0
        if not 1 <= threads <= 256:
            raise ModelError(f"{THREADS_ENV} must be a whole number between 1 and 256 (got {env!r})")
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))


class OnnxRunner:
    """Runs model.onnx on ONNX Runtime's CPU provider; imports no TensorFlow."""

    name = "onnx"

    def __init__(self, model_file: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("the onnx runtime needs onnxruntime: pip install onnxruntime") from None
        path = self.path = Path(model_file)
        check_file(path)
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
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(outputs) != 1:
            raise ModelError(f"{path}: expected one float input and one output (class probabilities), got "
                             f"{[(i.name, i.shape, i.type) for i in inputs]} -> {[(o.name, o.shape) for o in outputs]}")
        self._input = inputs[0].name
        self._output = [outputs[0].name]
        self.metadata = onnx_metadata(self.session)
        self.config = load_config(path, embedded=self.metadata)

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
        check_file(path)
        self._content = path.read_bytes()  # from bytes: the interpreter keeps no handle on the file
        self._threads = threads or default_threads()
        self._make = Interpreter
        try:
            self._single = self._new_interpreter(1)
            inp = self._single.get_input_details()
            outp = self._single.get_output_details()
        except Exception as exc:  # noqa: BLE001 - ValueError/RuntimeError from the C++ side
            raise ModelError(f"{path}: not a loadable LiteRT (.tflite) model ({_short(exc)})") from None
        if len(inp) != 1 or inp[0]["dtype"] != np.float32 or len(outp) != 1:
            raise ModelError(f"{path}: expected one float32 input and one output")
        self._in, self._out = inp[0]["index"], outp[0]["index"]
        self._multi = None  # the batch interpreter, made on first use
        self._multi_batch = -1
        self._lock = threading.Lock()
        self.config = load_config(path)

    @property
    def interpreter(self):
        return self._single

    def _new_interpreter(self, batch: int):
        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            it = self._make(model_content=self._content, num_threads=self._threads)
            index = it.get_input_details()[0]["index"]
            it.resize_tensor_input(index, [batch, *INPUT_SHAPE], strict=False)
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
                self._multi.resize_tensor_input(self._in, [n, *INPUT_SHAPE], strict=False)
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


class CheckedRunner:
    """Wraps any engine and holds it to the contract: (N, 28, 28, 1) in, (N, classes) finite
    probabilities out. The one place where every runtime's input and output are checked."""

    def __init__(self, engine: Runner, classes: int = N_CLASSES):
        self.engine = engine
        self.name, self.path, self.config = engine.name, engine.path, engine.config
        self.classes = classes
        self._probe()

    def _probe(self) -> None:
        # Two images (a blank one and a bright square), so batch handling is exercised too.
        x = np.zeros((2, *INPUT_SHAPE), np.float32)
        x[1, 8:20, 8:20, 0] = 1.0
        try:
            probs = np.asarray(self.engine(x))
        except DigitlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - a wrong input shape fails inside the engine
            raise ModelError(f"{self.path}: the model does not accept (N, 28, 28, 1) float32 input "
                             f"({_short(exc)})") from None
        self._check(probs, 2, probe=True)

    def _check(self, probs: np.ndarray, n: int, *, probe: bool = False) -> np.ndarray:
        if probs.shape != (n, self.classes):
            raise ModelError(f"{self.path}: the model maps (N, 28, 28, 1) to {tuple(probs.shape[1:])} per image; "
                             f"expected ({self.classes},) class probabilities")
        if not np.isfinite(probs).all():
            raise ModelError(f"{self.path}: the model produced non-finite probabilities (NaN or inf); it is broken "
                             f"(was it trained with a diverging learning rate?)")
        if probe and (probs.min() < -0.01 or probs.max() > 1.01
                      or np.abs(probs.sum(axis=1) - 1).max() > _SUM_TOLERANCE):
            raise ModelError(f"{self.path}: the model's outputs are not probabilities (each row must lie in [0, 1] "
                             f"and sum to 1); a model must end in a softmax")
        return probs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._check(np.asarray(self.engine(x), dtype=np.float32), len(x))


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


def choose_runtime(model_path: str | Path) -> str:
    """The runtime "auto" picks for `model_path` (a file decides by its suffix)."""
    path = Path(model_path)
    if path.is_file() or path.suffix in _SUFFIX_RUNTIME:
        return _SUFFIX_RUNTIME.get(path.suffix, "keras")
    onnx_file = path / ONNX_FILE
    if onnx_file.is_file() and available("onnx") and exported_from(onnx_file, path / MODEL_FILE):
        return "onnx"
    if not (path / MODEL_FILE).is_file() and (path / TFLITE_FILE).is_file() and available("litert"):
        return "litert"
    return "keras"


def open_runner(model_path: str | Path, runtime: str = "auto", *, threads: int | None = None) -> CheckedRunner:
    """Open the model at `model_path` (a model directory or file) on `runtime`, checked.

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
        engine: Runner = OnnxRunner(model_file, threads=threads)
    elif runtime == "litert":
        engine = LiteRTRunner(model_file, threads=threads)
    else:
        if not available("keras"):
            # The slim serving image, or an install without TensorFlow: say what to do, in one line.
            raise ModelError(f"{model_file} needs TensorFlow to run, which is not installed here; export it to ONNX "
                             f"where TensorFlow is (`digitlab export {path} --format onnx`) and use --runtime onnx, "
                             f"or install digitlab with TensorFlow")
        engine = KerasRunner(model_file)
    return CheckedRunner(engine, classes=len(engine.config.classes))
