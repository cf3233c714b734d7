"""Export to ONNX / LiteRT / SavedModel / Keras: parity with Keras, metadata, quantization, CLI.

Parity uses the session's tiny trained run (1 epoch on 2,000 images): enough
for the outputs to be confident and varied. The quantization accuracy checks
use the shipped pretrained model (skipped while it is not there yet).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import digitlab
from digitlab.errors import ConfigError, ModelError

pytestmark = pytest.mark.slow

PRETRAINED = Path(digitlab.__file__).parent / "pretrained"


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("model.keras", "config.json", "metrics.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def model_dir(tiny_run, tmp_path_factory):
    """A copy of the tiny run's model, so exports do not change the shared run directory."""
    return _copy_model(tiny_run, tmp_path_factory.mktemp("export") / "tiny")


@pytest.fixture(scope="module")
def exported(model_dir):
    from digitlab.export.exporter import export_model

    return {fmt: export_model(model_dir, fmt) for fmt in ("onnx", "litert", "savedmodel")}


@pytest.fixture(scope="module")
def x1000(mnist):
    from digitlab.preprocess import to_model_input

    return to_model_input(mnist.x_test[:1000])


@pytest.fixture(scope="module")
def keras_probs(model_dir, x1000):
    from digitlab.models.architectures import load_model

    model, _ = load_model(model_dir)
    return np.asarray(model(x1000, training=False))


