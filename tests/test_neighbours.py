"""The nearest-training-example index: built beside a model, exact per class, tied to its model,
served by POST /api/predict?neighbours=true and `predict --neighbours`."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digitlab.errors import ModelError
from digitlab.files.layout import CONFIG_FILE, EMBEDDING_FILE, METRICS_FILE, MODEL_FILE, NEIGHBOURS_FILE

PER_CLASS = 40  # 400 training images: the index builds in seconds


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A copy of the shipped model (model.keras + config) with a small index of its own."""
    from digitlab.export.neighbours import build_index
    from digitlab.runs.artifacts import pretrained_dir

    folder = tmp_path_factory.mktemp("nb-model")
    for name in (MODEL_FILE, CONFIG_FILE, METRICS_FILE):
        shutil.copy(pretrained_dir() / name, folder / name)
    build_index(folder, per_class=PER_CLASS)
    return folder


def test_training_image_is_its_own_nearest_neighbour(model_dir, mnist):
    from digitlab.predict.neighbours import NeighbourIndex

    index = NeighbourIndex(model_dir)
    assert index.size == 10 * PER_CLASS and index.per_class == PER_CLASS
    with np.load(model_dir / NEIGHBOURS_FILE) as z:
        indices, labels = z["indices"], z["labels"]
        assert np.array_equal(labels, mnist.y_train[indices])  # the labels are the training file's
        assert np.array_equal(z["images"], mnist.x_train[indices])
        norms = np.linalg.norm(z["embeddings"].astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)
    for i in indices[::37]:
        found = index.for_input(mnist.x_train[i], [int(mnist.y_train[i])], k=5)[0]
        assert found.indices[0] == i and found.similarity[0] == pytest.approx(1.0, abs=2e-3)
        assert len(found.indices) == 5 and list(found.similarity) == sorted(found.similarity, reverse=True)
        assert all(mnist.y_train[j] == mnist.y_train[i] for j in found.indices)
        assert np.array_equal(found.images[0], mnist.x_train[i])


def test_nearest_is_exact(model_dir, mnist):
    """The k found are the k of largest cosine similarity among that class, by brute force."""
    from digitlab.predict.neighbours import NeighbourIndex

    index = NeighbourIndex(model_dir)
    with np.load(model_dir / NEIGHBOURS_FILE) as z:
        e, labels, indices = z["embeddings"].astype(np.float32), z["labels"], z["indices"]
    q = index.embed(mnist.x_test[:1])[0]
    for c in (3, 8):
        sims = e[labels == c] @ q
        want = indices[labels == c][np.argsort(-sims)[:5]]
        assert list(index.nearest(q, c, 5).indices) == want.tolist()


def test_index_is_rebuilt_when_the_model_changes(model_dir, tmp_path):
    from digitlab.models.architectures import load_model
    from digitlab.models.training import save_model
    from digitlab.predict.neighbours import NeighbourIndex, ensure_index, index_problem
    from digitlab.runs.artifacts import model_id

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    assert index_problem(folder) is None
    model, _ = load_model(folder / MODEL_FILE)
    weights = model.layers[1].get_weights()
    model.layers[1].set_weights([w * 1.01 for w in weights])  # another model: a new id
    save_model(model, folder / MODEL_FILE)
    problem = index_problem(folder)
    assert problem is not None and "was built for model" in problem
    with pytest.raises(ModelError, match="digitlab neighbours"):
        NeighbourIndex(folder)
    lines: list[str] = []
    ensure_index(folder, per_class=5, log=lines.append)
    assert any("building the neighbour index" in line for line in lines)
    assert index_problem(folder) is None
    with np.load(folder / NEIGHBOURS_FILE) as z:
        assert str(z["model_id"]) == model_id(folder / MODEL_FILE) and len(z["indices"]) == 50
    # A replaced embedding.onnx is caught too.
    (folder / EMBEDDING_FILE).write_bytes((model_dir / EMBEDDING_FILE).read_bytes())
    assert "is not the one" in index_problem(folder)


def test_query_path_imports_no_tensorflow(model_dir, mnist):
    code = ("import sys, numpy as np; from digitlab.predict.neighbours import NeighbourIndex; "
            "from pathlib import Path; " f"i = NeighbourIndex(Path({str(model_dir)!r})); "
            "r = i.for_input(np.zeros((28, 28), np.uint8) + 0, [1, 2, 3]); "
            "assert [n.label for n in r] == [1, 2, 3] and all(len(n.indices) == 5 for n in r); "
            "print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_api_returns_three_rows_of_five(model_dir, mnist):
    from fastapi.testclient import TestClient
    from PIL import Image

    from digitlab.server import create_app

    buffer = io.BytesIO()
    Image.fromarray(mnist.x_test[0]).save(buffer, format="PNG")
    with np.load(model_dir / NEIGHBOURS_FILE) as z:
        label_of = dict(zip(z["indices"].tolist(), z["labels"].tolist()))
    with TestClient(create_app(model=str(model_dir)), base_url="http://localhost") as client:
        r = client.post("/api/predict?neighbours=true", content=buffer.getvalue(), headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        body = r.json()
        rows = body["neighbours"]
        assert [row["label"] for row in rows] == [k for k, _ in body["top3"]]
        assert len(rows) == 3 and all(len(row["indices"]) == len(row["images"]) == 5 for row in rows)
        for row in rows:
            assert all(label_of[i] == row["label"] for i in row["indices"])
            image = Image.open(io.BytesIO(base64.b64decode(row["images"][0])))
            assert image.size == (28, 28)
        plain = client.post("/api/predict", content=buffer.getvalue(), headers={"content-type": "image/png"})
        assert "neighbours" not in plain.json()


def test_api_without_an_index_is_409(model_dir, tmp_path):
    from fastapi.testclient import TestClient

    from digitlab.server import create_app

    folder = tmp_path / "bare"
    folder.mkdir()
    for name in (MODEL_FILE, CONFIG_FILE):
        shutil.copy(model_dir / name, folder / name)
    png = (Path(__file__).parents[1] / "examples" / "seven.jpg").read_bytes()
    with TestClient(create_app(model=str(folder), runtime="keras"), base_url="http://localhost") as client:
        r = client.post("/api/predict?neighbours=true", content=png, headers={"content-type": "image/jpeg"})
    assert r.status_code == 409 and r.json()["error"] == "no neighbour index"
    assert str(tmp_path) not in r.text  # no server path in the answer


def test_predict_cli_writes_a_picture_per_input(model_dir, tmp_path, capsys):
    from PIL import Image

    from digitlab.cli.commands import main

    out = tmp_path / "pics"
    out.mkdir()
    seven = Path(__file__).parents[1] / "examples" / "seven.jpg"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(seven), "--model", str(model_dir), "--neighbours", str(out)])
    assert exit_info.value.code == 0
    picture = Image.open(out / "seven.png")
    assert picture.size[1] >= 3 * 28 * 3  # three rows of enlarged 28x28 images
