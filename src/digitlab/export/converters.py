"""Model converters: one traced serving function, written as ONNX (float32, float16 weights, int8),
LiteRT (.tflite) or a SavedModel; the export API (`export.py`) checks and labels what they write.

Version notes: tf2onnx 1.17 works with NumPy 2 and TF 2.21 through
`from_function` (its `from_keras` fails on Keras 3 models: KeyError on
keras_tensor names), so we always convert a tf.function. LiteRT export uses
builtin ops only (no Flex ops: the standalone `ai-edge-litert` interpreter
lacks them) and converts a frozen concrete function: an unfrozen one keeps
READ_VARIABLE ops without values (NaN outputs, failed int8 calibration).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ModelError
from ..models import backend
from ..runs.artifacts import META_PREFIX

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
ONNX_OPSET = 17  # ONNX Runtime >= 1.17 runs it; tf2onnx 1.17 writes it


def serving_function(model: Any, size: int, output: str = OUTPUT_NAME) -> Any:
    """The model as one tf.function with an explicit float32 [None, size, size, 1] signature."""
    tf = backend.tensorflow()
    spec = (tf.TensorSpec([None, size, size, 1], tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(image):
        return {output: model(image, training=False)}

    return serve, spec


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide converter chatter: C++ stderr lines (replayed if the conversion fails) and
    absl/root logging and Python warnings, unless --verbose."""
    if backend.verbose():
        yield
        return
    root, absl = logging.getLogger(), logging.getLogger("absl")
    levels = root.level, absl.level
    root.setLevel(logging.ERROR)
    absl.setLevel(logging.ERROR)
    try:
        with backend.quiet_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(levels[0])
        absl.setLevel(levels[1])


def to_onnx_bytes(model: Any, size: int, output: str = OUTPUT_NAME) -> bytes:
    """`model` as ONNX: input INPUT_NAME, one output named `output` (the embedding model has its own)."""
    try:
        import tf2onnx
    except ImportError:
        raise ModelError("ONNX export needs tf2onnx: pip install 'digitlab[export]'") from None
    serve, spec = serving_function(model, size, output)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=ONNX_OPSET)
    except Exception as exc:  # noqa: BLE001 - converter errors come in many types
        raise ModelError(f"ONNX conversion failed ({type(exc).__name__}: {str(exc)[:300]})") from None
    # tf2onnx names the graph input after the signature and the output after
    # the dict key already; make sure, since runners and docs rely on them.
    if [i.name for i in proto.graph.input] != [INPUT_NAME] or [o.name for o in proto.graph.output] != [output]:
        raise ModelError(f"unexpected ONNX graph names: inputs {[i.name for i in proto.graph.input]}, "
                         f"outputs {[o.name for o in proto.graph.output]}")
    proto.producer_name = "digitlab"
    proto.producer_version = __version__
    return proto.SerializeToString()


def onnx_float16(onnx_bytes: bytes) -> bytes:
    """Store float32 weights as float16 (half the file); compute stays float32.

    Each converted initializer is followed by a Cast back to float32, which
    ONNX Runtime folds once at load time, so speed is that of the float model.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < 16:  # tiny constants (shapes, scalars): not worth a Cast
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), name=init.name + "__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    for i, node in enumerate(casts):
        graph.node.insert(i, node)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_int8(onnx_bytes: bytes, calibration: np.ndarray) -> bytes:
    """Static int8 quantisation (QDQ, per-channel 7-bit weights), calibrated on MNIST training images.

    reduce_range (weights in [-64, 63]): on x86 CPUs without VNNI (AVX2 or AVX-512 only) ONNX
    Runtime runs int8 Conv/MatMul with VPMADDUBSW, which adds pairs of u8*s8 products in int16
    and saturates at 32767 (255 * 127 * 2 = 64770 does not fit; 255 * 64 * 2 = 32640 does);
    onnxruntime issues 6004 and 14642. Measured on an AVX2-only AMD EPYC, tiny test model, 1,000
    test digits, top class as Keras: 8-bit weights 93.6% (the same file with graph optimisations
    off, i.e. without the fused int8 kernels: 99.5%); 7-bit weights 99.2% either way.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(np.split(calibration, max(1, len(calibration) // 20)))

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="digitlab-q-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_bytes)
        quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        return dst.read_bytes()


def write_savedmodel(model: Any, size: int, dest: Path) -> None:
    """tf.saved_model with one `serving_default` signature: image -> {probabilities}."""
    tf = backend.tensorflow()
    serve, _ = serving_function(model, size)
    module = tf.Module()
    module.model = model  # tracks the variables
    module.serve = serve
    tf.saved_model.save(module, str(dest), signatures={"serving_default": serve.get_concrete_function()})


def to_tflite_bytes(model: Any, size: int, quantize: str, calibration: np.ndarray | None) -> bytes:
    tf = backend.tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    serve, _ = serving_function(model, size)
    # Freeze the weights into constants: a function that reads Keras 3
    # variables converts to READ_VARIABLE ops, whose values LiteRT then lacks.
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    if quantize == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        assert calibration is not None
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Input and output stay float32 (quantize/dequantize at the edges),
        # so every runner keeps the same float interface.

        def representative():
            for i in range(len(calibration)):
                yield [calibration[i:i + 1]]

        conv.representative_dataset = representative
    try:
        return conv.convert()
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"LiteRT conversion failed ({type(exc).__name__}: {str(exc)[:300]})") from None


def write_dir_atomically(dest: Path, writer: Any) -> None:
    """Build a directory next to `dest`, then swap it in (the old one is removed only after)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    try:
        writer(tmp / "out")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp / "out", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def embed_onnx_metadata(onnx_bytes: bytes, meta: dict[str, Any]) -> bytes:
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)
    k = len(meta["labels"])
    model.doc_string = (f"digitlab {meta['preset']} classifier of {k} classes (metadata digitlab.labels): input "
                        f"'{INPUT_NAME}' float32 (N,28,28,1) = pixels/255 white-on-black; output '{OUTPUT_NAME}' (N,{k})")
    return model.SerializeToString()
