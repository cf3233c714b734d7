"""Presets beyond seed: each trains a step, augmentation stays out of the model, ensembles average."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitlab.config.settings import Config, make_config
from digitlab.errors import ConfigError
from digitlab.models.architectures import PRESETS, build_model, describe_presets


def _tiny_splits(mnist, n: int = 256):
    from digitlab.models.training import make_splits

    cfg = make_config("seed", limit=n)
    return make_splits(cfg, mnist)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "ensemble"])
def test_each_preset_builds_and_trains_a_few_steps(preset, mnist, tmp_path):
    from digitlab.models.training import train

    config = make_config(preset, limit=256, epochs=1, batch_size=64, out=str(tmp_path))
    result = train(config, _tiny_splits(mnist), tmp_path, progress=False)
    assert result.model.input_shape == (None, 28, 28, 1) and result.model.output_shape == (None, 10)
    assert result.epochs_completed == 1 and np.isfinite(result.history["loss"]).all()
    probs = result.model.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # Saved models are evaluated on integer labels, whatever loss trained them.
    assert result.model.loss == "sparse_categorical_crossentropy"


def test_presets_are_listed_by_the_cli():
    from typer.testing import CliRunner

    from digitlab.cli.commands import app

    runner = CliRunner()
    listed = runner.invoke(app, ["presets"])
    assert listed.exit_code == 0
    helped = runner.invoke(app, ["train", "--help"], terminal_width=400)
    for name in PRESETS:
        assert f"{name}: " in listed.output and name in helped.output
    assert "--members" in helped.output
    assert describe_presets().count("\n") == len(PRESETS) - 1


def test_seed_preset_stays_the_tutorial():
    c = make_config("seed")
    assert (c.schedule, c.learning_rate, c.label_smoothing, c.shift, c.rotation, c.zoom, c.members,
            c.weight_decay, c.epochs, c.batch_size) == ("constant", 1e-3, 0.0, 0.0, 0.0, 0.0, 1, 0.0, 10, 128)
    assert (c.beta_1, c.beta_2, c.precision) == (0.9, 0.999, "float32")  # Keras' Adam, float32 throughout
    model = build_model(c)
    assert type(model.optimizer).__name__ == "Adam" and float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert (float(model.optimizer.beta_1), float(model.optimizer.beta_2)) == pytest.approx((0.9, 0.999))
    assert model.loss == "sparse_categorical_crossentropy"
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


def test_fast_preset_learns_in_two_epochs(mnist, tmp_path):
    """The `fast` recipe as shipped (bfloat16, 2 epochs, OneCycle) on 6,000 images; scored on MNIST test digits."""
    from digitlab.models.evaluate import predict_proba
    from digitlab.models.training import make_splits, train

    config = make_config("fast", limit=6000, out=str(tmp_path))
    assert config.precision == "mixed_bfloat16" and config.epochs == 2
    result = train(config, make_splits(config, mnist), tmp_path, progress=False)
    probs = predict_proba(result.model, mnist.x_test[:2000])
    accuracy = float((probs.argmax(1) == mnist.y_test[:2000]).mean())
    assert accuracy >= 0.93, accuracy  # 0.96-0.97 measured; chance is 0.1, a broken recipe stays far below


def test_bfloat16_training_saves_an_exact_float32_model(mnist, tmp_path):
    """Mixed-precision training, float32 model on disk: loading and ONNX export (parity-checked) are exact."""
    from digitlab.export.exporter import export_model
    from digitlab.export.runtimes import open_runner
    from digitlab.models.architectures import load_model
    from digitlab.models.training import train

    config = make_config("fast", limit=512, epochs=1, batch_size=64, out=str(tmp_path))
    config.save(tmp_path)
    result = train(config, _tiny_splits(mnist, 512), tmp_path, progress=False)
    loaded, _ = load_model(tmp_path)
    best, _ = load_model(tmp_path / "best.keras")
    for model in (result.model, loaded, best):
        assert {layer.dtype_policy.compute_dtype for layer in model._flatten_layers()} == {"float32"}
        assert model.loss == "sparse_categorical_crossentropy"
    x = _tiny_splits(mnist, 512).x_val[:32]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0))
    onnx = open_runner(export_model(tmp_path, "onnx"), "onnx")  # export raises if ONNX and Keras disagree
    np.testing.assert_allclose(onnx(x), result.model.predict(x, verbose=0), atol=1e-5)


def test_new_fields_round_trip_and_validate(tmp_path):
    c = make_config("strong", members=3, weight_decay=1e-4, schedule="cosine", warmup=0.1)
    c.save(tmp_path)
    back = Config.load(tmp_path)
    assert back == c and back.members == 3 and back.rotation == c.rotation > 0
    assert json.loads((tmp_path / "config.json").read_text())["label_smoothing"] == c.label_smoothing
    # An old config.json without the new fields still loads, with the tutorial's values.
    old = {k: v for k, v in make_config("seed").to_dict().items()
           if k not in ("schedule", "warmup", "label_smoothing", "shift", "rotation", "zoom", "members", "weight_decay",
                        "beta_1", "beta_2", "precision")}
    assert Config.from_dict(old) == make_config("seed")
    for bad in ({"schedule": "step"}, {"members": 0}, {"label_smoothing": 1.0}, {"rotation": -1.0}, {"warmup": 1.5},
                {"beta_1": 1.0}, {"beta_2": -0.1}, {"precision": "float16"}):
        with pytest.raises(ConfigError):
            make_config("strong", **bad)


def test_schedules_and_weight_decay_build_keras_optimizers():
    m = build_model(make_config("strong", weight_decay=1e-4, schedule="onecycle", warmup=0.2, epochs=2))
    assert type(m.optimizer).__name__ == "AdamW"
    sched = m.optimizer.learning_rate if callable(getattr(m.optimizer, "learning_rate", None)) else m.optimizer._learning_rate
    peak = make_config("strong").learning_rate
    lrs = [float(sched(s)) for s in (0, 150, 10_000)]
    assert lrs[0] == pytest.approx(peak / 25) and lrs[1] > lrs[0] and lrs[2] < peak / 100


def test_augmentation_runs_in_the_stream_not_in_the_model(mnist, tmp_path):
    from digitlab.models.training import _train_stream, train

    splits = _tiny_splits(mnist)
    # The stream changes the images (and is repeatable for a seed) ...
    kw = dict(shift=2.0, rotation=10.0, zoom=0.1)
    a = next(iter(_train_stream(splits.x_train, splits.y_train, 32, 0, **kw)))[0].numpy()
    b = next(iter(_train_stream(splits.x_train, splits.y_train, 32, 0, **kw)))[0].numpy()
    plain = next(iter(_train_stream(splits.x_train, splits.y_train, 32, 0)))[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert a.shape == plain.shape and not np.allclose(a, plain)
    assert 0.0 <= a.min() and a.max() <= 1.0 + 1e-6
    # ... while the trained model holds no random layers and is deterministic at inference.
    config = make_config("strong", limit=256, epochs=1, batch_size=64)
    model = train(config, splits, tmp_path, progress=False).model
    assert not [la for la in model._flatten_layers() if type(la).__name__.startswith("Random")]
    x = splits.x_val[:8]
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_ensemble_probabilities_are_the_members_mean(mnist, tmp_path):
    from digitlab.models.architectures import load_model
    from digitlab.models.training import train

    config = make_config("ensemble", members=2, limit=256, epochs=1, batch_size=64)
    result = train(config, _tiny_splits(mnist), tmp_path, progress=False)
    config.save(tmp_path)
    assert (tmp_path / "model.keras").is_file()
    x = _tiny_splits(mnist).x_val[:16]
    members = [load_model(tmp_path / "members" / str(i))[0] for i in range(2)]
    assert [load_model(tmp_path / "members" / str(i))[1].seed for i in range(2)] == [config.seed, config.seed + 1]
    assert (tmp_path / "members" / "1" / "history.json").is_file()
    expected = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    ensemble, loaded_config = load_model(tmp_path)
    assert loaded_config.members == 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert len(result.history["loss"]) == 1

    # The same interfaces as a single model: ONNX export (with its parity check) and the Predictor.
    from digitlab.export.exporter import export_model
    from digitlab.predict.predictor import Predictor

    artifact = export_model(tmp_path, "onnx")
    assert artifact.is_file()
    predictor = Predictor.load(tmp_path, runtime="keras")
    assert predictor is not None
