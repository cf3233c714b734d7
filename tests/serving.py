"""Helpers shared by the serving tests (test_server.py, test_corrections.py, test_browser.py); not a test module."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "digitlab" / "pretrained" / "model.keras"
_trained: dict[str, str] = {}


def model_arg(tmp_path_factory) -> str | None:
    """None (the shipped pretrained model) when it is there; else a small model trained once per process.

    The fallback trains on all 60,000 images for 1 epoch (about 15 s): ~97% accurate,
    good enough to read clearly drawn digits.
    """
    if PRETRAINED.exists():
        return None
    if "path" not in _trained:
        from digitlab.cli.commands import main

        out = tmp_path_factory.mktemp("serve-model")
        try:
            main(["train", "--epochs", "1", "--out", str(out), "--name", "serve"])
        except SystemExit as exc:
            assert exc.code == 0, f"training the fallback model failed (exit {exc.code})"
        _trained["path"] = str(out / "serve")
    return _trained["path"]


def user_png(digit28: np.ndarray, size: int = 112, mode: str = "L") -> bytes:
    """An MNIST digit as a person would send it: black ink on white paper, enlarged, as PNG."""
    from PIL import Image

    img = Image.fromarray(255 - np.asarray(digit28, dtype=np.uint8)).resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.convert(mode).save(buf, "PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`digitlab serve` on 127.0.0.1:<free port> in a subprocess; waits until /api/health answers."""

    def __init__(self, model: str | None, *, timeout: float = 120.0, extra: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="digitlab-serve-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "digitlab", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "warning", "--no-access-log", *(extra or [])]
        if model:
            cmd += ["--model", model]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not answer /api/health within {timeout:.0f} s:\n{self.output()}")
            time.sleep(0.25)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def png_bytes(img) -> bytes:
    """A PIL image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def assert_json_error(resp, status):
    """The response is `status` with the API's JSON error body; returns the body."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"error", "detail"} and body["error"], body
    return body
