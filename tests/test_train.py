"""Real (short) training: the model must actually learn, and Ctrl-C must be safe."""

import os

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from digitlab.config.settings import make_config
from digitlab.models.architectures import load_model
from digitlab.models.evaluate import evaluate_model
from digitlab.models.training import make_splits, train


def test_splits_follow_the_tutorial(mnist):
    config = make_config("seed", limit=5000)
    s = make_splits(config, mnist)
    x_tr, x_val, y_tr, y_val = train_test_split(mnist.x_train[:5000], mnist.y_train[:5000], test_size=0.2,
                                                random_state=42)
    assert s.x_train.shape == (4000, 28, 28, 1) and s.x_val.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(s.y_val, y_val)
    np.testing.assert_allclose(s.x_val[..., 0], x_val / 255.0, atol=1e-7)
    assert s.x_train.dtype == np.float32 and s.x_test.shape == (10000, 28, 28)


@pytest.mark.slow
def test_short_training_learns_and_saves_everything(mnist, tmp_path):
    # 8,000 training images, 2 epochs: measured 94.9% on the full test set.
    config = make_config("seed", limit=10_000, epochs=2)
    result = train(config, make_splits(config, mnist), tmp_path, progress=False)
    assert not result.interrupted and result.epochs_completed == 2
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"}
    assert len(result.history["val_accuracy"]) == 2
    assert result.history["loss"][1] < result.history["loss"][0]
    ev = evaluate_model(result.model, mnist.x_test, mnist.y_test)
    assert ev.metrics["test_accuracy"] >= 0.93, ev.metrics["test_accuracy"]
    assert ev.metrics["accuracies_agree"]
    assert ev.metrics["test_accuracy"] == pytest.approx(ev.metrics["accuracy_score"], abs=1e-4)
    cm = np.array(ev.metrics["confusion_matrix"])
    assert cm.sum() == 10_000 and (cm.sum(axis=1) == np.bincount(mnist.y_test)).all()
    assert np.allclose(np.array(ev.metrics["confusion_matrix_normalized"]).sum(axis=1), 1.0)
    assert {"model.keras", "best.keras", "history.json", "history.csv"} <= set(os.listdir(tmp_path))


class _InterruptAt:
    """A callback that simulates Ctrl-C at a given (epoch, batch)."""

    def __init__(self, epoch, batch):
        import keras

        outer = self

        class Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.epoch = epoch

            def on_train_batch_begin(self, batch_index, logs=None):
                if outer.epoch == epoch and batch_index == batch:
                    raise KeyboardInterrupt

        self.callback = Cb()
        self.epoch = -1


@pytest.mark.parametrize("stop_epoch, expect_model", [(1, True), (0, False)])
def test_ctrl_c_saves_a_valid_model_or_nothing(mnist, tmp_path, stop_epoch, expect_model):
    interrupt = _InterruptAt(stop_epoch, 3)
    config = make_config("seed", limit=2000, epochs=3)
    config.save(tmp_path)
    result = train(config, make_splits(config, mnist), tmp_path, progress=False, callbacks=[interrupt.callback])
    assert result.interrupted
    files = set(os.listdir(tmp_path))
    assert not any(".tmp" in f for f in files), files  # nothing half-written
    if expect_model:
        assert result.epochs_completed == 1 and "model.keras" in files
        model, _ = load_model(tmp_path)  # a complete, loadable model
        assert model.count_params() == 121_930
    else:
        assert result.epochs_completed == 0 and "model.keras" not in files


def test_a_batch_larger_than_the_training_set_is_refused(mnist):
    from digitlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"batch size 5,000 is larger than the training set \(800 images\)"):
        make_splits(make_config("seed", limit=1000, batch_size=5000), mnist)


def test_epoch_lines_go_to_the_log_when_there_is_no_progress_bar(mnist, tmp_path):
    lines: list[str] = []
    config = make_config("seed", limit=1000, epochs=2)
    train(config, make_splits(config, mnist), tmp_path, progress=False, log=lines.append)
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("val_accuracy" in line and line.endswith(" s)") for line in lines)
