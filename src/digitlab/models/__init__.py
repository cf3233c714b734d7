"""Models: the architectures and their training, fine-tuning, calibration, evaluation and the
out-of-distribution decisions (no digit / not a digit / uncertain).

Modules: `backend` (TensorFlow import and devices), `architectures` (build, compile, load),
`augment` (training-time augmentation in the tf.data stream), `training`, `finetune`,
`calibration` (temperature, ECE, risk-coverage), `ood`, `evaluate`.

Layer: imports `errors`, `files`, `config`, `preprocess`, `data` and `runs`; nothing above.
TensorFlow is imported only inside functions, so importing this package stays cheap.
"""

from __future__ import annotations

from .. import lazy_exports

_FACADE = dict.fromkeys(("build_model", "build_network", "load_model", "count_params", "summary_text",
                         "compile_for_inference", "compile_for_training", "PRESETS"), "digitlab.models.architectures")
__all__ = sorted(_FACADE)
__getattr__, __dir__ = lazy_exports(__name__, _FACADE)
