"""Importing Keras/TensorFlow quietly, and seeding them.

TensorFlow's C++ side prints absl/oneDNN/cpu_feature_guard lines to stderr
while it is imported, before its log level applies, so TF_CPP_MIN_LOG_LEVEL
alone cannot hide them. `quiet_stderr` points file descriptor 2 at a
temporary file for the duration of such a block and replays what was
captured only if the block fails. oneDNN stays on: turning it off would hide
one line and cost ~60% of training speed; TensorFlow 2.21 turned it off by default
on x86, so `keras()` turns it back on unless TF_ENABLE_ONEDNN_OPTS says otherwise. Set DIGITLAB_VERBOSE=1 (the CLI's
--verbose) to see everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

VERBOSE_ENV = "DIGITLAB_VERBOSE"
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"  # TensorFlow's switch; "0" turns oneDNN off (bit-exact CPU results)
_REPLAY_CHARS = 4000  # enough for the error a C++ library printed, without pages of start-up noise


def verbose() -> bool:
    """Whether the user asked to see the libraries' own log output."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hide what C/C++ code writes to file descriptor 2 inside the block (unless verbose).

    If the block raises an error, the captured text is written to stderr
    first, so no clue is lost; on Ctrl-C (KeyboardInterrupt) it is dropped:
    the user asked to stop, and pages of start-up lines would only bury that.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except Exception:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace")[-_REPLAY_CHARS:])
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def keras() -> Any:
    """Import and return the `keras` module (TensorFlow backend), quietly."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    # Keras 3 picks its backend at import; tensorflow is what we measured fastest here.
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # oneDNN: the training speed the presets were measured with (TensorFlow >= 2.21 ships it off).
    os.environ.setdefault(ONEDNN_ENV, "1")
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later runtime INFO/WARNING lines
    with quiet_stderr():
        import keras as _keras
        import tensorflow as tf

        # The regular TensorFlow wheel (the base dependency, for the `gpu` extra) probes CUDA when
        # devices are first listed, and prints an E-level "failed call to cuInit" on a machine
        # without a GPU; probe here, inside the capture, instead of at the first op.
        tf.config.list_physical_devices("GPU")
    if not verbose():
        tf.get_logger().setLevel("ERROR")
    return _keras


def tensorflow() -> Any:
    """Import and return `tensorflow`, quietly (see `keras`)."""
    keras()
    import tensorflow as tf

    return tf


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend so a run can be repeated."""
    keras().utils.set_random_seed(seed)


def device_name() -> str:
    """Where Keras trains: "GPU: <name>" when TensorFlow sees a GPU (it uses the first one), else
    "CPU: <model> (<n> cores)". For run summaries and reports, so times can be compared."""
    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name") or gpus[0].name
        except (RuntimeError, ValueError):
            name = gpus[0].name
        return f"GPU: {name}" + (f" (and {len(gpus) - 1} more, unused)" if len(gpus) > 1 else "")
    return f"CPU: {cpu_name()} ({os.cpu_count() or '?'} cores)"


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
