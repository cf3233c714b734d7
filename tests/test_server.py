"""The REST API and the page: TestClient (lifespan on), a real uvicorn process, and a schema fuzz."""

from __future__ import annotations

import io
import json
import re
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the 'serve' extra: pip install 'digitlab[serve]'")

from serving import ServerProcess, model_arg, user_png  # noqa: E402

from digitlab.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_arg(tmp_path_factory)


@pytest.fixture(scope="module")
def app(model):
    return create_app(model=model, max_bytes=2 * 1024 * 1024, max_pixels=4_000_000)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:  # runs the lifespan: the model is loaded once here
        yield c


@pytest.fixture(scope="module")
def samples(mnist):
    """Ten test digits (indices of the first image of each class) as user-style PNGs."""
    idx = [int(np.flatnonzero(mnist.y_test == d)[0]) for d in range(10)]
    return [(int(mnist.y_test[i]), user_png(mnist.x_test[i])) for i in idx]


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _assert_error(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"error", "detail"} and body["error"], body
    return body


# ------------------------------------------------------------------ predictions


def test_predict_multipart_reads_digits(client, samples):
    correct = 0
    for label, png in samples:
        r = client.post("/api/predict", files={"file": (f"{label}.png", png, "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["no_digit"] is False and body["label"] in range(10)
        assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-3
        assert body["confidence"] == pytest.approx(max(body["probabilities"]), abs=1e-6)
        assert body.get("model_input") is None  # only on request
        correct += body["label"] == label
    assert correct >= 9, f"only {correct}/10 MNIST test digits read correctly"


def test_predict_raw_body_with_model_input(client, samples):
    label, png = samples[7]
    for ctype in ("image/png", "application/octet-stream"):
        r = client.post("/api/predict?include_input=true", content=png, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] == label
        x = np.array(body["model_input"])
        assert x.shape == (28, 28) and x.min() >= 0 and x.max() <= 255 and x.max() > 128


def test_predict_number(client, mnist):
    digits = [mnist.x_test[i] for i in (0, 1, 2)]  # 7, 2, 1
    expected = "".join(str(int(mnist.y_test[i])) for i in (0, 1, 2))
    row = np.concatenate([np.pad(d, ((8, 8), (6, 6))) for d in digits], axis=1)
    from PIL import Image

    png = _png(Image.fromarray(255 - row).resize((row.shape[1] * 3, row.shape[0] * 3)))
    r = client.post("/api/predict/number", files={"file": ("n.png", png, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == expected
    assert len(body["digits"]) == 3 and all(0 <= d["confidence"] <= 1 for d in body["digits"])


def test_predict_batch_with_a_bad_item(client, samples):
    files = [("files", ("a.png", samples[3][1], "image/png")),
             ("files", ("notes.txt", b"not an image at all", "text/plain")),
             ("files", ("b.png", samples[5][1], "image/png"))]
    r = client.post("/api/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3
    ok, bad, ok2 = body["results"]
    assert ok["ok"] and ok["filename"] == "a.png" and not bad["ok"] and ok2["ok"]
    assert "not an image" in bad["detail"] and bad["result"] is None
    # The same answers as one at a time (one model call for the batch).
    for item, (_, png) in ((ok, samples[3]), (ok2, samples[5])):
        single = client.post("/api/predict", content=png, headers={"Content-Type": "image/png"}).json()
        assert item["result"]["label"] == single["label"]
        assert item["result"]["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)


def test_empty_canvas_is_no_digit(client):
    from PIL import Image

    for img in (Image.new("RGB", (280, 280), "white"), Image.new("RGBA", (280, 280), (0, 0, 0, 0))):
        r = client.post("/api/predict?include_input=true", content=_png(img), headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["no_digit"] is True and body["label"] is None and body["probabilities"] == []
    r = client.post("/api/predict/number", content=_png(Image.new("L", (500, 200), 255)),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.json()["no_digit"] is True and r.json()["text"] == ""


# ------------------------------------------------------------------ info


def test_health_and_model_info(client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["version"] and h["runtime"]
    assert h["model_id"] and h["preset"]
    m = client.get("/api/model").json()
    assert m["model"]["model_id"] == h["model_id"]
    assert m["limits"]["max_bytes"] == 2 * 1024 * 1024 and m["limits"]["max_pixels"] == 4_000_000
    assert "28" in m["preprocessing"]["model_input"]


def test_openapi_and_docs(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for p in ("/api/predict", "/api/predict/number", "/api/predict/batch", "/api/health", "/api/model"):
        assert p in paths
    body = paths["/api/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "application/octet-stream" in body
    assert "DigitResult" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


# ------------------------------------------------------------------ bad input


def test_non_image_and_truncated_images(client, samples):
    r = client.post("/api/predict", content=b"GIF89a? certainly not", headers={"Content-Type": "image/gif"})
    assert "not an image" in _assert_error(r, 415)["detail"]
    truncated = samples[2][1][: len(samples[2][1]) // 2]
    r = client.post("/api/predict", files={"file": ("t.png", truncated, "image/png")})
    assert "truncated" in _assert_error(r, 415)["detail"]
    r = client.post("/api/predict", content=b"{}", headers={"Content-Type": "application/json"})
    _assert_error(r, 415)
    r = client.post("/api/predict", content=b"", headers={"Content-Type": "image/png"})
    _assert_error(r, 422)
    r = client.post("/api/predict", files={"other": ("x.png", samples[0][1], "image/png")})
    _assert_error(r, 422)
    r = client.post("/api/predict", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code in (400, 422)
    r = client.post("/api/predict?include_input=maybe", content=samples[0][1], headers={"Content-Type": "image/png"})
    _assert_error(r, 422)
    _assert_error(client.get("/api/nothing-here"), 404)
    # The server is still fine afterwards.
    assert client.post("/api/predict", content=samples[4][1], headers={"Content-Type": "image/png"}).json()["label"] == 4


def test_pixel_cap(client):
    from PIL import Image

    big = _png(Image.new("L", (2100, 2000), 255))  # 4.2 MP > 4 MP cap; compresses to a few KB
    r = client.post("/api/predict", content=big, headers={"Content-Type": "image/png"})
    assert "too large" in _assert_error(r, 415)["detail"]


def test_body_cap_on_content_length_and_stream(client):
    big = b"\x89PNG" + b"0" * (2 * 1024 * 1024 + 10)
    r = client.post("/api/predict", content=big, headers={"Content-Type": "image/png"})
    assert "limited" in _assert_error(r, 413)["detail"]
    r = client.post("/api/predict", files={"file": ("big.png", big, "image/png")})
    _assert_error(r, 413)

    def chunks():  # no Content-Length: the cap must hold while streaming
        for _ in range(40):
            yield b"0" * 65536

    r = client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    _assert_error(r, 413)


# ------------------------------------------------------------------ the page


def test_page_and_static_files_are_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert '<canvas id="canvas"' in html and 'aria-live="polite"' in html
    for name, ctype in (("app.js", "javascript"), ("app.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and ctype in r.headers["content-type"]
        assert not re.search(r"https?://", r.text), f"{name} refers to an external URL"
        assert client.get(f"/static/{name}", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "the page loads something from elsewhere"
    _assert_error(client.get("/static/../server.py"), 404)
    _assert_error(client.get("/static/secret.txt"), 404)


# ------------------------------------------------------------------ a real server


@pytest.mark.slow
def test_real_uvicorn_process(model, samples):
    server = ServerProcess(model)
    try:
        with urllib.request.urlopen(server.url + "/api/health", timeout=10) as resp:
            assert json.load(resp)["status"] == "ok"
        label, png = samples[9]
        req = urllib.request.Request(server.url + "/api/predict", data=png, method="POST",
                                     headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.load(resp)["label"] == label
        with urllib.request.urlopen(server.url + "/", timeout=10) as resp:
            assert b"<canvas" in resp.read()
    finally:
        server.stop()


def test_serve_refuses_a_busy_port(capsys):
    import socket

    from digitlab.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            main(["serve", "--port", str(port)])
    assert exc.value.code == 2
    assert "already in use" in capsys.readouterr().err


def test_raw_body_fast_path_matches_the_routes(client, samples):
    """The ASGI fast path (raw body, no query) answers byte for byte like the FastAPI routes
    (reached with an explicit query string), errors included."""
    png = samples[3][1]
    for path in ("/api/predict", "/api/predict/number"):
        for body, ctype in ((png, "image/png"), (png, "application/octet-stream"), (b"not an image", "image/png"),
                            (b"", "image/png")):
            fast = client.post(path, content=body, headers={"Content-Type": ctype})
            slow = client.post(path + "?include_input=false", content=body, headers={"Content-Type": ctype})
            assert fast.status_code == slow.status_code, (path, ctype, fast.text, slow.text)
            assert fast.content == slow.content, (path, ctype)
            assert fast.headers["content-type"] == slow.headers["content-type"]
    ok = client.post("/api/predict", content=png, headers={"Content-Type": "image/png"})
    assert ok.status_code == 200 and ok.json()["label"] == 3, ok.text
    _assert_error(client.post("/api/predict", content=png, headers={"Content-Type": "text/plain"}), 415)


# ------------------------------------------------------------------ fuzzing from the schema


def test_schemathesis_fuzz_no_server_errors(app, client):
    """Every operation, fuzzed from the app's own OpenAPI schema: never a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 5
    failures = []
    for op in ops:
        @settings(max_examples=25, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def fuzz(case):
            resp = case.call()
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.path}: {resp.status_code} {resp.text[:200]}")

        fuzz()
    assert not failures, "\n".join(failures[:10])

