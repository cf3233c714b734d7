"""Every figure function draws what it should (titles, axes, plotted values) and writes one valid PNG, atomically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.report import figurekit as plotting
from digitlab.report import figures as plots
from digitlab.report import sections as report

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


@pytest.fixture
def drawn(monkeypatch):
    """Every Figure a plot function saves, kept (not cleared) so tests can read what it shows."""
    figures = []

    def keep(fig, path):
        figures.append(fig)
        out = Path(path)
        fig.savefig(out, format="png", dpi=plotting.DPI)
        return out

    monkeypatch.setattr(plots, "save", keep)
    monkeypatch.setattr(plotting, "save", keep)  # (message figures are saved there)
    return figures


def titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def shown_image(ax):
    return np.asarray(ax.images[0].get_array())


def bar_heights(ax):
    return [round(p.get_height(), 9) for p in ax.patches]


def test_samples_per_class(tmp_path, data, drawn):
    assert_png(plots.plot_samples_per_class(data["x"], data["y"], tmp_path / "a.png"))
    (fig,) = drawn
    assert titles(fig) == [f"label {d}" for d in range(10)]
    assert fig._suptitle.get_text() == "One training sample per class"
    for d, ax in enumerate(fig.axes[:10]):  # the first image of each digit, scaled to [0, 1]
        first = int(np.argmax(data["y"] == d))
        np.testing.assert_allclose(shown_image(ax), data["x"][first] / 255.0, atol=1e-6)


def test_samples_per_class_missing_class_and_channel_axis(tmp_path, data, drawn):
    y = data["y"] % 5  # classes 5-9 absent
    assert_png(plots.plot_samples_per_class(data["x"][..., None], y, tmp_path / "a.png"))
    (fig,) = drawn
    absent = [ax for ax in fig.axes if ax.get_title() in {f"label {d}" for d in range(5, 10)}]
    assert len(absent) == 5 and all(not ax.images and ax.texts[0].get_text() == "none" for ax in absent)


def test_random_samples(tmp_path, data, drawn):
    out = plots.plot_random_samples(data["x"], data["y"], tmp_path / "r.png", n=9, seed=3)
    assert out == tmp_path / "r.png"
    assert_png(out)
    (fig,) = drawn
    idx = np.random.default_rng(3).choice(len(data["y"]), size=9, replace=False)
    assert titles(fig) == [str(data["y"][i]) for i in idx]
    np.testing.assert_allclose(shown_image(fig.axes[0]), data["x"][idx[0]] / 255.0, atol=1e-6)
    assert fig._suptitle.get_text() == "9 random training samples (seed 3)"


def test_random_samples_float_images(tmp_path, data, drawn):
    x = data["x"][:10].astype(np.float32) / 255.0
    assert_png(plots.plot_random_samples(x, data["y"][:10], tmp_path / "r.png"))  # n > len(x)
    (fig,) = drawn
    assert len(titles(fig)) == 10 and shown_image(fig.axes[0]).max() <= 1.0


def test_class_distribution(tmp_path, data, drawn):
    assert_png(plots.plot_class_distribution(data["y"], data["y"][:50], tmp_path / "d.png"))
    (fig,) = drawn
    train_ax, test_ax = fig.axes
    assert bar_heights(train_ax) == np.bincount(data["y"], minlength=10).tolist()
    assert bar_heights(test_ax) == np.bincount(data["y"][:50], minlength=10).tolist()
    assert titles(fig) == [f"Training set ({N} images)", "Test set (50 images)"]


def test_training_curves(tmp_path, drawn):
    assert_png(plots.plot_training_curves(HISTORY, tmp_path / "t.png"))
    (fig,) = drawn
    acc, loss = fig.axes
    assert (acc.get_title(), loss.get_title()) == ("Accuracy", "Loss")
    assert [list(line.get_ydata()) for line in acc.lines] == [HISTORY["accuracy"], HISTORY["val_accuracy"]]
    assert [list(line.get_ydata()) for line in loss.lines] == [HISTORY["loss"], HISTORY["val_loss"]]
    assert list(acc.lines[0].get_xdata()) == [1, 2, 3] and list(acc.get_xticks()) == [1, 2, 3]
    assert [t.get_text() for t in acc.get_legend().get_texts()] == ["training", "validation"]


def test_training_curves_one_epoch_without_validation(tmp_path, drawn):
    assert_png(plots.plot_training_curves({"accuracy": [0.9], "loss": [0.3]}, tmp_path / "t.png"))
    (fig,) = drawn
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    assert fig.axes[0].lines[0].get_marker() == "o"  # a single epoch shows as a point


def test_confusion_matrix(tmp_path, data, drawn):
    assert_png(plots.plot_confusion_matrix(data["cm"], tmp_path / "cm.png"))
    assert_png(plots.plot_confusion_matrix(data["cm"].tolist(), tmp_path / "cm2.png", normalize=False))
    ax = drawn[0].axes[0]
    annotations = [int(t.get_text()) for t in ax.texts]
    assert annotations == data["cm"].ravel().tolist()  # every count is written in its cell
    colour = np.asarray(ax.collections[0].get_array()).reshape(10, 10)
    np.testing.assert_allclose(colour, data["cm"] / data["cm"].sum(axis=1, keepdims=True))
    assert ax.get_title() == f"Confusion matrix ({N} images, {int(np.trace(data['cm']))} correct)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted", "True")


def test_confusion_matrix_empty_row(tmp_path, data, drawn):
    cm = data["cm"].copy()
    cm[3] = 0  # a class missing from the test set must not divide by zero
    assert_png(plots.plot_confusion_matrix(cm, tmp_path / "cm.png"))
    colour = np.asarray(drawn[0].axes[0].collections[0].get_array()).reshape(10, 10)
    assert np.isfinite(colour).all() and colour[3].sum() == 0


def test_test_predictions(tmp_path, data, drawn):
    assert_png(plots.plot_test_predictions(data["x"], data["y"], data["probs"], tmp_path / "p.png"))
    (fig,) = drawn
    preds = data["probs"].argmax(axis=1)
    assert titles(fig) == [f"pred {preds[i]} (true {data['y'][i]})" for i in range(10)]
    colours = [ax.title.get_color() for ax in fig.axes[:10]]
    assert colours == [plotting.CORRECT_COLOR if preds[i] == data["y"][i] else plotting.WRONG_COLOR for i in range(10)]
    wrong = int((preds[:10] != data["y"][:10]).sum())
    assert fig._suptitle.get_text() == f"First 10 test images: {10 - wrong} correct, {wrong} wrong"


def test_random_prediction(tmp_path, data, drawn):
    wrong = int(np.flatnonzero(data["probs"].argmax(axis=1) != data["y"])[0])
    right = int(np.flatnonzero(data["probs"].argmax(axis=1) == data["y"])[0])
    for i in (wrong, right):
        out = plots.plot_random_prediction(data["x"][i, :, :, None], data["y"][i], data["probs"][i],
                                           tmp_path / f"rp{i}.png", index=i)
        assert_png(out)
    for fig, i in zip(drawn, (wrong, right)):
        image_ax, bar_ax = fig.axes
        p = data["probs"][i]
        pred = int(p.argmax())
        assert image_ax.get_title() == f"True: {data['y'][i]} / Predicted: {pred} ({100 * p[pred]:.1f}%)"
        np.testing.assert_allclose(bar_heights(bar_ax), p, atol=1e-9)  # all ten probabilities
        assert fig._suptitle.get_text() == f"Test image #{i}"
        legend = [t.get_text() for t in bar_ax.get_legend().get_texts()]
        assert legend == (["predicted", "true"] if i == wrong else ["predicted"])


def test_confident_mistakes(tmp_path, data, drawn):
    assert_png(plots.plot_confident_mistakes(data["x"], data["y"], data["probs"], tmp_path / "m.png"))
    (fig,) = drawn
    preds = data["probs"].argmax(axis=1)
    conf = data["probs"].max(axis=1)
    wrong = np.flatnonzero(preds != data["y"])
    expected = wrong[np.argsort(-conf[wrong], kind="stable")][:12]
    assert titles(fig) == [f"true {data['y'][i]} → pred {preds[i]}, {100 * conf[i]:.1f}%" for i in expected]
    assert fig._suptitle.get_text() == f"12 most confident of {wrong.size} mistakes"


def test_confident_mistakes_none(tmp_path, data, drawn):
    perfect = np.eye(10)[data["y"]]
    assert_png(plots.plot_confident_mistakes(data["x"], data["y"], perfect, tmp_path / "m.png"))
    (fig,) = drawn
    assert fig.axes[0].texts[0].get_text() == f"No mistakes: all {N} test images were classified correctly."


def test_confident_mistakes_fewer_than_n(tmp_path, data, drawn):
    probs = np.eye(10)[data["y"]]
    probs[:2] = np.eye(10)[(data["y"][:2] + 1) % 10]
    assert_png(plots.plot_confident_mistakes(data["x"], data["y"], probs, tmp_path / "m.png", n=12))
    assert len(titles(drawn[0])) == 2


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
    code = ("import sys, digitlab.report.figures, digitlab.report.sections; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib', 'seaborn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for module in (plots, report):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert "import matplotlib.pyplot" not in source
        assert "from matplotlib import pyplot" not in source
        assert "plt." not in source
