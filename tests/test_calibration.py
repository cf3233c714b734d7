"""Calibration measures and the not-a-digit score, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitlab.models import calibration as cal
from digitlab.models import ood


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fit_recovers_a_known_temperature(true_t):
    """Labels drawn from softmax(z); the model reports softmax(z / true_t). Scaling its log
    probabilities by 1/T gives softmax(z / (true_t * T)), right again at T = 1 / true_t."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (20_000, 10))
    y = np.array([rng.choice(10, p=p) for p in _softmax(z)])
    t = cal.fit_temperature(_softmax(z / true_t), y)
    assert t == pytest.approx(1 / true_t, rel=0.04)
    # the fitted T minimises the NLL: a little either way is worse
    reported = _softmax(z / true_t)
    best = cal.nll(cal.apply_temperature(reported, t), y)
    assert best < cal.nll(cal.apply_temperature(reported, t * 1.1), y)
    assert best < cal.nll(cal.apply_temperature(reported, t / 1.1), y)


def test_temperature_keeps_the_answer_and_one_is_identity():
    p = _softmax(np.random.default_rng(1).normal(0, 2, (50, 10)))
    np.testing.assert_allclose(cal.apply_temperature(p, 1.0), p, atol=1e-12)
    for t in (0.3, 3.0):
        q = cal.apply_temperature(p, t)
        np.testing.assert_array_equal(q.argmax(1), p.argmax(1))
        np.testing.assert_allclose(q.sum(1), 1.0)
    assert (cal.apply_temperature(p, 0.3).max(1) > p.max(1)).all()  # T < 1 sharpens


# Four answers, worked by hand:
#   conf 0.90 right, conf 0.90 wrong, conf 0.60 right, conf 0.96 right.
HAND_P = np.array([
    [0.90, 0.10, 0, 0, 0, 0, 0, 0, 0, 0],
    [0.90, 0.10, 0, 0, 0, 0, 0, 0, 0, 0],
    [0.60, 0.40, 0, 0, 0, 0, 0, 0, 0, 0],
    [0.02, 0.96, 0.02, 0, 0, 0, 0, 0, 0, 0],
])
HAND_Y = np.array([0, 1, 0, 1])


def test_ece_by_hand():
    # 15 bins of width 1/15: 0.90 and 0.90 fall in bin 13 (0.8667, 0.9333], 0.60 in bin 8 (0.5333, 0.6],
    # 0.96 in bin 14 (0.9333, 1]. Bin 13: accuracy 1/2 vs confidence 0.9 -> gap 0.4, weight 2/4;
    # bin 8: accuracy 1 vs 0.6 -> 0.4, weight 1/4; bin 14: 1 vs 0.96 -> 0.04, weight 1/4.
    expected = 0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.04
    assert cal.expected_calibration_error(HAND_P, HAND_Y) == pytest.approx(expected)
    r = cal.reliability(HAND_P, HAND_Y)
    assert r["count"][13] == 2 and r["count"][8] == 1 and r["count"][14] == 1 and sum(r["count"]) == 4
    assert r["accuracy"][13] == 0.5 and r["confidence"][8] == pytest.approx(0.6)
    # a confidence exactly on an edge (0.6 = 9/15) belongs to the bin it closes
    assert cal.reliability(np.array([[0.6, 0.4]]), [0])["count"][8] == 1


def test_nll_by_hand():
    expected = -(math.log(0.9) + math.log(0.1) + math.log(0.6) + math.log(0.96)) / 4
    assert cal.nll(HAND_P, HAND_Y) == pytest.approx(expected)
    assert math.isfinite(cal.nll(np.array([[1.0, 0.0]]), [1]))  # a zero probability is clipped, not -inf


