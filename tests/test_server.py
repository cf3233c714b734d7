"""The REST API and the page: TestClient (lifespan on), a real uvicorn process, and a schema fuzz."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serving import ServerProcess, assert_json_error, model_arg, png_bytes, user_png

from digitlab.server import create_app

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_arg(tmp_path_factory)


@pytest.fixture(scope="module")
def app(model):
    return create_app(model=model, max_bytes=2 * 1024 * 1024, max_pixels=4_000_000)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    # runs the lifespan: the model is loaded once here; Host "127.0.0.1:8000" passes the default Host check
    with TestClient(app, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def samples(mnist):
    """Ten test digits (indices of the first image of each class) as user-style PNGs."""
    idx = [int(np.flatnonzero(mnist.y_test == d)[0]) for d in range(10)]
    return [(int(mnist.y_test[i]), user_png(mnist.x_test[i])) for i in idx]


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

    png = png_bytes(Image.fromarray(255 - row).resize((row.shape[1] * 3, row.shape[0] * 3)))
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
        r = client.post("/api/predict?include_input=true", content=png_bytes(img), headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["no_digit"] is True and body["label"] is None and body["probabilities"] == []
    r = client.post("/api/predict/number", content=png_bytes(Image.new("L", (500, 200), 255)),
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


def test_model_info_names_the_file_not_its_path(client, app):
    """/api/model gives the model id and file name, never where the model lives on the server."""
    path = app.state.work.predictor.model_path
    r = client.get("/api/model")
    assert r.status_code == 200
    model = r.json()["model"]
    assert model["file"] == Path(path).name and model["file"].startswith("model.")
    assert str(Path(path).parent) not in r.text and "model_path" not in r.text


def test_model_info_is_a_whitelist():
    """A key added to Predictor.info later (a path, a secret) is not published by accident."""
    from fastapi.testclient import TestClient

    predictor = FakePredictor(info={"model_id": "abc123abc123", "model_path": "/srv/secret/dir/model.onnx",
                                    "runtime": "onnx", "threshold": 0.6, "training_dir": "/home/someone/runs/x",
                                    "api_key": "hunter2"})
    with TestClient(create_app(lambda: predictor), base_url=BASE) as c:
        r = c.get("/api/model")
    assert r.status_code == 200, r.text
    assert r.json()["model"] == {"model_id": "abc123abc123", "file": "model.onnx", "preset": None, "test_accuracy": None,
                                 "runtime": "onnx", "threshold": 0.6, "not_digit_above": None, "temperature": None,
                                 "digitlab_version": None, "classes": []}
    assert "/srv" not in r.text and "/home" not in r.text and "hunter2" not in r.text


def test_openapi(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for p in ("/api/predict", "/api/predict/number", "/api/predict/batch", "/api/health", "/api/model"):
        assert p in paths
    body = paths["/api/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "application/octet-stream" in body
    assert "DigitResult" in schema["components"]["schemas"]


def test_docs_pages_load_everything_from_this_server(client):
    """/docs and /redoc name only same-origin URLs (no CDN, no Google fonts), and those assets are served."""
    assets = set()
    for page, needs in (("/docs", ("swagger-ui-bundle", "swagger-ui.css")), ("/redoc", ("redoc",))):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        # ... and the browser may load nothing from elsewhere (ReDoc's bundle links a logo on its CDN).
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "img-src 'self' data:;" in csp and "http" not in csp
        html = r.text
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), f"{page} names another origin"
        urls = (re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
                + re.findall(r"""url:\s*['"]([^'"]+)['"]""", html))
        assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert all(any(n in u for u in urls) for n in needs), (page, urls)
        assets.update(urls)
    for url in assets:
        r = client.get(url)
        assert r.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in r.headers["content-type"] and len(r.content) > 100_000, url
            assert "cdn.jsdelivr" not in r.text and "fonts.googleapis" not in r.text, url
        elif url.endswith(".css"):
            assert "text/css" in r.headers["content-type"] and len(r.content) > 10_000, url


# ------------------------------------------------------------------ bad input


def test_non_image_and_truncated_images(client, samples):
    r = client.post("/api/predict", content=b"GIF89a? certainly not", headers={"Content-Type": "image/gif"})
    assert "not an image" in assert_json_error(r, 415)["detail"]
    truncated = samples[2][1][: len(samples[2][1]) // 2]
    r = client.post("/api/predict", files={"file": ("t.png", truncated, "image/png")})
    assert "truncated" in assert_json_error(r, 415)["detail"]
    r = client.post("/api/predict", content=b"{}", headers={"Content-Type": "application/json"})
    assert_json_error(r, 415)
    r = client.post("/api/predict", content=b"", headers={"Content-Type": "image/png"})
    assert_json_error(r, 422)
    r = client.post("/api/predict", files={"other": ("x.png", samples[0][1], "image/png")})
    assert_json_error(r, 422)
    r = client.post("/api/predict", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code in (400, 422)
    r = client.post("/api/predict?include_input=maybe", content=samples[0][1], headers={"Content-Type": "image/png"})
    assert_json_error(r, 422)
    assert_json_error(client.get("/api/nothing-here"), 404)
    # The server is still fine afterwards.
    assert client.post("/api/predict", content=samples[4][1], headers={"Content-Type": "image/png"}).json()["label"] == 4


def test_pixel_cap(client):
    from PIL import Image

    big = png_bytes(Image.new("L", (2100, 2000), 255))  # 4.2 MP > 4 MP cap; compresses to a few KB
    r = client.post("/api/predict", content=big, headers={"Content-Type": "image/png"})
    assert "too large" in assert_json_error(r, 415)["detail"]


def test_body_cap_on_content_length_and_stream(client):
    big = b"\x89PNG" + b"0" * (2 * 1024 * 1024 + 10)
    r = client.post("/api/predict", content=big, headers={"Content-Type": "image/png"})
    assert "limited" in assert_json_error(r, 413)["detail"]
    r = client.post("/api/predict", files={"file": ("big.png", big, "image/png")})
    assert_json_error(r, 413)

    def chunks():  # no Content-Length: the cap must hold while streaming
        for _ in range(40):
            yield b"0" * 65536

    r = client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert_json_error(r, 413)


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
    assert_json_error(client.get("/static/../server.py"), 404)
    assert_json_error(client.get("/static/secret.txt"), 404)


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

    from digitlab.cli.commands import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            main(["serve", "--port", str(port)])
    assert exc.value.code == 2
    assert "already in use" in capsys.readouterr().err


# ------------------------------------------------------------------ unexpected errors


class FakePredictor:
    """A Predictor stand-in: `prepare` and `finish` fail for sources named in `fail_prepare` /
    `fail_finish` (with a non-digitlab exception, i.e. a bug), else answer a fixed digit."""

    def __init__(self, info=None, fail_prepare=(), fail_finish=(), real=None):
        self.info = info or {"model_id": "fake", "runtime": "fake", "threshold": 0.6}
        self.fail_prepare, self.fail_finish, self.real = set(fail_prepare), set(fail_finish), real

    def prepare(self, image, *, mode="digit", source=None):
        if source in self.fail_prepare or "*" in self.fail_prepare:
            raise RuntimeError(f"bug while preparing {source}")
        return self.real.prepare(image, mode=mode, source=source) if self.real else source

    def finish(self, prepared):
        for p in prepared:
            name = getattr(p, "source", p)
            if name in self.fail_finish or "*" in self.fail_finish:
                raise ZeroDivisionError(f"bug in the model call for {name}")
        if self.real:
            return self.real.finish(prepared)
        from digitlab.predict.predictor import no_digit

        return [no_digit(p) for p in prepared]


def test_an_unexpected_exception_is_a_json_500(samples):
    """A bug anywhere in a request answers 500 with the same JSON shape as every other error."""
    from fastapi.testclient import TestClient

    png = samples[1][1]
    for fake in (FakePredictor(fail_prepare=["*"]), FakePredictor(fail_finish=["*"])):
        with TestClient(create_app(lambda fake=fake: fake), base_url=BASE, raise_server_exceptions=False) as c:
            for path in ("/api/predict", "/api/predict/number", "/api/predict?include_input=true"):
                r = c.post(path, content=png, headers={"Content-Type": "image/png"})
                assert r.headers["content-type"] == "application/json", (path, r.text)
                body = assert_json_error(r, 500)
                assert body["error"] == "internal server error" and "bug" not in r.text  # no internals leak
            assert c.get("/api/health").status_code == 200  # and the server goes on


def test_batch_failure_of_any_kind_is_that_items_error(client, app, samples):
    """One image's bug (while preparing it, or in the model call for it) is that item's error;
    the other images still get their answers; never a 500 for the batch."""
    from fastapi.testclient import TestClient

    real = app.state.work.predictor if app.state.work else None
    assert real is not None
    fake = FakePredictor(info=real.info, fail_prepare=["bad-prepare.png"], fail_finish=["bad-finish.png"], real=real)
    files = [("files", ("a.png", samples[3][1], "image/png")),
             ("files", ("bad-prepare.png", samples[4][1], "image/png")),
             ("files", ("junk.txt", b"no image here", "text/plain")),
             ("files", ("bad-finish.png", samples[5][1], "image/png")),
             ("files", ("b.png", samples[6][1], "image/png"))]
    with TestClient(create_app(lambda: fake), base_url=BASE, raise_server_exceptions=False) as c:
        r = c.post("/api/predict/batch", files=files)
    assert r.status_code == 200, r.text
    items = r.json()["results"]
    assert [i["ok"] for i in items] == [True, False, False, False, True]
    assert items[0]["result"]["label"] == 3 and items[4]["result"]["label"] == 6
    assert items[1]["error"] == items[3]["error"] == "internal server error"
    assert items[2]["error"] == "not a usable image" and "not an image" in items[2]["detail"]


# ------------------------------------------------------------------ Host header (DNS rebinding)


def test_host_header_must_name_this_server(client, model):
    """Bound to loopback, a page on another origin re-pointed to 127.0.0.1 is refused (400 JSON)."""
    for host in ("localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:9", "[::1]:8000", "[::1]", "LOCALHOST:1"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example:8000"):
        r = client.get("/api/health", headers={"Host": host})
        assert "evil.example" in assert_json_error(r, 400)["detail"], host
        r = client.post("/api/predict", content=b"x", headers={"Host": host, "Content-Type": "image/png"})
        assert_json_error(r, 400)
    from fastapi.testclient import TestClient

    extra = create_app(model=model, allowed_hosts=["localhost", "digits.example"])
    with TestClient(extra, base_url="http://digits.example:8000") as c:
        assert c.get("/api/health").status_code == 200
        assert_json_error(c.get("/api/health", headers={"Host": "other.example"}), 400)
    with TestClient(create_app(model=model, allowed_hosts=None), base_url="http://anything.example") as c:
        assert c.get("/api/health").status_code == 200


def test_serve_picks_the_allowed_hosts():
    from digitlab.server.run import _allowed_hosts

    loop = ("localhost", "127.0.0.1", "::1")
    assert _allowed_hosts("127.0.0.1", ()) == loop
    assert _allowed_hosts("::1", ["Digits.Example"]) == loop + ("digits.example",)
    assert _allowed_hosts("127.0.0.1", ["*"]) is None
    assert _allowed_hosts("0.0.0.0", ()) is None  # public: the names it is reached by are unknown
    assert _allowed_hosts("0.0.0.0", ["digits.example"]) == loop + ("digits.example",)


# ------------------------------------------------------------------ fuzzing from the schema


def test_schemathesis_fuzz_no_server_errors(app, client):
    """Every operation, fuzzed from the app's own OpenAPI schema: never a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings

    host = {"Host": "127.0.0.1:8000"}  # as a browser on this machine sends it (the default Host check)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=host)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 5
    failures = []
    for op in ops:
        @settings(max_examples=25, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def fuzz(case):
            resp = case.call(headers=host)
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.path}: {resp.status_code} {resp.text[:200]}")

        fuzz()
    assert not failures, "\n".join(failures[:10])

