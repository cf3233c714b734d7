"""Bounded resources: connections, slow clients and memory.

The connection tests run against a real `digitlab serve` process (uvicorn), since
what they check happens below the ASGI app: raw sockets open connections, trickle
headers or bodies, and read what the server answers.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from serving import ServerProcess, model_arg

LIMIT = 20  # --limit-concurrency of the test server
TIMEOUT = 1.0  # its header, body and keep-alive timeouts, seconds
SLACK = 3.0  # scheduling slack on a busy 2-core machine
HAS_PROC = Path("/proc/self/fd").is_dir()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(model_arg(tmp_path_factory),
                        extra=["--limit-concurrency", str(LIMIT), "--timeout-headers", str(TIMEOUT),
                               "--timeout-body", str(TIMEOUT), "--timeout-keep-alive", str(TIMEOUT)])
    yield srv
    srv.stop()


def connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(sock: socket.socket, timeout: float = TIMEOUT + SLACK) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(timeout)
    t0 = time.monotonic()
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data, time.monotonic() - t0


def json_error(raw: bytes, status: int) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), raw[:300]
    assert b"content-type: application/json" in head.lower(), head
    answer = json.loads(body)
    assert set(answer) == {"error", "detail"} and answer["error"], answer
    return answer


def health_ok(server, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.url + "/api/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------ connections


@pytest.mark.slow
def test_a_connection_flood_is_capped_and_then_shed(server):
    """Half-open connections cannot pile up: past the cap a new one gets 503 JSON and is closed
    at once (its file descriptor freed), and the ones that never send anything are closed after
    the header timeout, after which the server answers again."""
    pid = server.proc.pid
    before = len(os.listdir(f"/proc/{pid}/fd")) if HAS_PROC else 0
    socks = []
    try:
        for _ in range(10 * LIMIT):
            socks.append(connect(server))
        time.sleep(0.3)
        if HAS_PROC:
            held = len(os.listdir(f"/proc/{pid}/fd")) - before
            assert held <= LIMIT + 2, f"{held} descriptors held for {len(socks)} connections"
        answer, took = read_all(socks[-1])
        assert "connections" in json_error(answer, 503)["detail"] and took < SLACK
        silent, took = read_all(socks[0])  # opened first, never used: closed without a word
        assert silent == b"" and TIMEOUT * 0.5 < took < TIMEOUT + SLACK
    finally:
        for s in socks:
            s.close()
    assert health_ok(server, within=TIMEOUT + SLACK)


@pytest.mark.slow
def test_slow_headers_are_cut_off(server):
    """A slow-loris client trickling its headers is answered 408 and closed."""
    s = connect(server)
    try:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < TIMEOUT + SLACK:
                s.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.1)
        except OSError:
            pass  # closed by the server
        answer, _ = read_all(s, timeout=1)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert "headers" in json_error(answer, 408)["detail"]
    assert took < TIMEOUT + SLACK


@pytest.mark.slow
def test_slow_body_is_cut_off(server):
    s = connect(server)
    try:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 5000\r\n\r\n\x89PNG")
        answer, took = read_all(s)
    finally:
        s.close()
    assert "body" in json_error(answer, 408)["detail"]
    assert TIMEOUT * 0.5 < took < TIMEOUT + SLACK


@pytest.mark.slow
def test_oversized_headers_and_malformed_http_are_json_errors(server):
    s = connect(server)
    try:
        try:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        except OSError:
            pass
        answer, _ = read_all(s)
    finally:
        s.close()
    json_error(answer, 431)
    s = connect(server)
    try:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer, _ = read_all(s)
    finally:
        s.close()
    json_error(answer, 400)


@pytest.mark.slow
def test_kept_alive_connection_still_serves_several_requests(server):
    """The timeouts leave normal clients alone: three requests on one connection, with pauses
    shorter than the keep-alive timeout but adding up to more than the header timeout."""
    s = connect(server)
    try:
        f = s.makefile("rb")
        s.settimeout(5)
        for _ in range(3):
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status = f.readline()
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert status.startswith(b"HTTP/1.1 200"), status
            assert json.loads(f.read(length))["status"] == "ok"
            time.sleep(TIMEOUT * 0.6)
    finally:
        s.close()


# ------------------------------------------------------------------ serve() option checks


@pytest.mark.parametrize("option, value", [
    ("--timeout-headers", "nan"), ("--timeout-headers", "0"), ("--timeout-body", "-1"), ("--timeout-body", "inf"),
    ("--timeout-keep-alive", "1e9"), ("--limit-concurrency", "0"), ("--limit-concurrency", "100000000000"),
    ("--workers", "0"), ("--workers", "100000"), ("--allowed-host", "http://evil.example/"),
])
def test_serve_refuses_bad_options(option, value, capsys, monkeypatch):
    import uvicorn

    from digitlab.cli.commands import main

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("started serving despite a bad option"))
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--port", "0", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1, err


# ------------------------------------------------------------------ memory


def _png(mode: str, side: int) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new(mode, (side, side), (255,) * len(mode))
    ImageDraw.Draw(img).line((side * 0.45, side * 0.2, side * 0.55, side * 0.8), fill=(0,) * len(mode), width=side // 25)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _peak_above_idle(send) -> tuple[float, float, object]:
    """(peak, after) RSS above idle in MiB while `send()` runs; the kernel's high-water mark
    (reset through /proc/self/clear_refs), so no short peak is missed."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    idle = _status_mib("VmRSS")
    result = send()
    return _status_mib("VmHWM") - idle, _status_mib("VmRSS") - idle, result


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_a_batch_holds_one_decoded_image_at_a_time(tmp_path_factory):
    """A batch of large images costs about what one of them costs, not the sum (the images
    used to be decoded all at once: 16 x 25 MP -> 2 GB), and the memory is given back."""
    from fastapi.testclient import TestClient

    from digitlab.server import create_app

    side, n = 2000, 12  # RGBA 4 MP: 16 MB decoded each; 12 of them held at once would be +190 MB
    png = _png("RGBA", side)
    app = create_app(model=model_arg(tmp_path_factory), max_pixels=side * side)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        c.post("/api/predict", content=png, headers={"Content-Type": "image/png"})  # warm-up
        one, _, r1 = _peak_above_idle(lambda: c.post("/api/predict", content=png, headers={"Content-Type": "image/png"}))
        batch, after, r2 = _peak_above_idle(
            lambda: c.post("/api/predict/batch", files=[("files", (f"{i}.png", png, "image/png")) for i in range(n)]))
    assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text[:300])
    assert all(item["ok"] for item in r2.json()["results"])
    decoded = side * side * 4 / 2**20
    assert batch < one + 2 * decoded, f"batch of {n}: +{batch:.0f} MiB, one image: +{one:.0f} MiB"
    assert after < 2 * decoded, f"+{after:.0f} MiB still held after the batch"


def test_the_pixel_budget_admits_one_full_size_image_at_a_time():
    """Concurrent requests share one pixel budget: full-size images wait for each other,
    canvas-sized ones go in parallel."""
    import threading

    import anyio

    from digitlab.server.work import ImageWork

    class Slow:
        info: dict = {}

        def __init__(self):
            self.now = self.most = 0
            self.lock = threading.Lock()

        def prepare(self, image, *, mode, source):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.05)
            with self.lock:
                self.now -= 1
            return source

    big, small = _png("L", 600), _png("L", 100)

    async def run(png: bytes) -> int:
        predictor = Slow()
        work = ImageWork(predictor, max_pixels=600 * 600)
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(work.prepare, png, f"{i}.png", "digit")
        return predictor.most

    assert anyio.run(run, big) == 1
    assert anyio.run(run, small) > 1