def test_risk_coverage_by_hand():
    # by falling confidence: 0.96 right, 0.90 right, 0.90 wrong (ties keep input order), 0.60 right
    cov, acc, conf = cal.risk_coverage(HAND_P, HAND_Y)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(acc, [1.0, 1.0, 2 / 3, 3 / 4])
    np.testing.assert_allclose(conf, [0.96, 0.9, 0.9, 0.6])
    assert cal.accuracy_at_coverage(HAND_P, HAND_Y, 0.5) == 1.0
    assert cal.accuracy_at_coverage(HAND_P, HAND_Y, 0.51) == pytest.approx(2 / 3)  # ceil(0.51 * 4) = 3 kept
    assert cal.accuracy_at_coverage(HAND_P, HAND_Y, 1.0) == 0.75
    assert cal.area_under_risk_coverage(HAND_P, HAND_Y) == pytest.approx((0 + 0 + 1 / 3 + 1 / 4) / 4)
    m = cal.calibration_metrics(HAND_P, HAND_Y)
    assert set(m["accuracy_at_coverage"]) == {"0.95", "0.98", "0.99"} and m["ece_bins"] == 15


def test_thresholds_keep_their_promises():
    rng = np.random.default_rng(2)
    p = _softmax(rng.normal(0, 4, (4000, 10)))
    t = ood.uncertain_threshold(p, coverage=0.9)
    assert (p.max(1) >= t).mean() == pytest.approx(0.9, abs=1 / 4000)
    n = ood.not_digit_threshold(p, fpr=0.01)
    assert (ood.not_digit_score(p) > n).mean() <= 0.01
    assert (ood.not_digit_score(p) >= n).mean() > 0.009


def test_not_digit_score():
    uniform = np.full((1, 10), 0.1)
    onehot = np.eye(10)[[3]]
    tie = np.zeros((1, 10))
    tie[0, [4, 9]] = 0.5
    np.testing.assert_allclose(ood.not_digit_score(np.concatenate([uniform, onehot, tie])),
                               [1.0, 0.0, math.log(2) / math.log(10)])


def test_no_mnist_digit_is_near_empty_and_a_blank_input_is(mnist):
    """MIN_INK is half the least ink of any MNIST training digit: none of the 70,000 is below it."""
    assert not ood.near_empty(mnist.x_train).any() and not ood.near_empty(mnist.x_test).any()
    assert ood.ink(mnist.x_train).min() > 1.9 * ood.MIN_INK
    blank = np.zeros((3, 28, 28), np.uint8)
    blank[1, 5, 5] = 255  # one stray pixel
    blank[2, 10, 4:13] = 255  # a 9-pixel scratch
    assert ood.near_empty(blank).all()


def test_the_layer_computes_what_the_numpy_code_does():
    """TemperatureLayer == apply_temperature, on a softmax Dense model (split into logits + layer) and on
    one ending in an average of probabilities (log p); calibrating twice keeps one layer; T = 1 undoes it."""
    import keras

    from digitlab.config.settings import make_config
    from digitlab.models.architectures import average_model, build_model

    x = np.random.default_rng(3).random((16, 28, 28, 1)).astype(np.float32)
    single = build_model(make_config("seed"))
    pair = average_model([build_model(make_config("seed")), build_model(make_config("seed"))])
    for model, source in ((single, "logits"), (pair, "probabilities")):
        base = np.asarray(model(x))
        once = cal.with_temperature(model, 2.0)
        assert once.layers[-1].source == source
        np.testing.assert_allclose(np.asarray(once(x)), cal.apply_temperature(base, 2.0), atol=1e-6)
        twice = cal.with_temperature(once, 0.5)
        assert cal.model_temperature(twice) == 0.5
        assert sum(isinstance(layer, cal.temperature_layer()) for layer in twice.layers) == 1
        np.testing.assert_allclose(np.asarray(twice(x)), cal.apply_temperature(base, 0.5), atol=1e-6)
        np.testing.assert_allclose(np.asarray(cal.without_temperature(twice)(x)), base, atol=1e-6)
        assert twice.count_params() == model.count_params()  # no weights added
    assert not any(isinstance(layer, keras.layers.Dense) and layer.get_config()["activation"] == "softmax"
                   for layer in cal.with_temperature(single, 2.0).layers)
