"""Fine-tuning (`--init`): a trained digit model learns one writer's style from a few of their
digits while MNIST replay keeps what it knew; before/after scores, re-calibration, CLI errors.

The base model is trained here (seed CNN, 10,000 MNIST images, 2 epochs, calibrated like every
run), so nothing depends on the shipped model's numbers; the writer's digits come from
`digitlab.data.styles` (fine-tuned on its "train" pool, measured on its held-out "test" pool).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from digitlab.config.presets import FINETUNE_DEFAULTS
from digitlab.config.settings import parse_overrides
from digitlab.data import DIGITS, styles
from digitlab.errors import ConfigError, DataError, ModelError
from digitlab.models import finetune
from digitlab.pipeline import make_config


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from digitlab.cli.commands import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A calibrated seed CNN (about 95% on MNIST test): the model the tests fine-tune."""
    from digitlab import train

    out = tmp_path_factory.mktemp("base")
    result = train("seed", limit=10_000, epochs=2, out=str(out), name="base")
    assert result.metrics["test_accuracy"] > 0.93
    return result.run_dir


@pytest.fixture(scope="module")
def held_out():
    return styles.generate(30, pool="test", seed=3)


def style_accuracy(model_dir: Path, x: np.ndarray, y: np.ndarray) -> float:
    from digitlab.predict.predictor import Predictor

    return float(np.mean(Predictor.load(str(model_dir), runtime="keras").probabilities(x).argmax(axis=1) == y))


def test_a_finetuning_config_is_the_models_recipe_with_the_finetuning_defaults(base):
    cfg = make_config(init=str(base))
    model_cfg = json.loads((base / "config.json").read_text())
    assert cfg.init == str(base) and cfg.preset == model_cfg["preset"] == "seed" and cfg.classes == DIGITS
    for key, value in FINETUNE_DEFAULTS.items():
        assert getattr(cfg, key) == value, key
    assert cfg.temperature is None  # fitted again after fine-tuning
    assert make_config(init=str(base), epochs=2, learning_rate=1e-3).epochs == 2
    with pytest.raises(ConfigError, match="leave --preset out"):
        make_config("strong", init=str(base))
    with pytest.raises(ConfigError, match="classes"):
        make_config(init=str(base), classes=("a", "b"))
    with pytest.raises(ModelError, match="--init"):
        make_config(init=str(base / "nothing-here"))
    with pytest.raises(ConfigError, match="come from the data"):
        parse_overrides(["classes=a"])
    with pytest.raises(ConfigError, match="replay"):
        make_config(init=str(base), replay=0.95)


def test_the_data_is_conformed_to_the_models_classes(base, tmp_path):
    from digitlab.pipeline import load_data

    styles.write_folder(tmp_path / "some", 5, digits=(0, 6))
    data = load_data(make_config(init=str(base), data=str(tmp_path / "some")))
    assert data.classes == DIGITS and set(np.unique(np.concatenate([data.y_train, data.y_test]))) == {0, 6}
    styles.write_folder(tmp_path / "other", 3, digits=(1,))
    (tmp_path / "other" / "1").rename(tmp_path / "other" / "letter-a")
    with pytest.raises(DataError, match="does not know"):
        load_data(make_config(init=str(base), data=str(tmp_path / "other")))


def _two_class_model(weights: np.ndarray):
    from digitlab.models import backend

    keras = backend.keras()
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.set_weights([weights.astype(np.float32), np.zeros(2, np.float32)])
    return model


def test_the_forgetting_budget_blends_back_just_enough():
    # The start reads argmax(x) perfectly; the "fine-tuned" weights read it backwards. A blend
    # (1 - a) * I + a * swap is right while a < 0.5, so the largest share within a zero budget is 0.4.
    x = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
    y = x.argmax(axis=1)
    identity, swap = 10 * np.eye(2), 10 * np.eye(2)[::-1]
    model = _two_class_model(identity)
    start = {"weights": model.get_weights(), "val_accuracy": 1.0}
    model.set_weights([swap.astype(np.float32), np.zeros(2, np.float32)])
    record = finetune.keep_within_budget(model, start, make_config(forgetting_budget=0.0), x, y)
    assert record["blend"] == 0.4 and record["val_tuned"] == 0.0 and record["val_after"] == 1.0
    np.testing.assert_allclose(model.get_weights()[0], 0.6 * identity + 0.4 * swap, rtol=1e-6)
    assert "40% fine-tuned, 60% the starting model's" in finetune.budget_line(record)
    # A budget of 1 keeps whatever fine-tuning did.
    model.set_weights([swap.astype(np.float32), np.zeros(2, np.float32)])
    record = finetune.keep_within_budget(model, start, make_config(forgetting_budget=1.0), x, y)
    assert record["blend"] == 1 and "within the forgetting budget" in finetune.budget_line(record)
    np.testing.assert_array_equal(model.get_weights()[0], swap)
    # Integer state (counters, random generators) is never averaged.
    counter = np.array([7, 9], np.int64)
    assert finetune._blend(np.array([1, 1], np.int64), counter, 0.5) is counter
    with pytest.raises(ConfigError, match="forgetting budget"):
        make_config(forgetting_budget=1.5)


