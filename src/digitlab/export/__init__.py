"""Export: write a model as ONNX, LiteRT, SavedModel or Keras (`exporter`, `converters`) and
run any of them (`runtimes`).

Layer: imports `errors`, `files`, `config`, `preprocess`, `data`, `runs` and `models`.
`runtimes` imports no TensorFlow for ONNX and LiteRT, so prediction with them stays light.
"""

from __future__ import annotations

from .. import lazy_exports

_FACADE = {
    **dict.fromkeys(("export_model", "read_metadata", "read_onnx_metadata", "FORMATS", "QUANTIZATIONS"),
                    "digitlab.export.exporter"),
    **dict.fromkeys(("open_runner", "RUNTIMES"), "digitlab.export.runtimes"),
}
__all__ = sorted(_FACADE)
__getattr__, __dir__ = lazy_exports(__name__, _FACADE)
