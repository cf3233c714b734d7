"""The Ray engines on a small local Ray instance (`ray.init(num_cpus=2)`): batch recognition on
Ray Data gives the local Predictor's answers, Ray Serve answers like the plain server; without
Ray, `--engine ray` says how to install it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

N_IMAGES = 200


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray for this module's tests (the engine reuses an instance that is running)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, mnist):
    """200 MNIST test digits as black-on-white PNGs, and one file that is not an image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("ray-inputs")
    for i in range(N_IMAGES):
        Image.fromarray(255 - mnist.x_test[i]).save(folder / f"{i:03d}.png")
    (folder / "broken.png").write_bytes(b"this is not a PNG")
    return folder


def _local_records(folder: Path) -> dict[str, dict]:
    from digitlab.predict.inputs import expand_inputs
    from digitlab.predict.predictor import Predictor
    from digitlab.predict.present import record

    predictor = Predictor.load()
    return {Path(r["file"]).name: r for r in map(record, predictor.predict_stream(expand_inputs([str(folder)]),
                                                                                  mode="auto"))}


@pytest.mark.slow
def test_ray_data_engine_gives_the_local_answers(local_ray, png_folder, tmp_path, mnist):
    from digitlab.predict.ray_engine import predict_with_ray

    out = tmp_path / "rows"
    summary = predict_with_ray(str(png_folder), out, actors=2, batch_size=64)
    assert summary["images"] == N_IMAGES + 1 and summary["errors"] == 1 and summary["format"] == "jsonl"
    rows = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert not list(out.glob(".*")), "a temporary file was left behind"
    ray_rows = {Path(r["file"]).name: r for r in rows}
    local = _local_records(png_folder)
    assert len(rows) == len(ray_rows) == len(local) == N_IMAGES + 1
    assert set(ray_rows["broken.png"]) == {"file", "error"} and "not an image" in ray_rows["broken.png"]["error"]
    assert local["broken.png"]["error"] == ray_rows["broken.png"]["error"]
    for name, want in local.items():
        got = ray_rows[name]
        assert set(got) == set(want), name
        assert got.get("label") == want.get("label") and got.get("text") == want.get("text"), name
        if "probabilities" in want:
            assert np.allclose(got["probabilities"], want["probabilities"], atol=1e-5), name
    labels = np.array([ray_rows[f"{i:03d}.png"].get("label", -1) for i in range(N_IMAGES)])
    assert (labels == mnist.y_test[:N_IMAGES]).mean() > 0.95  # and the model really read them


@pytest.mark.slow
def test_predict_cli_engine_ray_writes_csv(local_ray, png_folder, tmp_path, capsys):
    from digitlab.cli.commands import main
    from digitlab.predict.present import csv_header

    out = tmp_path / "csv-rows"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(png_folder), "--engine", "ray", "--out", str(out), "--csv"])
    assert exit_info.value.code == 1  # one input was not an image, as with the local engine
    assert f"wrote {N_IMAGES + 1} rows (csv)" in capsys.readouterr().out
    lines = [f.read_text().splitlines() for f in out.glob("*.csv")]
    assert lines and all(part[0] == ",".join(csv_header()) for part in lines)
    assert sum(len(part) - 1 for part in lines) == N_IMAGES + 1


def test_engine_ray_without_ray_says_how_to_install(tmp_path):
    # Ray made unimportable in a fresh interpreter, as on an install without the extra.
    code = ("import sys; sys.modules['ray'] = None; from digitlab.cli.commands import main; "
            f"main(['predict', {str(tmp_path)!r}, '--engine', 'ray', '--out', {str(tmp_path / 'out')!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: the Ray engine needs Ray: pip install 'digitlab[ray]'"]


def test_engine_ray_refuses_a_used_out_dir(tmp_path):
    pytest.importorskip("ray")
    from digitlab.errors import ConfigError
    from digitlab.predict.ray_engine import predict_with_ray

    (tmp_path / "old.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="new or empty directory"):
        predict_with_ray(str(tmp_path), tmp_path)


@pytest.mark.slow
def test_ray_serve_answers_like_the_plain_server(local_ray, mnist):
    pytest.importorskip("ray.serve")
    from fastapi.testclient import TestClient
    from ray import serve
    from serving import free_port, user_png

    from digitlab.server import create_app
    from digitlab.server.ray_serve import serve_on_ray
    from digitlab.server.settings import Settings

    png = user_png(mnist.x_test[0])
    with TestClient(create_app(), base_url="http://127.0.0.1:8000") as plain:
        want = plain.post("/api/predict", content=png, headers={"Content-Type": "image/png"}).json()
    port = free_port()
    serve_on_ray(Settings(), replicas=1, host="127.0.0.1", port=port, wait=False)
    try:
        url = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(url + "/api/predict", data=png, headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            got = json.loads(resp.read())
        with urllib.request.urlopen(url + "/readyz", timeout=30) as resp:
            ready = json.loads(resp.read())
    finally:
        serve.shutdown()
    assert got == want and got["label"] == int(mnist.y_test[0])
    assert ready == {"status": "ready"}