@pytest.mark.slow
def test_finetuning_learns_the_style_keeps_mnist_and_is_calibrated_again(base, held_out, tmp_path):
    from digitlab import train
    from digitlab.models.architectures import load_model
    from digitlab.models.calibration import model_temperature, temperature_layer

    x_test, y_test = held_out
    before = style_accuracy(base, x_test, y_test)
    folder = styles.write_folder(tmp_path / "style", 10, pool="train", seed=3)
    result = train(init=str(base), data=str(folder), out=str(tmp_path / "runs"), name="ft", epochs=3)
    after = style_accuracy(result.run_dir, x_test, y_test)
    # Real learning on 80 of the writer's digits, measured on 300 others.
    assert after >= before + 0.15 and after >= 0.85, (before, after)
    ft = result.metrics["finetune"]
    mnist = ft["test_sets"]["mnist"]
    assert mnist["n"] == 10_000 and mnist["after"] >= mnist["before"] - 0.01, mnist  # no forgetting
    own = ft["test_sets"]["data"]
    assert own["n"] == 20 and own["after"] >= own["before"]
    assert ft["n_user_train"] == 80 and ft["replay"] == 0.9 and ft["replay_per_batch"] == 29
    # The forgetting budget was checked on MNIST's validation split, and the saved model keeps it.
    budget = ft["mnist_validation"]
    assert budget["budget"] == 0.0005 and budget["blend"] in finetune.BLEND_STEPS
    assert budget["val_after"] >= budget["val_before"] - budget["budget"] - 1e-9, budget
    assert result.metrics["device"].startswith(("CPU", "GPU"))
    # The base model was calibrated: its temperature was taken out, the logits fine-tuned, and a new
    # temperature fitted; the saved model holds exactly one TemperatureLayer, with the config's T.
    model, config = load_model(result.run_dir)
    assert config.init == str(base) and config.classes == DIGITS and config.preset == "seed"
    layers = [layer for layer in model.layers if isinstance(layer, temperature_layer())]
    assert len(layers) == 1 and config.temperature is not None
    assert model_temperature(model) == pytest.approx(config.temperature)
    assert json.loads((base / "config.json").read_text())["temperature"] != config.temperature


@pytest.mark.slow
def test_cli_finetune_summary_report_and_predict(base, tmp_path, capsys):
    folder = styles.write_folder(tmp_path / "style", 4, pool="train", seed=5)
    code, out, err = run_cli(capsys, "train", "--data", str(folder), "--init", str(base), "--epochs", "1",
                             "--set", "min_steps=5", "--out", str(tmp_path / "runs"), "--name", "ft")
    assert code == 0, err
    assert "replay: 90% of each batch from MNIST" in out and "forgetting budget (0.05 points)" in out
    assert "fine-tuned: MNIST test set" in out and "fine-tuned: the run's own test split" in out
    assert "trained on      CPU" in out or "trained on      GPU" in out
    run = tmp_path / "runs" / "ft"
    code, out, err = run_cli(capsys, "evaluate", str(run))
    assert code == 0, err
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "Fine-tuning: accuracy before and after" in html and "MNIST test set" in html
    assert f"Started from {base}" in html and "Trained on" in html and "forgetting budget" in html
    png = tmp_path / "seven.png"
    next(iter(styles.images(1, pool="test", seed=9, digits=(7,))))[1].save(png)
    code, out, err = run_cli(capsys, "predict", str(png), "--model", str(run), "--json")
    assert code == 0, err
    (answer,) = json.loads(out) if isinstance(json.loads(out), list) else json.loads(out)["results"]
    assert answer["name"] == str(answer["label"])  # a digit model's class names are its digits


def test_cli_errors_are_one_line_and_exit_2(base, tmp_path, capsys):
    folder = styles.write_folder(tmp_path / "style", 2, digits=(1,))
    cases = [
        (["train", "--init", str(tmp_path / "nowhere")], "--init"),
        (["train", "--init", str(base), "--preset", "strong"], "leave --preset out"),
        (["train", "--data", str(tmp_path / "nowhere")], "nowhere"),
        (["train", "--data", str(folder), "--data-dir", str(folder)], "not both"),
        (["train", "--init", str(base), "--set", "classes=a"], "come from the data"),
        (["data", "--data", str(tmp_path / "nowhere")], "nowhere"),
    ]
    for args, words in cases:
        code, out, err = run_cli(capsys, *args, "--out", str(tmp_path / "runs")) if args[0] == "train" \
            else run_cli(capsys, *args)
        line = err.strip()
        assert code == 2 and line.startswith("error: ") and "\n" not in line and words in line, (args, err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
