"""The corrections loop's first half: `corrections.CorrectionsFolder` and POST /api/corrections.

The server keeps a labelled sample (the image as sent and the 28x28 input the model saw) only
when its operator gave it a folder; both files are written atomically, within the folder's
limits, and every bad request is a 4xx JSON error that leaves the folder as it was.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from serving import assert_json_error, model_arg, png_bytes, user_png

from digitlab.data import DIGITS
from digitlab.errors import DigitlabError
from digitlab.server import create_app
from digitlab.server.corrections import INPUTS_DIR, CorrectionError, CorrectionsFolder, FolderFull

BASE = "http://127.0.0.1:8000"


def files_under(root: Path) -> list[str]:
    """Every file below `root` (dot-folders included), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def samples(mnist):
    """The first test digit of each class as a user's PNG (black on white, 112 px)."""
    idx = [int(np.flatnonzero(mnist.y_test == d)[0]) for d in range(10)]
    return {int(mnist.y_test[i]): (user_png(mnist.x_test[i]), mnist.x_test[i]) for i in idx}


# ------------------------------------------------------------------ the folder


def test_folder_saves_the_original_and_its_input(tmp_path, samples):
    png, digit = samples[7]
    folder = CorrectionsFolder(tmp_path / "corr", DIGITS)
    saved = folder.save(png, digit, "7")
    root = tmp_path / "corr"
    assert files_under(root) == sorted([saved.file, saved.input_file])
    assert saved.file.startswith("7/") and saved.input_file.startswith(f"{INPUTS_DIR}/7/")
    assert (root / saved.file).read_bytes() == png  # the original, byte for byte
    from PIL import Image

    with Image.open(root / saved.input_file) as img:
        assert img.size == (28, 28) and img.mode == "L"
        assert np.array_equal(np.asarray(img), digit)
    assert folder.usage() == (1, len(png) + (root / saved.input_file).stat().st_size) == (saved.count, saved.bytes)


def test_folder_refuses_bad_labels_and_keeps_its_limits(tmp_path, samples):
    png, digit = samples[3]
    folder = CorrectionsFolder(tmp_path / "corr", DIGITS, max_count=2)
    for label in ("x", "10", "", "../3", "3/..", ".inputs"):
        with pytest.raises(CorrectionError):
            folder.save(png, digit, label)
    assert files_under(tmp_path / "corr") == []
    folder.save(png, digit, "3")
    folder.save(png, digit, "3")
    with pytest.raises(FolderFull, match="2 samples"):
        folder.save(png, digit, "3")
    assert folder.usage()[0] == 2
    small = CorrectionsFolder(tmp_path / "small", DIGITS, max_bytes=len(png) + 10)
    with pytest.raises(FolderFull, match="MB"):
        small.save(png, digit, "3")
    assert files_under(tmp_path / "small") == []
    with pytest.raises(DigitlabError, match="cannot create"):
        CorrectionsFolder(tmp_path / "no" / "such" / "parent", DIGITS)


def test_a_format_the_trainer_cannot_read_is_kept_as_png(tmp_path, samples):
    from PIL import Image

    _, digit = samples[5]
    img = Image.fromarray(255 - digit)
    buf = io.BytesIO()
    img.save(buf, "PPM")
    saved = CorrectionsFolder(tmp_path, DIGITS).save(buf.getvalue(), digit, "5", image=img)
    assert saved.file.endswith(".png")
    with Image.open(tmp_path / saved.file) as back:
        assert back.format == "PNG" and np.array_equal(np.asarray(back.convert("L")), 255 - digit)


def test_the_trainer_reads_the_folder_and_skips_the_inputs(tmp_path, samples):
    from digitlab.data import load_dataset

    folder = CorrectionsFolder(tmp_path / "corr", DIGITS)
    for d in (1, 7):
        for _ in range(5):
            folder.save(samples[d][0], samples[d][1], str(d))
    data = load_dataset(str(tmp_path / "corr"))
    assert data.classes == ("1", "7")  # the folders that exist; fine-tuning conforms them to the model's
    assert len(data.x_train) + len(data.x_test) == 10 and not data.skipped


# ------------------------------------------------------------------ the endpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_arg(tmp_path_factory)


def client_for(app):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=BASE)


def test_corrections_are_off_without_a_folder(model, samples):
    with client_for(create_app(model=model)) as c:
        assert c.get("/api/model").json()["corrections"] == {"enabled": False}
        r = c.post("/api/corrections?label=7", content=samples[7][0], headers={"Content-Type": "image/png"})
        assert "--corrections" in assert_json_error(r, 403)["detail"]


