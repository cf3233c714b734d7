"""Comparing two runs: the exact McNemar test, and `compare_runs` / `digitlab compare` on two tiny real runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from digitlab.errors import ConfigError
from digitlab.models.significance import mcnemar_exact, paired_counts


def test_mcnemar_matches_hand_computed_case():
    # b=10, c=2: p = 2 * sum_{k<=2} C(12, k) / 2^12 = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096, abs=1e-15)
    assert mcnemar_exact(10, 2) == pytest.approx(0.0385742, abs=1e-7)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)  # two-sided: symmetric


def test_mcnemar_edges_and_scipy_agreement():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(7, 7) == 1.0  # the doubled tail passes 1 and is capped
    assert mcnemar_exact(0, 1) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    stats = pytest.importorskip("scipy.stats")
    for b, c in ((30, 18), (3, 0), (120, 95), (1, 40)):
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    # Large counts keep full precision (integers until the one division): far from 0 and 1.
    assert 0.0 < mcnemar_exact(5000, 4800) < 0.05
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_paired_counts():
    y = np.array([0, 1, 2, 3, 4, 5])
    a = np.array([0, 1, 2, 9, 9, 5])  # right, right, right, wrong, wrong, right
    b = np.array([0, 7, 2, 3, 8, 5])  # right, wrong, right, right, wrong, right
    c = paired_counts(y, a, b)
    assert (c.both_right, c.only_a, c.only_b, c.both_wrong, c.disagree, c.n) == (3, 1, 1, 1, 3, 6)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two real seed runs on 2,000 images, 1 epoch, different seeds (about 10 s each)."""
    from digitlab.pipeline import train

    out = tmp_path_factory.mktemp("cmp-runs")
    a = train("seed", limit=2000, epochs=1, out=str(out), name="a").run_dir
    b = train("seed", limit=2000, epochs=1, out=str(out), name="b", seed=7).run_dir
    return out, a, b


def _keras_predictions(run_dir, x_test):
    """The run's test predictions by another path: the Keras model and models.evaluate."""
    from digitlab.models.architectures import load_model
    from digitlab.models.evaluate import predict_proba

    model, config = load_model(run_dir)
    return predict_proba(model, x_test, scale=config.scale).argmax(axis=1)


def test_compare_two_tiny_runs(two_runs, mnist, tmp_path):
    from digitlab.report.compare import compare_runs

    runs, a_dir, b_dir = two_runs
    c = compare_runs("a", "b", runs_dir=runs, out=tmp_path / "cmp")
    pa, pb = _keras_predictions(a_dir, mnist.x_test), _keras_predictions(b_dir, mnist.x_test)
    n_differ = int((pa != pb).sum())
    assert n_differ > 0  # one epoch on 2,000 images: two seeds do not agree everywhere
    # The paired table is consistent and counts the differing predictions (a few argmax ties may flip).
    assert abs(c.counts.disagree - n_differ) <= 2 and len(c.disagreements) == c.counts.disagree
    assert c.counts.n == len(mnist.y_test) == 10_000
    y = mnist.y_test
    assert c.counts.only_a == int(((c.a.pred == y) & (c.b.pred != y)).sum())
    assert c.p_value == mcnemar_exact(c.counts.only_a, c.counts.only_b)
    # Each side's accuracy is its run's own test accuracy (same model, same test set).
    for side, run_dir in ((c.a, a_dir), (c.b, b_dir)):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert side.accuracy == pytest.approx(metrics["accuracy_score"], abs=3e-4)
        assert set(side.f1) == set("0123456789") and 0.0 < side.macro_f1 < 1.0
        assert 0.0 <= side.ece < 1.0 and side.model_bytes > 10_000 and side.params == metrics["params"]["total"]
    doc = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert doc["paired"]["disagree"] == len(doc["disagreements"]) == c.counts.disagree
    first = doc["disagreements"][0]
    assert first["a"] != first["b"] and first["true"] == int(y[first["index"]])
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "McNemar" in html and "data:image/png;base64," in html
    assert (tmp_path / "cmp" / "disagreements.png").read_bytes().startswith(b"\x89PNG")


def test_compare_cli(two_runs, tmp_path, capsys):
    from digitlab.cli.commands import main

    runs, _, _ = two_runs
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "a", "b", "--runs-dir", str(runs)])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "McNemar p =" in out and "disagree on" in out


def test_different_test_sets_are_refused(two_runs, tmp_path, capsys):
    """A run whose data is another test set (same classes) cannot be paired: one clear line, exit 2."""
    from digitlab.cli.commands import main

    runs, _, b_dir = two_runs
    rng = np.random.default_rng(0)
    data = tmp_path / "other.npz"
    np.savez(data, x_train=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8), y_train=np.arange(50) % 10,
             x_test=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8), y_test=np.arange(20) % 10)
    other = runs / "other"
    shutil.copytree(b_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["data"] = f"npz:{data}"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "a", "other", "--runs-dir", str(runs)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: a and other are tested on different test sets") and "\n" not in err
    from digitlab.report.compare import compare_runs

    with pytest.raises(ConfigError):
        compare_runs("a", "other", runs_dir=runs)
