"""Training on more than one device: data parallel with `tf.distribute.MirroredStrategy`.

On the TensorFlow backend `keras.distribution` is not supported; MirroredStrategy is: one copy
of the model per device, each batch split between them, the gradients summed across them.
The model code stays plain Keras: building, compiling and fitting inside `strategy.scope()` is
all it takes (Keras' trainer reads the strategy from the scope it was compiled in). Which devices
is `Config.devices` (see there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import backend


def training_devices(setting: str) -> list[str]:
    """The devices to train on in parallel, by name; [] means one device, TensorFlow's choice."""
    if setting == "one":
        return []
    tf = backend.tensorflow()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if setting == "auto":
        return gpus if len(gpus) > 1 else []
    found = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return found if len(found) > 1 else []


@contextlib.contextmanager
def data_parallel(setting: str) -> Iterator[list[str]]:
    """Inside: models built and compiled are mirrored over `training_devices(setting)`; yields them."""
    names = training_devices(setting)
    if not names:
        yield []
        return
    tf = backend.tensorflow()
    # GPUs reduce with NCCL (MirroredStrategy's default there); CPU devices have no NCCL.
    reduce = None if any("GPU" in n for n in names) else tf.distribute.ReductionToOneDevice()
    with tf.distribute.MirroredStrategy(devices=names, cross_device_ops=reduce).scope():
        yield names