def _run(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    if fmt == "savedmodel":
        from digitlab.models import backend

        tf = backend.tensorflow()
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        return fn(image=tf.constant(x))["probabilities"].numpy()
    from digitlab.export.runtimes import open_runner

    return open_runner(path, {"onnx": "onnx", "litert": "litert", "keras": "keras"}[fmt])(x)


def test_default_outputs_sit_beside_the_model(exported, model_dir):
    assert exported["onnx"] == model_dir / "model.onnx"
    assert exported["litert"] == model_dir / "model.tflite"
    assert exported["savedmodel"] == model_dir / "savedmodel"
    assert (model_dir / "savedmodel" / "saved_model.pb").is_file()
    for path in exported.values():
        assert (path.parent / (path.name + ".json")).is_file()
    # float32 weights of a 122k-parameter model: about half a megabyte, no bloat
    assert 0.4e6 < exported["onnx"].stat().st_size < 0.6e6
    assert 0.4e6 < exported["litert"].stat().st_size < 0.6e6


@pytest.mark.parametrize("fmt", ["onnx", "litert", "savedmodel"])
def test_float_parity_on_1000_test_images(exported, x1000, keras_probs, fmt):
    got = _run(exported[fmt], fmt, x1000)
    assert got.shape == (1000, 10) and got.dtype == np.float32
    assert (got.argmax(1) == keras_probs.argmax(1)).mean() == 1.0
    assert np.abs(got - keras_probs).max() <= 1e-4


def test_metadata_round_trips(exported, model_dir):
    from digitlab.export.exporter import read_metadata, read_onnx_metadata, sha256_file

    metrics = json.loads((model_dir / "metrics.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    for fmt, path in exported.items():
        meta = read_metadata(path)
        assert meta["format"] == fmt and meta["quantization"] == "none"
        assert meta["preset"] == "seed"
        assert meta["labels"] == [str(i) for i in range(10)]
        assert meta["input"]["shape"] == [None, 28, 28, 1] and meta["input"]["dtype"] == "float32"
        assert meta["preprocessing"]["scale"] == pytest.approx(1 / 255)
        assert meta["preprocessing"]["polarity"] == "white-on-black"
        assert meta["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
        assert meta["source_model"]["sha256"] == sha256_file(model_dir / "model.keras")
        assert meta["digitlab_version"] == digitlab.__version__
        assert meta["config"] == config
        assert meta["export_check"]["max_abs_diff"] <= 1e-4
    side = read_metadata(exported["onnx"])
    assert side["file"]["sha256"] == sha256_file(exported["onnx"])
    embedded = read_onnx_metadata(exported["onnx"])  # inside the .onnx file itself
    for key in ("format", "quantization", "preset", "labels", "input", "output", "preprocessing",
                "test_accuracy", "source_model", "digitlab_version", "config"):
        assert embedded[key] == side[key], key


def test_export_elsewhere_carries_its_own_config_and_reloads(model_dir, tmp_path, x1000, keras_probs, mnist):
    import shutil

    from digitlab.config.settings import Config
    from digitlab.export.exporter import export_model, read_metadata
    from digitlab.export.runtimes import open_runner
    from digitlab.models.architectures import load_model
    from digitlab.models.evaluate import evaluate_model

    with pytest.raises(ModelError, match="ship does not exist"):  # checked before any conversion work
        export_model(model_dir / "model.keras", "onnx", out=tmp_path / "ship" / "digits.onnx")
    (tmp_path / "ship").mkdir()
    onnx_file = export_model(model_dir / "model.keras", "onnx", out=tmp_path / "ship" / "digits.onnx")
    assert onnx_file == tmp_path / "ship" / "digits.onnx"
    assert Config.from_dict(read_metadata(onnx_file)["config"]) == Config.load(model_dir)
    assert not (tmp_path / "ship" / "config.json").exists()  # the config travels with the export itself
    runner = open_runner(onnx_file)
    assert runner.name == "onnx" and runner.config.preset == "seed"
    assert np.abs(runner(x1000[:50]) - keras_probs[:50]).max() <= 1e-4

    # A second model exported into the same folder keeps its own config (nothing is overwritten).
    other = tmp_path / "other"
    shutil.copytree(model_dir, other, ignore=shutil.ignore_patterns("*.onnx*", "*.tflite*", "savedmodel*"))
    Config.load(other).replace(preset="fast").save(other)
    second = export_model(other, "onnx", out=tmp_path / "ship" / "fast.onnx")
    assert open_runner(second).config.preset == "fast" and open_runner(onnx_file).config.preset == "seed"

    (tmp_path / "k").mkdir()
    keras_file = export_model(model_dir, "keras", out=tmp_path / "k")  # a directory: gets model.keras
    assert keras_file == tmp_path / "k" / "model.keras"
    model, config = load_model(keras_file)
    assert config == Config.load(model_dir)
    assert keras_file.stat().st_size < (model_dir / "model.keras").stat().st_size  # no optimizer state
    # Bit-identical weights, so bit-identical answers to the same batch. Not against keras_probs:
    # those came from one batch of 1,000, and TensorFlow's CPU kernels (oneDNN or Eigen) split a
    # batch of 50 differently, which moves the last bit of the source model's own answers too
    # (1.2e-7 measured with oneDNN, 3.9e-7 without; the same 50 twice: 0).
    source, _ = load_model(model_dir)
    assert len(model.get_weights()) == len(source.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), source.get_weights()))
    assert np.array_equal(np.asarray(model(x1000[:50])), np.asarray(source(x1000[:50])))
    # An inference-only export can be evaluated like a run's model (it holds no compile state).
    metrics = evaluate_model(model, mnist.x_test[:500], mnist.y_test[:500], scale=config.scale).metrics
    assert metrics["accuracies_agree"] and metrics["test_accuracy"] > 0.5


@pytest.mark.parametrize("out", ["/proc/x.onnx", "{tmp}/missing/dir/x.onnx"])
def test_export_to_an_unwritable_place_fails_before_the_work(model_dir, tmp_path, monkeypatch, out):
    import digitlab.export.converters as converters
    import digitlab.export.exporter as export

    def never(*args, **kwargs):
        raise AssertionError("converted although the destination cannot be written")

    monkeypatch.setattr(converters, "to_onnx_bytes", never)
    with pytest.raises(ModelError, match="cannot write"):
        export.export_model(model_dir, "onnx", out=out.format(tmp=tmp_path))
    assert not (tmp_path / "missing").exists()  # no directories created on the way


def test_keras_export_needs_out_and_bad_options_are_user_errors(model_dir, tmp_path):
    from digitlab.export.exporter import export_model

    with pytest.raises(ConfigError, match="--out is required"):
        export_model(model_dir, "keras")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(model_dir, "pt")
    with pytest.raises(ConfigError, match="unknown quantization"):
        export_model(model_dir, "onnx", quantize="int4")
    with pytest.raises(ConfigError, match="onnx and litert"):
        export_model(model_dir, "savedmodel", quantize="int8")
    with pytest.raises(ConfigError, match="must end in .onnx"):
        export_model(model_dir, "onnx", out=tmp_path / "model.bin")
    with pytest.raises(ModelError, match="not found"):
        export_model(tmp_path / "nowhere", "onnx")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelError, match="needs a .keras model"):
        export_model(tmp_path / "notes.txt", "onnx")


def test_augmentation_and_dropout_layers_do_not_block_export(tmp_path):
    """Layers that only act in training are left out of the exported graph."""
    from digitlab.config.settings import Config
    from digitlab.export.exporter import export_model, inference_model
    from digitlab.export.runtimes import open_runner
    from digitlab.models import backend

    keras = backend.keras()
    backend.set_seed(1)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.RandomRotation(0.1),
        layers.RandomZoom(0.1),
        layers.Conv2D(4, 3, activation="relu"),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    assert [type(layer).__name__ for layer in inference_model(model).layers] == ["Conv2D", "Flatten", "Dense"]
    model_dir = tmp_path / "aug"
    model_dir.mkdir()
    model.save(model_dir / "model.keras")
    Config().save(model_dir)
    x = np.random.default_rng(0).random((20, 28, 28, 1)).astype(np.float32)
    ref = np.asarray(model(x, training=False))
    for fmt in ("onnx", "litert"):
        path = export_model(model_dir, fmt)
        assert np.abs(open_runner(path)(x) - ref).max() <= 1e-5


def test_cli_export(model_dir, tmp_path, capsys):
    from digitlab.cli.commands import main

    out = tmp_path / "cli.tflite"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(model_dir), "--format", "litert", "--out", str(out)])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "check vs Keras" in text
    assert out.is_file() and (tmp_path / "cli.tflite.json").is_file() and not (tmp_path / "config.json").exists()
    from digitlab.export.runtimes import open_runner

    assert open_runner(out).config.preset == "seed"  # from the export's own metadata

    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(model_dir), "--format", "onnx", "--quantize", "int3"])
    assert exit_info.value.code == 2
    assert "error: unknown quantization" in capsys.readouterr().err


