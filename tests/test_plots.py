"""Every figure function writes one valid PNG, atomically, on small synthetic data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab import plots, report

N = 200


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8)
    y = np.arange(N) % 10  # every class present
    probs = rng.dirichlet(np.full(10, 0.3), N)
    # Make about two thirds right so there are correct and wrong predictions.
    right = rng.random(N) < 0.66
    probs[right] = np.eye(10)[y[right]] * 0.9 + probs[right] * 0.1
    cm = np.zeros((10, 10), dtype=np.int64)
    np.add.at(cm, (y, probs.argmax(axis=1)), 1)
    return {"x": x, "y": y, "probs": probs, "cm": cm}


HISTORY = {"accuracy": [0.90, 0.95, 0.97], "val_accuracy": [0.92, 0.95, 0.96],
           "loss": [0.30, 0.15, 0.10], "val_loss": [0.25, 0.16, 0.12]}


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    # Modest files: the report inlines every one of them.
    assert path.stat().st_size < 200_000
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temp files left behind: {leftovers}"


def test_samples_per_class(tmp_path, data):
    assert_png(plots.plot_samples_per_class(data["x"], data["y"], tmp_path / "a.png"))


def test_samples_per_class_missing_class_and_channel_axis(tmp_path, data):
    y = data["y"] % 5  # classes 5-9 absent
    assert_png(plots.plot_samples_per_class(data["x"][..., None], y, tmp_path / "a.png"))


def test_random_samples(tmp_path, data):
    out = plots.plot_random_samples(data["x"], data["y"], tmp_path / "r.png", n=9, seed=3)
    assert out == tmp_path / "r.png"
    assert_png(out)


def test_random_samples_float_images(tmp_path, data):
    x = data["x"][:10].astype(np.float32) / 255.0
    assert_png(plots.plot_random_samples(x, data["y"][:10], tmp_path / "r.png"))  # n > len(x)


def test_class_distribution(tmp_path, data):
    assert_png(plots.plot_class_distribution(data["y"], data["y"][:50], tmp_path / "d.png"))


def test_training_curves(tmp_path):
    assert_png(plots.plot_training_curves(HISTORY, tmp_path / "t.png"))


def test_training_curves_one_epoch_without_validation(tmp_path):
    assert_png(plots.plot_training_curves({"accuracy": [0.9], "loss": [0.3]}, tmp_path / "t.png"))


def test_confusion_matrix(tmp_path, data):
    assert_png(plots.plot_confusion_matrix(data["cm"], tmp_path / "cm.png"))
    assert_png(plots.plot_confusion_matrix(data["cm"].tolist(), tmp_path / "cm2.png", normalize=False))


def test_confusion_matrix_empty_row(tmp_path, data):
    cm = data["cm"].copy()
    cm[3] = 0  # a class missing from the test set must not divide by zero
    assert_png(plots.plot_confusion_matrix(cm, tmp_path / "cm.png"))


def test_test_predictions(tmp_path, data):
    assert_png(plots.plot_test_predictions(data["x"], data["y"], data["probs"], tmp_path / "p.png"))


def test_random_prediction(tmp_path, data):
    wrong = int(np.flatnonzero(data["probs"].argmax(axis=1) != data["y"])[0])
    right = int(np.flatnonzero(data["probs"].argmax(axis=1) == data["y"])[0])
    for i in (wrong, right):
        out = plots.plot_random_prediction(data["x"][i, :, :, None], data["y"][i], data["probs"][i],
                                           tmp_path / f"rp{i}.png", index=i)
        assert_png(out)


def test_confident_mistakes(tmp_path, data):
    assert_png(plots.plot_confident_mistakes(data["x"], data["y"], data["probs"], tmp_path / "m.png"))


def test_confident_mistakes_none(tmp_path, data):
    perfect = np.eye(10)[data["y"]]
    assert_png(plots.plot_confident_mistakes(data["x"], data["y"], perfect, tmp_path / "m.png"))


def test_confident_mistakes_fewer_than_n(tmp_path, data):
    probs = np.eye(10)[data["y"]]
    probs[:2] = np.eye(10)[(data["y"][:2] + 1) % 10]
    assert_png(plots.plot_confident_mistakes(data["x"], data["y"], probs, tmp_path / "m.png", n=12))


def test_overwrite_replaces_file(tmp_path, data):
    path = tmp_path / "d.png"
    path.write_bytes(b"old")
    plots.plot_class_distribution(data["y"], data["y"], path)
    assert_png(path)


def test_figure_tables():
    assert [f.name for f in plots.EXPLORE_FIGURES] == [
        "samples_per_class.png", "random_samples.png", "class_distribution.png"]
    assert [f.name for f in plots.EVAL_FIGURES] == [
        "training_curves.png", "confusion_matrix.png", "test_predictions.png",
        "random_prediction.png", "confident_mistakes.png"]
    for info in plots.EXPLORE_FIGURES + plots.EVAL_FIGURES:
        assert info.title and info.caption


def test_explore_figures(tmp_path, data):
    out = plots.explore_figures(data["x"], data["y"], data["y"][:50], tmp_path / "figs", seed=1)
    assert list(out) == [f.name for f in plots.EXPLORE_FIGURES]
    for name, path in out.items():
        assert path == tmp_path / "figs" / name
        assert_png(path)


def test_evaluation_figures(tmp_path, data):
    out = plots.evaluation_figures(HISTORY, data["cm"], data["x"], data["y"], data["probs"], tmp_path, seed=5)
    assert list(out) == [f.name for f in plots.EVAL_FIGURES]
    for path in out.values():
        assert_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(out)


def test_evaluation_figures_without_history(tmp_path, data):
    out = plots.evaluation_figures(None, data["cm"], data["x"], data["y"], data["probs"], tmp_path)
    assert "training_curves.png" not in out
    assert len(out) == len(plots.EVAL_FIGURES) - 1


def test_random_test_index_is_seeded():
    assert plots.random_test_index(10_000, 7) == plots.random_test_index(10_000, 7)
    assert 0 <= plots.random_test_index(5, 0) < 5
    with pytest.raises(ValueError):
        plots.random_test_index(0)


def test_import_is_light_and_pyplot_free():
    # Importing plots/report must not pull in TensorFlow, Keras or even
    # matplotlib (imported only when a figure is drawn), and the code never
    # uses pyplot's global state (seaborn imports it, we never call it).
    code = ("import sys, digitlab.plots, digitlab.report; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib', 'seaborn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for module in (plots, report):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert "import matplotlib.pyplot" not in source
        assert "from matplotlib import pyplot" not in source
        assert "plt." not in source
