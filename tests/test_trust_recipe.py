"""The training options of issue 9, piece by piece: outlier batches, rendered digits, corruptions."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.config.settings import Config, make_config
from digitlab.errors import ConfigError


def test_recipe_fields_are_off_by_default_and_checked():
    for preset in ("seed", "fast", "strong", "ensemble"):
        c = make_config(preset)
        assert c.outlier_exposure == 0 and c.rendered_digits == 0 and c.corruptions == 0 and c.touching_pairs == 0
        assert c.temperature is None and c.uncertain_below is None and c.not_digit_above is None
    for bad in ({"outlier_exposure": -1.0}, {"corruptions": 1.0}, {"rendered_digits": -5}, {"temperature": 0.0},
                {"uncertain_below": 1.5}, {"not_digit_above": -0.1}, {"outlier_images": 10},
                {"touching_pairs": -1}, {"touching_pairs": 10}):
        with pytest.raises(ConfigError):
            Config(**bad)


def test_outlier_batches_carry_uniform_targets_and_the_weighted_objective():
    from digitlab.models.ood import mix_outliers

    images = np.zeros((8, 28, 28, 1), np.float32)
    labels = np.eye(10, dtype=np.float32)[[0, 1, 2, 3, 4, 5, 6, 7]]
    outliers = np.random.default_rng(0).random((50, 28, 28, 1)).astype(np.float32)
    x, y, w = (np.asarray(t) for t in mix_outliers(images, labels, outliers, 3, seed=1, weight=0.5))
    assert x.shape == (12, 28, 28, 1) and y.shape == (12, 10) and w.shape == (12,)
    np.testing.assert_array_equal(y[:8], labels)
    np.testing.assert_allclose(y[8:], 0.1)
    # each appended image is one of the outliers, possibly mirrored
    for img in x[8:]:
        assert any(np.array_equal(img, o) or np.array_equal(img, o[:, ::-1]) or np.array_equal(img, o[::-1])
                   or np.array_equal(img, o[::-1, ::-1]) for o in outliers)
    # mean(w * loss) = mean digit loss + 0.5 * mean outlier loss
    np.testing.assert_allclose(w[:8].sum() / 12, 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[8:].sum() / 12, 0.5, rtol=1e-6)
    again = mix_outliers(images, labels, outliers, 3, seed=1, weight=0.5)[0]
    np.testing.assert_array_equal(np.asarray(again), x)  # the same batch number draws the same outliers


def test_corruptions_degrade_a_share_and_stay_in_range(mnist):
    from digitlab.models.augment import corrupt_batch

    x = (mnist.x_test[:400, :, :, None] / 255.0).astype(np.float32)
    none = np.asarray(corrupt_batch(x, 0, seed=1, share=0.0))
    np.testing.assert_array_equal(none, x)
    out = np.asarray(corrupt_batch(x, 0, seed=1, share=0.5))
    assert out.min() >= 0 and out.max() <= 1
    changed = np.abs(out - x).reshape(400, -1).max(axis=1) > 1e-6
    assert 0.35 < changed.mean() < 0.65
    np.testing.assert_array_equal(out, np.asarray(corrupt_batch(x, 0, seed=1, share=0.5)))  # seeded
    assert not np.array_equal(out, np.asarray(corrupt_batch(x, 1, seed=1, share=0.5)))  # fresh each batch
    every = np.asarray(corrupt_batch(x, 2, seed=1, share=1.0))
    assert (np.abs(every - x).reshape(400, -1).max(axis=1) > 1e-6).mean() > 0.95


def test_rendered_digits_are_read_back_like_users_files(mnist):
    from digitlab.models.ood import rendered_digits
    from digitlab.preprocess import to_model_input

    x = mnist.x_test[:60]
    inputs, index = rendered_digits(x, 40, seed=0, with_index=True)
    assert inputs.dtype == np.uint8 and inputs.shape[1:] == (28, 28) and 36 <= len(inputs) <= 40
    assert len(set(index.tolist())) == len(index)
    np.testing.assert_array_equal(rendered_digits(x, 40, seed=0), inputs)  # seeded
    # each is still the digit it was drawn from: closer to its own source than to the others on average
    a, b = to_model_input(inputs)[..., 0], to_model_input(x[index])[..., 0]
    own = np.abs(a - b).mean(axis=(1, 2))
    other = np.abs(a[:, None] - b[None]).mean(axis=(2, 3)).mean(axis=1)
    assert (own < other).mean() > 0.9


def _ink_aspects(inputs: np.ndarray) -> np.ndarray:
    out = []
    for a in inputs:
        ys, xs = np.nonzero(a > 60)
        out.append((np.ptp(xs) + 1) / (np.ptp(ys) + 1))
    return np.asarray(out)


def test_touching_pairs_give_the_candidates_number_mode_reads(mnist):
    from digitlab.models.ood import touching_pairs
    from digitlab.predict.predictor import Predictor
    from digitlab.preprocess import find_digit

    x, y = mnist.x_train[:300], mnist.y_train[:300]
    p = touching_pairs(x, y, 40, seed=0)
    assert 36 <= len(p.whole) <= 40 and len(p.cut) == len(p.labels) >= 30 and len(p.fragments) >= 30
    for a in (p.whole, p.fragments, p.cut):
        assert a.dtype == np.uint8 and a.shape[1:] == (28, 28)
    again = touching_pairs(x, y, 40, seed=0, workers=2)  # seeded, and the same on any number of processes
    for f in ("whole", "fragments", "cut", "labels"):
        np.testing.assert_array_equal(getattr(again, f), getattr(p, f))
    assert not np.array_equal(touching_pairs(x, y, 40, seed=1).whole[:10], p.whole[:10])
    # a pair whole is two digits side by side: as wide as high or wider, where single digits are narrow
    singles = np.stack([find_digit(np.kron(a, np.ones((2, 2), np.uint8)))[1] for a in x[:40]])
    assert np.median(_ink_aspects(p.whole)) > 1.2 and np.median(_ink_aspects(singles)) < 0.9
    # the cut pieces carry their digit's label: a model that never saw a cut piece mostly agrees
    probs = Predictor.load(runtime="onnx").probabilities(p.cut)
    assert (probs.argmax(axis=1) == p.labels).mean() > 0.85
