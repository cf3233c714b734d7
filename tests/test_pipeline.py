"""The main job's guarantees: no orphan run directories, no NaN model kept, a finished model is never lost."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from digitlab.errors import ConfigError, DataError, StorageError, TrainingError
from digitlab.pipeline import run, train


def _poison_after(batches: int):
    """A callback that turns the weights to NaN after a few batches: a diverging run, made reproducible."""
    import keras

    class Poison(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == batches:
                for w in self.model.trainable_weights:
                    w.assign(np.full(w.shape, np.nan, dtype="float32"))

    return Poison()


def test_a_diverging_run_is_an_error_and_leaves_nothing(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(TrainingError, match="training diverged in epoch 1: the loss became nan"):
        train("seed", limit=1000, epochs=2, out=str(tmp_path / "runs"), callbacks=[_poison_after(2)])
    assert list((tmp_path / "runs").iterdir()) == []  # no run directory, no `latest`


def test_a_run_that_diverges_later_keeps_its_good_checkpoint_but_is_not_latest(tmp_path):
    import keras

    class PoisonEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                for w in self.model.trainable_weights:
                    w.assign(np.full(w.shape, np.nan, dtype="float32"))

    with pytest.raises(TrainingError, match="epoch 2"):
        train("seed", limit=1000, epochs=3, out=str(tmp_path), name="late", callbacks=[PoisonEpoch2()])
    kept = tmp_path / "late"
    assert (kept / "best.keras").is_file() and not (kept / "model.keras").exists()
    assert not (tmp_path / "latest").exists()
    history = json.loads((kept / "history.json").read_text())
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"]).all()


@pytest.mark.parametrize("overrides, error", [
    ({"batch_size": 5000, "limit": 1000}, ConfigError),
    ({"data_dir": "/nonexistent/mnist"}, DataError),
])
def test_a_run_that_cannot_start_creates_no_directory(tmp_path, overrides, error):
    with pytest.raises(error):
        train("seed", out=str(tmp_path), **overrides)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_before_the_first_epoch_leaves_no_directory(tmp_path):
    import keras

    class Stop(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise KeyboardInterrupt

    result = train("seed", limit=1000, epochs=1, out=str(tmp_path), callbacks=[Stop()])
    assert result.interrupted and result.stopped_in == "training"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_evaluation_keeps_the_trained_model_usable(tmp_path, monkeypatch):
    import digitlab.models.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(digitlab.models.evaluate, "evaluate_model", interrupted)
    result = run("seed", limit=1000, epochs=1, out=str(tmp_path), name="stopped", progress=False)
    assert result.interrupted and result.stopped_in == "evaluation"
    run_dir = tmp_path / "stopped"
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["evaluation"] == "interrupted" and metrics["epochs_completed"] == 1
    monkeypatch.undo()
    from digitlab.pipeline import evaluate_run

    again = evaluate_run(run_dir)  # and it can be finished later
    assert again.metrics["accuracy_score"] > 0.25 and again.report.is_file()  # 1 epoch on 800 images: ~40%


def test_phase_lines_are_logged(tmp_path):
    lines: list[str] = []
    train("seed", limit=1000, epochs=1, out=str(tmp_path), log=lines.append)
    text = "\n".join(lines)
    for phase in ("loading MNIST", "training preset seed", "epoch 1/1", "evaluating on the test set"):
        assert phase in text, text


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2.5 MB tmpfs: room for one checkpoint of the seed CNN (1.5 MB with its optimizer), not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2500k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_during_a_checkpoint_is_one_clear_error_and_keeps_the_last_good_model(tiny_disk):
    from digitlab.models.architectures import load_model

    with pytest.raises(StorageError) as info:
        train("seed", limit=2000, epochs=5, out=str(tiny_disk), name="full")
    message = str(info.value)
    assert "cannot write" in message and "full" in message and "No space left on device" in message
    assert "free on its disk" in message and "needed" in message
    run_dir = tiny_disk / "full"
    model, _ = load_model(run_dir / "best.keras")  # the last complete checkpoint
    assert model.count_params() == 121_930
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no half-written files
    assert not (tiny_disk / "latest").exists()


def test_cli_disk_full_exits_2_with_one_line(tiny_disk):
    import sys

    proc = subprocess.run([sys.executable, "-m", "digitlab", "train", "--preset", "seed", "--limit", "2000",
                           "--epochs", "5", "--out", str(tiny_disk)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in proc.stderr
