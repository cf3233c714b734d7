"""Outlier exposure with a real (small) model: trained briefly on digits and generated non-digits,
calibrated by the pipeline, it flags held-out non-digits and plain shapes, not digits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_preprocess_shapes import shape_image  # the shapes preprocessing is tested on

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    """The seed CNN, 3 epochs on 6,000 digits with outlier exposure on 1,500 non-digits (~30 s)."""
    from digitlab.pipeline import train

    out = tmp_path_factory.mktemp("oe")
    result = train("seed", limit=6000, epochs=3, outlier_exposure=0.5, outlier_images=1500, out=str(out), name="oe")
    return result.run_dir


@pytest.fixture(scope="module")
def predictor(exposed):
    from digitlab.predict.predictor import Predictor

    return Predictor.load(exposed, runtime="keras")


def flagged(r) -> bool:
    return r.no_digit or r.not_digit or r.uncertain


def test_outlier_exposure_learns_digits_and_calibrates(exposed):
    metrics = json.loads((exposed / "metrics.json").read_text())
    history = json.loads((exposed / "history.json").read_text())
    config = json.loads((exposed / "config.json").read_text())
    assert metrics["test_accuracy"] > 0.93
    # the training accuracy counts digits only (not the non-digits mixed into every batch)
    assert history["accuracy"][-1] > 0.9 and abs(history["accuracy"][-1] - history["val_accuracy"][-1]) < 0.05
    assert config["outlier_exposure"] == 0.5 and config["temperature"] is not None
    assert metrics["calibration"]["ece"] < 0.03


def test_held_out_non_digits_score_as_not_digits_and_digits_do_not(predictor, mnist):
    """The not-a-digit score (normalised entropy) separates held-out non-digits (fonts and shapes never
    trained on) from digits. A model trained on digits alone is sure of itself on most non-digits
    (the shipped one scores 0.23 on average on these), so a mean above 0.5 is outlier exposure's doing."""
    from digitlab.data.nondigits import generate
    from digitlab.models.ood import not_digit_score

    def scores(images):
        return not_digit_score([r.probabilities for r in predictor.predict_many(images) if r.probabilities])

    others = scores([item.image for item in generate("heldout", 120, seed=3)])
    digits = scores([Image.fromarray(255 - a).resize((84, 84)) for a in mnist.x_test[:400]])
    assert others.mean() > 0.5 and np.median(others) > 0.6, (others.mean(), np.median(others))
    assert digits.mean() < 0.1 and np.quantile(digits, 0.95) < 0.5, (digits.mean(), np.quantile(digits, 0.95))
    # and the decision, with the thresholds chosen on validation digits, flags few digits
    results = predictor.predict_many([Image.fromarray(255 - a).resize((84, 84)) for a in mnist.x_test[:400]])
    assert np.mean([flagged(r) for r in results]) <= 0.05
    assert np.mean([r.label == y for r, y in zip(results, mnist.y_test[:400])]) > 0.9


@pytest.mark.parametrize("kind", ["square", "hbar", "line3"])
def test_a_solid_shape_a_bar_or_a_line_is_never_a_confident_digit(predictor, kind):
    """Issue 9: a filled square, a bar, a 3-pixel line were answered "1" at 96.5%."""
    for n in (40, 120, 500):
        for dark_on_light in (True, False):
            r = predictor.predict(shape_image(kind, n, dark_on_light))
            assert flagged(r), (kind, n, dark_on_light, r.label, r.confidence)
            assert r.no_digit or r.not_digit or r.confidence < 0.9