def test_quantized_exports_of_the_tiny_model(model_dir, x1000, keras_probs):
    """Smaller files that still agree with the float model (fast smoke test; accuracy below)."""
    from digitlab.export.exporter import export_model, read_metadata
    from digitlab.export.runtimes import open_runner

    float_size = (model_dir / "model.keras").stat().st_size
    for fmt in ("onnx", "litert"):
        for quantize, max_ratio in (("float16", 0.55), ("int8", 0.35)):
            path = export_model(model_dir, fmt, quantize=quantize)
            assert path.name == f"model.{quantize}.{'onnx' if fmt == 'onnx' else 'tflite'}"
            assert read_metadata(path)["quantization"] == quantize
            assert path.stat().st_size < max_ratio * float_size
            got = open_runner(path)(x1000)
            agree = (got.argmax(1) == keras_probs.argmax(1)).mean()
            assert agree >= (0.999 if quantize == "float16" else 0.97), (fmt, quantize, agree)


@pytest.mark.skipif(not (PRETRAINED / "model.keras").is_file(), reason="pretrained model not shipped yet")
@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_quantized_accuracy_drop_on_the_pretrained_model(fmt, mnist, tmp_path):
    """int8 and float16: accuracy on all 10,000 test images within 0.1 points of float32."""
    from digitlab.export.exporter import export_model
    from digitlab.export.runtimes import open_runner
    from digitlab.preprocess import to_model_input

    model_dir = _copy_model(PRETRAINED, tmp_path / "pre")
    x, y = to_model_input(mnist.x_test), mnist.y_test
    base = export_model(model_dir, fmt)
    base_acc = (open_runner(base)(x).argmax(1) == y).mean()
    report = [f"{fmt} float32: {base_acc * 100:.2f}%, {base.stat().st_size} bytes"]
    for quantize in ("float16", "int8"):
        path = export_model(model_dir, fmt, quantize=quantize)
        acc = (open_runner(path)(x).argmax(1) == y).mean()
        size = path.stat().st_size
        report.append(f"{quantize}: {acc * 100:.2f}% ({(acc - base_acc) * 100:+.2f} pt), "
                      f"{size} bytes ({size / base.stat().st_size:.0%} of float32)")
        assert base_acc - acc <= 0.001, report
        assert size < 0.55 * base.stat().st_size
    print("; ".join(report))


