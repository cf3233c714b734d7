import numpy as np
import pytest

from digitlab.config.settings import make_config
from digitlab.errors import DigitlabError
from digitlab.models.architectures import PRESETS, build_model, count_params, describe_presets
from digitlab.preprocess import to_model_input


def test_seed_model_is_the_tutorials_cnn():
    model = build_model(make_config("seed"))
    layers = [(type(layer).__name__, layer.count_params()) for layer in model.layers]
    assert layers == [
        ("Conv2D", 320), ("MaxPooling2D", 0), ("Conv2D", 18496), ("MaxPooling2D", 0),
        ("Flatten", 0), ("Dense", 102464), ("Dense", 650),
    ]
    assert count_params(model) == {"total": 121_930, "trainable": 121_930, "non_trainable": 0}
    conv1, _, conv2, _, _, dense, out = model.layers
    assert (conv1.filters, conv1.kernel_size, conv2.filters, conv2.kernel_size) == (32, (3, 3), 64, (3, 3))
    assert dense.units == 64 and out.units == 10
    assert out.activation.__name__ == "softmax" and conv1.activation.__name__ == "relu"
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert type(model.optimizer).__name__ == "Adam"
    assert model.loss == "sparse_categorical_crossentropy"


def test_registry_lists_presets():
    assert "seed" in PRESETS
    assert describe_presets().startswith("seed: ")


def test_to_model_input_scales_and_adds_channel():
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = np.pad(x, ((0, 0), (0, 26), (0, 26)))
    out = to_model_input(x)
    assert out.shape == (1, 28, 28, 1) and out.dtype == np.float32
    assert out[0, 0, 1, 0] == 1.0 and out[0, 1, 0, 0] == pytest.approx(0.2) and out.min() == 0.0
    assert to_model_input(x[0]).shape == (1, 28, 28, 1)  # one image without batch axis
    np.testing.assert_allclose(to_model_input(out * 255), out, atol=1e-6)  # already channel-shaped input


def test_to_model_input_rejects_wrong_shapes():
    with pytest.raises(DigitlabError, match=r"expected images of shape \(N, 28, 28\)"):
        to_model_input(np.zeros((2, 32, 32), np.uint8))


SHIPPED_PRESET = "strong"  # src/digitlab/pretrained/README.md says how it was trained


def test_shipped_pretrained_model_loads_and_scores(mnist):
    import json
    from importlib import resources

    from digitlab.models.architectures import load_model
    from digitlab.models.evaluate import evaluate_model

    folder = resources.files("digitlab") / "pretrained"
    model, config = load_model(str(folder))
    # the vote of two `strong` networks (`digitlab ensemble`)
    members = [layer for layer in model.layers if hasattr(layer, "layers")]
    assert config.preset == SHIPPED_PRESET and config.members == len(members) == 2
    assert all(m.count_params() == build_model(config).count_params() for m in members)
    recorded = json.loads((folder / "metrics.json").read_text())
    metrics = evaluate_model(model, mnist.x_test, mnist.y_test, scale=config.scale).metrics
    assert metrics["accuracy_score"] >= 0.995  # the bar for the shipped model
    assert metrics["accuracy_score"] == pytest.approx(recorded["accuracy_score"], abs=1e-4)
