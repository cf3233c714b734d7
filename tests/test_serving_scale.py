"""Serving beyond one process: the liveness and readiness probes, `serve --workers 2` over real
HTTP, and a graceful stop (SIGTERM while a request is in flight: it is still answered)."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request

import numpy as np
import pytest
from serving import ServerProcess, model_arg, user_png

from digitlab.server import create_app


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_arg(tmp_path_factory)


@pytest.fixture(scope="module")
def seven(mnist):
    i = int(np.flatnonzero(mnist.y_test == 7)[0])
    return user_png(mnist.x_test[i])


def test_probes_follow_the_model_lifecycle(model):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(model=model), base_url="http://127.0.0.1:8000")
    # Before the lifespan ran (starting): alive, not ready.
    assert client.get("/healthz").json() == {"status": "alive"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["error"] == "model not loaded"
    with client:  # the lifespan loads the model
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/healthz").status_code == 200
    # After the lifespan's shutdown (stopping): the model is gone, the process still answers.
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def _post(url: str, png: bytes) -> dict:
    req = urllib.request.Request(url + "/api/predict", data=png, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_serve_with_two_workers_answers(model, seven):
    psutil = pytest.importorskip("psutil")
    server = ServerProcess(model, extra=["--workers", "2"])
    try:
        with urllib.request.urlopen(server.url + "/readyz", timeout=10) as resp:
            assert json.loads(resp.read()) == {"status": "ready"}
        answers = [_post(server.url, seven) for _ in range(6)]
        assert {a["label"] for a in answers} == {7}
        workers = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]  # uvicorn's worker processes (spawned)
        assert len(workers) >= 2, [p.cmdline() for p in workers]
    finally:
        server.stop()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish(model, seven):
    server = ServerProcess(model)
    try:
        head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: image/png\r\n"
                f"Content-Length: {len(seven)}\r\n\r\n").encode()
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        conn.sendall(head + seven[:100])  # the request has begun: headers and part of its body
        with urllib.request.urlopen(server.url + "/readyz", timeout=10):
            pass  # answered after the first connection's bytes were read (one event loop)
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not _refused(server.port):  # shutting down: no new connections
            assert time.monotonic() < deadline, "the server kept accepting connections after SIGTERM"
            time.sleep(0.05)
        conn.sendall(seven[100:])
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
        conn.close()
        status, _, body = reply.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200"), reply[:300]
        assert json.loads(body)["label"] == 7
        assert server.proc.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    finally:
        server.stop()
