"""Runtimes: choosing an engine, opening files, bad files, and prediction without TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from digitlab.errors import ModelError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tiny_run, tmp_path_factory):
    """A copy of the tiny run with model.onnx and model.tflite exported beside model.keras."""
    from digitlab.export.exporter import export_model

    d = tmp_path_factory.mktemp("runtimes") / "tiny"
    d.mkdir()
    for name in ("model.keras", "config.json", "metrics.json"):
        shutil.copy2(tiny_run / name, d / name)
    export_model(d, "onnx")
    export_model(d, "litert")
    return d


@pytest.fixture(scope="module")
def x(mnist):
    from digitlab.preprocess import to_model_input

    return to_model_input(mnist.x_test[:300])


def test_auto_prefers_onnx_and_explicit_runtimes_work(model_dir, x):
    from digitlab.export.runtimes import RUNTIMES, choose_runtime, open_runner

    assert set(RUNTIMES) == {"keras", "onnx", "litert"}
    assert choose_runtime(model_dir) == "onnx"
    outputs = {}
    for runtime in ("auto", "keras", "onnx", "litert"):
        runner = open_runner(model_dir, runtime)
        assert runner.name == ("onnx" if runtime == "auto" else runtime)
        assert runner.config.preset == "seed"
        out = runner(x)
        assert out.shape == (300, 10) and out.dtype == np.float32
        outputs[runner.name] = out
    for name in ("onnx", "litert"):
        assert np.abs(outputs[name] - outputs["keras"]).max() <= 1e-4
    # a file decides by its suffix
    assert open_runner(model_dir / "model.tflite").name == "litert"
    assert open_runner(model_dir / "model.onnx").name == "onnx"


def test_auto_falls_back_to_keras_without_onnx_or_with_a_stale_one(model_dir, tmp_path):
    from digitlab.export.runtimes import choose_runtime

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    meta_file = d / "model.onnx.json"
    meta = json.loads(meta_file.read_text())
    meta["source_model"]["sha256"] = "0" * 64  # exported from another model.keras
    meta_file.write_text(json.dumps(meta))
    assert choose_runtime(d) == "keras"
    (d / "model.onnx").unlink()
    assert choose_runtime(d) == "keras"
    (d / "model.keras").unlink()
    assert choose_runtime(d) == "litert"  # only a .tflite is left


def test_litert_batches_of_any_size(model_dir, x):
    from digitlab.export.runtimes import LiteRTRunner, OnnxRunner

    lite, ref = LiteRTRunner(model_dir / "model.tflite"), OnnxRunner(model_dir / "model.onnx")
    lite.max_batch = 128  # force chunking on 300 images
    for n in (1, 3, 1, 300, 7):
        assert np.abs(lite(x[:n]) - ref(x[:n])).max() <= 1e-5


def test_runners_are_safe_to_share_between_threads(model_dir, x):
    """The web server calls one runner from several threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    from digitlab.export.runtimes import LiteRTRunner, OnnxRunner

    ref = OnnxRunner(model_dir / "model.onnx")(x)
    for runner in (LiteRTRunner(model_dir / "model.tflite"), OnnxRunner(model_dir / "model.onnx")):
        sizes = [1, 5, 17, 1, 64, 3] * 4
        starts = [(7 * i) % 200 for i in range(len(sizes))]
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda a, run=runner: run(x[a[0]:a[0] + a[1]]), zip(starts, sizes)))
        for start, n, out in zip(starts, sizes, outs):
            assert np.abs(out - ref[start:start + n]).max() <= 1e-5, runner.name


def test_runtime_and_file_mismatches_are_clear_errors(model_dir, tmp_path):
    from digitlab.export.runtimes import open_runner

    with pytest.raises(ModelError, match="unknown runtime"):
        open_runner(model_dir, "tensorrt")
    with pytest.raises(ModelError, match="cannot run on the litert runtime"):
        open_runner(model_dir / "model.onnx", "litert")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="digitlab export"):
        open_runner(empty, "onnx")
    with pytest.raises(ModelError, match="no model found"):
        open_runner(tmp_path / "missing.onnx")


@pytest.mark.parametrize("name", ["model.onnx", "model.tflite"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "flipped"])
def test_corrupted_or_truncated_files_give_a_clear_error(model_dir, tmp_path, name, damage):
    from digitlab.export.runtimes import open_runner

    data = (model_dir / name).read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b"",
           "flipped": data[:-2000] + bytes(b ^ 0x55 for b in data[-2000:-1000]) + data[-1000:]}[damage]
    for with_sidecar in (True, False):  # with it the checksum speaks; without it the parser must
        d = tmp_path / f"{damage}-{with_sidecar}"
        d.mkdir()
        shutil.copy2(model_dir / "config.json", d)
        if with_sidecar:
            shutil.copy2(model_dir / (name + ".json"), d)
        (d / name).write_bytes(bad)
        if damage == "flipped" and not with_sidecar:
            continue  # weights changed inside a valid file: only the recorded checksum can tell
        with pytest.raises(ModelError) as info:
            open_runner(d / name)
        assert str(d / name) in str(info.value)
        assert any(w in str(info.value) for w in ("not a loadable", "empty file", "truncated", "sha256")), info.value


