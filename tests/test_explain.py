"""Explanations: the heatmap methods' defining properties, and explain=true / predict --explain."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from serving import model_arg, user_png

from digitlab.models.attribution import deletion_insertion, occlusion
from digitlab.models.explain import GradientExplainer, normalized

PRETRAINED = "src/digitlab/pretrained"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from pathlib import Path

    arg = model_arg(tmp_path_factory)
    return arg or str(Path(__file__).resolve().parents[1] / PRETRAINED)


@pytest.fixture(scope="module")
def keras_model(model_dir):
    from digitlab.models.architectures import load_model

    return load_model(model_dir)[0]


@pytest.fixture(scope="module")
def explainer(keras_model):
    return GradientExplainer(keras_model)


@pytest.fixture(scope="module")
def onnx(model_dir):
    from digitlab.export.runtimes import open_runner

    return open_runner(model_dir, "auto")


@pytest.fixture(scope="module")
def digits(mnist, onnx):
    """Twelve test digits as model input, and the class the model gives each."""
    x = (mnist.x_test[:12].astype(np.float32) / 255.0)[..., None]
    return x, onnx(x).argmax(axis=1).astype(np.int32)


def test_integrated_gradients_completeness(explainer, digits):
    x, labels = digits
    ig = explainer.integrated_gradients(x, labels)
    assert ig.shape == (len(x), 28, 28)
    gain = explainer.scores(x, labels) - explainer.scores(np.zeros_like(x), labels)
    assert np.all(np.abs(gain) > 1.0)  # a real gain to be shared among the pixels, not 0 = 0
    gap = np.abs(ig.sum(axis=(1, 2)) - gain)
    assert np.all(gap <= 0.1 * np.abs(gain) + 0.05), (gap, gain)
    assert np.median(gap / np.abs(gain)) < 0.03
    assert np.all(ig[x[..., 0] == 0] == 0)  # a black pixel equals the black baseline: no attribution


def test_integrated_gradients_blur_baseline_completeness(explainer, digits):
    x, labels = digits
    ig = explainer.integrated_gradients(x, labels, baseline="blur")
    gain = explainer.scores(x, labels) - explainer.scores(explainer.baseline(x, "blur"), labels)
    assert np.all(np.abs(ig.sum(axis=(1, 2)) - gain) <= 0.1 * np.abs(gain) + 0.05)


def test_gradcam_is_non_negative_and_28x28(explainer, digits):
    x, labels = digits
    cam = explainer.gradcam(x, labels)
    assert cam.shape == (len(x), 28, 28) and cam.dtype == np.float32
    assert cam.min() >= 0 and np.all(cam.reshape(len(x), -1).max(axis=1) > 0)


def test_occlusion_of_an_empty_image_is_zero(onnx, explainer):
    empty = np.zeros((2, 28, 28, 1), np.float32)
    labels = np.array([3, 8], np.int32)
    assert np.array_equal(occlusion(onnx, empty, labels), np.zeros((2, 28, 28), np.float32))
    assert not explainer.integrated_gradients(empty, labels).any()
    assert not normalized(np.zeros((2, 28, 28))).any()


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam", "occlusion"])
def test_heatmaps_concentrate_on_the_ink(method, explainer, onnx, digits):
    x, labels = digits
    heat = occlusion(onnx, x, labels) if method == "occlusion" else explainer.explain(method, x, labels)
    ink = x[..., 0] > 0.2
    pos = np.maximum(heat, 0)
    per_ink = (pos * ink).sum(axis=(1, 2)) / ink.sum(axis=(1, 2))
    per_background = (pos * ~ink).sum(axis=(1, 2)) / (~ink).sum(axis=(1, 2))
    # Per pixel, ink draws more positive attribution than background, 1.5x in the median image ...
    assert np.median(per_ink / per_background) > 1.5, (per_ink, per_background)
    if method == "gradcam":
        # ... in all images but one at most for Grad-CAM (8x8 maps, blurred; the shipped vote's is its
        # members' mean, and its touching-pairs member looks at the page around a digit: on test
        # image 11 the vote gives background 1.02x the ink's share, that member 1.35x)
        assert np.sum(per_ink <= per_background) <= 1, (per_ink, per_background)
    else:  # ... in every image, and for the fine-grained methods most of all of it
        assert np.all(per_ink > per_background), (per_ink, per_background)
        assert np.all((pos * ink).sum(axis=(1, 2)) > (pos * ~ink).sum(axis=(1, 2)))


def test_faithfulness_ranks_a_heatmap_above_chance(onnx, digits):
    x, labels = digits
    heat = occlusion(onnx, x, labels)
    deletion, insertion = deletion_insertion(onnx, x, heat, labels)
    rand_del, rand_ins = deletion_insertion(onnx, x, np.random.default_rng(0).random((len(x), 28, 28)), labels)
    assert deletion.mean() < rand_del.mean() and insertion.mean() > rand_ins.mean()
    assert np.all((deletion >= 0) & (deletion <= 1) & (insertion >= 0) & (insertion <= 1))


def test_faithfulness_in_chunks_equals_all_at_once(onnx, digits, monkeypatch):
    from digitlab.models import attribution

    x, labels = digits
    heat = x[..., 0] + 0.01 * np.arange(784, dtype=np.float32).reshape(28, 28)
    whole = deletion_insertion(onnx, x, heat, labels)
    monkeypatch.setattr(attribution, "CURVE_IMAGES", 5)  # 12 images: chunks of 5, 5 and 2
    chunked = deletion_insertion(onnx, x, heat, labels)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_api_explain_returns_a_28x28_heatmap(model_dir, mnist):
    from fastapi.testclient import TestClient

    from digitlab.server import create_app

    with TestClient(create_app(model=model_dir), base_url="http://127.0.0.1:8000") as client:
        png = user_png(mnist.x_test[0])
        body = client.post("/api/predict?explain=true&include_input=true", content=png,
                           headers={"Content-Type": "image/png"}).json()
        e = body["explanation"]
        assert e["method"] == "occlusion" and e["label"] == body["label"] == 7
        heat = np.array(e["heatmap"])
        assert heat.shape == (28, 28) and heat.max() == 1.0 and heat.min() >= -1.0
        ink = np.array(body["model_input"]) > 50
        assert heat[ink].clip(0).sum() > heat[~ink].clip(0).sum()
        plain = client.post("/api/predict", content=png, headers={"Content-Type": "image/png"}).json()
        assert "explanation" not in plain
        blank = png_of(np.full((64, 64), 255, np.uint8))
        none = client.post("/api/predict?explain=true", content=blank, headers={"Content-Type": "image/png"}).json()
        assert none["no_digit"] is True and none["explanation"] is None


def png_of(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def test_predict_explain_writes_one_png_per_input(model_dir, mnist, tmp_path, capsys):
    from digitlab.cli.commands import main

    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        (src / f"d{k}.png").write_bytes(user_png(mnist.x_test[k]))
    out = tmp_path / "why"
    with pytest.raises(SystemExit) as info:
        main(["predict", str(src), "--model", model_dir, "--explain", str(out), "--json"])
    assert info.value.code in (0, None)
    json.loads(capsys.readouterr().out)
    written = sorted(p.name for p in out.iterdir())
    assert written == ["d0.png", "d1.png", "d2.png"]  # and no temporary file left behind
    with Image.open(out / "d0.png") as im:
        assert im.size == (224, 224) and im.mode == "RGB"
        rgb = np.asarray(im, np.int16)[::8, ::8]
    ink = mnist.x_test[0] > 50
    redness = rgb[..., 0] - rgb[..., 2]
    assert redness[ink].mean() > redness[~ink].mean() + 20  # the heat is drawn where the digit is


def test_report_gallery_shows_heatmaps_for_predicted_and_true_class(onnx, mnist, tmp_path):
    from digitlab.models.attribution import occlusion_of
    from digitlab.report.figures import plot_confident_mistakes

    x, y = mnist.x_test[:40], mnist.y_test[:40]
    probs = np.full((40, 10), 0.01, np.float32)
    probs[np.arange(40), y] = 0.91
    wrong = [3, 11, 25]
    for i in wrong:  # three confident mistakes: class y+1 instead of y
        probs[i] = 0.01
        probs[i, (y[i] + 1) % 10] = 0.91
    asked: list[tuple[list[int], list[int]]] = []
    explain = occlusion_of(onnx, x, 1 / 255)

    def recording(indices, labels):
        asked.append((list(indices), list(labels)))
        return explain(indices, labels)

    plain = plot_confident_mistakes(x, y, probs, tmp_path / "plain.png")
    path = plot_confident_mistakes(x, y, probs, tmp_path / "why.png", explain=recording)
    (indices, labels), = asked
    assert sorted(indices[:3]) == wrong and indices[:3] == indices[3:]
    assert labels[:3] == [int((y[i] + 1) % 10) for i in indices[:3]]  # the predicted classes...
    assert labels[3:] == [int(y[i]) for i in indices[3:]]  # ...then the true ones
    with Image.open(path) as im, Image.open(plain) as im0:
        assert im.format == "PNG" and im.size[0] > im0.size[0]  # three panels a mistake instead of one
        rgb = np.asarray(im.convert("RGB"), np.int16)
    assert ((rgb[..., 0] - rgb[..., 2]) > 80).sum() > 50  # red heat is drawn


def test_predict_explain_refuses_an_unknown_method(tmp_path, capsys):
    from digitlab.cli.commands import main

    with pytest.raises(SystemExit) as info:
        main(["predict", "x.png", "--explain", str(tmp_path), "--explain-method", "saliency"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "explanation method must be one of" in err and "occlusion" in err
    assert len(err.strip().splitlines()) == 1