def test_post_a_correction_saves_both_files(model, samples, tmp_path):
    root = tmp_path / "corr"
    app = create_app(model=model, corrections=str(root), corrections_max=5)
    with client_for(app) as c:
        info = c.get("/api/model").json()
        assert info["model"]["classes"] == list(DIGITS)
        assert info["corrections"] == {"enabled": True, "count": 0, "max_count": 5, "bytes": 0,
                                       "max_bytes": info["corrections"]["max_bytes"]}
        png = samples[1][0]
        r = c.post("/api/corrections?label=7", content=png, headers={"Content-Type": "image/png"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["saved"] is True and body["label"] == "7" and body["count"] == 1 and body["max_count"] == 5
        assert files_under(root) == sorted([body["file"], body["input_file"]])
        assert (root / body["file"]).read_bytes() == png
        # The input saved is the one the prediction path makes (and the response shows it).
        pred = c.post("/api/predict?include_input=true", content=png, headers={"Content-Type": "image/png"}).json()
        assert body["model_input"] == pred["model_input"]
        from PIL import Image

        with Image.open(root / body["input_file"]) as img:
            assert np.asarray(img).tolist() == body["model_input"]
        # Multipart works too, and no server path leaks into the answer.
        r = c.post("/api/corrections", params={"label": "3"}, files={"file": ("mine.png", samples[3][0], "image/png")})
        assert r.status_code == 201 and r.json()["count"] == 2 and str(tmp_path) not in r.text
        assert c.get("/api/model").json()["corrections"]["count"] == 2


def test_bad_corrections_are_4xx_and_save_nothing(model, samples, tmp_path):
    from PIL import Image

    root = tmp_path / "corr"
    app = create_app(model=model, corrections=str(root), corrections_max=1, max_bytes=64 * 1024)
    png = samples[4][0]
    with client_for(app) as c:
        post = lambda url, data: c.post(url, content=data, headers={"Content-Type": "image/png"})  # noqa: E731
        assert "not one of the model's classes" in assert_json_error(post("/api/corrections?label=x", png), 422)["detail"]
        assert_json_error(post("/api/corrections", png), 422)  # no label
        assert_json_error(post("/api/corrections?label=" + "7" * 65, png), 422)
        assert_json_error(post("/api/corrections?label=4", b"GIF89a? not an image"), 415)
        assert_json_error(post("/api/corrections?label=4", png[: len(png) // 2]), 415)  # truncated
        assert_json_error(post("/api/corrections?label=4", b""), 422)
        assert "no digit" in assert_json_error(post("/api/corrections?label=4", png_bytes(Image.new("L", (200, 200), 255))),
                                           422)["detail"]
        assert_json_error(post("/api/corrections?label=4", b"\x89PNG" + b"0" * (64 * 1024 + 1)), 413)
        assert files_under(root) == []
        assert post("/api/corrections?label=4", png).status_code == 201
        assert "limit" in assert_json_error(post("/api/corrections?label=4", png), 409)["detail"]
        assert len(files_under(root)) == 2


def test_a_full_disk_is_a_507_and_leaves_neither_file(model, samples, tmp_path, monkeypatch):
    import errno

    root = tmp_path / "corr"
    real_replace, calls = os.replace, []

    def replace(src, dst):  # the second file of the sample (the original) meets a full disk
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    app = create_app(model=model, corrections=str(root))
    with client_for(app) as c:
        monkeypatch.setattr(os, "replace", replace)
        r = c.post("/api/corrections?label=4", content=samples[4][0], headers={"Content-Type": "image/png"})
        monkeypatch.undo()
        assert "could not write" in assert_json_error(r, 507)["detail"]
        assert len(calls) == 2 and files_under(root) == []  # no temporary file, no orphan input
        assert c.post("/api/corrections?label=4", content=samples[4][0],
                      headers={"Content-Type": "image/png"}).status_code == 201


def test_serve_refuses_a_corrections_folder_it_cannot_create(capsys, tmp_path):
    from serving import free_port

    from digitlab.cli.commands import main

    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", str(free_port()), "--corrections", str(tmp_path / "no" / "such")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: ") and "\n" not in err and "cannot create" in err
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", str(free_port()), "--corrections", str(tmp_path), "--corrections-max", "0"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "must be positive" in err and "\n" not in err