def test_the_shipped_onnx_model_is_current_and_matches_keras(x1000):
    """Prediction is fast out of the box only if pretrained/model.onnx is there and up to date."""
    if not (PRETRAINED / "model.keras").is_file():
        pytest.skip("pretrained model not shipped yet")
    from digitlab.export.exporter import read_metadata, read_onnx_metadata, sha256_file
    from digitlab.export.runtimes import choose_runtime, open_runner
    from digitlab.models.architectures import load_model

    onnx_file = PRETRAINED / "model.onnx"
    assert onnx_file.is_file(), "run: digitlab export src/digitlab/pretrained --format onnx"
    meta = read_metadata(onnx_file)
    assert meta["source_model"]["sha256"] == sha256_file(PRETRAINED / "model.keras"), \
        "pretrained/model.onnx is stale: run digitlab export src/digitlab/pretrained --format onnx"
    assert read_onnx_metadata(onnx_file)["source_model"] == meta["source_model"]
    # float32 weights (4 bytes per parameter) plus a small graph: no duplicated constants
    assert onnx_file.stat().st_size < 4 * meta["parameters"] + 0.1e6
    assert choose_runtime(PRETRAINED) == "onnx"
    model, _ = load_model(PRETRAINED)
    ref = np.asarray(model(x1000, training=False))
    got = open_runner(PRETRAINED, "onnx")(x1000)
    assert (got.argmax(1) == ref.argmax(1)).all() and np.abs(got - ref).max() <= 1e-4


def test_the_fitted_temperature_lands_in_config_json_metrics_and_every_export(tiny_run, model_dir, exported):
    """The tiny run (`digitlab run`, 1 epoch) was calibrated after training: config.json records its
    temperature and thresholds, metrics.json the fit and the test calibration, and every export's
    metadata (sidecar and, for ONNX, embedded) carries the same numbers."""
    from digitlab.export.exporter import read_metadata, read_onnx_metadata

    config = json.loads((tiny_run / "config.json").read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert 0.05 <= config["temperature"] <= 20 and config["temperature"] == metrics["calibration_fit"]["temperature"]
    assert 0 < config["uncertain_below"] < 1 and 0 < config["not_digit_above"] < 1
    assert metrics["calibration_fit"]["validation"]["nll_after"] <= metrics["calibration_fit"]["validation"]["nll_before"]
    test = metrics["calibration"]
    assert {"ece", "nll", "aurc", "accuracy_at_coverage", "flagged"} <= set(test)
    assert set(test["accuracy_at_coverage"]) == {"0.95", "0.98", "0.99"}
    assert test["nll"] == pytest.approx(metrics["test_loss"], rel=1e-3)  # Keras' loss is the NLL
    for fmt, path in exported.items():
        meta = read_metadata(path)
        assert meta["config"]["temperature"] == config["temperature"], fmt
        assert meta["calibration"] == {"temperature": config["temperature"], "uncertain_below": config["uncertain_below"],
                                       "not_digit_above": config["not_digit_above"],
                                       "not_digit_score": "entropy of the probabilities / log(10)"}
    assert read_onnx_metadata(exported["onnx"])["calibration"]["temperature"] == config["temperature"]
