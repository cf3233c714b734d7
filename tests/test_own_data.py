"""Training on one's own data (`--data SPEC`), and a model whose classes are not digits end to end:
`digitlab data` describes the data, training saves the class names with the model, and predict,
the report, ONNX export and the server all answer with them.

The data is drawn here: three shapes ("bar", "cross", "ring"), jittered, as dark ink on light
paper in PNG/JPEG files of different sizes, one sub-folder per class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CLASSES = ("bar", "cross", "ring")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from digitlab.cli.commands import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def shape(name: str, rng: np.random.Generator, size: int):
    """One hand-drawn-looking shape: black strokes on white, jittered in place, size and width."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    c = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    r = size * rng.uniform(0.25, 0.38)
    w = max(2, int(size * rng.uniform(0.06, 0.1)))
    if name == "bar":
        draw.line([(c[0], c[1] - r), (c[0] + rng.uniform(-0.2, 0.2) * r, c[1] + r)], fill=0, width=w)
    elif name == "cross":
        draw.line([(c[0] - r, c[1] - r), (c[0] + r, c[1] + r)], fill=0, width=w)
        draw.line([(c[0] + r, c[1] - r), (c[0] - r, c[1] + r)], fill=0, width=w)
    else:
        draw.ellipse([c[0] - r, c[1] - r * rng.uniform(0.8, 1.0), c[0] + r, c[1] + r], outline=0, width=w)
    return img


def write_shapes(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = shape(name, rng, int(rng.integers(60, 160)))
            img.save(root / name / f"{i:03d}.{'jpg' if i % 3 == 0 else 'png'}")
    return root


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """`digitlab train --data shapes/ --preset seed`: a 3-class model trained from scratch."""
    from digitlab.cli.commands import main

    tmp = tmp_path_factory.mktemp("shapes")
    data = write_shapes(tmp / "shapes", 60)
    (data / "ring" / "notes.txt").write_text("not an image")
    (data / "cross" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(data), "--preset", "seed", "--epochs", "6", "--batch-size", "16", "--out", str(tmp / "runs"),
              "--name", "shapes"])
    assert info.value.code == 0
    return tmp / "runs" / "shapes", data


def test_data_command_describes_a_folder(shapes_run, capsys):
    _, data = shapes_run
    code, out, err = run_cli(capsys, "data", "--data", str(data))
    assert code == 0, err
    assert out.startswith("OK: 144 training + 36 test images; image folder 'shapes'") and f"files in {data}" in out
    assert "3 classes; checksums not verified" in out
    assert "class         bar  cross   ring" in out and "note: 1 file(s) ignored" in out
    assert "skipped" in out and "broken.png" in out  # the undecodable file is named with its reason


def test_data_command_describes_an_npz_set(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), "y_train": np.arange(40) % 4,
              "x_test": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), "y_test": np.arange(8) % 4}
    np.savez(tmp_path / "own.npz", **{k: v.astype(np.uint8) for k, v in arrays.items()},
             classes=np.array(["north", "east", "south", "west"]))
    code, out, err = run_cli(capsys, "data", "--data", str(tmp_path / "own.npz"))
    assert code == 0, err
    assert out.startswith("OK: 40 training + 8 test images") and "4 classes" in out
    assert "north" in out and "west" in out and "not verified" in out


def test_the_model_keeps_the_class_names(shapes_run):
    run, _ = shapes_run
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert tuple(config["classes"]) == CLASSES and config["data"].endswith("shapes")
    assert set(metrics["per_class"]) == set(CLASSES) and len(metrics["confusion_matrix"]) == 3
    assert metrics["test_accuracy"] >= 0.9  # three shapes are easy: it learned
    assert "image folder" in metrics["data_source"] and metrics["device"].startswith(("CPU", "GPU"))


def test_predict_answers_with_class_names(shapes_run, tmp_path, capsys):
    run, _ = shapes_run
    rng = np.random.default_rng(99)  # shapes it has not seen
    paths = []
    for name in CLASSES:
        paths.append(tmp_path / f"{name}.png")
        shape(name, rng, 120).save(paths[-1])
    code, out, err = run_cli(capsys, "predict", *map(str, paths), "--model", str(run), "--json")
    assert code == 0, err
    answers = json.loads(out)
    answers = answers if isinstance(answers, list) else answers["results"]
    assert [a["name"] for a in answers] == list(CLASSES)
    code, out, err = run_cli(capsys, "predict", *map(str, paths), "--model", str(run), "--csv")
    header, *rows = out.strip().splitlines()
    assert header.endswith("p0,p1,p2,error") and [r.split(",")[2] for r in rows] == list(CLASSES)
    code, out, err = run_cli(capsys, "predict", str(paths[0]), "--model", str(run), "--number")
    assert code == 2 and "number mode needs a digit model" in err


@pytest.mark.slow
def test_export_and_serve_name_the_classes(shapes_run, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from digitlab.predict.predictor import Predictor
    from digitlab.server import create_app

    run, _ = shapes_run
    code, out, err = run_cli(capsys, "export", str(run), "--format", "onnx")
    assert code == 0, err
    meta = json.loads((run / "model.onnx.json").read_text())
    assert meta["labels"] == list(CLASSES) and meta["output"]["shape"] == [None, 3]
    predictor = Predictor.load(str(run), runtime="onnx")
    assert predictor.classes == CLASSES
    img = shape("cross", np.random.default_rng(7), 100)
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    app = create_app(lambda: predictor, corrections=str(tmp_path / "corr"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/model").json()["model"]["classes"] == list(CLASSES)
        answer = c.post("/api/predict", content=buf.getvalue(), headers={"Content-Type": "image/png"}).json()
        assert answer["name"] == "cross" and len(answer["probabilities"]) == 3
        r = c.post("/api/corrections?label=ring", content=buf.getvalue(), headers={"Content-Type": "image/png"})
        assert r.status_code == 201 and r.json()["file"].startswith("ring/")
        assert c.post("/api/corrections?label=7", content=buf.getvalue(),
                      headers={"Content-Type": "image/png"}).status_code == 422
