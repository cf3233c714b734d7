"""`digitlab ensemble`: trained models of different recipes voting as one (`digitlab.combine`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from digitlab.errors import ConfigError


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny runs on the same split with different recipes (one with label smoothing)."""
    from digitlab.pipeline import train

    out = tmp_path_factory.mktemp("runs")
    common = dict(limit=2000, epochs=1, out=str(out))
    a = train("seed", name="plain", **common).run_dir
    b = train("seed", name="smoothed", label_smoothing=0.1, shift=1.0, **common).run_dir
    return out, a, b


@pytest.fixture(scope="module")
def vote(two_runs):
    from digitlab.combine import combine_models

    out, a, b = two_runs
    return combine_models([a, b], name="vote", out=out)


def _raw(model, x):
    from digitlab.models.calibration import predict, without_temperature

    return predict(without_temperature(model), x)


def test_the_vote_is_the_members_mean_calibrated_anew(two_runs, vote, mnist):
    from digitlab.files.atomic import read_json
    from digitlab.models.architectures import load_model
    from digitlab.models.calibration import model_temperature
    from digitlab.preprocess import to_model_input

    _, a, b = two_runs
    x = to_model_input(mnist.x_test)
    members = [load_model(r)[0] for r in (a, b)]
    mean = np.mean([_raw(m, x) for m in members], axis=0)
    ensemble, config = load_model(vote.run_dir)
    np.testing.assert_allclose(_raw(ensemble, x[:500]), mean[:500], rtol=1e-4, atol=1e-6)
    # calibrated on the validation split as a trained run is: its own temperature and thresholds
    assert config.members == 2 and config.temperature == pytest.approx(model_temperature(ensemble))
    assert config.uncertain_below is not None and config.not_digit_above is not None
    assert vote.metrics["calibration_fit"]["n_val"] == 400
    # its test accuracy is the mean vote's (the temperature does not move the top class)
    assert vote.metrics["test_accuracy"] == pytest.approx(float((mean.argmax(1) == mnist.y_test).mean()), abs=1e-6)
    listed = vote.metrics["ensemble"]
    assert [e["test_accuracy"] for e in listed] == [read_json(r / "metrics.json")["test_accuracy"] for r in (a, b)]
    # each member's own config (their recipes differ) and model as it votes, kept in members/<i>/
    kept = [load_model(vote.run_dir / "members" / str(i)) for i in range(2)]
    assert [c.label_smoothing for _, c in kept] == [0.0, 0.1]
    np.testing.assert_allclose(_raw(kept[1][0], x[:64]), _raw(members[1], x[:64]), rtol=1e-5, atol=1e-7)
    assert (vote.run_dir / "report.html").is_file()


def test_the_vote_reads_files_like_any_model(vote, tmp_path, mnist):
    """Exported, predicted through files, indexed for neighbours and explained by Grad-CAM."""
    from PIL import Image

    from digitlab.export.exporter import export_model
    from digitlab.export.neighbours import embedding_model
    from digitlab.models.architectures import load_model
    from digitlab.models.explain import GradientExplainer
    from digitlab.predict.predictor import Predictor
    from digitlab.preprocess import to_model_input

    export_model(vote.run_dir, "onnx")
    predictor = Predictor.load(vote.run_dir, runtime="onnx")
    paths = []
    for i in range(20):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(255 - mnist.x_test[i]).resize((84, 84)).save(paths[-1])
    results = predictor.predict_many([str(p) for p in paths])
    ensemble, _ = load_model(vote.run_dir)
    # what the ONNX runtime answers for each file is the Keras vote on that file's model input
    keras_probs = np.asarray(ensemble(to_model_input(np.stack([r.model_input for r in results]))))
    np.testing.assert_allclose(np.array([r.probabilities for r in results]), keras_probs, atol=1e-4)
    assert sum(r.label == int(t) for r, t in zip(results, mnist.y_test[:20])) >= 10  # a 1-epoch model on 1,600 images
    members = [layer for layer in ensemble.layers if hasattr(layer, "layers")]
    x = to_model_input(mnist.x_test[:32])
    # the index's cosine similarity is the mean of the members'
    embed = embedding_model(ensemble)
    e = np.array(embed(x))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    per_member = []
    for m in members:
        f = np.array(embedding_model(m)(x))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        per_member.append(f @ f.T)
    np.testing.assert_allclose(e @ e.T, np.mean(per_member, axis=0), atol=1e-4)
    # Grad-CAM: the members' mean (their convolutions are not in the ensemble's own graph)
    labels = mnist.y_test[:8]
    heat = GradientExplainer(ensemble).gradcam(x[:8], labels)
    each = [GradientExplainer(m).gradcam(x[:8], labels) for m in members]
    assert heat.shape == (8, 28, 28) and heat.max() > 0
    np.testing.assert_allclose(heat, np.mean(each, axis=0), rtol=1e-4, atol=1e-6)


def test_members_must_share_the_input_and_the_split(two_runs, tmp_path):
    from digitlab.combine import combine_models
    from digitlab.config.settings import Config

    out, a, b = two_runs
    with pytest.raises(ConfigError, match="at least two models"):
        combine_models([a], out=tmp_path)
    other = tmp_path / "other-seed"
    shutil.copytree(b, other)
    Config.load(other).replace(seed=43).save(other)
    # another seed is another validation split: some of its images trained the other member
    with pytest.raises(ConfigError, match="same validation split.*seed 42 vs 43"):
        combine_models([a, other], out=tmp_path)
    Config.load(other).replace(seed=42, scale=0.5).save(other)
    with pytest.raises(ConfigError, match="same input.*scale"):
        combine_models([a, other], out=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("other-seed",)]  # no half-made run left


def test_cli_ensemble_errors_are_one_line(two_runs, capsys):
    from digitlab.cli.commands import main

    out, a, _ = two_runs
    for argv, text in ((["ensemble", str(a), "--out", str(out)], "at least two models"),
                       (["ensemble", str(a), "no-such-run", "--out", str(out)], "no-such-run")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and text in err and "Traceback" not in err
