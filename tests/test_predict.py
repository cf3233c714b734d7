"""Predictor and `digitlab predict` on user-style images built from MNIST *test* digits."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from digitlab.cli.commands import main
from digitlab.errors import ImageError
from digitlab.predict.predictor import DigitPrediction, NumberPrediction, Predictor

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "digitlab" / "pretrained" / "model.keras"
N = 300  # the first 300 test digits for each kind of image


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """The shipped pretrained model, or (until it ships) a 3-epoch model trained here (~30 s)."""
    if PRETRAINED.is_file():
        return str(PRETRAINED.parent)
    out = tmp_path_factory.mktemp("predict-runs")
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "3", "--out", str(out), "--name", "m"])
    assert info.value.code == 0
    return str(out / "m")


@pytest.fixture(scope="session")
def predictor(model_path):
    return Predictor.load(model_path)


# --------------------------------------------------------------------------- user-style images


def inverted(d, rng):
    return Image.fromarray(255 - d)


def off_centre(d, rng):
    c = np.zeros((120, 160), np.uint8)
    y, x = rng.integers(0, 120 - 28), rng.integers(0, 160 - 28)
    c[y:y + 28, x:x + 28] = d
    return Image.fromarray(255 - c)


def scaled_up(d, rng):
    return Image.fromarray(255 - d).resize((200, 200), Image.Resampling.BICUBIC)


def scaled_down(d, rng):
    small = Image.fromarray(255 - d).resize((14, 14), Image.Resampling.BOX)
    canvas = Image.new("L", (40, 40), 255)
    canvas.paste(small, (13, 9))
    return canvas


def thick(d, rng):
    big = Image.fromarray(d).resize((112, 112), Image.Resampling.BICUBIC).filter(ImageFilter.MaxFilter(7))
    return Image.fromarray(255 - np.asarray(big))


def rgba_alpha_only(d, rng):
    arr = np.zeros((84, 84, 4), np.uint8)
    arr[..., 3] = np.asarray(Image.fromarray(d).resize((84, 84), Image.Resampling.BICUBIC))
    return Image.fromarray(arr)


def jpeg_photo(d, rng):
    """Dark ink on paper under uneven light, sensor noise, a colour cast, saved as JPEG."""
    big = np.asarray(Image.fromarray(d).resize((96, 96), Image.Resampling.BICUBIC), np.float32) / 255
    canvas = np.zeros((160, 160), np.float32)
    canvas[32:128, 32:128] = big
    yy, xx = np.mgrid[:160, :160] / 160
    paper = 0.92 * (0.55 + 0.4 * (0.6 * xx + 0.4 * yy))
    g = paper * (1 - 0.8 * canvas) + rng.normal(0, 0.03, canvas.shape)
    rgb = np.clip(np.stack([g, g * 0.97, g * 0.9], -1) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=70)
    return buf.getvalue()


# Measured on the first 300 test digits. Shipped model (ONNX): 100% on every kind except thick
# strokes 98.7%. A 3-epoch model (the fallback above): inverted 99.7, off-centre 99.3, 200x200 99.7,
# 14x14 99.0, thick 97.3, RGBA alpha 99.7, JPEG photo 99.7. Bars sit below both.
KINDS = {
    "inverted": (inverted, 0.97),
    "off-centre": (off_centre, 0.97),
    "scaled-up-200": (scaled_up, 0.97),
    "scaled-down-14": (scaled_down, 0.97),
    "thick-strokes": (thick, 0.95),
    "rgba-alpha-only": (rgba_alpha_only, 0.97),
    "jpeg-uneven-light-noise": (jpeg_photo, 0.97),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_accuracy_on_user_style_images(predictor, mnist, kind):
    make, bar = KINDS[kind]
    rng = np.random.default_rng(0)
    images = [make(d, rng) for d in mnist.x_test[:N]]
    results = predictor.predict_batch(images)
    labels = np.array([-1 if r.label is None else r.label for r in results])
    accuracy = float((labels == mnist.y_test[:N]).mean())
    print(f"{kind}: {accuracy:.3f}")
    assert accuracy >= bar, f"{kind}: accuracy {accuracy:.3f} < {bar}"


def _number_image(mnist, text, gap=10, scale=3):
    """Digits from the test set pasted in a row, black on white, scaled up."""
    used: dict[int, int] = {}
    picks = []
    for ch in text:
        k = int(ch)
        picks.append(mnist.x_test[np.nonzero(mnist.y_test == k)[0][used.get(k, 0)]])
        used[k] = used.get(k, 0) + 1
    width = 20 + 28 * len(text) + gap * (len(text) - 1)
    canvas = np.zeros((48, width), np.uint8)
    for i, d in enumerate(picks):
        x = 10 + i * (28 + gap)
        canvas[10:38, x:x + 28] = d
    img = Image.fromarray(255 - canvas)
    return img.resize((width * scale, 48 * scale), Image.Resampling.BICUBIC)


@pytest.mark.parametrize("text", ["2024", "317", "90", "1111", "86"])
def test_whole_numbers(predictor, mnist, text):
    img = _number_image(mnist, text)
    result = predictor.predict_number(img)
    assert isinstance(result, NumberPrediction)
    assert result.text == text
    assert len(result.digits) == len(text) and not result.no_digit
    xs = [d.box[0] for d in result.digits]
    assert xs == sorted(xs)
    assert result.confidence == min(d.confidence for d in result.digits)
    json.dumps(result.to_dict(include_input=True))


def test_predict_result_fields(predictor, mnist):
    digit = mnist.x_test[0]
    r = predictor.predict(digit)
    assert isinstance(r, DigitPrediction) and r.label == mnist.y_test[0]
    assert len(r.probabilities) == 10 and abs(sum(r.probabilities) - 1) < 1e-4
    assert r.top3[0] == (r.label, r.confidence) and len(r.top3) == 3
    assert r.model_input.tobytes() == digit.tobytes()  # MNIST input passes through
    d = r.to_dict(include_input=True)
    assert len(d["model_input"]) == 28 and all(len(row) == 28 for row in d["model_input"])
    json.dumps(d)
    assert set(predictor.info) >= {"model_file", "model_id", "preset", "test_accuracy", "runtime",
                                   "digitlab_version", "threshold"}
    assert "/" not in predictor.info["model_file"]  # a name, not a local path: info is shown to API clients
    assert predictor.model_path.is_file()
    assert len(predictor.info["model_id"]) == 12


def test_predict_accepts_paths_bytes_and_arrays(predictor, mnist, tmp_path):
    img = scaled_up(mnist.x_test[1], None)
    path = tmp_path / "one.png"
    img.save(path)
    a = predictor.predict(path)
    for other in (str(path), path.read_bytes(), img, np.asarray(img), np.asarray(img.convert("RGB"))):
        assert predictor.predict(other).probabilities == a.probabilities
    assert a.source == str(path)
    x0, y0, x1, y1 = a.box
    assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 200


def test_blank_image_is_no_digit_not_a_guess(predictor):
    for img in (np.full((80, 80), 255, np.uint8), np.zeros((28, 28), np.uint8)):
        r = predictor.predict(img)
        assert r.no_digit and r.label is None and r.uncertain and r.confidence == 0.0
        n = predictor.predict_number(img)
        assert n.no_digit and n.text == "" and n.digits == ()


def test_bad_image_raises_image_error(predictor, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ImageError, match="bad.png: not an image"):
        predictor.predict(bad)
    with pytest.raises(ImageError):
        predictor.predict_number(b"")


# --------------------------------------------------------------------------- the CLI


def _run(capsys, args):
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture()
def files(tmp_path, mnist):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    scaled_up(mnist.x_test[0], None).save(d / "seven.png")
    inverted(mnist.x_test[1], None).save(d / "sub" / "two.jpg", quality=95)
    _number_image(mnist, "317").save(d / "number.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (d / "empty.png").write_bytes(b"")
    return d


def test_cli_mixed_good_and_bad_files(capsys, files, model_path):
    code, out, err = _run(capsys, ["predict", str(files), "--model", model_path])
    assert code == 1
    assert "Traceback" not in out + err
    assert f"error: {files / 'broken.png'}:" in err and f"error: {files / 'empty.png'}: empty file" in err
    assert "seven.png" in out and "two.jpg" in out and "317" in out and "number (auto" in out
    code, out, err = _run(capsys, ["predict", str(files / "seven.png"), str(files / "missing.png"), "--model", model_path])
    assert code == 1 and "missing.png: no such file" in err and "seven.png" in out


def test_cli_json_csv_and_glob(capsys, files, model_path):
    code, out, _ = _run(capsys, ["predict", str(files / "*.png"), "--model", model_path, "--json"])
    assert code == 1
    records = {Path(r["file"]).name: r for r in json.loads(out)}
    assert set(records) == {"seven.png", "number.png", "broken.png", "empty.png"}
    assert records["seven.png"]["label"] == 7 and records["seven.png"]["kind"] == "digit"
    assert records["number.png"]["text"] == "317" and records["number.png"]["number_mode"] == "auto"
    assert "error" in records["broken.png"]
    code, out, _ = _run(capsys, ["predict", str(files / "seven.png"), str(files / "sub"), "--model", model_path, "--csv"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [Path(r["file"]).name for r in rows] == ["seven.png", "two.jpg"]
    assert rows[0]["prediction"] == "7" and rows[1]["prediction"] == "2"
    code, out, _ = _run(capsys, ["predict", str(files / "seven.png"), "--number", "--model", model_path, "--json"])
    assert code == 0 and json.loads(out)[0]["text"] == "7"


def test_cli_usage_errors(capsys, model_path):
    assert _run(capsys, ["predict", "--model", model_path])[0] == 2
    assert _run(capsys, ["predict", "x.png", "--json", "--csv"])[0] == 2
    code, _, err = _run(capsys, ["predict", "x.png", "--model", "/nonexistent/model"])
    assert code == 2 and "not found" in err


def test_cli_stdin(capsys, files, model_path, monkeypatch):
    data = (files / "seven.png").read_bytes()
    monkeypatch.setattr("sys.stdin", type("S", (), {"buffer": io.BytesIO(data)})())
    code, out, _ = _run(capsys, ["predict", "-", "--model", model_path, "--json"])
    assert code == 0
    (rec,) = json.loads(out)
    assert rec["file"] == "<stdin>" and rec["label"] == 7


def test_cli_annotate_and_show_input(capsys, files, model_path, tmp_path):
    ann, seen = tmp_path / "ann", tmp_path / "seen"
    code, _, _ = _run(capsys, ["predict", str(files / "seven.png"), str(files / "number.png"), "--model", model_path,
                               "--annotate", str(ann), "--show-input", str(seen)])
    assert code == 0
    for name in ("seven.png", "number.png"):
        with Image.open(ann / name) as im:
            im.load()
            assert im.format == "PNG" and im.size == Image.open(files / name).size
    with Image.open(seen / "seven.png") as im:
        assert im.size == (224, 224)
        small = np.asarray(im.convert("L"))[::8, ::8]
    with Image.open(seen / "number.png") as im:
        assert im.size == ((3 * 28 + 2) * 8, 224)
    api = Predictor.load(model_path).predict(files / "seven.png")
    assert small.tobytes() == api.model_input.tobytes()


def test_cli_and_api_give_identical_probabilities(capsys, files, model_path, predictor):
    one = files / "seven.png"
    _, out, _ = _run(capsys, ["predict", str(one), "--model", model_path, "--json"])
    assert json.loads(out)[0]["probabilities"] == list(predictor.predict(one).probabilities)
    # several files: the CLI makes one model call, like predict_batch (same batch -> same bits)
    paths = [one, files / "sub" / "two.jpg"]
    _, out, _ = _run(capsys, ["predict", *map(str, paths), "--model", model_path, "--json"])
    api = predictor.predict_batch(paths)
    assert [r["probabilities"] for r in json.loads(out)] == [list(r.probabilities) for r in api]


# --------------------------------------------------------------------------- hostile inputs (issue 10)


def test_inputs_never_block_or_loop(tmp_path, monkeypatch, mnist):
    from digitlab.predict.inputs import expand_inputs

    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(mnist.x_test[0]).save(d / "sub" / "one.png")
    os.mkfifo(d / "pipe.png")
    (d / "sub" / "loop").symlink_to(d, target_is_directory=True)  # a directory symlink loop
    items = {Path(i.label).name: i for i in expand_inputs([str(d)])}
    assert set(items) == {"one.png", "pipe.png"}  # the loop is not followed; one.png found once
    assert items["pipe.png"].error == "a FIFO, not an image file"
    globbed = expand_inputs([str(d / "**" / "*.png")])
    assert [Path(i.label).name for i in globbed].count("one.png") == 1  # `**` through the loop: one file, once
    assert expand_inputs([str(d / "pipe.png")])[0].error == "a FIFO, not an image file"

    monkeypatch.setattr("sys.stdin", None)
    assert "standard input is closed" in expand_inputs(["-"])[0].error


def test_an_unreadable_directory_is_reported_as_such(tmp_path, monkeypatch):
    from digitlab.predict.inputs import expand_inputs

    locked = tmp_path / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:  # what an unreadable directory does (root would ignore chmod)
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (item,) = expand_inputs([str(locked)])
    assert item.error == "cannot read directory (Permission denied)"


def test_cli_fifo_input_is_an_error_not_a_hang(tmp_path, model_path):
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "digitlab", "predict", str(fifo), "--model", model_path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "a FIFO, not an image file" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_closed_stdin(model_path):
    proc = subprocess.run([sys.executable, "-m", "digitlab", "predict", "-", "--model", model_path],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "empty file" in proc.stderr  # /dev/null: readable, 0 bytes
    # `digitlab predict - <&-`: the process starts with no file descriptor 0 at all.
    closed = subprocess.run([sys.executable, "-m", "digitlab", "predict", "-", "--model", model_path],
                            preexec_fn=lambda: os.close(0), capture_output=True,
                            text=True, timeout=120)
    assert closed.returncode == 1 and "standard input is closed" in closed.stderr, closed.stderr
    assert "Traceback" not in closed.stderr


def test_annotation_keeps_only_a_display_size_copy(predictor, mnist):
    from digitlab.predict.predictor import DISPLAY_SIDE

    big = Image.fromarray(255 - mnist.x_test[0]).resize((6000, 4000), Image.Resampling.BILINEAR)
    (outcome,) = list(predictor.predict_stream([big], keep_image=True))
    assert max(outcome.image.size) == DISPLAY_SIDE and outcome.image_scale == pytest.approx(DISPLAY_SIDE / 6000)
    assert outcome.result.label == 7
    from digitlab.predict.present import annotate_image

    drawn = annotate_image(outcome.image, outcome.result, outcome.image_scale)
    assert drawn.size == outcome.image.size


def test_predict_stream_gives_one_outcome_per_input_in_order(predictor, mnist, tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"d{i}.png"
        Image.fromarray(mnist.x_test[i]).save(p)
        paths.append(p)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    inputs = [*map(str, paths[:2]), str(tmp_path / "bad.png"), *map(str, paths[2:])]
    outcomes = list(predictor.predict_stream(inputs, chunk=2))  # several model calls
    assert [o.source for o in outcomes] == inputs
    assert [o.result.label for o in outcomes if o.result] == list(mnist.y_test[:5])
    assert outcomes[2].result is None and outcomes[2].error.startswith("not an image")