def test_threads_setting(monkeypatch):
    from digitlab.export.runtimes import default_threads

    monkeypatch.setenv("DIGITLAB_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("DIGITLAB_THREADS", "many")
    with pytest.raises(ModelError, match="DIGITLAB_THREADS"):
        default_threads()
    monkeypatch.delenv("DIGITLAB_THREADS")
    assert 1 <= default_threads() <= 4


def _run_child(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DIGITLAB_VERBOSE"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("runtime", ["onnx", "litert", "auto"])
def test_prediction_without_tensorflow(model_dir, runtime):
    """ONNX Runtime / LiteRT prediction never imports TensorFlow (or Keras)."""
    out = _run_child(f"""
        import sys
        import numpy as np
        from digitlab.export.runtimes import open_runner
        runner = open_runner({str(model_dir)!r}, {runtime!r})
        p = runner(np.zeros((2, 28, 28, 1), np.float32))
        assert p.shape == (2, 10), p.shape
        heavy = sorted(m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules)
        print(runner.name, heavy)
    """)
    assert out.split()[0] == ("onnx" if runtime == "auto" else runtime)
    assert out.strip().endswith("[]"), out


def test_predictor_without_tensorflow(model_dir, mnist):
    if not (Path(__file__).parents[1] / "src" / "digitlab" / "predict" / "predictor.py").is_file():
        pytest.skip("digitlab.predict is not there yet")
    np.save(model_dir.parent / "one.npy", mnist.x_test[:1])
    out = _run_child(f"""
        import sys
        import numpy as np
        from digitlab.predict.predictor import Predictor
        predictor = Predictor.load({str(model_dir)!r}, runtime="onnx")
        result = predictor.predict(np.load({str(model_dir.parent / "one.npy")!r})[0])
        print(predictor.runner.name, "tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    assert out.split() == ["onnx", "False", "False"], out


def test_serving_without_tensorflow(model_dir, mnist):
    """The web app, started on the ONNX runtime, answers without importing TensorFlow."""
    if not (Path(__file__).parents[1] / "src" / "digitlab" / "server").is_dir():
        pytest.skip("digitlab.server is not there yet")
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    np.save(model_dir.parent / "one.npy", mnist.x_test[:1])
    out = _run_child(f"""
        import sys
        import numpy as np
        from fastapi.testclient import TestClient
        from digitlab.server import create_app
        app = create_app(model={str(model_dir)!r}, runtime="auto")
        with TestClient(app, base_url="http://127.0.0.1") as client:
            predictor = app.state.predictor
            predictor.predict(np.load({str(model_dir.parent / "one.npy")!r})[0])
            client.get("/")
        print(predictor.runner.name, "tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    assert out.split() == ["onnx", "False", "False"], out


# --------------------------------------------------------------------------- the contract, for every runtime


def _keras_model_dir(tmp_path, name, build):
    """A model directory holding `build(keras)` as model.keras and a seed config."""
    from digitlab.config.settings import make_config
    from digitlab.models import backend

    keras = backend.keras()
    folder = tmp_path / name
    folder.mkdir()
    model = build(keras)
    model.save(folder / "model.keras")
    make_config("seed").save(folder)
    return folder


def _dense(keras, shape=(28, 28, 1), units=10, activation="softmax", outputs=1):
    inputs = keras.Input(shape=shape)
    x = keras.layers.Flatten()(inputs)
    heads = [keras.layers.Dense(units, activation=activation)(x) for _ in range(outputs)]
    return keras.Model(inputs, heads if outputs > 1 else heads[0])


@pytest.mark.parametrize("name, build, message", [
    ("three_classes", lambda k: _dense(k, units=3), r"maps \(N, 28, 28, 1\) to \(3,\)"),
    ("logits", lambda k: _dense(k, activation=None), "not probabilities"),
    ("input_32", lambda k: _dense(k, shape=(32, 32, 1)), "does not accept"),
    ("two_outputs", lambda k: _dense(k, outputs=2), "2 outputs"),
])
def test_keras_runner_holds_models_to_the_contract(tmp_path, name, build, message):
    from digitlab.export.runtimes import open_runner

    folder = _keras_model_dir(tmp_path, name, build)
    with pytest.raises(ModelError, match=message):
        open_runner(folder, "keras")


def test_a_model_that_outputs_nan_is_an_error_not_an_answer(tmp_path):
    from digitlab.export.runtimes import open_runner

    def nan_model(keras):
        model = _dense(keras)
        for w in model.weights:
            w.assign(np.full(w.shape, np.nan, dtype="float32"))
        return model

    with pytest.raises(ModelError, match="non-finite probabilities"):
        open_runner(_keras_model_dir(tmp_path, "nan", nan_model), "keras")


def test_onnx_runner_refuses_a_logits_model(tmp_path):
    """The same single check applies to ONNX: a graph without a softmax is refused."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from digitlab.config.settings import make_config
    from digitlab.export.runtimes import open_runner

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 1, (784, 10)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 784], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["image", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "logits", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 28, 28, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 10])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = tmp_path / "onnx_logits"
    folder.mkdir()
    onnx.save(model, folder / "model.onnx")
    make_config("seed").save(folder)
    with pytest.raises(ModelError, match="not probabilities"):
        open_runner(folder / "model.onnx")


def test_calibration_survives_export_in_every_runtime(model_dir, mnist):
    """The tiny run was calibrated after training: its temperature is the model's last layer, so the
    ONNX and LiteRT exports give the same calibrated probabilities as Keras, and Predictor the same
    decisions (uncertain, not a digit, no digit) on every runtime."""
    from PIL import Image

    from digitlab.data.nondigits import generate
    from digitlab.models.architectures import load_model
    from digitlab.models.calibration import apply_temperature, model_temperature, without_temperature
    from digitlab.predict.predictor import Predictor
    from digitlab.preprocess import to_model_input
    from digitlab.runs.artifacts import read_metadata

    model, config = load_model(model_dir)
    assert config.temperature is not None and model_temperature(model) == pytest.approx(config.temperature)
    assert abs(np.log(config.temperature)) > 0.01  # a real correction, or this test would prove little
    for name in ("model.onnx", "model.tflite"):
        meta = read_metadata(model_dir / name)
        assert meta["config"]["temperature"] == config.temperature == meta["calibration"]["temperature"]
        assert meta["calibration"]["not_digit_above"] == config.not_digit_above
    x = to_model_input(mnist.x_test[:200])
    raw = np.asarray(without_temperature(model)(x, training=False))
    calibrated = apply_temperature(raw, config.temperature)
    # digits, user-style digits and non-digits, so that every flag occurs
    images = ([Image.fromarray(a) for a in mnist.x_test[:150]]
              + [Image.fromarray(255 - a).resize((90, 90)) for a in mnist.x_test[150:250]]
              + [item.image for item in generate("calibration", 90, seed=5)]
              + [Image.new("L", (50, 50), 255)])
    answers = {}
    for runtime in ("keras", "onnx", "litert"):
        predictor = Predictor.load(model_dir, runtime=runtime)
        assert predictor.threshold == config.uncertain_below and predictor.not_digit_above == config.not_digit_above
        np.testing.assert_allclose(predictor.runner(x), calibrated, atol=2e-5)
        answers[runtime] = predictor.predict_many(images)
    flags = {rt: [(r.label, r.uncertain, r.not_digit, r.no_digit) for r in rs] for rt, rs in answers.items()}
    # float differences (~1e-6) may only flip an answer that sits on a threshold
    from digitlab.models.ood import not_digit_score

    near = [bool(r.probabilities) and (abs(r.confidence - config.uncertain_below) < 1e-4 or
                                       abs(not_digit_score([r.probabilities])[0] - config.not_digit_above) < 1e-4)
            for r in answers["keras"]]
    for runtime in ("onnx", "litert"):
        differ = [i for i, (a, b) in enumerate(zip(flags["keras"], flags[runtime])) if a != b and not near[i]]
        assert not differ, (runtime, [(flags["keras"][i], flags[runtime][i]) for i in differ])
    seen = flags["keras"]
    assert any(f[1] for f in seen) and any(not f[1] for f in seen) and any(f[3] for f in seen)


def test_a_keras_only_model_without_tensorflow_is_a_model_error(tmp_path, monkeypatch):
    """The slim serving image has no TensorFlow: a directory holding only model.keras is refused
    in one line that says what to do (export to ONNX), not with a ModuleNotFoundError."""
    from digitlab.errors import ModelError
    from digitlab.export import runtimes

    shutil.copy(Path(runtimes.__file__).parents[1] / "pretrained" / "model.keras", tmp_path / "model.keras")
    real_find_spec = runtimes.importlib.util.find_spec
    monkeypatch.setattr(runtimes.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real_find_spec(name, *a))
    for runtime in ("auto", "keras"):
        with pytest.raises(ModelError, match=r"needs TensorFlow.*export.*--format onnx") as info:
            runtimes.open_runner(tmp_path, runtime)
        assert "\n" not in str(info.value)
