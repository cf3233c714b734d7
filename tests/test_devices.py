"""Training on more than one device (data parallel, tf.distribute.MirroredStrategy), tested on
a CPU split into two logical devices in a fresh process (the split must precede TF's start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from digitlab.config.settings import Config
from digitlab.errors import ConfigError

TWO_CPUS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from digitlab.cli.commands import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_train_data_parallel_on_two_devices(tmp_path):
    # 4,000 images (3,200 to train on), 1 epoch of `fast`: 2,000 images gave 77-79% on one device or two.
    args = ["train", "--limit", "4000", "--epochs", "1", "--preset", "fast", "--out", str(tmp_path),
            "--name", "mirrored", "--set", "devices=all"]
    proc = subprocess.run([sys.executable, "-c", TWO_CPUS, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DIGITLAB_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "mirrored" / "metrics.json").read_text())
    assert len(metrics["devices"]) == 2 and all("CPU" in d for d in metrics["devices"]), metrics.get("devices")
    assert "data parallel over 2 devices" in metrics["device"]
    assert "data parallel over 2 devices" in proc.stdout  # the run summary says so
    assert metrics["test_accuracy"] > 0.80  # and the mirrored model still learned


def test_devices_setting_is_checked():
    assert Config().devices == "auto"
    with pytest.raises(ConfigError, match="devices must be one of auto, one, all"):
        Config(devices="both")
